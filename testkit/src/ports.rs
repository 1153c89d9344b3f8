//! Free ports for tests that must name a port before the process that binds it starts (etcd
//! members, a daemon's DNS listener).
//!
//! Ports come from below the kernel's ephemeral range (32768–60999 here), so the outgoing
//! connections other tests make at the same time cannot take one between the check and the
//! bind, and each is free for both TCP and UDP, since a DNS listener binds both. A process
//! never hands out the same port twice; separate test processes start at different points of
//! the range (their pid), so they rarely even try the same one.

use std::sync::atomic::{AtomicU32, Ordering};

/// The range ports are drawn from: above pier's reserved 18000–18200, below the ephemeral
/// range.
const FIRST: u32 = 20_000;
const LAST: u32 = 32_767;

/// How far through the range this process has got.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A port nothing is bound to at `host` (`127.0.0.1`, `[::1]`) for TCP or UDP right now.
pub fn free_port(host: &str) -> std::io::Result<u16> {
    let span = LAST - FIRST + 1;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + step * 97) % span;
        let port = u16::try_from(port).map_err(std::io::Error::other)?;
        if bindable(host, port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port in {FIRST}-{LAST} at {host}"),
    ))
}

/// Whether both a TCP listener and a UDP socket can bind `host:port` now.
fn bindable(host: &str, port: u16) -> bool {
    let addr = format!("{host}:{port}");
    let Ok(tcp) = std::net::TcpListener::bind(&addr) else {
        return false;
    };
    let udp = std::net::UdpSocket::bind(&addr);
    drop(tcp);
    udp.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port("127.0.0.1").unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        for port in ports {
            assert!((20_000..32_768).contains(&port), "{port}");
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
