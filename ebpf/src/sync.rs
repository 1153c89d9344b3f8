//! From the NodeSnapshot to socket-LB entries: which VIP ports translate to which weighted
//! backends, recomputed only for the services a snapshot diff touches.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use pier_snapshot::{
    ApplyError, BackendView, NodeSnapshot, PortMode, PortView, Protocol, ServiceChange, ServiceKey,
    ServiceView, SnapshotConsumer, SnapshotDiff, TargetPort,
};

use crate::maps::{PROTO_TCP, PROTO_UDP};
use crate::{svc_key, ServiceAddr, SocketLb};

/// What one VIP port translates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The VIP port.
    pub addr: ServiceAddr,
    /// Backends and their weights.
    pub backends: Vec<(SocketAddr, u32)>,
    /// ClientIP affinity timeout, seconds (0: none).
    pub affinity: u32,
}

/// Where the local proxy serves an L7 port's VIP, if connections must be steered to it
/// (in loopback mode); `None` leaves the VIP alone (the proxy listens on the VIP itself).
pub type Steer = Arc<dyn Fn(IpAddr, u16) -> Option<SocketAddr> + Send + Sync>;

/// Endpoints of `svc` serving `port` in the VIP's address family that may take new
/// connections: ready ones, or if none is ready, serving-but-terminating ones (as kube-proxy
/// does); with `node`, only that node's.
fn endpoints(svc: &ServiceView, port: &PortView, v6: bool, node: Option<&str>) -> Vec<SocketAddr> {
    let pick = |want_ready: bool| -> Vec<SocketAddr> {
        svc.endpoints
            .iter()
            .filter(|e| node.is_none_or(|n| e.on_node(n)))
            .filter(|e| {
                if want_ready {
                    e.ready && !e.terminating
                } else {
                    e.serving && e.terminating
                }
            })
            .filter(|e| e.address.is_ipv6() == v6)
            .filter_map(|e| {
                let target = match &port.target_port {
                    TargetPort::Number(n) if e.ports.is_empty() => Some(*n),
                    _ => e.port_for(port),
                }?;
                Some(SocketAddr::new(e.address, target))
            })
            .collect()
    };
    let ready = pick(true);
    if ready.is_empty() {
        pick(false)
    } else {
        ready
    }
}

/// Spreads each group's weight over its endpoints.
fn weighted(groups: Vec<(Vec<SocketAddr>, u32)>) -> Vec<(SocketAddr, u32)> {
    let mut out = Vec::new();
    for (eps, weight) in groups {
        let n = u32::try_from(eps.len()).unwrap_or(u32::MAX).max(1);
        for ep in eps {
            let w = if weight == 0 {
                0
            } else {
                (weight.saturating_mul(1000) / n).max(1)
            };
            out.push((ep, w));
        }
    }
    out
}

fn proto(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
    }
}

/// What one node's socket-LB writes: where L7 ports are steered, and the node's name (a
/// Service with `internalTrafficPolicy: Local` sends its ClusterIP traffic to that node's
/// endpoints only; with no name, to none).
#[derive(Clone, Default)]
pub struct Local {
    /// Steering of L7 ports to the proxy, in loopback mode.
    pub steer: Option<Steer>,
    /// This node's name.
    pub node: Option<String>,
}

/// The socket-LB entries of one service, and the backend services its routes use.
pub fn desired(
    svc: &ServiceView,
    snapshot: &NodeSnapshot,
    local: &Local,
) -> (Vec<Entry>, Vec<ServiceKey>) {
    let mut entries = Vec::new();
    let mut uses = Vec::new();
    // A dual-stack Service has a VIP per family, each balanced over that family's endpoints.
    for &vip in &svc.cluster_ips {
        let (e, u) = desired_for_vip(svc, vip, snapshot, local);
        entries.extend(e);
        uses.extend(u);
    }
    uses.sort();
    uses.dedup();
    (entries, uses)
}

/// An entry sending `addr` to the proxy's listener for `vip`:`port`, when the proxy is not on
/// the VIP itself (loopback mode).
fn steered(addr: ServiceAddr, steer: Option<&Steer>, vip: IpAddr, port: u16) -> Option<Entry> {
    let listener = steer.and_then(|s| s(vip, port))?;
    Some(Entry {
        addr,
        backends: vec![(listener, 1)],
        affinity: 0,
    })
}

