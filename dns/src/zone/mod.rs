//! The cluster zone: Kubernetes DNS records (spec 1.1.0) answered from the node snapshot's
//! Service views, kept up to date by diff.
//!
//! The zone holds the views themselves, keyed by the labels a query names them with
//! (`name.namespace`), and an index from address to PTR target; records are made from the
//! view when a query asks (see `names`), so ten thousand Services cost the zone little more
//! than the index.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{NS, SOA, TXT};
use hickory_proto::rr::{RData, Record};
use imbl::HashMap;
use pier_snapshot::{ServiceChange, ServiceKey, ServiceView, SnapshotDiff};

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

/// An immutable zone version; updates return a new one sharing unchanged parts.
#[derive(Debug, Clone)]
pub struct Zone {
    config: Arc<ZoneConfig>,
    /// `cluster.local.`
    origin: String,
    /// `.cluster.local.`
    suffix: String,
    /// `.svc.cluster.local.`
    svc_suffix: String,
    /// `.pod.cluster.local.`
    pod_suffix: String,
    soa: Record,
    statics: Arc<Statics>,
    /// Services that have names, by `name.namespace`.
    services: HashMap<Arc<str>, Arc<ServiceView>>,
    /// Namespaces with such Services, and how many: `<ns>.svc.<zone>` exists while any do.
    namespaces: HashMap<Arc<str>, u32>,
    /// Addresses of Services and headless endpoints, and where their PTR records point.
    reverse: HashMap<IpAddr, Arc<[Pointer]>>,
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
        let soa = Record::from_rdata(
            name(&origin)?,
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
        let suffix = format!(".{origin}");
        let mut statics = Statics::default();
        statics.add(
            &format!("dns-version.{origin}"),
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
            &suffix,
        )?;
        // The apex names its nameserver, as CoreDNS's kubernetes plugin does.
        let ns = format!("ns.dns.{origin}");
        statics.add(&origin, RData::NS(NS(name(&ns)?)), &suffix)?;
        for ip in &config.nameserver_addresses {
            statics.add(&ns, address_rdata(*ip), &suffix)?;
        }
        for sub in ["svc", "pod"] {
            statics.exists(&format!("{sub}.{origin}"));
        }
        Ok(Zone {
            svc_suffix: format!(".svc.{origin}"),
            pod_suffix: format!(".pod.{origin}"),
            suffix,
            origin,
            config: Arc::new(config),
            soa,
            statics: Arc::new(statics),
            services: HashMap::new(),
            namespaces: HashMap::new(),
            reverse: HashMap::new(),
            skipped: HashMap::new(),
            revision: 0,
        })
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

    /// A new zone with `diff` applied. A service whose records cannot exist in DNS is left
    /// out (see [`Zone::skipped`]) instead of holding back every other change.
    pub fn apply(&self, diff: &SnapshotDiff) -> Zone {
        let mut next = self.clone();
        for change in &diff.changes {
            match change {
                ServiceChange::Upsert(view) => {
                    next.remove(&view.key);
                    next.skipped.remove(&view.key);
                    if let Err(e) = next.insert(view) {
                        next.skipped.insert(view.key.clone(), e.into());
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

    /// The name `name.namespace.svc.<zone>` of the Service with zone key `key`.
    fn base(&self, key: &str) -> String {
        format!("{key}{}", self.svc_suffix)
    }

    fn insert(&mut self, view: &Arc<ServiceView>) -> Result<(), String> {
        if !names::has_names(view) {
            return Ok(());
        }
        let key = names::key(&view.key);
        names::validate(view, &self.base(&key))?;
        for (ip, pointer) in names::pointers(view, &key) {
            let mut at: Vec<Pointer> = self
                .reverse
                .get(&ip)
                .map(|p| p.to_vec())
                .unwrap_or_default();
            at.push(pointer);
            at.sort();
            self.reverse.insert(ip, at.into());
        }
        let namespace: Arc<str> = view.key.namespace.to_ascii_lowercase().into();
        let count = self.namespaces.get(&namespace).copied().unwrap_or(0);
        self.namespaces.insert(namespace, count + 1);
        self.services.insert(key, Arc::clone(view));
        Ok(())
    }

    fn remove(&mut self, service: &ServiceKey) {
        let key = names::key(service);
        let Some(view) = self.services.remove(&key) else {
            return;
        };
        for (ip, pointer) in names::pointers(&view, &key) {
            let rest: Vec<Pointer> = self
                .reverse
                .get(&ip)
                .map(|at| at.iter().filter(|p| **p != pointer).cloned().collect())
                .unwrap_or_default();
            if rest.is_empty() {
                self.reverse.remove(&ip);
            } else {
                self.reverse.insert(ip, rest.into());
            }
        }
        let namespace: &str = &service.namespace.to_ascii_lowercase();
        match self.namespaces.get(namespace).copied() {
            Some(1) | None => {
                self.namespaces.remove(namespace);
            }
            Some(count) => {
                self.namespaces.insert(namespace.into(), count - 1);
            }
        }
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
mod names;
mod records;

use names::Pointer;
use records::{address_rdata, name, Statics};
pub use records::{dashed, reverse_name};

#[cfg(test)]
mod tests;
