//! Gateway API tests' shared pieces: a daemon serving Gateway listeners on a loopback
//! address of its own, waiting for listeners and statuses, and a TLS-only backend.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::proxy::proxy_daemon;
use super::Daemon;

/// Gateway API's examples, copied unchanged.
pub(crate) const FIXTURES: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gateway-api");

/// A loopback address of this test process's own (`127.<second>.x.y`), so its :80 and :443
/// are free.
pub(crate) fn own_loopback(second: u8) -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(127, second, (pid >> 8) as u8, (pid as u8).max(2))
}

/// A proxy daemon serving Gateway listeners on `ip` (Ingress sockets on free loopback ports).
pub(crate) fn gateway_daemon(dir: &std::path::Path, ip: Ipv4Addr) -> Daemon {
    let ip = ip.to_string();
    proxy_daemon(
        dir,
        &[
            "--gateway-address",
            &ip,
            "--ingress-listen",
            "127.0.0.1:0",
            "--ingress-tls-listen",
            "127.0.0.1:0",
        ],
    )
}

/// Waits until `addr` takes connections (10 s at most).
pub(crate) fn listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} listening within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `args` as JSON until `check` holds (10 s at most).
pub(crate) fn until_json(d: &Daemon, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = d.get_json(args);
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{args:?} within 10 s: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status of condition `kind` in the conditions at `pointer`.
pub(crate) fn condition<'a>(v: &'a Value, pointer: &str, kind: &str) -> Option<&'a Value> {
    v.pointer(pointer)?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

pub(crate) fn is_true(v: &Value, pointer: &str, kind: &str) -> bool {
    condition(v, pointer, kind).is_some_and(|c| c["status"] == "True")
}
