//! The proxy tests' pieces: `pier echo` endpoints, a daemon serving VIPs on loopback
//! stand-ins, manifests, and HTTP clients with load loops.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{Daemon, PIER};

/// A `pier echo` process; killed on drop.
pub(crate) struct Echo {
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    child: Child,
}

impl Echo {
    pub(crate) fn spawn(name: &str) -> Echo {
        let mut command = Command::new(PIER);
        command
            .args(["echo", "--name", name, "--tcp-banner"])
            .args([
                "--http",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
            ]);
        let (child, addrs) = super::spawn_echo(command);
        Echo {
            http: addrs["http"],
            tcp: addrs["tcp"],
            udp: addrs["udp"],
            child,
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A service CIDR of this test's own, so VIPs (127.b.c.d) of tests running in parallel, as
/// processes (nextest) or as threads of one process (cargo test), do not collide.
pub(crate) fn service_cidr() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 100 + (std::process::id() as usize * 11 + n) % 150;
    format!("10.{second}.0.0/16")
}

pub(crate) fn proxy_daemon(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    let cidr = service_cidr();
    let offset = PORT_OFFSET.to_string();
    let mut args = vec![
        "--proxy-vips",
        "loopback",
        "--proxy-port-offset",
        offset.as_str(),
        "--service-cidr",
        cidr.as_str(),
    ];
    args.extend_from_slice(extra);
    Daemon::start_with(dir, &args)
}

pub(crate) fn apply(d: &Daemon, yaml: &str) {
    super::apply_yaml(&d.socket(), yaml);
}

/// The loopback stand-in of a service's VIP port (port + 20000, so no test needs root).
pub(crate) fn vip(d: &Daemon, svc: &str, port: u16) -> SocketAddr {
    let v = d.get_json(&["svc", svc]);
    let ip: std::net::Ipv4Addr = v["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let [_, b, c, e] = ip.octets();
    SocketAddr::from(([127, b, c, e], port + PORT_OFFSET))
}

/// Added to service ports by the test daemons (`--proxy-port-offset`).
pub(crate) const PORT_OFFSET: u16 = 20000;

pub(crate) fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A selector-less Service and one EndpointSlice per endpoint.
pub(crate) fn service_yaml(
    name: &str,
    port: u16,
    proto: &str,
    extra_spec: &str,
    endpoints: &[(u16, bool)],
) -> String {
    let mut y = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  {extra_spec}\n  ports: [{{name: p, port: {port}, protocol: {proto}}}]\n"
    );
    for (i, (ep_port, ready)) in endpoints.iter().enumerate() {
        y.push_str(&slice_yaml(name, i, *ep_port, proto, *ready));
    }
    y
}

pub(crate) fn slice_yaml(svc: &str, i: usize, port: u16, proto: &str, ready: bool) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-{i}, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: {ready}}}}}]\nports: [{{name: p, port: {port}, protocol: {proto}}}]\n---\n"
    )
}

pub(crate) fn http_route(name: &str, parent: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: {parent}, port: 80}}]\n  rules:\n{rules}\n"
    )
}

pub(crate) type HttpClient =
    Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// One request; `Ok((status, echo name))` or the client error.
pub(crate) async fn get(
    c: &HttpClient,
    url: &str,
    header: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    let mut req = hyper::Request::get(url);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let resp = c
        .request(req.body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let name = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["name"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Ok((status, name))
}

/// Outcome of a load run.
#[derive(Default, Debug)]
pub(crate) struct Tally {
    pub by_name: HashMap<String, usize>,
    pub failures: Vec<String>,
}

impl Tally {
    pub(crate) fn total(&self) -> usize {
        self.by_name.values().sum::<usize>() + self.failures.len()
    }
    pub(crate) fn share(&self, name: &str) -> f64 {
        *self.by_name.get(name).unwrap_or(&0) as f64 / self.total() as f64
    }
}

/// Sends GETs from `workers` tasks until `count` are done or `stop` is set (bounded by 60 s).
pub(crate) async fn load(
    url: String,
    workers: usize,
    count: usize,
    stop: Arc<AtomicBool>,
    header: Option<(&'static str, &'static str)>,
) -> Tally {
    let c = client();
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (c, done, stop, url) = (c.clone(), Arc::clone(&done), Arc::clone(&stop), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while done.fetch_add(1, Ordering::Relaxed) < count
                && !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
            {
                match get(&c, &url, header).await {
                    Ok((200, name)) => *t.by_name.entry(name).or_default() += 1,
                    Ok((code, body)) => t.failures.push(format!("{code} {body}")),
                    Err(e) => t.failures.push(e),
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        for (k, v) in t.by_name {
            *all.by_name.entry(k).or_default() += v;
        }
        all.failures.extend(t.failures);
    }
    all
}

pub(crate) fn metric(d: &Daemon, prefix: &str) -> f64 {
    let (_, body) = d.admin("/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn canary(v1: &Echo, v2: &Echo, w1: u32, w2: u32) -> String {
    let mut y = service_yaml("web", 80, "TCP", "type: ClusterIP", &[]);
    y.push_str(&service_yaml(
        "web-v1",
        80,
        "TCP",
        "type: ClusterIP",
        &[(v1.http.port(), true)],
    ));
    y.push_str(&service_yaml(
        "web-v2",
        80,
        "TCP",
        "type: ClusterIP",
        &[(v2.http.port(), true)],
    ));
    y.push_str(&http_route(
        "web-canary",
        "web",
        &format!(
            "  - matches: [{{headers: [{{name: x-canary, value: \"true\"}}]}}]\n    backendRefs: [{{name: web-v2, port: 80}}]\n  - backendRefs: [{{name: web-v1, port: 80, weight: {w1}}}, {{name: web-v2, port: 80, weight: {w2}}}]\n"
        ),
    ));
    y
}

/// Opens TCP connections to `addr` from `workers` tasks until `count` are done or `stop` is
/// set (bounded by 60 s); each must greet with a banner line, tallied by its text.
pub(crate) async fn tcp_load(
    addr: SocketAddr,
    workers: usize,
    count: usize,
    stop: Arc<AtomicBool>,
) -> Tally {
    use tokio::io::AsyncBufReadExt;
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while done.fetch_add(1, Ordering::Relaxed) < count
                && !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
            {
                let greeted = tokio::time::timeout(Duration::from_secs(2), async {
                    let s = tokio::net::TcpStream::connect(addr).await?;
                    let mut line = String::new();
                    tokio::io::BufReader::new(s).read_line(&mut line).await?;
                    Ok::<String, std::io::Error>(line.trim().to_string())
                })
                .await;
                match greeted {
                    Ok(Ok(name)) if !name.is_empty() => *t.by_name.entry(name).or_default() += 1,
                    Ok(Ok(_)) => t.failures.push("closed without a banner".into()),
                    Ok(Err(e)) => t.failures.push(e.to_string()),
                    Err(_) => t.failures.push("timed out".into()),
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        for (k, v) in t.by_name {
            *all.by_name.entry(k).or_default() += v;
        }
        all.failures.extend(t.failures);
    }
    all
}
