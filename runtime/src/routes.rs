//! Host-gw routes between nodes: every other Node's pod range is routed via that node's
//! `InternalIP`, so pods reach pods on any node without an overlay (nodes share an L2
//! network). Routes carry pier's route protocol number, which is how the ones pier added are
//! found again (and the stale ones removed) after a restart. IPv4 forwarding is turned on
//! before the first route. Runs on every node, on the controller runner, keyed by Node name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

use ipnet::Ipv4Net;
use pier_controlplane::controllers::runner::{Reconciled, Reconciler};
use pier_controlplane::store::EventType;
use pier_model::{Kind, Object};

use crate::network::ip_batch;

/// The route protocol pier's routes are tagged with (`ip route show proto 112`).
pub const ROUTE_PROTOCOL: u8 = 112;

/// A route to one node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    pods: Ipv4Net,
    via: IpAddr,
}

/// The route programmer of one node.
pub struct PodRoutes {
    me: String,
    my_ip: Option<IpAddr>,
    wanted: BTreeMap<String, Route>,
    /// What this process has installed (or found installed), by destination.
    installed: BTreeMap<Ipv4Net, IpAddr>,
    swept: bool,
}

impl PodRoutes {
    /// Routes for the node named `me` at `my_ip` (its own range is on its bridge, not routed;
    /// a node claiming this node's address is a misconfiguration, not a gateway).
    pub fn new(me: &str, my_ip: Option<IpAddr>) -> Self {
        Self {
            me: me.to_string(),
            my_ip,
            wanted: BTreeMap::new(),
            installed: BTreeMap::new(),
            swept: false,
        }
    }
}

/// The switch that lets this node forward packets between its pods and other nodes.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns IPv4 forwarding on in this network namespace (host-gw needs it on every node, as a
/// CNI bridge plugin does); leaves it alone when it is on already.
fn enable_forwarding() -> Result<(), String> {
    let now = std::fs::read_to_string(IP_FORWARD).map_err(|e| format!("{IP_FORWARD}: {e}"))?;
    if now.trim() == "1" {
        return Ok(());
    }
    std::fs::write(IP_FORWARD, "1").map_err(|e| format!("turning on {IP_FORWARD}: {e}"))?;
    tracing::info!(
        "IPv4 forwarding turned on: other nodes' pods reach this node's pods through it"
    );
    Ok(())
}

/// The routes with pier's protocol now in the main table.
fn current() -> Result<BTreeMap<Ipv4Net, IpAddr>, String> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])
        .output()
        .map_err(|e| format!("running ip: {e} (install iproute2)"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut routes = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let dest = words.first().and_then(|d| d.parse::<Ipv4Net>().ok());
        let via = words
            .iter()
            .position(|w| *w == "via")
            .and_then(|i| words.get(i + 1))
            .and_then(|v| v.parse::<IpAddr>().ok());
        if let (Some(dest), Some(via)) = (dest, via) {
            routes.insert(dest, via);
        }
    }
    Ok(routes)
}

impl Reconciler for PodRoutes {
    type Key = String;

    fn name(&self) -> &'static str {
        "pod-routes"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Node]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<String>) {
        let Object::Node(node) = object else { return };
        let name = node.metadata.name.clone();
        let route = node
            .spec
            .pod_cidr
            .as_deref()
            .and_then(|c| c.parse::<Ipv4Net>().ok())
            .zip(node.internal_ip().and_then(|ip| ip.parse::<IpAddr>().ok()))
            .map(|(pods, via)| Route { pods, via });
        match route {
            Some(route)
                if event_type != EventType::Deleted
                    && name != self.me
                    && Some(route.via) != self.my_ip =>
            {
                self.wanted.insert(name.clone(), route);
            }
            _ => {
                self.wanted.remove(&name);
            }
        }
        dirty.insert(name);
    }

    fn resync_keys(&self) -> Vec<String> {
        self.wanted.keys().cloned().collect()
    }

    async fn reconcile(&mut self, keys: BTreeSet<String>) -> Reconciled<String> {
        let mut result = Reconciled::default();
        if !self.swept {
            match enable_forwarding().and_then(|()| current()) {
                Ok(found) => {
                    self.installed = found;
                    self.swept = true;
                }
                Err(e) => {
                    result
                        .failed
                        .extend(keys.into_iter().map(|k| (k, e.clone())));
                    return result;
                }
            }
        }
        let wanted: BTreeMap<Ipv4Net, IpAddr> =
            self.wanted.values().map(|r| (r.pods, r.via)).collect();
        let mut commands = String::new();
        for (dest, via) in &wanted {
            if self.installed.get(dest) != Some(via) {
                commands.push_str(&format!(
                    "route replace {dest} via {via} proto {ROUTE_PROTOCOL}\n"
                ));
            }
        }
        for dest in self.installed.keys().filter(|d| !wanted.contains_key(d)) {
            commands.push_str(&format!("route del {dest} proto {ROUTE_PROTOCOL}\n"));
        }
        if commands.is_empty() {
            return result;
        }
        match ip_batch(None, &commands) {
            Ok(()) => {
                tracing::info!(routes = wanted.len(), "pod routes to other nodes updated");
                self.installed = wanted;
            }
            Err(e) => {
                // Found again from the table on the next pass.
                self.swept = false;
                let error = e.to_string();
                result
                    .failed
                    .extend(keys.into_iter().map(|k| (k, error.clone())));
            }
        }
        result
    }
}
