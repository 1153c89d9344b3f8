//! `pier echo`: a small server for demos, tests and benchmarks. HTTP (1.1 and h2c) answers with
//! its name, version and hostname; TCP and UDP echo what they receive. It can also play a bad
//! release: `--fail-percent` answers that share of requests with 500 (probes still pass, as a
//! bad canary's do) and `--reset-percent` resets that share of TCP connections; `POST
//! /fail-percent/<n>` and `/reset-percent/<n>` change the shares while it runs. `/delay/<ms>`
//! waits and `/busy/<ms>` spins a core that long before answering (CPU load for autoscaling);
//! `--crash-after` exits with an error, so its container restarts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

/// What `pier echo` serves.
#[derive(clap::Args)]
pub(crate) struct EchoConfig {
    /// Name reported in answers (and in the TCP banner).
    #[arg(long, default_value = "echo")]
    pub name: String,
    /// Version reported in answers.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub version: String,
    /// HTTP/1.1 and h2c listen address (repeatable).
    #[arg(long)]
    pub http: Vec<SocketAddr>,
    /// TCP echo listen address (repeatable).
    #[arg(long)]
    pub tcp: Vec<SocketAddr>,
    /// UDP echo listen address (repeatable).
    #[arg(long)]
    pub udp: Vec<SocketAddr>,
    /// Send the name and a newline first on every TCP connection.
    #[arg(long)]
    pub tcp_banner: bool,
    /// Answer this share of HTTP requests (0-100, every n-th exactly) with 500, except the
    /// `/readyz` and `/healthz` probes.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_percent: u8,
    /// Reset this share of TCP connections (0-100) instead of echoing.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub reset_percent: u8,
    /// Exit with status 1 this long after starting (`5s`, `500ms`): a release whose process
    /// crashes, so its container restarts.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub crash_after: Option<Duration>,
}

/// Picks exactly `percent` of a stream of events, spread evenly (every n-th, as a line is
/// drawn), so a share holds over a few requests and tests need no luck.
#[derive(Default)]
struct Share {
    percent: std::sync::atomic::AtomicU8,
    seen: std::sync::atomic::AtomicU64,
}

impl Share {
    fn new(percent: u8) -> Self {
        Share {
            percent: percent.min(100).into(),
            seen: 0.into(),
        }
    }

    fn set(&self, percent: u8) {
        self.percent
            .store(percent.min(100), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this event is one of the share.
    fn pick(&self) -> bool {
        use std::sync::atomic::Ordering;
        let p = u64::from(self.percent.load(Ordering::Relaxed));
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        n * p / 100 != (n - 1) * p / 100
    }
}

struct Identity {
    name: String,
    version: String,
    hostname: String,
    /// What `/readyz` answers; `POST /readyz/disable` and `/readyz/enable` flip it (podinfo's API).
    ready: std::sync::atomic::AtomicBool,
    /// HTTP requests answered with 500.
    fail: Share,
    /// TCP connections reset.
    reset: Arc<Share>,
}

/// Keeps a core busy for `spin` of wall time.
fn spin_for(spin: Duration) {
    let start = std::time::Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < spin {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

async fn answer(id: Arc<Identity>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let mut status = StatusCode::OK;
    use std::sync::atomic::Ordering;
    match (req.method() == hyper::Method::POST, path.as_str()) {
        (true, "/readyz/disable") => id.ready.store(false, Ordering::Relaxed),
        (true, "/readyz/enable") => id.ready.store(true, Ordering::Relaxed),
        (_, "/readyz") if !id.ready.load(Ordering::Relaxed) => {
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
        (true, p) if p.starts_with("/fail-percent/") || p.starts_with("/reset-percent/") => {
            let (share, n) = p
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or_default();
            match n.parse::<u8>() {
                Ok(n) if n <= 100 && share == "fail-percent" => id.fail.set(n),
                Ok(n) if n <= 100 => id.reset.set(n),
                _ => status = StatusCode::BAD_REQUEST,
            }
        }
        (_, "/readyz" | "/healthz") => {}
        _ if id.fail.pick() => status = StatusCode::INTERNAL_SERVER_ERROR,
        _ => {}
    }
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    }
    // `/delay/<ms>` anywhere in the path, so routed prefixes (`/api/delay/100`) work too.
    let delay = path
        .split_once("/delay/")
        .and_then(|(_, rest)| rest.split('/').next()?.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    // `/busy/<ms>` anywhere in the path: that much CPU time spent (at most a second).
    let busy = path
        .split_once("/busy/")
        .and_then(|(_, rest)| rest.split('/').next()?.parse::<u64>().ok());
    if let Some(ms) = busy {
        let spin = Duration::from_millis(ms.min(1000));
        if let Err(e) = tokio::task::spawn_blocking(move || spin_for(spin)).await {
            tracing::warn!(error = %e, "busy request");
        }
    }
    let method = req.method().clone();
    let http_version = format!("{:?}", req.version());
    let request_headers = req.headers().clone();
    // Read the request body fully (so keep-alive connections stay usable) and report its size.
    let body_bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let header = |n: &str| {
        request_headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let body = json!({
        "name": id.name,
        "version": id.version,
        "hostname": id.hostname,
        "method": method.as_str(),
        "httpVersion": http_version,
        "path": path,
        "host": header("host"),
        "xForwardedFor": header("x-forwarded-for"),
        "xForwardedProto": header("x-forwarded-proto"),
        "forwarded": header("forwarded"),
        "bodyBytes": body_bytes,
    });
    // `/bytes/<n>`: n bytes of payload instead of the JSON report (at most 64 MiB).
    let payload = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| Bytes::from(vec![b'x'; n.min(64 << 20)]));
    let mut r = Response::new(Full::new(
        payload.unwrap_or_else(|| Bytes::from(format!("{body}\n"))),
    ));
    *r.status_mut() = status;
    if method == hyper::Method::HEAD {
        *r.body_mut() = Full::new(Bytes::new());
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id.name) {
        r.headers_mut().insert("x-echo-name", v);
    }
    r
}

async fn serve_http(listener: TcpListener, id: Arc<Identity>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let id = Arc::clone(&id);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let id = Arc::clone(&id);
                async move { Ok::<_, Infallible>(answer(id, req).await) }
            });
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "echo connection ended");
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, banner: Option<Arc<str>>, reset: Arc<Share>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if reset.pick() {
            // Linger 0: the close sends a reset, as a crashing server's kernel would.
            if let Err(e) = stream.set_zero_linger() {
                tracing::debug!(error = %e, "linger not set: the connection closes without a reset");
            }
            drop(stream);
            continue;
        }
        let banner = banner.clone();
        tokio::spawn(async move {
            let (mut r, mut w) = stream.into_split();
            if let Some(b) = banner {
                if w.write_all(format!("{b}\n").as_bytes()).await.is_err() {
                    return;
                }
            }
            let echoed = tokio::io::copy(&mut r, &mut w).await;
            if let Err(e) = echoed.and(w.shutdown().await) {
                tracing::debug!(error = %e, "echo connection ended");
            }
        });
    }
}

async fn serve_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; 65_535];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            if let Err(e) = socket.send_to(&buf[..n], peer).await {
                tracing::debug!(%peer, error = %e, "echo reply not sent");
            }
        }
    }
}

