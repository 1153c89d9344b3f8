//! The cluster tests' nodes: pier-testkit's, running the pier binary under test.

use std::path::Path;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub(crate) use pier_testkit::cluster::{lan, ClusterNode, LAN_IP};

use super::PIER;

/// Starts node `n<index>` with the pier binary under test (see [`ClusterNode::start`]).
pub(crate) fn start_node(dir: &Path, index: u8, store: &str, flags: &[&str]) -> ClusterNode {
    ClusterNode::start(Path::new(PIER), dir, index, store, flags)
}
