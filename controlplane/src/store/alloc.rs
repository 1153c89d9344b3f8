//! ClusterIP and NodePort allocation, inside the store's write transaction.
//!
//! Allocation is a ring: each search starts after the last address handed out, so a
//! released address is not reused until the whole range has gone round (deterministic,
//! and no quick reuse of an address clients may still cache).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use super::families::{self, Family};
use super::txn::{Cursor, Slot, Txn};
use crate::error::{Error, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use pier_model::{Object, Service};

/// Where allocations come from.
#[derive(Debug, Clone)]
pub struct AllocConfig {
    /// Service CIDR for IPv4 ClusterIPs.
    pub service_cidr: Ipv4Net,
    /// Service CIDR for IPv6 ClusterIPs; without one, Services are IPv4 only.
    pub service_cidr_v6: Option<Ipv6Net>,
    /// IPv6 is the cluster's default family (its range was given first).
    pub ipv6_primary: bool,
    /// NodePort range.
    pub node_ports: RangeInclusive<u16>,
    /// The cluster's pod network, from which each Node gets a range; none: Nodes get none.
    pub pod_cidr: Option<Ipv4Net>,
    /// The prefix length of each Node's pod range (24: a /24 per node).
    pub node_cidr_prefix: u8,
}

impl Default for AllocConfig {
    fn default() -> Self {
        Self {
            service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            service_cidr_v6: None,
            ipv6_primary: false,
            node_ports: 30000..=32767,
            pod_cidr: None,
            node_cidr_prefix: 24,
        }
    }
}

impl AllocConfig {
    /// The families the cluster has service ranges for, its default first.
    pub(crate) fn served(&self) -> Vec<Family> {
        match (self.service_cidr_v6.is_some(), self.ipv6_primary) {
            (true, true) => vec![Family::V6, Family::V4],
            (true, false) => vec![Family::V4, Family::V6],
            (false, _) => vec![Family::V4],
        }
    }
}

/// Most IPv6 ClusterIPs one range is searched for (its first 2^32 hosts).
const MAX_V6_HOSTS: u128 = 1 << 32;

/// Allocation work inside one write transaction.
pub(crate) struct Allocator<'a> {
    pub(crate) config: &'a AllocConfig,
    pub(crate) txn: &'a mut dyn Txn,
}

fn owner(svc: &Service) -> String {
    format!("{}/{}", svc.metadata.namespace(), svc.metadata.name)
}

