//! `#[repr(C)]` twins of `bpf/pier.h`, the map layouts the kernel programs read.
//!
//! aya needs `Pod` (plain old data) to copy these in and out of maps; implementing it is the
//! crate's only unsafe code, and sound because every type here is `repr(C)`, `Copy`, and has
//! no padding the kernel does not also see as explicit `pad` fields.
#![allow(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

/// IP protocol numbers used in service keys.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// `struct pier_svc_key`: a service port (network byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvcKey {
    /// VIP, network order.
    pub vip: u32,
    /// Port, network order.
    pub port: u16,
    /// 6 or 17.
    pub proto: u8,
    /// Zero.
    pub pad: u8,
}

impl SvcKey {
    /// The key of `vip:port` over `proto`.
    pub fn new(vip: Ipv4Addr, port: u16, proto: u8) -> Self {
        Self {
            vip: u32::from_ne_bytes(vip.octets()),
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
    pub addr: u32,
    /// Port.
    pub port: u16,
    /// Zero.
    pub pad: u16,
}

impl From<SocketAddrV4> for Backend {
    fn from(a: SocketAddrV4) -> Self {
        Self {
            addr: u32::from_ne_bytes(a.ip().octets()),
            port: a.port().to_be(),
            pad: 0,
        }
    }
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
unsafe impl aya::Pod for SvcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Svc {}
// SAFETY: as above.
unsafe impl aya::Pod for SlotKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Backend {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcStats {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(std::mem::size_of::<SvcKey>(), 8);
        assert_eq!(std::mem::size_of::<Svc>(), 16);
        assert_eq!(std::mem::size_of::<SlotKey>(), 8);
        assert_eq!(std::mem::size_of::<Backend>(), 8);
        assert_eq!(std::mem::size_of::<SvcStats>(), 16);
        let k = SvcKey::new(Ipv4Addr::new(10, 96, 0, 1), 80, PROTO_TCP);
        // Network order in memory, as the sock_addr context holds it.
        assert_eq!(k.vip.to_ne_bytes(), [10, 96, 0, 1]);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
    }
}
