//! Node pod ranges: each Node gets a `node_cidr_prefix` range (a /24 by default) of the
//! cluster's pod network, in the same transaction as the Node's write, so two nodes never
//! share one. A range is a ring like the other allocations; it is kept for the Node's life
//! and freed when the Node is deleted.

use ipnet::Ipv4Net;

use super::alloc::Allocator;
use super::txn::{Cursor, Slot};
use crate::error::{Error, Result};
use pier_model::Node;

impl Allocator<'_> {
    /// Gives `node` its pod range (keeping the one it had; taking a requested one if free).
    pub(super) fn assign_pod_cidr(&mut self, node: &mut Node, old: Option<&Node>) -> Result<()> {
        let Some(cluster) = self.config.pod_cidr else {
            return Ok(());
        };
        let who = node.metadata.name.clone();
        let label = format!("Node {who}");
        let kept = old.and_then(|o| o.spec.pod_cidr.clone());
        let net = match (&node.spec.pod_cidr, kept) {
            (Some(asked), Some(had)) if *asked != had => {
                return Err(Error::invalid(
                    label,
                    "spec.podCIDR",
                    format!("{asked}: immutable once set (was {had})"),
                ))
            }
            (_, Some(had)) => parse(&had, &label)?,
            (Some(asked), None) => {
                let net = parse(asked, &label)?;
                self.take_pod_cidr(cluster, net, &who, &label)?;
                net
            }
            (None, None) => self.next_pod_cidr(cluster, &who)?,
        };
        node.spec.pod_cidr = Some(net.to_string());
        node.spec.pod_cidrs = vec![net.to_string()];
        Ok(())
    }

    /// Frees what `node` holds.
    pub(super) fn release_pod_cidr(&mut self, node: &Node) -> Result<()> {
        if let Some(net) = node
            .spec
            .pod_cidr
            .as_deref()
            .and_then(|n| n.parse::<Ipv4Net>().ok())
        {
            self.txn.free(Slot::PodCidr(net.network()))?;
        }
        Ok(())
    }

    fn take_pod_cidr(
        &mut self,
        cluster: Ipv4Net,
        net: Ipv4Net,
        who: &str,
        label: &str,
    ) -> Result<()> {
        if net.prefix_len() != self.config.node_cidr_prefix || !cluster.contains(&net) {
            return Err(Error::invalid(
                label,
                "spec.podCIDR",
                format!(
                    "{net} is not a /{} of the cluster's pod network {cluster}",
                    self.config.node_cidr_prefix
                ),
            ));
        }
        match self.txn.holder(Slot::PodCidr(net.network()))? {
            Some(holder) if holder != who => Err(Error::Conflict(format!(
                "{label}: spec.podCIDR: {net} is already given to node {holder}"
            ))),
            Some(_) => Ok(()),
            None => self.txn.hold(Slot::PodCidr(net.network()), who),
        }
    }

    fn next_pod_cidr(&mut self, cluster: Ipv4Net, who: &str) -> Result<Ipv4Net> {
        let prefix = self.config.node_cidr_prefix;
        let ranges: Vec<Ipv4Net> = cluster
            .subnets(prefix)
            .map_err(|e| Error::Exhausted(format!("pod network {cluster} into /{prefix}s: {e}")))?
            .collect();
        let size = ranges.len() as u64;
        let cursor = self.txn.cursor(Cursor::PodCidr)?;
        for i in 0..size {
            let offset = (cursor + i) % size;
            let Some(net) = usize::try_from(offset).ok().and_then(|o| ranges.get(o)) else {
                continue;
            };
            if self.txn.holder(Slot::PodCidr(net.network()))?.is_none() {
                self.txn.hold(Slot::PodCidr(net.network()), who)?;
                self.txn.set_cursor(Cursor::PodCidr, (offset + 1) % size)?;
                return Ok(*net);
            }
        }
        Err(Error::Exhausted(format!(
            "no free /{prefix} left in the pod network {cluster} for node {who}"
        )))
    }
}

fn parse(net: &str, label: &str) -> Result<Ipv4Net> {
    let parsed: Ipv4Net = net
        .parse()
        .map_err(|e| Error::invalid(label, "spec.podCIDR", format!("{net}: {e}")))?;
    if parsed.network() != parsed.addr() {
        return Err(Error::invalid(
            label,
            "spec.podCIDR",
            format!("{net}: host bits set (the range is {})", parsed.trunc()),
        ));
    }
    Ok(parsed)
}
