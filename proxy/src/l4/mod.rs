//! Per-connection (TCP) and per-flow (UDP) balancing.

mod resets;
pub(crate) mod tcp;
pub(crate) mod udp;

use std::net::SocketAddr;

use crate::balance::maglev::fnv1a;
use crate::frontend::Frontend;

/// Hash of the client address for ClientIP affinity; a fresh random value otherwise.
pub(crate) fn affinity_hash(frontend: &Frontend, peer: SocketAddr) -> Option<u64> {
    frontend.client_affinity.then(|| match peer.ip() {
        std::net::IpAddr::V4(ip) => fnv1a(&ip.octets()),
        std::net::IpAddr::V6(ip) => fnv1a(&ip.octets()),
    })
}
