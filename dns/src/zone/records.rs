//! The records one Service contributes to the zone: its A/AAAA, SRV and PTR records, those
//! of a headless Service's endpoints, or an ExternalName's CNAME.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use pier_snapshot::{Protocol, ServiceView};

use super::{Contribution, Key, Zone};

pub(super) fn name(fqdn: &str) -> Result<Name, String> {
    Name::from_ascii(fqdn).map_err(|e| format!("{fqdn:?} is not a valid DNS name: {e}"))
}

/// `10.96.0.1` → `1.0.96.10.in-addr.arpa.`; IPv6 by nibbles under `ip6.arpa.`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// `10.88.0.2` → `10-88-0-2`, `fd00::1` → `fd00--1`: the label Kubernetes uses for an address.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

pub(super) fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The SRV protocol label of a port.
pub(super) fn srv_proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
    }
}

pub(super) fn address_type(ip: IpAddr) -> RecordType {
    if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    }
}

pub(super) struct Builder<'a> {
    pub(super) ttl: u32,
    pub(super) suffix: &'a str,
    pub(super) records: std::collections::BTreeMap<(String, RecordType), Vec<Record>>,
}

impl Builder<'_> {
    /// Adds a record; one identical to a record already at that name is not repeated.
    pub(super) fn add(&mut self, owner: &str, rdata: RData) -> Result<(), String> {
        let record = Record::from_rdata(name(owner)?, self.ttl, rdata);
        let at = self
            .records
            .entry((owner.to_string(), record.record_type()))
            .or_default();
        if !at.iter().any(|r| r.data == record.data) {
            at.push(record);
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Contribution {
        // One allocation per distinct name, shared by the records and the name list.
        let mut interned: std::collections::BTreeMap<String, Arc<str>> = Default::default();
        let mut intern = |name: &str| -> Arc<str> {
            Arc::clone(
                interned
                    .entry(name.to_string())
                    .or_insert_with(|| Arc::from(name)),
            )
        };
        let records: Vec<(Key, Arc<[Record]>)> = self
            .records
            .into_iter()
            .map(|((owner, rtype), v)| ((intern(&owner), rtype), Arc::from(v)))
            .collect();
        let mut names: Vec<Arc<str>> = Vec::new();
        for ((owner, _), _) in &records {
            // The owner and every ancestor inside the cluster zone exist (empty non-terminals answer NODATA).
            let mut n: &str = owner;
            loop {
                names.push(intern(n));
                if !n.ends_with(self.suffix) || n.len() <= self.suffix.len() {
                    break;
                }
                match n.split_once('.') {
                    Some((_, rest)) if rest.len() > self.suffix.len() => n = rest,
                    _ => break,
                }
            }
        }
        names.sort();
        names.dedup();
        names.shrink_to_fit();
        Contribution { records, names }
    }
}

impl Zone {
    pub(super) fn contribution(&self, svc: &ServiceView) -> Result<Contribution, String> {
        let base = format!("{}.{}.svc.{}", svc.key.name, svc.key.namespace, self.origin);
        let mut b = Builder {
            ttl: self.config.ttl,
            suffix: &self.suffix,
            records: Default::default(),
        };
        if let Some(target) = &svc.external_name {
            let target = if target.ends_with('.') {
                target.clone()
            } else {
                format!("{target}.")
            };
            b.add(&base, RData::CNAME(CNAME(name(&target)?)))?;
            return Ok(b.finish());
        }
        if !svc.headless {
            if svc.cluster_ips.is_empty() {
                return Ok(b.finish());
            }
            // A dual-stack Service answers A and AAAA, with a PTR for each address.
            for &ip in &svc.cluster_ips {
                b.add(&base, address_rdata(ip))?;
                b.add(&reverse_name(ip), RData::PTR(PTR(name(&base)?)))?;
            }
            for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                let owner = format!("_{}.{}.{base}", port.name, srv_proto(port.protocol));
                b.add(
                    &owner,
                    RData::SRV(SRV::new(0, 100, port.port, name(&base)?)),
                )?;
            }
            return Ok(b.finish());
        }
        self.headless(svc, &base, &mut b)?;
        // A headless service with no ready endpoint has no name at all: NXDOMAIN, as the
        // specification says (not NODATA).
        Ok(b.finish())
    }

    /// A headless service's records: every address of every ready endpoint (or every
    /// endpoint, with `publishNotReadyAddresses`) at the service name and at the endpoint's
    /// hostname, their PTRs, and one SRV per hostname and port.
    fn headless(&self, svc: &ServiceView, base: &str, b: &mut Builder<'_>) -> Result<(), String> {
        // SRV owner -> distinct (target host, port): an endpoint listed in an IPv4 and an
        // IPv6 slice, or two endpoints with one hostname, make one record.
        let mut srv: std::collections::BTreeMap<String, std::collections::BTreeSet<(String, u16)>> =
            Default::default();
        for ep in svc
            .endpoints
            .iter()
            .filter(|e| e.ready || svc.publish_not_ready)
        {
            let label = ep.hostname.clone().unwrap_or_else(|| dashed(ep.address));
            let host = format!("{label}.{base}");
            for &address in std::iter::once(&ep.address).chain(&ep.other_addresses) {
                b.add(base, address_rdata(address))?;
                b.add(&host, address_rdata(address))?;
                b.add(&reverse_name(address), RData::PTR(PTR(name(&host)?)))?;
            }
            for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                if let Some(target_port) = ep.port_for(port) {
                    let owner = format!("_{}.{}.{base}", port.name, srv_proto(port.protocol));
                    srv.entry(owner)
                        .or_default()
                        .insert((host.clone(), target_port));
                }
            }
        }
        for (owner, targets) in srv {
            let weight = u16::try_from(100 / targets.len().max(1))
                .unwrap_or(100)
                .max(1);
            for (host, port) in targets {
                b.add(&owner, RData::SRV(SRV::new(0, weight, port, name(&host)?)))?;
            }
        }
        Ok(())
    }
}
