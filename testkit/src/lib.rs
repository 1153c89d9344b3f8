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
mod ports;
mod privilege;
mod wait;

pub use etcd::{Etcd, EtcdTls};
pub use netns::{private_netns, Netns};
pub use ports::free_port;
pub use privilege::{have, have_all, is_root, skip};
pub use wait::wait_for;
