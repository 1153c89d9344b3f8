//! Network namespaces: a test's traffic to ClusterIPs, NodePorts and pod addresses stays in
//! one, so a failed translation finds no route instead of leaving the machine.

use std::path::PathBuf;
use std::process::{Child, Command, Output};

/// Moves the test (this thread, and every process and thread it starts from now on) into a
/// network namespace of its own with only `lo` up: a ClusterIP or pod address dialled there
/// that pier fails to translate finds no route instead of leaving the machine. Needs root.
pub fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link set lo up");
    assert!(up.success(), "ip link set lo up");
}

/// A named network namespace with `lo` up, deleted (with every process the test started in
/// it, in `children`) on drop. `ip netns exec` mounts /etc/netns/NAME/resolv.conf over
/// /etc/resolv.conf, so a namespace can have a resolver configuration of its own.
pub struct Netns {
    /// Its name (`ip netns` names it so).
    pub name: String,
    /// Processes started in it, killed on drop.
    pub children: Vec<Child>,
    etc: Option<PathBuf>,
}

impl Netns {
    /// A namespace named `prefix-<pid>`.
    pub fn create(prefix: &str) -> Netns {
        Self::create_with(prefix, None)
    }

    /// A namespace whose processes read `resolv_conf` as /etc/resolv.conf.
    pub fn with_resolv_conf(prefix: &str, resolv_conf: &str) -> Netns {
        Self::create_with(prefix, Some(resolv_conf))
    }

    fn create_with(prefix: &str, resolv_conf: Option<&str>) -> Netns {
        let name = format!("{prefix}-{}", std::process::id());
        // A namespace of the same name left by a killed earlier run.
        Command::new("ip")
            .args(["netns", "del", &name])
            .output()
            .ok();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        let etc = resolv_conf.map(|text| {
            let etc = PathBuf::from("/etc/netns").join(&name);
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(etc.join("resolv.conf"), text).unwrap();
            etc
        });
        let ns = Netns {
            name,
            children: Vec::new(),
            etc,
        };
        assert!(ns.run(&["ip", "link", "set", "lo", "up"]).status.success());
        ns
    }

    /// `args` as a command run in the namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs `args` in the namespace to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Starts `command` (from [`Netns::command`]); it is killed when the namespace goes.
    pub fn spawn(&mut self, mut command: Command) -> &mut Child {
        let child = command.spawn().unwrap();
        self.children.push(child);
        self.children.last_mut().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            if c.kill().is_ok() {
                // Reaped so it does not linger as a zombie of the test process.
                c.wait().ok();
            }
        }
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !deleted.is_ok_and(|o| o.status.success()) {
            eprintln!("network namespace {} not deleted", self.name);
        }
        if let Some(etc) = &self.etc {
            if let Err(e) = std::fs::remove_dir_all(etc) {
                eprintln!("{} not removed: {e}", etc.display());
            }
        }
    }
}
