//! What pier's integration tests and benchmarks share, so each is written once: the
//! privilege check and skip (`PIER_REQUIRE_PRIVILEGED` turns a skip into a failure), network
//! namespaces that keep a test's traffic on the machine, free ports, and waiting for a
//! condition with a deadline, real etcd members, talking to a daemon (`pier`) and a cluster of
//! daemons in network namespaces (`cluster`). A dev-only crate: nothing pier ships depends on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
mod etcd;
mod netns;
pub mod pier;
mod privilege;
mod wait;

pub use etcd::{Etcd, EtcdTls};
pub use netns::{private_netns, Netns};
pub use privilege::{have, is_root, skip};
pub use wait::wait_for;

/// A port nothing listens on at `host` (`127.0.0.1`, `[::1]`) right now (bound to port 0,
/// then released).
pub fn free_port(host: &str) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(format!("{host}:0"))?
        .local_addr()?
        .port())
}

/// A UDP port nothing is bound to at `host` right now.
pub fn free_udp_port(host: &str) -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind(format!("{host}:0"))?
        .local_addr()?
        .port())
}
