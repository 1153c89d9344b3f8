//! Liveness and readiness probes: HTTP GET, TCP connect, gRPC health, or a command run in
//! the container.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use pier_model::meta::IntOrString;
use pier_model::pod::{Container, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How to run one probe.
#[derive(Debug, Clone)]
pub enum Check {
    /// GET `path` on the port; 200-399 is success.
    Http {
        /// Port.
        port: u16,
        /// Path and query.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// TCP connect to the port.
    Tcp {
        /// Port.
        port: u16,
    },
    /// `grpc.health.v1.Health/Check` for `service` on the port; SERVING is success.
    Grpc {
        /// Port.
        port: u16,
        /// Service name (`""`: the server as a whole).
        service: String,
    },
    /// A command in the container; exit 0 is success.
    Exec {
        /// argv.
        command: Vec<String>,
    },
}

impl Check {
    /// What the check tried, for an `Unhealthy` event (`HTTP GET :8080/healthz`).
    pub fn describe(&self) -> String {
        match self {
            Check::Http { port, path, .. } => {
                format!("HTTP GET :{port}{path} did not answer 2xx or 3xx")
            }
            Check::Tcp { port } => format!("TCP connect to :{port} failed"),
            Check::Grpc { port, service } => {
                format!("gRPC health check of {service:?} on :{port} was not SERVING")
            }
            Check::Exec { command } => format!("command {command:?} did not exit 0"),
        }
    }

    /// The handler's name as a pod spec writes it (`httpGet`, `tcpSocket`, `grpc`, `exec`).
    pub fn handler(&self) -> &'static str {
        match self {
            Check::Http { .. } => "httpGet",
            Check::Tcp { .. } => "tcpSocket",
            Check::Grpc { .. } => "grpc",
            Check::Exec { .. } => "exec",
        }
    }
}

/// A probe with its timing, Kubernetes' defaults filled in.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// What to do.
    pub check: Check,
    /// Before the first check.
    pub initial_delay: Duration,
    /// Between checks.
    pub period: Duration,
    /// Per check.
    pub timeout: Duration,
    /// Successes to turn good.
    pub success_threshold: u32,
    /// Failures to turn bad.
    pub failure_threshold: u32,
}

fn port_of(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).map_err(|_| format!("probe port {n} is out of range"))
        }
        IntOrString::String(name) => container
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("probe port {name:?} is not a named port of the container")),
    }
}

fn secs(v: Option<i64>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

impl ProbeSpec {
    /// Reads a pod probe; the error names what is wrong.
    pub fn from_pod(container: &Container, probe: &Probe) -> Result<Self, String> {
        let check = if let Some(h) = &probe.http_get {
            if h.scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
            {
                return Err("httpGet probes support scheme HTTP only".into());
            }
            Check::Http {
                port: port_of(container, &h.port)?,
                path: h
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
                headers: h
                    .http_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(t) = &probe.tcp_socket {
            Check::Tcp {
                port: port_of(container, &t.port)?,
            }
        } else if let Some(g) = &probe.grpc {
            Check::Grpc {
                port: u16::try_from(g.port)
                    .map_err(|_| format!("grpc probe port {} is out of range", g.port))?,
                service: g.service.clone().unwrap_or_default(),
            }
        } else if let Some(e) = &probe.exec {
            if e.command.is_empty() {
                return Err("exec probe has no command".into());
            }
            Check::Exec {
                command: e.command.clone(),
            }
        } else {
            return Err("probe needs httpGet, tcpSocket, grpc or exec".into());
        };
        Ok(Self {
            check,
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_millis(100)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_millis(100)),
            success_threshold: probe
                .success_threshold
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(1)
                .max(1),
            failure_threshold: probe
                .failure_threshold
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(3)
                .max(1),
        })
    }
}

/// Where a probe runs against.
pub struct Target {
    /// The pod's address.
    pub ip: IpAddr,
    /// Container ID (for exec).
    pub id: String,
    /// The program that runs `exec` (the pier binary).
    pub exec_helper: PathBuf,
    /// libcontainer state root.
    pub state_root: PathBuf,
}

async fn http(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pier-probe\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    // "HTTP/1.1 200 ..."
    std::str::from_utf8(&buf[9..12])
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

/// Runs one check of the `probe` (`liveness`, `readiness`); true on success. Failures are
/// counted by probe and handler.
pub async fn run(spec: &ProbeSpec, target: &Target, probe: &'static str) -> bool {
    let check = async {
        match &spec.check {
            Check::Http {
                port,
                path,
                headers,
            } => http(SocketAddr::new(target.ip, *port), path, headers).await,
            Check::Tcp { port } => {
                tokio::net::TcpStream::connect(SocketAddr::new(target.ip, *port))
                    .await
                    .is_ok()
            }
            Check::Grpc { port, service } => {
                super::grpc_probe::check(SocketAddr::new(target.ip, *port), service).await
            }
            Check::Exec { command } => {
                let mut cmd = tokio::process::Command::new(&target.exec_helper);
                cmd.arg("exec-helper")
                    .arg(&target.state_root)
                    .arg(&target.id)
                    .args(command)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true);
                cmd.status().await.is_ok_and(|s| s.success())
            }
        }
    };
    let ok = tokio::time::timeout(spec.timeout, check)
        .await
        .unwrap_or(false);
    if !ok {
        if let Some(m) = crate::metrics::get() {
            m.probe_failures
                .with_label_values(&[probe, spec.check.handler()])
                .inc();
        }
    }
    ok
}

/// Counts consecutive results against the thresholds.
#[derive(Debug, Clone)]
pub struct Tracker {
    good: bool,
    streak: u32,
}

impl Tracker {
    /// Starts in `good`.
    pub fn new(good: bool) -> Self {
        Self { good, streak: 0 }
    }

    /// Records a result; returns the state after it.
    pub fn record(&mut self, ok: bool, spec: &ProbeSpec) -> bool {
        if ok == self.good {
            self.streak = 0;
            return self.good;
        }
        self.streak += 1;
        let needed = if ok {
            spec.success_threshold
        } else {
            spec.failure_threshold
        };
        if self.streak >= needed {
            self.good = ok;
            self.streak = 0;
        }
        self.good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_hold() {
        let spec = ProbeSpec {
            check: Check::Tcp { port: 1 },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut t = Tracker::new(false);
        assert!(!t.record(true, &spec));
        assert!(t.record(true, &spec));
        assert!(t.record(false, &spec));
        assert!(t.record(false, &spec));
        assert!(t.record(true, &spec));
        assert!(t.record(false, &spec) && t.record(false, &spec));
        assert!(!t.record(false, &spec));
    }

    #[tokio::test]
    async fn http_and_tcp_checks_hit_real_sockets() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let n = s.read(&mut b).await.unwrap_or(0);
                let status = if String::from_utf8_lossy(&b[..n]).starts_with("GET /ok") {
                    "200 OK"
                } else {
                    "503 No"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let target = Target {
            ip: "127.0.0.1".parse().unwrap(),
            id: String::new(),
            exec_helper: "/bin/false".into(),
            state_root: "/".into(),
        };
        let mk = |check| ProbeSpec {
            check,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 1,
        };
        assert!(
            run(
                &mk(Check::Http {
                    port,
                    path: "/ok".into(),
                    headers: vec![]
                }),
                &target,
                "readiness",
            )
            .await
        );
        assert!(
            !run(
                &mk(Check::Http {
                    port,
                    path: "/bad".into(),
                    headers: vec![]
                }),
                &target,
                "readiness",
            )
            .await
        );
        assert!(run(&mk(Check::Tcp { port }), &target, "readiness").await);
    }
}
