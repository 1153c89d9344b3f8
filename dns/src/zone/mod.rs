//! The cluster zone: Kubernetes DNS records (spec 1.1.0) built from the node snapshot, by diff.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use imbl::HashMap;
use pier_snapshot::{Protocol, ServiceChange, ServiceKey, ServiceView, SnapshotDiff};

/// The Kubernetes DNS specification version served in `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Zone settings.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// Cluster domain, e.g. `cluster.local`.
    pub domain: String,
    /// TTL of cluster records.
    pub ttl: u32,
    /// TTL of negative answers (SOA minimum).
    pub negative_ttl: u32,
    /// Addresses of the zone's nameserver (`ns.dns.<zone>`, the apex's NS): where pier
    /// answers, when that is a concrete address.
    pub nameserver_addresses: Vec<IpAddr>,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            domain: "cluster.local".into(),
            ttl: 5,
            negative_ttl: 5,
            nameserver_addresses: Vec::new(),
        }
    }
}

/// What the zone says about a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Authoritative records.
    Records(Vec<Record>),
    /// The name exists but has no records of that type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// Not ours: forward it.
    NotAuthoritative,
}

type Key = (String, RecordType);

/// Everything at one name: (type, owning service, records), sorted. Nearly always one owner.
type NameRecords = Arc<[(RecordType, ServiceKey, Arc<[Record]>)]>;

/// `entries` without `(rtype, owner)`, plus `add` for it if given; `None` when nothing is left.
fn replace_owner(
    entries: Option<&NameRecords>,
    rtype: RecordType,
    owner: &ServiceKey,
    add: Option<&Arc<[Record]>>,
) -> Option<NameRecords> {
    let mut next: Vec<(RecordType, ServiceKey, Arc<[Record]>)> = entries
        .map(|e| {
            e.iter()
                .filter(|(t, o, _)| !(*t == rtype && o == owner))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if let Some(recs) = add {
        next.push((rtype, owner.clone(), Arc::clone(recs)));
        next.sort_by(|a, b| (u16::from(a.0), &a.1).cmp(&(u16::from(b.0), &b.1)));
    }
    (!next.is_empty()).then(|| next.into())
}

/// What one Service put into the zone, so a change can take it out again.
#[derive(Debug, Default)]
struct Contribution {
    records: Vec<(Key, Arc<[Record]>)>,
    names: Vec<String>,
}

/// An immutable zone version; updates return a new one sharing unchanged parts.
#[derive(Debug, Clone)]
pub struct Zone {
    config: Arc<ZoneConfig>,
    origin: String,
    suffix: String,
    pod_suffix: String,
    soa: Record,
    // Keyed by name alone so a lookup borrows the query's name instead of building a key.
    records: HashMap<String, NameRecords>,
    names: HashMap<String, u32>,
    contributions: HashMap<ServiceKey, Arc<Contribution>>,
    /// Services whose records DNS cannot carry (a name over 255 bytes, say), with why:
    /// left out of the zone so that every other service still updates.
    skipped: HashMap<ServiceKey, Arc<str>>,
    revision: u64,
}

fn name(fqdn: &str) -> Result<Name, String> {
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

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The SRV protocol label of a port.
fn srv_proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
    }
}

fn address_type(ip: IpAddr) -> RecordType {
    if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    }
}

struct Builder<'a> {
    ttl: u32,
    suffix: &'a str,
    records: std::collections::BTreeMap<Key, Vec<Record>>,
}

