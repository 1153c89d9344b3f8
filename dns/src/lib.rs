//! pier-dns: node-local cluster DNS. Answers the cluster domain from the node snapshot
//! (Kubernetes DNS specification 1.1.0) and forwards everything else through a cache.

pub mod cache;
mod fast;
pub mod forward;
pub mod metrics;
pub mod ratelimit;
pub mod resolver;
pub mod server;
mod udp_batch;
pub mod zone;

use std::sync::Arc;

use pier_snapshot::{ApplyError, NodeSnapshot, ServiceChange, SnapshotConsumer, SnapshotDiff};

pub use resolver::Resolver;

/// Feeds snapshots to the resolver's zone.
pub struct DnsConsumer(pub Arc<Resolver>);

impl SnapshotConsumer for DnsConsumer {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn apply(
        &mut self,
        diff: &SnapshotDiff,
        _snapshot: &Arc<NodeSnapshot>,
    ) -> Result<(), ApplyError> {
        let next = self.0.zone().apply(diff);
        for change in &diff.changes {
            if let ServiceChange::Upsert(view) = change {
                if let Some(why) = next.skipped(&view.key) {
                    tracing::warn!(service = %view.key, "DNS records left out: {why}");
                }
            }
        }
        self.0.set_zone(next);
        Ok(())
    }
}
