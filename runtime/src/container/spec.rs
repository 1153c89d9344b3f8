//! The OCI runtime spec (`config.json`) a container runs with.

use std::path::Path;

use serde_json::{json, Value};

use super::ContainerConfig;
use crate::error::{Error, Result};
use crate::image::oci::RunConfig;

/// Docker's default capability set: everything else is dropped.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The argv: the config's command replaces the image entrypoint, its args the image `Cmd`
/// (Kubernetes' rule).
pub fn argv(config: &ContainerConfig, image: &RunConfig) -> Result<Vec<String>> {
    let entry = config
        .command
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let args = match (&config.args, &config.command) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entry.into_iter().chain(args).collect();
    if argv.is_empty() {
        return Err(Error::Invalid(format!(
            "container {}: the image has no entrypoint or command; give one",
            config.name
        )));
    }
    Ok(argv)
}

/// Parses `uid[:gid]` (the engine resolves names against the image first, see
/// [`super::users`]).
fn user(spec: Option<&str>) -> Result<(u32, u32)> {
    let Some(s) = spec.filter(|s| !s.is_empty()) else {
        return Ok((0, 0));
    };
    let bad = || Error::Invalid(format!("user {s:?}: give a numeric uid[:gid]"));
    let (u, g) = s.split_once(':').unwrap_or((s, "0"));
    Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

/// Builds `config.json` for a container whose rootfs is mounted at `rootfs`, whose network
/// namespace is `netns` (a new one when `None`), with `/etc/{hosts,hostname,resolv.conf}`
/// bound from `etc_files`.
pub fn build(
    id: &str,
    config: &ContainerConfig,
    image: &RunConfig,
    rootfs: &Path,
    netns: Option<&Path>,
    etc_files: Option<&Path>,
) -> Result<Value> {
    let argv = argv(config, image)?;
    let (uid, gid) = user(config.user.as_deref().or(image.user.as_deref()))?;
    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    let hostname = config
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    let mut set_env = |k: &str, v: &str| {
        env.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(k));
        env.push(format!("{k}={v}"));
    };
    set_env("HOSTNAME", &hostname);
    for (k, v) in &config.env {
        set_env(k, v);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let cwd = config
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!(
            "working dir {cwd:?} must be absolute"
        )));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    if let Some(dir) = etc_files {
        for f in ["hosts", "hostname", "resolv.conf"] {
            mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind", "source": dir.join(f), "options": ["rbind", "ro"]}));
        }
    }
    for v in &config.volumes {
        if !v.container.starts_with('/') {
            return Err(Error::Invalid(format!(
                "volume target {:?} must be absolute",
                v.container
            )));
        }
        if !Path::new(&v.host).exists() {
            return Err(Error::Invalid(format!(
                "volume source {:?} does not exist",
                v.host
            )));
        }
        let mut opts = vec!["rbind", "rprivate"];
        if v.read_only {
            opts.push("ro");
        }
        mounts.push(
            json!({"destination": v.container, "type": "bind", "source": v.host, "options": opts}),
        );
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match netns {
        Some(p) => namespaces.push(json!({"type": "network", "path": p})),
        None => namespaces.push(json!({"type": "network"})),
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = config.memory {
        if m < 6 * 1024 * 1024 {
            return Err(Error::Invalid(format!(
                "memory limit {m} bytes is below the minimum of 6MiB"
            )));
        }
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(c) = config.cpus {
        if !(c > 0.0 && c <= 1024.0) {
            return Err(Error::Invalid(format!(
                "cpus {c} must be between 0 and 1024"
            )));
        }
        let period: u64 = 100_000;
        resources["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    if let Some(p) = config.pids {
        if p < 1 {
            return Err(Error::Invalid(format!("pids limit {p} must be at least 1")));
        }
        resources["pids"] = json!({"limit": p});
    }
    let caps = DEFAULT_CAPABILITIES;
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": argv,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": config.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": super::cgroup::spec_path(id),
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            "seccomp": super::seccomp::profile(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/bin/app".into()]),
            cmd: Some(vec!["--default".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let mut c = ContainerConfig {
            name: "c".into(),
            ..Default::default()
        };
        assert_eq!(argv(&c, &image()).unwrap(), ["/bin/app", "--default"]);
        c.args = Some(vec!["--x".into()]);
        assert_eq!(argv(&c, &image()).unwrap(), ["/bin/app", "--x"]);
        c.args = None;
        c.command = Some(vec!["/bin/sh".into()]);
        assert_eq!(argv(&c, &image()).unwrap(), ["/bin/sh"]);
        assert!(argv(&ContainerConfig::default(), &RunConfig::default()).is_err());
    }

    #[test]
    fn impossible_limits_name_the_limit() {
        let mut c = ContainerConfig {
            name: "c".into(),
            memory: Some(1000),
            ..Default::default()
        };
        let e = build("x", &c, &image(), Path::new("/r"), None, None).unwrap_err();
        assert!(e.to_string().contains("memory limit"), "{e}");
        c.memory = None;
        c.cpus = Some(-1.0);
        let e = build("x", &c, &image(), Path::new("/r"), None, None).unwrap_err();
        assert!(e.to_string().contains("cpus"), "{e}");
    }

    #[test]
    fn secure_defaults() {
        let c = ContainerConfig {
            name: "c".into(),
            ..Default::default()
        };
        let s = build("abc", &c, &image(), Path::new("/r"), None, None).unwrap();
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert!(!s["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(
            s["linux"]["seccomp"]["syscalls"][0]["action"],
            "SCMP_ACT_ERRNO"
        );
    }
}