impl Builder<'_> {
    /// Adds a record; one identical to a record already at that name is not repeated.
    fn add(&mut self, owner: &str, rdata: RData) -> Result<(), String> {
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

    fn finish(self) -> Contribution {
        let mut names: Vec<String> = Vec::new();
        for (owner, _) in self.records.keys() {
            // The owner and every ancestor inside the cluster zone exist (empty non-terminals answer NODATA).
            let mut n = owner.as_str();
            loop {
                names.push(n.to_string());
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
        Contribution {
            records: self
                .records
                .into_iter()
                .map(|(k, v)| (k, Arc::from(v)))
                .collect(),
            names,
        }
    }
}

impl Zone {
    /// An empty zone.
    pub fn new(config: ZoneConfig) -> Result<Zone, String> {
        let origin = format!(
            "{}.",
            config.domain.trim_end_matches('.').to_ascii_lowercase()
        );
        let origin_name = name(&origin)?;
        let soa = Record::from_rdata(
            origin_name.clone(),
            config.negative_ttl,
            RData::SOA(SOA::new(
                name(&format!("ns.dns.{origin}"))?,
                name(&format!("hostmaster.{origin}"))?,
                0,
                7200,
                1800,
                86400,
                config.negative_ttl,
            )),
        );
        let mut zone = Zone {
            suffix: format!(".{origin}"),
            pod_suffix: format!(".pod.{origin}"),
            origin,
            config: Arc::new(config),
            soa,
            records: HashMap::new(),
            names: HashMap::new(),
            contributions: HashMap::new(),
            skipped: HashMap::new(),
            revision: 0,
        };
        // Static records: the schema version, and the svc/pod subtrees.
        let suffix = zone.suffix.clone();
        let mut b = Builder {
            ttl: zone.config.ttl,
            suffix: &suffix,
            records: Default::default(),
        };
        b.add(
            &format!("dns-version.{}", zone.origin),
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
        )?;
        // The apex names its nameserver, as CoreDNS's kubernetes plugin does.
        let ns = format!("ns.dns.{}", zone.origin);
        b.add(&zone.origin, RData::NS(NS(name(&ns)?)))?;
        for ip in &zone.config.nameserver_addresses {
            b.add(&ns, address_rdata(*ip))?;
        }
        let mut static_part = b.finish();
        for sub in ["svc", "pod"] {
            static_part.names.push(format!("{sub}.{}", zone.origin));
        }
        static_part.names.push(zone.origin.clone());
        zone.insert(ServiceKey::new("", ""), Arc::new(static_part));
        Ok(zone)
    }

    /// The SOA record (authority section of negative answers).
    pub fn soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(s) = &mut soa.data {
            s.serial = u32::try_from(self.revision % u64::from(u32::MAX)).unwrap_or(0);
        }
        soa
    }

    /// The zone origin, lowercase with the trailing dot (`cluster.local.`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Snapshot revision this zone reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn contribution(&self, svc: &ServiceView) -> Result<Contribution, String> {
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

    fn insert(&mut self, key: ServiceKey, c: Arc<Contribution>) {
        for ((owner, rtype), recs) in &c.records {
            if let Some(next) = replace_owner(self.records.get(owner), *rtype, &key, Some(recs)) {
                self.records.insert(owner.clone(), next);
            }
        }
        for n in &c.names {
            let count = self.names.get(n).copied().unwrap_or(0);
            self.names.insert(n.clone(), count + 1);
        }
        self.contributions.insert(key, c);
    }

    fn remove(&mut self, key: &ServiceKey) {
        let Some(c) = self.contributions.remove(key) else {
            return;
        };
        for ((owner, rtype), _) in &c.records {
            match replace_owner(self.records.get(owner), *rtype, key, None) {
                Some(rest) => {
                    self.records.insert(owner.clone(), rest);
                }
                None => {
                    self.records.remove(owner);
                }
            }
        }
        for n in &c.names {
            match self.names.get(n).copied() {
                Some(1) | None => {
                    self.names.remove(n);
                }
                Some(count) => {
                    self.names.insert(n.clone(), count - 1);
                }
            }
        }
    }

    /// A new zone with `diff` applied. A service whose records cannot exist in DNS is left
    /// out (see [`Zone::skipped`]) instead of holding back every other change.
    pub fn apply(&self, diff: &SnapshotDiff) -> Zone {
        let mut next = self.clone();
        for change in &diff.changes {
            match change {
                ServiceChange::Upsert(view) => {
                    next.remove(&view.key);
                    match self.contribution(view) {
                        Ok(c) => {
                            next.skipped.remove(&view.key);
                            next.insert(view.key.clone(), Arc::new(c));
                        }
                        Err(e) => {
                            next.skipped.insert(view.key.clone(), e.into());
                        }
                    }
                }
                ServiceChange::Remove(key) => {
                    next.remove(key);
                    next.skipped.remove(key);
                }
            }
        }
        next.revision = diff.to_revision;
        next
    }

    /// Why the service `key` has no records, when the zone could not hold them.
    pub fn skipped(&self, key: &ServiceKey) -> Option<&str> {
        self.skipped.get(key).map(|why| &**why)
    }

    /// How many services the zone left out.
    pub fn skipped_count(&self) -> usize {
        self.skipped.len()
    }

    /// Whether `qname` (lowercase, trailing dot) is in the cluster zone.
    pub fn in_zone(&self, qname: &str) -> bool {
        qname == self.origin || qname.ends_with(&self.suffix)
    }

    fn get(&self, qname: &str, qtype: RecordType) -> Vec<Record> {
        self.records
            .get(qname)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(t, _, _)| *t == qtype)
                    .flat_map(|(_, _, r)| r.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `qname` is `<ns>.pod.<zone>`.
    fn pod_namespace(&self, qname: &str) -> bool {
        qname
            .strip_suffix(self.pod_suffix.as_str())
            .is_some_and(|ns| !ns.is_empty() && !ns.contains('.'))
    }

    /// `a-b-c-d.<ns>.pod.<zone>`: any well-formed address is answered (CoreDNS "pods insecure").
    fn pod_address(&self, qname: &str) -> Option<IpAddr> {
        let rest = qname.strip_suffix(self.pod_suffix.as_str())?;
        let (label, ns) = rest.split_once('.')?;
        if ns.is_empty() || ns.contains('.') {
            return None;
        }
        if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
        label
            .replace('-', ":")
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }

    /// Answers `qname` (lowercase, with trailing dot) for `qtype`.
    pub fn lookup(&self, qname: &str, qtype: RecordType) -> Answer {
        if !self.in_zone(qname) {
            // Reverse lookups for addresses we own; everything else falls through to forwarding.
            if qtype == RecordType::PTR {
                let ptr = self.get(qname, RecordType::PTR);
                if !ptr.is_empty() {
                    return Answer::Records(ptr);
                }
            }
            return Answer::NotAuthoritative;
        }
        if qname == self.origin && qtype == RecordType::SOA {
            return Answer::Records(vec![self.soa()]);
        }
        if self.pod_namespace(qname) {
            // `<ns>.pod.<zone>` is an empty non-terminal: names exist below it (RFC 8020).
            return Answer::NoData;
        }
        if let Some(ip) = self.pod_address(qname) {
            let mut record = Record::from_rdata(
                Name::from_ascii(qname).unwrap_or_default(),
                self.config.ttl,
                address_rdata(ip),
            );
            record.dns_class = hickory_proto::rr::DNSClass::IN;
            return match qtype {
                t if t == address_type(ip) || t == RecordType::ANY => Answer::Records(vec![record]),
                _ => Answer::NoData,
            };
        }
        let records = if qtype == RecordType::ANY {
            [
                RecordType::A,
                RecordType::AAAA,
                RecordType::CNAME,
                RecordType::SRV,
                RecordType::TXT,
                RecordType::NS,
            ]
            .into_iter()
            .flat_map(|t| self.get(qname, t))
            .collect()
        } else {
            self.get(qname, qtype)
        };
        if !records.is_empty() {
            return Answer::Records(records);
        }
        let cname = self.get(qname, RecordType::CNAME);
        if !cname.is_empty() {
            return Answer::Records(cname);
        }
        if self.names.contains_key(qname) {
            Answer::NoData
        } else {
            Answer::NxDomain
        }
    }
}

#[cfg(test)]
mod tests;
