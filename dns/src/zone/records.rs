//! Building blocks of answers: names, address and protocol helpers, and the zone's few static
//! records (the schema version, the apex nameserver).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, RecordType};
use pier_snapshot::Protocol;

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

/// The address a reverse name (lowercase, trailing dot) stands for, if it is exactly the name
/// [`reverse_name`] gives that address.
pub(super) fn reverse_address(qname: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = qname.strip_suffix(".in-addr.arpa.") {
        let mut octets = [0u8; 4];
        let mut labels = rest.split('.');
        for o in octets.iter_mut().rev() {
            *o = labels.next()?.parse().ok()?;
        }
        if labels.next().is_some() {
            return None;
        }
        IpAddr::from(octets)
    } else {
        let rest = qname.strip_suffix(".ip6.arpa.")?;
        let mut bytes = [0u8; 16];
        let mut nibbles = rest.split('.');
        for b in bytes.iter_mut().rev() {
            let low = u8::from_str_radix(nibbles.next()?, 16).ok()?;
            let high = u8::from_str_radix(nibbles.next()?, 16).ok()?;
            *b = (high << 4) | low;
        }
        if nibbles.next().is_some() {
            return None;
        }
        IpAddr::from(bytes)
    };
    // `010.…` or `A.…` parse too; only the canonical spelling is the address's name.
    (reverse_name(ip) == qname).then_some(ip)
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

/// Records that do not come from Services, by owner name, and every name that exists
/// because of them (owners and their ancestors inside the zone).
#[derive(Debug, Default)]
pub(super) struct Statics {
    records: BTreeMap<String, Vec<RData>>,
    names: BTreeSet<String>,
}

impl Statics {
    /// Adds a record at `owner` (inside the zone whose names end in `suffix`).
    pub(super) fn add(&mut self, owner: &str, rdata: RData, suffix: &str) -> Result<(), String> {
        name(owner)?;
        self.records
            .entry(owner.to_string())
            .or_default()
            .push(rdata);
        let mut n = owner;
        loop {
            self.names.insert(n.to_string());
            match n.split_once('.') {
                Some((_, rest)) if rest.len() > suffix.len() && rest.ends_with(suffix) => n = rest,
                _ => break,
            }
        }
        Ok(())
    }

    /// Marks `owner` as existing without records (an empty non-terminal).
    pub(super) fn exists(&mut self, owner: &str) {
        self.names.insert(owner.to_string());
    }

    /// Every record at `qname`, or `None` when the name does not exist.
    pub(super) fn at(&self, qname: &str) -> Option<Vec<RData>> {
        self.names
            .contains(qname)
            .then(|| self.records.get(qname).cloned().unwrap_or_default())
    }
}