/// The entries of one of a service's VIPs (and its family's NodePorts).
///
/// A NodePort the socket-LB translates is dialled from this node, and kube-proxy sends traffic
/// from the node itself to every endpoint whatever `externalTrafficPolicy` says, so only the
/// VIP's entry follows `internalTrafficPolicy`.
fn desired_for_vip(
    svc: &ServiceView,
    vip: IpAddr,
    snapshot: &NodeSnapshot,
    local: &Local,
) -> (Vec<Entry>, Vec<ServiceKey>) {
    let steer = local.steer.as_ref();
    let vip_node = svc
        .internal_local
        .then(|| local.node.as_deref().unwrap_or_default());
    let mut entries = Vec::new();
    let mut uses = Vec::new();
    let v6 = vip.is_ipv6();
    let affinity = svc
        .affinity_timeout
        .map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX).max(1));
    if svc.headless || svc.external_name.is_some() {
        return (entries, uses);
    }
    for port in &svc.ports {
        let addr = ServiceAddr {
            addr: SocketAddr::new(vip, port.port),
            proto: proto(port.protocol),
        };
        if port.mode == PortMode::L7 {
            // L7 ports belong to the proxy: steer to its listener where it is not the VIP.
            entries.extend(steered(addr, steer, vip, port.port));
            continue;
        }
        let route = svc.l4_routes.iter().find(|r| {
            r.protocol == port.protocol
                && r.parents
                    .iter()
                    .any(|a| a.service == svc.key && a.covers(port))
        });
        let backends: Vec<BackendView> = match route {
            Some(r) => r.backends.clone(),
            None => vec![BackendView::service(svc.key.clone(), port.port, 1)],
        };
        if backends.iter().any(|b| b.unresolved.is_some()) {
            // Only the proxy can refuse an unresolved backend's share of connections: steer
            // the port to it where it is not on the VIP, and otherwise leave the VIP to it.
            entries.extend(steered(addr, steer, vip, port.port));
            continue;
        }
        uses.extend(
            backends
                .iter()
                .filter(|b| b.service != svc.key)
                .map(|b| b.service.clone()),
        );
        let balanced = |node: Option<&str>| {
            weighted(
                backends
                    .iter()
                    .map(|b| {
                        let eps = snapshot
                            .services
                            .get(&b.service)
                            .and_then(|s| {
                                let p = s.ports.iter().find(|p| p.port == b.port)?;
                                Some(endpoints(s, p, v6, node))
                            })
                            .unwrap_or_default();
                        (eps, b.weight)
                    })
                    .collect(),
            )
        };
        let backends = balanced(None);
        if let Some(node_port) = port.node_port {
            // NodePorts are keyed with the family's unspecified address: any node address
            // (and loopback) of that family matches.
            let any = if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            entries.push(Entry {
                addr: ServiceAddr {
                    addr: SocketAddr::new(any, node_port),
                    proto: addr.proto,
                },
                backends: backends.clone(),
                affinity,
            });
        }
        entries.push(Entry {
            addr,
            backends: if vip_node.is_some() {
                balanced(vip_node)
            } else {
                backends
            },
            affinity,
        });
    }
    (entries, uses)
}

/// Keeps a [`SocketLb`] in step with the snapshot.
pub struct EbpfConsumer {
    lb: SocketLb,
    local: Local,
    installed: HashMap<ServiceKey, Vec<Entry>>,
    /// Backend service -> frontend services whose routes use it.
    used_by: HashMap<ServiceKey, HashSet<ServiceKey>>,
    /// Entries left by an earlier run have been swept (after the first full sync).
    swept: bool,
}

impl EbpfConsumer {
    /// A consumer writing to `lb` what `local` says this node serves, naming its service ports
    /// in the lb's inventory.
    pub fn new(lb: SocketLb, local: Local) -> Self {
        Self {
            lb,
            local,
            installed: HashMap::new(),
            used_by: HashMap::new(),
            swept: false,
        }
    }

    fn sync_service(&mut self, key: &ServiceKey, snapshot: &NodeSnapshot) -> crate::Result<()> {
        let (entries, uses) = match snapshot.services.get(key) {
            Some(view) => desired(view, snapshot, &self.local),
            None => (Vec::new(), Vec::new()),
        };
        for b in uses {
            self.used_by.entry(b).or_default().insert(key.clone());
        }
        let old = self.installed.remove(key).unwrap_or_default();
        let inventory = self.lb.inventory();
        // What the maps hold for this service, kept true even when a write fails midway.
        let mut current: Vec<Entry> = Vec::with_capacity(entries.len());
        let mut result = Ok(());
        for o in old {
            if entries.iter().any(|e| e.addr == o.addr) {
                current.push(o);
            } else if let Err(e) = self.lb.remove_service(o.addr) {
                current.push(o);
                result = Err(e);
            } else if let Ok(mut n) = inventory.names.write() {
                n.remove(&svc_key(&o.addr));
            }
        }
        if let Ok(mut n) = inventory.names.write() {
            for e in &entries {
                n.insert(svc_key(&e.addr), key.to_string());
            }
        }
        for e in entries {
            if result.is_err() || current.contains(&e) {
                continue;
            }
            // A failed write leaves the earlier entry for this VIP port in place.
            match self.lb.set_service(e.addr, &e.backends, e.affinity) {
                Ok(()) => {
                    current.retain(|c| c.addr != e.addr);
                    current.push(e);
                }
                Err(err) => result = Err(err),
            }
        }
        if !current.is_empty() {
            self.installed.insert(key.clone(), current);
        }
        result
    }
}

impl SnapshotConsumer for EbpfConsumer {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    /// Map writes are the only failures here, so every rejection is transient and retried.
    fn apply(
        &mut self,
        diff: &SnapshotDiff,
        snapshot: &Arc<NodeSnapshot>,
    ) -> Result<(), ApplyError> {
        let mut touched: Vec<ServiceKey> = Vec::new();
        for change in &diff.changes {
            let key = match change {
                ServiceChange::Upsert(v) => &v.key,
                ServiceChange::Remove(k) => k,
            };
            touched.push(key.clone());
            if let Some(fronts) = self.used_by.get(key) {
                touched.extend(fronts.iter().cloned());
            }
        }
        touched.sort();
        touched.dedup();
        // Every service is synced even when one fails; each stays whole (old or new), and the
        // failed ones are retried (`follow` tries the same snapshot again with backoff).
        let failed: Vec<String> = touched
            .iter()
            .filter_map(|key| {
                self.sync_service(key, snapshot)
                    .err()
                    .map(|e| format!("{key}: {e}"))
            })
            .collect();
        if !failed.is_empty() {
            return Err(ApplyError::Transient(failed.join("; ")));
        }
        if !self.swept {
            // The first diff is from the empty snapshot, so every service has been written:
            // whatever an earlier run left in the pinned maps beyond that can go.
            self.lb
                .sweep()
                .map_err(|e| ApplyError::Transient(e.to_string()))?;
            self.swept = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
