//! Proxy settings that are per node rather than per Service.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Where a service VIP is listened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipMode {
    /// The real ClusterIP, assigned to a dummy interface of this name (needs CAP_NET_ADMIN).
    Interface(String),
    /// A loopback stand-in: ClusterIP `a.b.c.d` listens on `127.b.c.d`, port + `port_offset`.
    Loopback {
        /// Added to every service port (so unprivileged users can serve port 80 as 10080).
        port_offset: u16,
    },
}

/// Node-wide proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// How VIPs are listened on.
    pub vip_mode: VipMode,
    /// Address NodePorts listen on.
    pub node_address: IpAddr,
    /// This node's name: the endpoints of a Service with a `Local` traffic policy are those
    /// whose `nodeName` it is (with none set, such a Service has no endpoints here).
    pub node_name: Option<String>,
    /// Longest time a client may take to send request headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Largest request head accepted, bytes.
    pub max_header_bytes: usize,
    /// Idle time after which a keep-alive HTTP client connection is closed.
    pub http_idle_timeout: Duration,
    /// Idle time of a UDP flow.
    pub udp_idle_timeout: Duration,
    /// Most UDP flows per listener; datagrams of new flows beyond it are dropped.
    pub max_udp_flows: usize,
    /// Most client connections at once over all listeners.
    pub max_connections: usize,
}

impl ProxyConfig {
    /// Defaults for a VIP mode: NodePorts on every address with real VIPs, on loopback otherwise.
    pub fn new(vip_mode: VipMode) -> Self {
        let node_address = match vip_mode {
            VipMode::Interface(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            VipMode::Loopback { .. } => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        Self {
            vip_mode,
            node_address,
            node_name: None,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            http_idle_timeout: Duration::from_secs(60),
            udp_idle_timeout: Duration::from_secs(30),
            max_udp_flows: 65_536,
            max_connections: 100_000,
        }
    }

    /// The local address a service VIP port is served on, if this mode can serve it.
    pub fn vip_listen_addr(&self, vip: IpAddr, port: u16) -> Option<SocketAddr> {
        match (&self.vip_mode, vip) {
            (VipMode::Interface(_), ip) => Some(SocketAddr::new(ip, port)),
            (VipMode::Loopback { port_offset }, IpAddr::V4(v4)) => {
                let [_, b, c, d] = v4.octets();
                let port = port.checked_add(*port_offset)?;
                Some(SocketAddr::new(Ipv4Addr::new(127, b, c, d).into(), port))
            }
            (VipMode::Loopback { .. }, IpAddr::V6(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_mapping_keeps_low_octets_and_offsets_port() {
        let c = ProxyConfig::new(VipMode::Loopback { port_offset: 10000 });
        assert_eq!(
            c.vip_listen_addr("10.96.3.7".parse().unwrap(), 80),
            Some("127.96.3.7:10080".parse().unwrap())
        );
        assert_eq!(c.vip_listen_addr("10.96.3.7".parse().unwrap(), 60000), None);
        assert_eq!(c.vip_listen_addr("fd00::1".parse().unwrap(), 80), None);
        let c = ProxyConfig::new(VipMode::Interface("pier0".into()));
        assert_eq!(
            c.vip_listen_addr("10.96.3.7".parse().unwrap(), 80),
            Some("10.96.3.7:80".parse().unwrap())
        );
    }
}
