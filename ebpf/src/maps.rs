//! `#[repr(C)]` twins of `bpf/pier.h`, the map layouts the kernel programs read.
//!
//! aya needs `Pod` (plain old data) to copy these in and out of maps; implementing it is the
//! crate's only unsafe code, and sound because every type here is `repr(C)`, `Copy`, and has
//! no padding the kernel does not also see as explicit `pad` fields.
#![allow(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

/// IP protocol numbers used in service keys.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// `struct pier_ip`: an address in network byte order, IPv4 held IPv4-mapped.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ip {
    /// The 16 address bytes as the kernel's `__u32[4]`.
    pub a: [u32; 4],
}

impl From<IpAddr> for Ip {
    fn from(ip: IpAddr) -> Self {
        let octets = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let mut a = [0u32; 4];
        for (word, chunk) in a.iter_mut().zip(octets.chunks_exact(4)) {
            *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Self { a }
    }
}

impl Ip {
    /// The address (IPv4 when v4-mapped).
    pub fn to_ip_addr(self) -> IpAddr {
        let mut octets = [0u8; 16];
        for (chunk, word) in octets.chunks_exact_mut(4).zip(self.a) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let v6 = std::net::Ipv6Addr::from(octets);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    }
}

/// `struct pier_svc_key`: a service port (network byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvcKey {
    /// VIP.
    pub vip: Ip,
    /// Port, network order.
    pub port: u16,
    /// 6 or 17.
    pub proto: u8,
    /// Zero.
    pub pad: u8,
}

impl SvcKey {
    /// The key of `vip:port` over `proto`.
    pub fn new(vip: IpAddr, port: u16, proto: u8) -> Self {
        Self {
            vip: Ip::from(vip),
            port: port.to_be(),
            proto,
            pad: 0,
        }
    }
}

/// `struct pier_svc`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Svc {
    /// Key prefix of its slots.
    pub id: u32,
    /// Slots in use (0 = refuse connections).
    pub slots: u32,
    /// ClientIP affinity timeout, seconds (0 = none).
    pub affinity: u32,
    /// Zero.
    pub pad: u32,
}

/// `struct pier_slot_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotKey {
    /// Service generation id.
    pub svc_id: u32,
    /// Slot number.
    pub slot: u32,
}

/// `struct pier_backend` (network byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Address.
    pub addr: Ip,
    /// Port.
    pub port: u16,
    /// Zero.
    pub pad: u16,
}

impl From<SocketAddr> for Backend {
    fn from(a: SocketAddr) -> Self {
        Self {
            addr: Ip::from(a.ip()),
            port: a.port().to_be(),
            pad: 0,
        }
    }
}

impl Backend {
    /// The address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.addr.to_ip_addr().to_canonical(),
            u16::from_be(self.port),
        )
    }
}

/// `struct pier_backend_fails` (one per CPU): how a backend's translated TCP connections ended
/// badly.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendFails {
    /// Never established (refused or timed out).
    pub connect_failures: u64,
    /// Established, then reset.
    pub resets: u64,
}

/// `struct pier_svc_stats` (one per CPU).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcStats {
    /// Translated connects and datagrams.
    pub connects: u64,
    /// Refused for want of a backend.
    pub refused: u64,
}

// SAFETY: repr(C), Copy, no implicit padding (sizes checked in the tests).
unsafe impl aya::Pod for Ip {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Svc {}
// SAFETY: as above.
unsafe impl aya::Pod for SlotKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Backend {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcStats {}
// SAFETY: as above.
unsafe impl aya::Pod for BackendFails {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(std::mem::size_of::<Ip>(), 16);
        assert_eq!(std::mem::size_of::<SvcKey>(), 20);
        assert_eq!(std::mem::size_of::<Svc>(), 16);
        assert_eq!(std::mem::size_of::<SlotKey>(), 8);
        assert_eq!(std::mem::size_of::<Backend>(), 20);
        assert_eq!(std::mem::size_of::<SvcStats>(), 16);
        assert_eq!(std::mem::size_of::<BackendFails>(), 16);
        let backend = Backend::from("10.0.0.7:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(backend.socket_addr().to_string(), "10.0.0.7:8080");
        // Network order in memory, as the sock_addr context holds it; IPv4 is v4-mapped.
        let bytes =
            |k: &SvcKey| -> Vec<u8> { k.vip.a.iter().flat_map(|w| w.to_ne_bytes()).collect() };
        let k = SvcKey::new("10.96.0.1".parse().unwrap(), 80, PROTO_TCP);
        assert_eq!(
            bytes(&k),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 1]
        );
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        let k6 = SvcKey::new("fd00::1".parse().unwrap(), 80, PROTO_TCP);
        assert_eq!(
            bytes(&k6),
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        for ip in ["10.96.0.1", "fd00::1", "::ffff:0.0.0.0", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            let back = Ip::from(ip).to_ip_addr();
            assert_eq!(back.to_canonical(), ip.to_canonical());
        }
    }
}