/// Prints a line for whoever started us; a closed stdout is not an error.
fn announce(line: &str) {
    use std::io::Write;
    if writeln!(std::io::stdout(), "{line}").is_err() {
        tracing::debug!(line, "stdout closed");
    }
}

/// Binds everything, prints `<proto> <address>` per listener, then serves until killed.
pub(crate) async fn run(config: EchoConfig) -> Result<()> {
    let id = Arc::new(Identity {
        name: config.name.clone(),
        version: config.version,
        hostname: hostname(),
        ready: true.into(),
        fail: Share::new(config.fail_percent),
        reset: Arc::new(Share::new(config.reset_percent)),
    });
    let mut tasks = Vec::new();
    for addr in config.http {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding HTTP {addr}"))?;
        announce(&format!("http {}", l.local_addr()?));
        tasks.push(tokio::spawn(serve_http(l, Arc::clone(&id))));
    }
    for addr in config.tcp {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding TCP {addr}"))?;
        announce(&format!("tcp {}", l.local_addr()?));
        let banner = config.tcp_banner.then(|| Arc::from(config.name.as_str()));
        tasks.push(tokio::spawn(serve_tcp(l, banner, Arc::clone(&id.reset))));
    }
    for addr in config.udp {
        let s = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding UDP {addr}"))?;
        announce(&format!("udp {}", s.local_addr()?));
        tasks.push(tokio::spawn(serve_udp(s)));
    }
    if tasks.is_empty() {
        anyhow::bail!("nothing to serve: give --http, --tcp or --udp");
    }
    announce("ready");
    // SIGTERM ends it at once: as a container's init it would otherwise be ignored.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let all = futures_util::future::join_all(tasks);
    let crash = async {
        match config.crash_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = all => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = crash => anyhow::bail!("crashing, as --crash-after asked"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_picks_exactly_its_percent_spread_out() {
        for percent in [0u8, 1, 30, 50, 99, 100] {
            let share = Share::new(percent);
            let picked = (0..1000).filter(|_| share.pick()).count();
            assert_eq!(picked, usize::from(percent) * 10, "{percent}%");
        }
        let third = Share::new(30);
        let first_ten = (0..10).filter(|_| third.pick()).count();
        assert_eq!(first_ten, 3, "spread, not bunched");
        third.set(0);
        assert!(!(0..100).any(|_| third.pick()));
    }
}
