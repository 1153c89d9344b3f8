//! Pods that take configuration from the store, through kubectl, as the kubelet gives it:
//! ConfigMap and Secret keys as environment (`valueFrom`, `envFrom` with a prefix,
//! `optional`), pod fields (`fieldRef`) and `$(NAME)` expansion; ConfigMaps and Secrets as
//! files (every key, `items` with a mode, `defaultMode`, `subPath`, `optional`; a Secret's on
//! a tmpfs) updated in place within seconds of a change; `emptyDir`; `hostPath` (made or
//! checked by type, outliving its pod); Secrets kept sealed in the store file and never shown
//! in tables; a pod that waits (`CreateContainerConfigError`) until the ConfigMap it needs
//! exists, and one whose volume pier does not provide; and the volumes gone with the pod.
//! Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::runtime::*;
use common::{have, skip};

const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data:
  LOG_LEVEL: debug
  app.properties: |
    color=blue
binaryData:
  greeting.bin: aGk=
";

const READER: &str = "apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  volumes:
  - {name: config, configMap: {name: app}}
  - name: picked
    configMap:
      name: app
      items: [{key: app.properties, path: conf/app.properties, mode: 0400}]
  - {name: scratch, emptyDir: {}}
  - {name: later, configMap: {name: later, optional: true}}
  - {name: creds, secret: {secretName: db, defaultMode: 0400}}
  containers:
  - name: reader
    image: pier/shell:v1
    args: [echo, --http, '0.0.0.0:8080', --name, $(POD_NAME)]
    env:
    - name: LEVEL
      valueFrom: {configMapKeyRef: {name: app, key: LOG_LEVEL}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: GREETING
      value: hello $(POD_NAME) at $(LEVEL), $$(LEVEL) stays
    - name: ABSENT
      valueFrom: {configMapKeyRef: {name: app, key: nope, optional: true}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: app}}
    - {prefix: SEC_, secretRef: {name: db}}
    volumeMounts:
    - {name: config, mountPath: /etc/app}
    - {name: picked, mountPath: /etc/picked}
    - {name: scratch, mountPath: /scratch}
    - {name: later, mountPath: /etc/later}
    - {name: config, mountPath: /etc/level, subPath: LOG_LEVEL}
    - {name: creds, mountPath: /etc/creds}
";

/// The Secret's password, which must never be in the store file or a table.
const PASSWORD: &str = "hunter2-s3cret";

const ROTATED: &str = "apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: rotated-pw, token: t0k3n}
";

const WAITER: &str = "apiVersion: v1
kind: Pod
metadata: {name: waiter}
spec:
  containers:
  - name: waiter
    image: pier/shell:v1
    args: [echo, --http, '0.0.0.0:8080']
    env:
    - name: MODE
      valueFrom: {configMapKeyRef: {name: absent, key: mode}}
";

struct Kubectl(std::path::PathBuf);

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", out_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, dir: &Path, yaml: &str) -> Output {
        let file = dir.join("apply.yaml");
        std::fs::write(&file, yaml).unwrap();
        self.run(&["apply", "-f", file.to_str().unwrap()])
    }

    fn exec(&self, pod: &str, script: &str) -> String {
        self.ok(&["exec", pod, "--", "sh", "-c", script])
    }

    /// Waits up to `limit` for `check` to hold; how long it took.
    fn until(&self, limit: Duration, what: &str, check: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < limit, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    }

    fn running(&self, pod: &str) {
        self.until(Duration::from_secs(60), &format!("{pod} running"), || {
            self.run(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
                .stdout
                == b"Running"
        });
    }
}

/// `hostPath` volumes: a directory made for the pod (DirectoryOrCreate) that both sides see
/// and that outlives the pod, a node file mounted read-only (File); a File that is not there
/// keeps its pod waiting in kubelet's words; a relative path is refused at apply.
fn host_paths(k: &Kubectl, dir: &Path) {
    let (data, seed) = (dir.join("host-data"), dir.join("seed.txt"));
    std::fs::write(&seed, "from the node").unwrap();
    let pod = |name: &str, file: &Path| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  volumes:
  - {{name: data, hostPath: {{path: {}, type: DirectoryOrCreate}}}}
  - {{name: seed, hostPath: {{path: {}, type: File}}}}
  containers:
  - name: c
    image: pier/shell:v1
    args: [echo, --http, '0.0.0.0:8080', --name, {name}]
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: seed, mountPath: /seed.txt, readOnly: true}}
",
            data.display(),
            file.display()
        )
    };
    assert!(k.apply(dir, &pod("hostdata", &seed)).status.success());
    k.running("hostdata");
    assert_eq!(k.exec("hostdata", "cat /seed.txt"), "from the node");
    assert_eq!(
        k.exec("hostdata", "echo written > /data/f && cat /data/f"),
        "written\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("f")).unwrap(),
        "written\n"
    );
    let denied = k.run(&["exec", "hostdata", "--", "sh", "-c", "echo x > /seed.txt"]);
    assert!(!denied.status.success(), "{}", out_text(&denied));

    assert!(k
        .apply(dir, &pod("hostmissing", &dir.join("absent.txt")))
        .status
        .success());
    k.until(
        Duration::from_secs(30),
        "hostmissing shows why it cannot start",
        || {
            let events = k.run(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=hostmissing",
            ]);
            String::from_utf8_lossy(&events.stdout).contains("hostPath type check failed")
        },
    );
    let relative =
        pod("hostrelative", &seed).replace(&format!("path: {}", seed.display()), "path: seed.txt");
    let refused = k.apply(dir, &relative);
    assert!(!refused.status.success());
    assert!(
        out_text(&refused).contains("spec.volumes[1].hostPath.path"),
        "{}",
        out_text(&refused)
    );

    k.ok(&["delete", "pod", "hostdata", "hostmissing", "--timeout=60s"]);
    assert_eq!(
        std::fs::read_to_string(data.join("f")).unwrap(),
        "written\n",
        "a hostPath outlives its pod"
    );
}

