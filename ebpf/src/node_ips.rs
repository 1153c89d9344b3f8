//! The node's addresses, on which NodePorts answer: read from the interfaces and kept in the
//! pinned `pier_node_ips` map.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::maps::Ip;
use crate::{map_err, removed, Result};

/// The node's addresses other than loopback and IPv6 link-local (where NodePorts answer).
pub fn node_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|a| {
            let addr = a.address?;
            match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
                (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
                (_, Some(v6)) if !v6.ip().is_unicast_link_local() => Some(IpAddr::V6(v6.ip())),
                _ => None,
            }
        })
        .filter(|ip| !ip.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Writes the node addresses NodePorts answer on (besides loopback) into the map pinned under
/// `pin_dir`, adding the new ones and removing those gone.
pub fn set_node_ips(pin_dir: &Path, ips: &[IpAddr]) -> Result<()> {
    let name = "pier_node_ips";
    let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
    let mut map =
        BpfHashMap::<_, Ip, u8>::try_from(aya::maps::Map::HashMap(data)).map_err(map_err(name))?;
    let wanted: HashSet<Ip> = ips.iter().map(|ip| Ip::from(*ip)).collect();
    let present: HashSet<Ip> = map.keys().filter_map(|r| r.ok()).collect();
    for k in wanted.difference(&present) {
        map.insert(*k, 1, 0).map_err(map_err(name))?;
    }
    for k in present.difference(&wanted) {
        removed(name, map.remove(k))?;
    }
    Ok(())
}
