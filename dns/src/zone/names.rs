//! The names one Service has in the zone, read from its view when a query comes: the service
//! name (A/AAAA, an ExternalName's CNAME), `_port._proto` SRV names, a headless Service's
//! endpoint hostnames, and the addresses whose PTR records point at them.
//!
//! Nothing is built ahead of a query: the view the snapshot already holds is the record set.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{CNAME, SRV};
use hickory_proto::rr::RData;
use pier_snapshot::{EndpointView, ServiceKey, ServiceView};

use super::records::{address_rdata, dashed, name, srv_proto};

/// Where a PTR record at an address points: a Service (its zone key, `name.namespace`), or
/// one of a headless Service's endpoints (its hostname label under the Service).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pointer {
    pub(super) service: Arc<str>,
    pub(super) host: Option<Arc<str>>,
}

/// The zone key of a Service: the labels a query has before `.svc.<zone>`.
pub(super) fn key(service: &ServiceKey) -> Arc<str> {
    format!("{}.{}", service.name, service.namespace)
        .to_ascii_lowercase()
        .into()
}

/// The endpoints a headless Service publishes: the ready ones, or all with
/// `publishNotReadyAddresses`.
fn published(svc: &ServiceView) -> impl Iterator<Item = &EndpointView> {
    svc.endpoints
        .iter()
        .filter(move |e| e.ready || svc.publish_not_ready)
}

/// An endpoint's label under its headless Service: its hostname, or its dashed address.
fn label(ep: &EndpointView) -> String {
    ep.hostname
        .as_deref()
        .map_or_else(|| dashed(ep.address), str::to_ascii_lowercase)
}

/// Whether the Service has any name in the zone. A headless Service without a published
/// endpoint has none (the specification: NXDOMAIN, not NODATA), nor has a ClusterIP Service
/// without an address yet.
pub(super) fn has_names(svc: &ServiceView) -> bool {
    if svc.external_name.is_some() {
        true
    } else if svc.headless {
        published(svc).next().is_some()
    } else {
        !svc.cluster_ips.is_empty()
    }
}

/// Checks that every name the Service would have, and every name its records point to, is
/// a valid DNS name under `base` (`name.namespace.svc.<zone>`).
pub(super) fn validate(svc: &ServiceView, base: &str) -> Result<(), String> {
    name(base)?;
    if let Some(target) = &svc.external_name {
        return name(&absolute(target)).map(drop);
    }
    for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
        name(&format!(
            "_{}.{}.{base}",
            port.name,
            srv_proto(port.protocol)
        ))?;
    }
    if svc.headless {
        for ep in published(svc) {
            name(&format!("{}.{base}", label(ep)))?;
        }
    }
    Ok(())
}

/// The addresses whose PTR records point at the Service's names, with where they point.
pub(super) fn pointers(svc: &ServiceView, service: &Arc<str>) -> Vec<(IpAddr, Pointer)> {
    let mut out = Vec::new();
    if svc.external_name.is_some() {
        return out;
    }
    if !svc.headless {
        for &ip in &svc.cluster_ips {
            out.push((
                ip,
                Pointer {
                    service: Arc::clone(service),
                    host: None,
                },
            ));
        }
        return out;
    }
    for ep in published(svc) {
        let host: Arc<str> = label(ep).into();
        for &ip in std::iter::once(&ep.address).chain(&ep.other_addresses) {
            out.push((
                ip,
                Pointer {
                    service: Arc::clone(service),
                    host: Some(Arc::clone(&host)),
                },
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn absolute(target: &str) -> String {
    if target.ends_with('.') {
        target.to_string()
    } else {
        format!("{target}.")
    }
}

/// Every record at `prefix` under the Service (`None`: the service name itself), or `None`
/// when that name does not exist. `base` is the service name, `name.namespace.svc.<zone>`.
pub(super) fn records_at(
    svc: &ServiceView,
    prefix: Option<&str>,
    base: &str,
) -> Option<Vec<RData>> {
    if let Some(target) = &svc.external_name {
        return match prefix {
            None => Some(vec![RData::CNAME(CNAME(name(&absolute(target)).ok()?))]),
            Some(_) => None,
        };
    }
    match prefix.map(|p| p.split_once('.').unwrap_or((p, ""))) {
        None if svc.headless => Some(distinct(published(svc).flat_map(addresses))),
        None => Some(distinct(svc.cluster_ips.iter().copied())),
        // `_tcp.<service>`: an empty non-terminal when a port's SRV name is below it.
        Some((proto, "")) if proto.starts_with('_') => {
            srv(svc, None, proto, base).map(|_| Vec::new())
        }
        Some((host, "")) if svc.headless => {
            let found: Vec<IpAddr> = published(svc)
                .filter(|ep| label(ep) == host)
                .flat_map(addresses)
                .collect();
            (!found.is_empty()).then(|| distinct(found.into_iter()))
        }
        Some((port, proto)) if port.starts_with('_') && !proto.contains('.') => {
            srv(svc, Some(port), proto, base)
        }
        Some(_) => None,
    }
}

fn addresses(ep: &EndpointView) -> impl Iterator<Item = IpAddr> + '_ {
    std::iter::once(ep.address).chain(ep.other_addresses.iter().copied())
}

/// Address records for `ips`, each once, in first-seen order.
fn distinct(ips: impl Iterator<Item = IpAddr>) -> Vec<RData> {
    let mut seen = BTreeSet::new();
    ips.filter(|ip| seen.insert(*ip))
        .map(address_rdata)
        .collect()
}

/// The SRV records at `_port._proto.<service>` (every named port of that protocol when
/// `port` is `None`), or `None` when there are none. A ClusterIP Service's point at its name;
/// a headless Service's at each published endpoint's hostname, one record per distinct
/// target, weights shared evenly.
fn srv(svc: &ServiceView, port: Option<&str>, proto: &str, base: &str) -> Option<Vec<RData>> {
    let ports = svc.ports.iter().filter(|p| {
        !p.name.is_empty()
            && srv_proto(p.protocol) == proto
            && port.is_none_or(|want| want.strip_prefix('_') == Some(p.name.as_str()))
    });
    let mut targets: BTreeSet<(String, u16)> = BTreeSet::new();
    for p in ports {
        if !svc.headless {
            targets.insert((base.to_string(), p.port));
            continue;
        }
        for ep in published(svc) {
            if let Some(target) = ep.port_for(p) {
                targets.insert((format!("{}.{base}", label(ep)), target));
            }
        }
    }
    if targets.is_empty() {
        return None;
    }
    let weight = if svc.headless {
        u16::try_from(100 / targets.len()).unwrap_or(100).max(1)
    } else {
        100
    };
    targets
        .into_iter()
        .map(|(host, p)| Some(RData::SRV(SRV::new(0, weight, p, name(&host).ok()?))))
        .collect()
}
