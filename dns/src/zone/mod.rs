//! The cluster zone: Kubernetes DNS records (spec 1.1.0) built from the node snapshot, by diff.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{NS, SOA, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use imbl::HashMap;
use pier_snapshot::{ServiceChange, ServiceKey, SnapshotDiff};

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

/// A record owner name (shared by the zone's maps and the contribution that put it there)
/// and a type.
type Key = (Arc<str>, RecordType);

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
    names: Vec<Arc<str>>,
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
    records: HashMap<Arc<str>, NameRecords>,
    names: HashMap<Arc<str>, u32>,
    contributions: HashMap<ServiceKey, Arc<Contribution>>,
    /// Services whose records DNS cannot carry (a name over 255 bytes, say), with why:
    /// left out of the zone so that every other service still updates.
    skipped: HashMap<ServiceKey, Arc<str>>,
    revision: u64,
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
            static_part
                .names
                .push(format!("{sub}.{}", zone.origin).into());
        }
        static_part.names.push(zone.origin.as_str().into());
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

    fn insert(&mut self, key: ServiceKey, c: Arc<Contribution>) {
        for ((owner, rtype), recs) in &c.records {
            if let Some(next) = replace_owner(self.records.get(owner), *rtype, &key, Some(recs)) {
                self.records.insert(Arc::clone(owner), next);
            }
        }
        for n in &c.names {
            let count = self.names.get(n).copied().unwrap_or(0);
            self.names.insert(Arc::clone(n), count + 1);
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
                    self.records.insert(Arc::clone(owner), rest);
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
                    self.names.insert(Arc::clone(n), count - 1);
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
}

mod lookup;
mod records;

use records::{address_rdata, name, Builder};
pub use records::{dashed, reverse_name};

#[cfg(test)]
mod tests;
