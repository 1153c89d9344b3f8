//! Real etcd members for tests (Debian's `etcd-server`): one, or a cluster of several, on
//! free ports of one address (loopback unless told), each with its own data dir; stopped and
//! removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// One member's ports and process.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster started for a test.
pub struct Etcd {
    /// The address every member listens on.
    host: String,
    members: Vec<Member>,
    cluster: String,
    tls: Option<EtcdTls>,
    _dir: tempfile::TempDir,
}

/// PEM files of a TLS member: the CA that signed everything, and a client certificate.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA certificate.
    pub ca: PathBuf,
    /// A client certificate the member accepts.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// Runs `openssl` with `args`, panicking with its output if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` arguments for a new P-256 key, unencrypted.
const NEW_KEY: [&str; 6] = [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_tls(dir: &std::path::Path) -> EtcdTls {
    let ca = [
        "-x509",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=pier-test-ca",
    ];
    openssl(dir, &[&NEW_KEY[..], &ca[..]].concat());
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subject = format!("/CN={name}");
        let request = ["-keyout", &key, "-out", &csr, "-subj", &subject];
        openssl(dir, &[&NEW_KEY[..], &request[..]].concat());
        std::fs::write(dir.join(&extfile), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &extfile,
            ],
        );
    }
    EtcdTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    }
}

impl Etcd {
    /// Whether etcd can be started here.
    pub fn available() -> bool {
        Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A cluster of `size` members on loopback, running and serving clients.
    pub fn start(size: usize) -> Etcd {
        Self::start_on(size, "127.0.0.1")
    }

    /// A cluster of `size` members listening on `host` (an address of this namespace, e.g.
    /// the bridge other namespaces reach it through), running and serving clients.
    pub fn start_on(size: usize, host: &str) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(host).unwrap(),
                peer: free_port(host).unwrap(),
                dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://{host}:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            host: host.to_string(),
            members,
            cluster,
            tls: None,
            _dir: dir,
        };
        for i in 0..size {
            etcd.start_member(i);
        }
        for i in 0..size {
            etcd.wait_healthy(i);
        }
        etcd
    }

    /// One member serving clients over TLS that requires a client certificate signed by its
    /// CA; returns the PEM files a client needs.
    pub fn start_tls() -> (Etcd, EtcdTls) {
        let dir = tempfile::tempdir().unwrap();
        let tls = make_tls(dir.path());
        let member = Member {
            name: "m0".into(),
            client: free_port("127.0.0.1").unwrap(),
            peer: free_port("127.0.0.1").unwrap(),
            dir: dir.path().join("m0"),
            child: None,
        };
        let cluster = format!("m0=http://127.0.0.1:{}", member.peer);
        let mut etcd = Etcd {
            host: "127.0.0.1".into(),
            members: vec![member],
            cluster,
            tls: Some(tls.clone()),
            _dir: dir,
        };
        etcd.start_member(0);
        let port = etcd.members[0].client;
        wait_for(
            "the TLS etcd member to listen",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        (etcd, tls)
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}:{}", self.host, m.client))
            .collect()
    }

    /// The `--store` value that reaches every member (`etcd://host:port,...`).
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:{}", self.host, m.client))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Starts member `i` (again, after `stop_member`, with its data).
    pub fn start_member(&mut self, i: usize) {
        let cluster = self.cluster.clone();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = self.host.clone();
        let m = &mut self.members[i];
        let client = format!("{scheme}://{host}:{}", m.client);
        let peer = format!("http://{host}:{}", m.peer);
        let state = if m.dir.exists() { "existing" } else { "new" };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.with_extension("log"))
            .expect("opening the etcd member's log");
        let mut command = Command::new("etcd");
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                state,
            ])
            .args(["--initial-cluster-token", "pier-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "error", "--logger", "zap"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        m.child = Some(child);
    }

    /// Waits until member `i` has applied `revision` (it may hold a committed entry it does
    /// not yet know is committed until the leader tells it).
    pub fn wait_applied(&self, i: usize, revision: u64) {
        let port = self.members[i].client;
        crate::wait_for(
            &format!("etcd member {i} to apply revision {revision}"),
            Duration::from_secs(20),
            || applied_revision(&self.host, port).is_some_and(|r| r >= revision),
        );
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            if let Err(e) = child.kill() {
                eprintln!("killing etcd member {i}: {e}");
            }
            if let Err(e) = child.wait() {
                eprintln!("waiting for etcd member {i}: {e}");
            }
        }
    }

    /// Waits until member `i` answers its health check; fails with its log if it exits or
    /// stays unhealthy for a minute (a loaded 2-core machine starting several members and
    /// daemons at once can take tens of seconds).
    pub fn wait_healthy(&mut self, i: usize) {
        let port = self.members[i].client;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !health(&self.host, port) {
            let exited = self.members[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.members[i].dir.with_extension("log"))
                    .unwrap_or_default();
                panic!(
                    "etcd member {i} on {}:{port} is not healthy (exit: {exited:?}); its log:\n{log}",
                    self.host
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The revision member `i` has applied, as its own serializable read reports it (no
/// quorum needed); `None` when it does not answer.
fn applied_revision(host: &str, port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // key "\0" (base64 AA==): any key will do, the header carries the revision.
    let body = r#"{"key":"AA==","serializable":true}"#;
    let request = format!(
        "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let json = response.split("\r\n\r\n").nth(1)?;
    let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    value["header"]["revision"].as_str()?.parse().ok()
}

/// Whether the member on `host:port` says it is healthy (`GET /health`).
fn health(host: &str, port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect((host, port)) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
        return false;
    }
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    s.read_to_string(&mut body).is_ok() && body.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