impl Allocator<'_> {
    /// Gives `object` what its kind allocates (a Service its addresses and NodePorts, a Node
    /// its pod range), keeping what `existing` held: the one place that says which objects
    /// hold allocations.
    pub(crate) fn assign_object(
        &mut self,
        object: &mut Object,
        existing: Option<&Object>,
    ) -> Result<()> {
        match (object, existing) {
            (Object::Service(svc), Some(Object::Service(old))) => self.assign(svc, Some(old)),
            (Object::Service(svc), _) => self.assign(svc, None),
            (Object::Node(node), Some(Object::Node(old))) => self.assign_pod_cidr(node, Some(old)),
            (Object::Node(node), _) => self.assign_pod_cidr(node, None),
            _ => Ok(()),
        }
    }

    /// Frees what a deleted `object` held.
    pub(crate) fn release_object(&mut self, object: &Object) -> Result<()> {
        match object {
            Object::Service(svc) => self.release(svc),
            Object::Node(node) => self.release_pod_cidr(node),
            _ => Ok(()),
        }
    }

    /// Who holds `ip`, if anyone.
    fn holder(&mut self, ip: IpAddr) -> Result<Option<String>> {
        self.txn.holder(Slot::Ip(ip))
    }

    fn hold(&mut self, ip: IpAddr, who: &str) -> Result<()> {
        self.txn.hold(Slot::Ip(ip), who)
    }

    fn release_ip(&mut self, ip: IpAddr) -> Result<()> {
        self.txn.free(Slot::Ip(ip))
    }

    /// Takes a requested `ip` after checking it is in its family's service range.
    fn take_ip(&mut self, ip: IpAddr, who: &str, label: &str) -> Result<()> {
        let in_range = match ip {
            IpAddr::V4(v4) => Some(self.config.service_cidr.contains(&v4)),
            IpAddr::V6(v6) => self.config.service_cidr_v6.map(|net| net.contains(&v6)),
        };
        match in_range {
            Some(true) => {}
            Some(false) => {
                let range = match ip {
                    IpAddr::V4(_) => self.config.service_cidr.to_string(),
                    IpAddr::V6(_) => self
                        .config
                        .service_cidr_v6
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                };
                return Err(Error::invalid(
                    label,
                    "spec.clusterIPs",
                    format!("{ip} is not in the service range {range}"),
                ));
            }
            None => {
                return Err(Error::invalid(
                    label,
                    "spec.clusterIPs",
                    format!("{ip}: the cluster has no IPv6 service range (--service-cidr)"),
                ))
            }
        }
        if let Some(holder) = self.holder(ip)? {
            if holder != who {
                return Err(Error::Conflict(format!(
                    "{label}: spec.clusterIP: {ip} is already allocated to service {holder}"
                )));
            }
            return Ok(());
        }
        self.hold(ip, who)
    }

    /// The next free address of `family`'s range, searching on from its cursor.
    fn next_ip(&mut self, family: Family, who: &str) -> Result<IpAddr> {
        let (base, size, range): (u128, u128, String) = match family {
            Family::V4 => {
                let net = self.config.service_cidr;
                // Hosts exclude the network and broadcast addresses.
                let size = (1u128 << (32 - net.prefix_len())).saturating_sub(2).max(1);
                (u128::from(u32::from(net.network())), size, net.to_string())
            }
            Family::V6 => {
                let net = self.config.service_cidr_v6.ok_or_else(|| {
                    Error::Exhausted("the cluster has no IPv6 service range".into())
                })?;
                let bits = 128 - u32::from(net.prefix_len());
                let hosts = if bits >= 127 {
                    MAX_V6_HOSTS
                } else {
                    (1u128 << bits).saturating_sub(1)
                };
                (
                    u128::from(net.network()),
                    hosts.clamp(1, MAX_V6_HOSTS),
                    net.to_string(),
                )
            }
        };
        let which = match family {
            Family::V4 => Cursor::Ip,
            Family::V6 => Cursor::Ip6,
        };
        let cursor = self.txn.cursor(which)?;
        for i in 0..size {
            let offset = (u128::from(cursor) + i) % size;
            let candidate = base + 1 + offset;
            let ip = match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(candidate).unwrap_or(0))),
                Family::V6 => IpAddr::V6(Ipv6Addr::from(candidate)),
            };
            if self.holder(ip)?.is_none() {
                self.hold(ip, who)?;
                let next = u64::try_from((offset + 1) % size).unwrap_or(0);
                self.txn.set_cursor(which, next)?;
                return Ok(ip);
            }
        }
        Err(Error::Exhausted(format!(
            "no free ClusterIP left in {range}"
        )))
    }

    fn take_port(&mut self, port: u16, who: &str, path: &str, label: &str) -> Result<()> {
        if !self.config.node_ports.contains(&port) {
            return Err(Error::invalid(
                label,
                path,
                format!(
                    "{port} is outside the node port range {}-{}",
                    self.config.node_ports.start(),
                    self.config.node_ports.end()
                ),
            ));
        }
        if let Some(holder) = self.txn.holder(Slot::NodePort(port))? {
            if holder != who {
                return Err(Error::Conflict(format!(
                    "{label}: {path}: node port {port} is already allocated to service {holder}"
                )));
            }
            return Ok(());
        }
        self.txn.hold(Slot::NodePort(port), who)
    }

    fn next_port(&mut self, who: &str) -> Result<u16> {
        let (lo, hi) = (
            *self.config.node_ports.start(),
            *self.config.node_ports.end(),
        );
        let size = u64::from(hi - lo) + 1;
        let cursor = self.txn.cursor(Cursor::NodePort)?;
        for i in 0..size {
            let offset = (cursor + i) % size;
            let candidate = lo + offset as u16;
            if self.txn.holder(Slot::NodePort(candidate))?.is_none() {
                self.txn.hold(Slot::NodePort(candidate), who)?;
                self.txn.set_cursor(Cursor::NodePort, (offset + 1) % size)?;
                return Ok(candidate);
            }
        }
        Err(Error::Exhausted(format!(
            "no free node port left in {lo}-{hi}"
        )))
    }

    /// Fills `svc`'s ClusterIPs (one per family) and node ports, keeping what `old` held, and
    /// releases what it no longer needs.
    fn assign(&mut self, svc: &mut Service, old: Option<&Service>) -> Result<()> {
        let who = owner(svc);
        let label = format!("Service {who}");
        let old_ips = old
            .map(|o| families::current_ips(&o.spec))
            .unwrap_or_default();
        let mut held = Vec::new();
        if svc.service_type() == "ExternalName" {
            let spec = &mut svc.spec;
            spec.cluster_ip.clear();
            spec.cluster_ips.clear();
            spec.ip_families.clear();
            spec.ip_family_policy = None;
        } else {
            let served = self.config.served();
            let (fams, wanted) = families::plan(&svc.spec, old.map(|o| &o.spec), &served)
                .map_err(|(path, message)| Error::invalid(&label, path, message))?;
            if svc.is_headless() {
                if let Some(old) = old_ips.first() {
                    return Err(Error::invalid(
                        label,
                        "spec.clusterIP",
                        format!("field is immutable: {old} cannot change to None"),
                    ));
                }
            } else {
                for (family, want) in fams.iter().zip(wanted) {
                    let ip = match want {
                        Some(ip) => {
                            self.take_ip(ip, &who, &label)?;
                            ip
                        }
                        None => self.next_ip(*family, &who)?,
                    };
                    held.push(ip);
                }
            }
            let spec = &mut svc.spec;
            spec.cluster_ips = if held.is_empty() {
                vec!["None".to_string()]
            } else {
                held.iter().map(ToString::to_string).collect()
            };
            spec.cluster_ip.clone_from(&spec.cluster_ips[0]);
            spec.ip_families = fams.iter().map(|f| f.name().to_string()).collect();
            spec.ip_family_policy
                .get_or_insert_with(|| "SingleStack".to_string());
        }
        for ip in old_ips.into_iter().filter(|ip| !held.contains(ip)) {
            self.release_ip(ip)?;
        }
        self.assign_node_ports(svc, old, &who, &label)
    }

    fn assign_node_ports(
        &mut self,
        svc: &mut Service,
        old: Option<&Service>,
        who: &str,
        label: &str,
    ) -> Result<()> {
        let old_ports: Vec<(String, String, i64, u16)> = old
            .map(|o| {
                o.spec
                    .ports
                    .iter()
                    .filter_map(|p| {
                        let np = u16::try_from(p.node_port?).ok().filter(|n| *n != 0)?;
                        Some((p.name.clone(), p.protocol().to_string(), p.port, np))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut kept = Vec::new();
        if svc.wants_node_ports() {
            for (i, port) in svc.spec.ports.iter_mut().enumerate() {
                let path = format!("spec.ports[{i}].nodePort");
                let requested = port
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0);
                let previous = old_ports
                    .iter()
                    .find(|(name, proto, num, _)| {
                        (name == &port.name || *num == port.port) && proto == port.protocol()
                    })
                    .map(|(_, _, _, np)| *np);
                let np = match requested.or(previous) {
                    Some(np) => {
                        self.take_port(np, who, &path, label)?;
                        np
                    }
                    None => self.next_port(who)?,
                };
                port.node_port = Some(i64::from(np));
                kept.push(np);
            }
        } else {
            for port in &mut svc.spec.ports {
                port.node_port = None;
            }
        }
        for (_, _, _, np) in old_ports {
            if !kept.contains(&np) {
                self.txn.free(Slot::NodePort(np))?;
            }
        }
        Ok(())
    }

    /// Releases everything `svc` holds.
    fn release(&mut self, svc: &Service) -> Result<()> {
        for ip in families::current_ips(&svc.spec) {
            self.release_ip(ip)?;
        }
        for p in &svc.spec.ports {
            if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                self.txn.free(Slot::NodePort(np))?;
            }
        }
        Ok(())
    }
}
