//! ClusterIP and NodePort allocation, inside the store's write transaction.
//!
//! Allocation is a ring: each search starts after the last address handed out, so a
//! released address is not reused until the whole range has gone round (deterministic,
//! and no quick reuse of an address clients may still cache).

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use redb::{ReadableTable, Table, TableDefinition};

use crate::error::{Error, Result};
use crate::model::Service;

pub(crate) const IPS: TableDefinition<u32, &str> = TableDefinition::new("alloc_cluster_ips");
pub(crate) const NODE_PORTS: TableDefinition<u16, &str> = TableDefinition::new("alloc_node_ports");

/// Where allocations come from.
#[derive(Debug, Clone)]
pub struct AllocConfig {
    /// Service CIDR for ClusterIPs.
    pub service_cidr: Ipv4Net,
    /// NodePort range.
    pub node_ports: RangeInclusive<u16>,
}

impl Default for AllocConfig {
    fn default() -> Self {
        Self {
            service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            node_ports: 30000..=32767,
        }
    }
}

/// Allocation work for one write transaction.
pub(crate) struct Allocator<'a, 'txn> {
    pub(crate) config: &'a AllocConfig,
    pub(crate) ips: Table<'txn, u32, &'static str>,
    pub(crate) ports: Table<'txn, u16, &'static str>,
    pub(crate) ip_cursor: u64,
    pub(crate) port_cursor: u64,
}

fn owner(svc: &Service) -> String {
    format!("{}/{}", svc.metadata.namespace(), svc.metadata.name)
}

impl Allocator<'_, '_> {
    fn take_ip(&mut self, ip: Ipv4Addr, who: &str, label: &str) -> Result<()> {
        let key = u32::from(ip);
        if let Some(holder) = self.ips.get(key)? {
            if holder.value() != who {
                return Err(Error::Conflict(format!(
                    "{label}: spec.clusterIP: {ip} is already allocated to service {}",
                    holder.value()
                )));
            }
            return Ok(());
        }
        self.ips.insert(key, who)?;
        Ok(())
    }

    fn next_ip(&mut self, who: &str) -> Result<Ipv4Addr> {
        let net = self.config.service_cidr;
        let base = u32::from(net.network());
        // Hosts exclude the network and broadcast addresses.
        let size = (1u64 << (32 - net.prefix_len())).saturating_sub(2).max(1);
        for i in 0..size {
            let offset = (self.ip_cursor + i) % size;
            let candidate = base.wrapping_add(1).wrapping_add(offset as u32);
            if self.ips.get(candidate)?.is_none() {
                self.ips.insert(candidate, who)?;
                self.ip_cursor = (offset + 1) % size;
                return Ok(Ipv4Addr::from(candidate));
            }
        }
        Err(Error::Exhausted(format!("no free ClusterIP left in {net}")))
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
        if let Some(holder) = self.ports.get(port)? {
            if holder.value() != who {
                return Err(Error::Conflict(format!(
                    "{label}: {path}: node port {port} is already allocated to service {}",
                    holder.value()
                )));
            }
            return Ok(());
        }
        self.ports.insert(port, who)?;
        Ok(())
    }

    fn next_port(&mut self, who: &str) -> Result<u16> {
        let (lo, hi) = (
            *self.config.node_ports.start(),
            *self.config.node_ports.end(),
        );
        let size = u64::from(hi - lo) + 1;
        for i in 0..size {
            let offset = (self.port_cursor + i) % size;
            let candidate = lo + offset as u16;
            if self.ports.get(candidate)?.is_none() {
                self.ports.insert(candidate, who)?;
                self.port_cursor = (offset + 1) % size;
                return Ok(candidate);
            }
        }
        Err(Error::Exhausted(format!(
            "no free node port left in {lo}-{hi}"
        )))
    }

    /// Fills `svc`'s clusterIP and node ports, keeping what `old` held, and releases what it no longer needs.
    pub(crate) fn assign(&mut self, svc: &mut Service, old: Option<&Service>) -> Result<()> {
        let who = owner(svc);
        let label = format!("Service {who}");
        let old_ip = old
            .map(|o| o.spec.cluster_ip.as_str())
            .filter(|ip| !ip.is_empty() && *ip != "None");
        let wants_ip = svc.service_type() != "ExternalName" && !svc.is_headless();
        if svc.service_type() == "ExternalName" {
            svc.spec.cluster_ip.clear();
        }
        match (wants_ip, svc.spec.cluster_ip.as_str(), old_ip) {
            (true, "", Some(old)) => svc.spec.cluster_ip = old.to_string(),
            (true, "", None) => svc.spec.cluster_ip = self.next_ip(&who)?.to_string(),
            (true, ip, Some(old)) if ip != old => {
                return Err(Error::invalid(
                    label,
                    "spec.clusterIP",
                    format!("field is immutable: {old} cannot change to {ip}"),
                ))
            }
            (true, ip, _) => {
                let addr: Ipv4Addr = ip.parse().map_err(|_| {
                    Error::invalid(
                        &label,
                        "spec.clusterIP",
                        format!("{ip} is not an IPv4 address"),
                    )
                })?;
                if !self.config.service_cidr.contains(&addr) {
                    return Err(Error::invalid(
                        label,
                        "spec.clusterIP",
                        format!(
                            "{ip} is not in the service range {}",
                            self.config.service_cidr
                        ),
                    ));
                }
                self.take_ip(addr, &who, &label)?;
            }
            (false, _, Some(old)) if svc.is_headless() => {
                return Err(Error::invalid(
                    label,
                    "spec.clusterIP",
                    format!("field is immutable: {old} cannot change to None"),
                ))
            }
            (false, _, _) => {}
        }
        if let Some(old) = old_ip.filter(|ip| *ip != svc.spec.cluster_ip) {
            if let Ok(addr) = old.parse::<Ipv4Addr>() {
                self.ips.remove(u32::from(addr))?;
            }
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
                self.ports.remove(np)?;
            }
        }
        Ok(())
    }

    /// Releases everything `svc` holds.
    pub(crate) fn release(&mut self, svc: &Service) -> Result<()> {
        if let Ok(addr) = svc.spec.cluster_ip.parse::<Ipv4Addr>() {
            self.ips.remove(u32::from(addr))?;
        }
        for p in &svc.spec.ports {
            if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                self.ports.remove(np)?;
            }
        }
        Ok(())
    }
}
