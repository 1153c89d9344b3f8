//! Answering a query from the zone: records, NODATA for a name that exists (an empty
//! non-terminal too), NXDOMAIN, or not ours; Service names answered from their views, pod
//! names (`a-b-c-d.<ns>.pod.<zone>`) from the name itself, PTR records from the address index.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::records::{address_rdata, address_type, name, reverse_address};
use super::{names, Answer, Zone};

/// The types an ANY query is answered with, in order.
const ANY: [RecordType; 6] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::NS,
];

impl Zone {
    /// Whether `qname` (lowercase, trailing dot) is in the cluster zone.
    pub fn in_zone(&self, qname: &str) -> bool {
        qname == self.origin || qname.ends_with(&self.suffix)
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

    /// Every record at a name under `.svc.<zone>` (`rest` is what comes before that), or
    /// `None` when the name does not exist.
    fn svc_records(&self, rest: &str) -> Option<Vec<RData>> {
        let Some((before_namespace, _)) = rest.rsplit_once('.') else {
            // `<ns>.svc.<zone>`: an empty non-terminal while the namespace has Services.
            return self.namespaces.contains_key(rest).then(Vec::new);
        };
        let (prefix, key) = match before_namespace.rsplit_once('.') {
            Some((prefix, _)) => (Some(prefix), &rest[prefix.len() + 1..]),
            None => (None, rest),
        };
        let view = self.services.get(key)?;
        names::records_at(view, prefix, &self.base(key))
    }

    /// The PTR records at the reverse name `qname` of an address the zone knows.
    fn pointer_records(&self, qname: &str) -> Option<Vec<RData>> {
        let at = self.reverse.get(&reverse_address(qname)?)?;
        at.iter()
            .map(|p| {
                let host = match &p.host {
                    Some(host) => format!("{host}.{}", self.base(&p.service)),
                    None => self.base(&p.service),
                };
                Some(RData::PTR(PTR(name(&host).ok()?)))
            })
            .collect()
    }

    /// Answers `qname` (lowercase, with trailing dot) for `qtype`.
    pub fn lookup(&self, qname: &str, qtype: RecordType) -> Answer {
        if !self.in_zone(qname) {
            // Reverse lookups for addresses we own; everything else falls through to forwarding.
            if qtype == RecordType::PTR {
                if let Some(ptr) = self.pointer_records(qname).filter(|p| !p.is_empty()) {
                    return self.records(qname, ptr);
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
            return match qtype {
                t if t == address_type(ip) || t == RecordType::ANY => {
                    self.records(qname, vec![address_rdata(ip)])
                }
                _ => Answer::NoData,
            };
        }
        let at = match qname.strip_suffix(self.svc_suffix.as_str()) {
            Some(rest) => self.svc_records(rest),
            None => self.statics.at(qname),
        };
        let Some(at) = at else {
            return Answer::NxDomain;
        };
        let of = |t: RecordType| at.iter().filter(move |r| r.record_type() == t).cloned();
        let chosen: Vec<RData> = if qtype == RecordType::ANY {
            ANY.into_iter().flat_map(of).collect()
        } else {
            of(qtype).collect()
        };
        if !chosen.is_empty() {
            return self.records(qname, chosen);
        }
        let cname: Vec<RData> = of(RecordType::CNAME).collect();
        if !cname.is_empty() {
            return self.records(qname, cname);
        }
        Answer::NoData
    }

    /// `rdata` as records owned by `qname`.
    fn records(&self, qname: &str, rdata: Vec<RData>) -> Answer {
        let Ok(owner) = Name::from_ascii(qname) else {
            return Answer::NxDomain;
        };
        Answer::Records(
            rdata
                .into_iter()
                .map(|data| {
                    let mut record = Record::from_rdata(owner.clone(), self.config.ttl, data);
                    record.dns_class = DNSClass::IN;
                    record
                })
                .collect(),
        )
    }
}