/// The Secret's values are in no table and not in the store file, which holds it sealed.
fn secret_kept_sealed(k: &Kubectl, node: &Node, dir: &Path) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    let table = k.ok(&["get", "secret", "db"]);
    assert!(table.contains("Opaque") && table.contains(" 2 "), "{table}");
    let out = node.pier(&["get", "secret", "db"]);
    let pier_table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && pier_table.contains("db"),
        "{}",
        out_text(&out)
    );
    for shown in [&table, &pier_table] {
        assert!(
            !shown.contains(PASSWORD) && !shown.contains(&encoded),
            "{shown}"
        );
    }
    let stored = std::fs::read(dir.join("state/pier.redb")).unwrap();
    let holds = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(holds(b"k8s:enc:aesgcm:v1:"), "the Secret is stored sealed");
    assert!(!holds(PASSWORD.as_bytes()), "plaintext in the store file");
    assert!(
        !holds(encoded.as_bytes()),
        "base64 plaintext in the store file"
    );
}

#[test]
fn pods_read_configmaps_as_env_and_files() {
    if !privileged("pods_read_configmaps_as_env_and_files") {
        return;
    }
    if !have("kubectl") || !have("umoci") {
        skip("kubectl and umoci are needed (scripts/deps test installs umoci)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with(tmp.path(), 13, &["--api-listen", "127.0.0.1:0"]);
    shell_image(&node, tmp.path());
    let kubeconfig = tmp.path().join("kubeconfig");
    let out = node.pier(&["kubeconfig"]);
    assert!(out.status.success(), "{}", out_text(&out));
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let k = Kubectl(kubeconfig);

    assert!(k.apply(tmp.path(), CONFIG).status.success());
    k.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={PASSWORD}"),
        "--from-literal=token=t0k3n",
    ]);
    secret_kept_sealed(&k, &node, tmp.path());
    assert!(k.apply(tmp.path(), READER).status.success());
    k.running("reader");

    // Environment: a key, pod fields, expansion, an optional key left out, a prefixed envFrom.
    let ip = k.ok(&["get", "pod", "reader", "-o", "jsonpath={.status.podIP}"]);
    let env = k.exec(
        "reader",
        r#"echo "$LEVEL|$POD_NAME|$POD_IP|$GREETING|${ABSENT-unset}|$CFG_LOG_LEVEL|$PASSWORD|$SEC_token""#,
    );
    assert_eq!(
        env.trim(),
        format!(
            "debug|reader|{ip}|hello reader at debug, $(LEVEL) stays|unset|debug|{PASSWORD}|t0k3n"
        )
    );
    let cmdline = k.exec("reader", "cat /proc/1/cmdline");
    assert!(
        cmdline.contains("--name\0reader"),
        "args expanded: {cmdline:?}"
    );

    // Files: every key (binaryData decoded), an item at its path with its mode, a subPath.
    let files = k.exec(
        "reader",
        "cat /etc/app/LOG_LEVEL; echo; cat /etc/app/app.properties /etc/app/greeting.bin; echo; cat /etc/picked/conf/app.properties /etc/level",
    );
    assert_eq!(files, "debug\ncolor=blue\nhi\ncolor=blue\ndebug");
    let uid = k.ok(&["get", "pod", "reader", "-o", "jsonpath={.metadata.uid}"]);
    let picked = tmp
        .path()
        .join("state/runtime/pods")
        .join(&uid)
        .join("volumes/picked/conf/app.properties");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&picked).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o400, "{}", picked.display());
    assert_eq!(
        k.exec("reader", "cat /etc/creds/password /etc/creds/token"),
        format!("{PASSWORD}t0k3n")
    );
    let creds = picked
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("creds");
    let creds_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(creds.join("password"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(creds_mode & 0o777, 0o400, "defaultMode");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == creds.to_str() && l.contains(" - tmpfs ")),
        "a secret volume is a tmpfs: {}",
        creds.display()
    );
    let written = k.run(&["exec", "reader", "--", "sh", "-c", "echo x > /etc/app/new"]);
    assert!(!written.status.success(), "a configMap volume is read-only");
    assert_eq!(
        k.exec("reader", "echo kept > /scratch/f && cat /scratch/f"),
        "kept\n"
    );
    assert_eq!(
        k.exec("reader", "cat /etc/later/* 2>/dev/null || echo empty"),
        "empty\n"
    );

    // A change reaches the files in place (the environment keeps what the container started with).
    let changed = CONFIG.replace("LOG_LEVEL: debug", "LOG_LEVEL: info");
    assert!(k.apply(tmp.path(), &changed).status.success());
    let took = k.until(
        Duration::from_secs(10),
        "the file follows the ConfigMap",
        || {
            k.run(&["exec", "reader", "--", "cat", "/etc/app/LOG_LEVEL"])
                .stdout
                == b"info"
        },
    );
    println!(
        "configMap volume updated {:.2}s after the change",
        took.as_secs_f64()
    );
    assert_eq!(k.exec("reader", "echo $LEVEL"), "debug\n");
    let rotated = k.apply(tmp.path(), ROTATED);
    assert!(rotated.status.success(), "{}", out_text(&rotated));
    let took = k.until(
        Duration::from_secs(10),
        "the file follows the Secret",
        || {
            k.run(&["exec", "reader", "--", "cat", "/etc/creds/password"])
                .stdout
                == b"rotated-pw"
        },
    );
    println!(
        "secret volume updated {:.2}s after the change",
        took.as_secs_f64()
    );
    assert_eq!(k.exec("reader", "echo $PASSWORD"), format!("{PASSWORD}\n"));
    assert_eq!(
        k.exec("reader", "cat /etc/level"),
        "debug",
        "a subPath mount is not updated, as in Kubernetes"
    );
    let later = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {x: arrived}\n";
    assert!(k.apply(tmp.path(), later).status.success());
    k.until(
        Duration::from_secs(10),
        "an optional ConfigMap that appears is mounted",
        || {
            k.run(&["exec", "reader", "--", "cat", "/etc/later/x"])
                .stdout
                == b"arrived"
        },
    );

    // A volume pier does not provide is kept with a warning naming the field; the pod waits,
    // saying why.
    let nfs = READER.replace("{name: reader}", "{name: hosted}").replace(
        "{name: scratch, emptyDir: {}}",
        "{name: scratch, nfs: {server: nfs.example, path: /exports}}",
    );
    let warned = k.apply(tmp.path(), &nfs);
    assert!(warned.status.success(), "{}", out_text(&warned));
    assert!(
        out_text(&warned).contains("spec.volumes[2].nfs"),
        "{}",
        out_text(&warned)
    );

    // A pod needing a ConfigMap that does not exist waits, saying why, and starts once it does.
    assert!(k.apply(tmp.path(), WAITER).status.success());
    k.until(
        Duration::from_secs(30),
        "waiter shows CreateContainerConfigError",
        || {
            String::from_utf8_lossy(&k.run(&["get", "pod", "waiter"]).stdout)
                .contains("CreateContainerConfigError")
        },
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=waiter",
    ]);
    assert!(
        events.contains(r#"configmap "absent" not found"#),
        "{events}"
    );
    k.until(
        Duration::from_secs(30),
        "hosted shows why it cannot start",
        || {
            String::from_utf8_lossy(
                &k.run(&[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=hosted",
                ])
                .stdout,
            )
            .contains("nfs volumes are not provided by pier")
        },
    );
    assert!(
        String::from_utf8_lossy(&k.run(&["get", "pod", "hosted"]).stdout)
            .contains("CreateContainerConfigError")
    );
    let absent = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: absent}\ndata: {mode: fast}\n";
    assert!(k.apply(tmp.path(), absent).status.success());
    k.running("waiter");
    assert_eq!(k.exec("waiter", "echo $MODE"), "fast\n");

    host_paths(&k, tmp.path());

    // The pods' volumes go with them.
    let pods_dir = tmp.path().join("state/runtime/pods");
    assert!(std::fs::read_dir(&pods_dir).unwrap().count() >= 1);
    k.ok(&[
        "delete",
        "pod",
        "reader",
        "waiter",
        "hosted",
        "--timeout=60s",
    ]);
    k.until(Duration::from_secs(10), "volumes removed", || {
        std::fs::read_dir(&pods_dir).unwrap().count() == 0
    });
}
