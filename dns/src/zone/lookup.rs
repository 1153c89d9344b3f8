//! Answering a query from the zone: records, NODATA for a name that exists (an empty
//! non-terminal too), NXDOMAIN, or not ours; pod names (`a-b-c-d.<ns>.pod.<zone>`) answered
//! from the name itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::{Name, Record, RecordType};

use super::records::{address_rdata, address_type};
use super::{Answer, Zone};

impl Zone {
    /// Whether `qname` (lowercase, trailing dot) is in the cluster zone.
    pub fn in_zone(&self, qname: &str) -> bool {
        qname == self.origin || qname.ends_with(&self.suffix)
    }

    pub(super) fn get(&self, qname: &str, qtype: RecordType) -> Vec<Record> {
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
