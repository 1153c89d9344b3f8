//! pier-ebpf: socket-level load balancing on the cgroup `connect4`/`sendmsg4`/`recvmsg4`/
//! `getpeername4` hooks (Cilium's socket-LB design): a connection to a service VIP goes
//! straight to a backend picked by weight, and the application only ever sees the VIP.
//!
//! The kernel side is `bpf/sock.bpf.c` (compiled object committed next to it); this crate loads
//! it with aya, pins maps and links under a directory so they outlive the daemon, and writes
//! services in an order that never exposes a half-updated one.

pub mod maps;
pub mod metrics;
pub mod sync;

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

use aya::maps::HashMap as BpfHashMap;
use aya::programs::links::{CgroupAttachMode, FdLink, PinnedLink};
use aya::programs::CgroupSockAddr;
use aya::{Ebpf, EbpfLoader};
use pier_controlplane::weights::SlotTable;

use maps::{Backend, SlotKey, Svc, SvcKey};

/// The compiled kernel programs.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/sock.bpf.o");

/// Program names and the hooks they attach to.
pub const PROGRAMS: [&str; 4] = [
    "pier_connect4",
    "pier_sendmsg4",
    "pier_recvmsg4",
    "pier_getpeername4",
];

/// What can go wrong loading, attaching or updating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be loaded (verifier, permissions, missing BPF support).
    #[error("loading BPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        source: aya::maps::MapError,
    },
    /// Pinning or unpinning failed.
    #[error("pinning under {path}: {message}")]
    Pin {
        /// Path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Opening the cgroup failed.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The object lacks a program or map this crate expects.
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
}

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Map { name, source }
}

/// Where BPF filesystems are mounted by convention.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether a BPF filesystem is mounted at `path` (from /proc/self/mounts).
pub fn bpffs_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            let (_, at, fstype) = (f.next(), f.next(), f.next());
            fstype == Some("bpf") && at.is_some_and(|at| Path::new(at) == path)
        })
}

/// Mounts a BPF filesystem at `path` unless one is there (as Cilium does on a bare node);
/// returns whether it mounted one.
pub fn ensure_bpffs(path: &Path) -> Result<bool> {
    if bpffs_mounted(path) {
        return Ok(false);
    }
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Error::Pin {
        path: path.to_path_buf(),
        message: format!("mounting bpffs: {e}"),
    })?;
    Ok(true)
}

/// The node's IPv4 addresses other than loopback (where NodePorts answer).
pub fn node_ipv4s() -> Vec<std::net::Ipv4Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<std::net::Ipv4Addr> = addrs
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .filter(|ip| !ip.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A service port as the hooks match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceAddr {
    /// VIP and port.
    pub addr: SocketAddrV4,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
}

struct Installed {
    id: u32,
    slots: u32,
    backends: Vec<SocketAddrV4>,
}

/// The loaded programs and their maps.
pub struct SocketLb {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    services: HashMap<ServiceAddr, Installed>,
    backend_ids: HashMap<SocketAddrV4, (u32, usize)>,
    next_backend: u32,
    next_service: u32,
}

impl SocketLb {
    /// Loads the programs; maps are pinned in (and reused from) `pin_dir`.
    pub fn load(pin_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(pin_dir).map_err(|e| Error::Pin {
            path: pin_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(OBJECT)?;
        for name in PROGRAMS {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(Error::Missing(name))?
                .try_into()
                .map_err(|source| Error::Program { name, source })?;
            prog.load()
                .map_err(|source| Error::Program { name, source })?;
        }
        let mut lb = Self {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            services: HashMap::new(),
            backend_ids: HashMap::new(),
            next_backend: 1,
            next_service: 1,
        };
        lb.adopt()?;
        Ok(lb)
    }

    /// Continues numbering above what pinned maps from an earlier run hold, so their entries
    /// keep translating until [`SocketLb::sweep`] replaces them.
    fn adopt(&mut self) -> Result<()> {
        let services: BpfHashMap<_, SvcKey, Svc> = BpfHashMap::try_from(
            self.ebpf
                .map("pier_services")
                .ok_or(Error::Missing("pier_services"))?,
        )
        .map_err(map_err("pier_services"))?;
        let max_svc = services
            .iter()
            .filter_map(|r| r.ok().map(|(_, v)| v.id))
            .max()
            .unwrap_or(0);
        let backends: BpfHashMap<_, u32, Backend> = BpfHashMap::try_from(
            self.ebpf
                .map("pier_backends")
                .ok_or(Error::Missing("pier_backends"))?,
        )
        .map_err(map_err("pier_backends"))?;
        let max_backend = backends.keys().filter_map(|r| r.ok()).max().unwrap_or(0);
        self.next_service = max_svc.wrapping_add(1).max(1);
        self.next_backend = max_backend.wrapping_add(1).max(1);
        Ok(())
    }

    /// Removes map entries this process did not write: services, slots and backends left by
    /// an earlier run that the current snapshot no longer has. Call after the first full sync.
    pub fn sweep(&mut self) -> Result<()> {
        let keep_services: std::collections::HashSet<SvcKey> = self
            .services
            .keys()
            .map(|s| SvcKey::new(*s.addr.ip(), s.addr.port(), s.proto))
            .collect();
        let keep_ids: std::collections::HashSet<u32> =
            self.services.values().map(|i| i.id).collect();
        let keep_backends: std::collections::HashSet<u32> =
            self.backend_ids.values().map(|(id, _)| *id).collect();
        {
            let mut services: BpfHashMap<_, SvcKey, Svc> = BpfHashMap::try_from(
                self.ebpf
                    .map_mut("pier_services")
                    .ok_or(Error::Missing("pier_services"))?,
            )
            .map_err(map_err("pier_services"))?;
            let stale: Vec<SvcKey> = services
                .keys()
                .filter_map(|r| r.ok())
                .filter(|k| !keep_services.contains(k))
                .collect();
            for k in stale {
                let _ = services.remove(&k);
            }
        }
        {
            let mut slots: BpfHashMap<_, SlotKey, u32> = BpfHashMap::try_from(
                self.ebpf
                    .map_mut("pier_slots")
                    .ok_or(Error::Missing("pier_slots"))?,
            )
            .map_err(map_err("pier_slots"))?;
            let stale: Vec<SlotKey> = slots
                .keys()
                .filter_map(|r| r.ok())
                .filter(|k| !keep_ids.contains(&k.svc_id))
                .collect();
            for k in stale {
                let _ = slots.remove(&k);
            }
        }
        let mut backends: BpfHashMap<_, u32, Backend> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("pier_backends")
                .ok_or(Error::Missing("pier_backends"))?,
        )
        .map_err(map_err("pier_backends"))?;
        let stale: Vec<u32> = backends
            .keys()
            .filter_map(|r| r.ok())
            .filter(|k| !keep_backends.contains(k))
            .collect();
        for k in stale {
            let _ = backends.remove(&k);
        }
        Ok(())
    }

    fn link_path(&self, name: &str) -> PathBuf {
        self.pin_dir.join(format!("link_{name}"))
    }

    /// Attaches every hook to the cgroup v2 directory `cgroup`, pinning the links; hooks whose
    /// pinned link exists already (a restart) are left as they are.
    pub fn attach(&mut self, cgroup: &Path) -> Result<()> {
        let dir = std::fs::File::open(cgroup).map_err(|source| Error::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        for name in PROGRAMS {
            let path = self.link_path(name);
            if path.exists() {
                continue;
            }
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or(Error::Missing(name))?
                .try_into()
                .map_err(|source| Error::Program { name, source })?;
            let id = prog
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(|source| Error::Program { name, source })?;
            let link = prog
                .take_link(id)
                .map_err(|source| Error::Program { name, source })?;
            let fd_link = FdLink::try_from(link).map_err(|e| Error::Pin {
                path: path.clone(),
                message: e.to_string(),
            })?;
            fd_link.pin(&path).map_err(|e| Error::Pin {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Detaches the hooks and removes every pinned link and map under `pin_dir`.
    pub fn detach(pin_dir: &Path) -> Result<()> {
        if !pin_dir.exists() {
            return Ok(());
        }
        let pin_err = |e: &dyn std::fmt::Display| Error::Pin {
            path: pin_dir.to_path_buf(),
            message: e.to_string(),
        };
        for name in PROGRAMS {
            let path = pin_dir.join(format!("link_{name}"));
            if path.exists() {
                let link = PinnedLink::from_pin(&path).map_err(|e| pin_err(&e))?;
                // Unpinning hands back the link; dropping it detaches the program.
                drop(link.unpin().map_err(|e| pin_err(&e))?);
            }
        }
        // Every map the object pins is named pier_*.
        let entries = std::fs::read_dir(pin_dir).map_err(|e| pin_err(&e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with("pier_") {
                std::fs::remove_file(entry.path()).map_err(|e| pin_err(&e))?;
            }
        }
        let _ = std::fs::remove_dir(pin_dir);
        Ok(())
    }

    fn backend_id(&mut self, addr: SocketAddrV4) -> Result<u32> {
        if let Some((id, refs)) = self.backend_ids.get_mut(&addr) {
            *refs += 1;
            return Ok(*id);
        }
        let id = self.next_backend;
        self.next_backend += 1;
        let mut backends: BpfHashMap<_, u32, Backend> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("pier_backends")
                .ok_or(Error::Missing("pier_backends"))?,
        )
        .map_err(map_err("pier_backends"))?;
        backends
            .insert(id, Backend::from(addr), 0)
            .map_err(map_err("pier_backends"))?;
        self.backend_ids.insert(addr, (id, 1));
        Ok(id)
    }

    fn release_backend(&mut self, addr: SocketAddrV4) -> Result<()> {
        let Some((id, refs)) = self.backend_ids.get_mut(&addr) else {
            return Ok(());
        };
        *refs -= 1;
        if *refs > 0 {
            return Ok(());
        }
        let id = *id;
        self.backend_ids.remove(&addr);
        let mut backends: BpfHashMap<_, u32, Backend> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("pier_backends")
                .ok_or(Error::Missing("pier_backends"))?,
        )
        .map_err(map_err("pier_backends"))?;
        let _ = backends.remove(&id);
        Ok(())
    }

    /// Points `service` at `backends` split by weight (no backend, or all weights zero:
    /// connections are refused), with ClientIP affinity for `affinity` seconds (0: none).
    /// Backends and slots are written first, the service entry is swapped last, and the old
    /// slots are freed after, so no lookup sees a partial service.
    pub fn set_service(
        &mut self,
        service: ServiceAddr,
        backends: &[(SocketAddrV4, u32)],
        affinity: u32,
    ) -> Result<()> {
        let table = SlotTable::new(&backends.iter().map(|(_, w)| *w).collect::<Vec<_>>());
        let mut ids = Vec::with_capacity(backends.len());
        for (addr, _) in backends {
            ids.push(self.backend_id(*addr)?);
        }
        let id = self.next_service;
        self.next_service = self.next_service.wrapping_add(1).max(1);
        {
            let mut slots: BpfHashMap<_, SlotKey, u32> = BpfHashMap::try_from(
                self.ebpf
                    .map_mut("pier_slots")
                    .ok_or(Error::Missing("pier_slots"))?,
            )
            .map_err(map_err("pier_slots"))?;
            for (slot, group) in table.slots().enumerate() {
                let key = SlotKey {
                    svc_id: id,
                    slot: u32::try_from(slot).unwrap_or(u32::MAX),
                };
                slots
                    .insert(key, ids[group], 0)
                    .map_err(map_err("pier_slots"))?;
            }
        }
        let key = SvcKey::new(*service.addr.ip(), service.addr.port(), service.proto);
        let value = Svc {
            id,
            slots: u32::try_from(table.len()).unwrap_or(0),
            affinity,
            pad: 0,
        };
        {
            let mut services: BpfHashMap<_, SvcKey, Svc> = BpfHashMap::try_from(
                self.ebpf
                    .map_mut("pier_services")
                    .ok_or(Error::Missing("pier_services"))?,
            )
            .map_err(map_err("pier_services"))?;
            services
                .insert(key, value, 0)
                .map_err(map_err("pier_services"))?;
        }
        let old = self.services.insert(
            service,
            Installed {
                id,
                slots: value.slots,
                backends: backends.iter().map(|(a, _)| *a).collect(),
            },
        );
        if let Some(old) = old {
            self.free(old)?;
        }
        Ok(())
    }

    /// Sets the node addresses NodePorts answer on (besides 127.0.0.0/8).
    pub fn set_node_ips(&mut self, ips: &[std::net::Ipv4Addr]) -> Result<()> {
        let mut map: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("pier_node_ips")
                .ok_or(Error::Missing("pier_node_ips"))?,
        )
        .map_err(map_err("pier_node_ips"))?;
        let wanted: Vec<u32> = ips
            .iter()
            .map(|ip| u32::from_ne_bytes(ip.octets()))
            .collect();
        let stale: Vec<u32> = map
            .keys()
            .filter_map(|r| r.ok())
            .filter(|k| !wanted.contains(k))
            .collect();
        for k in stale {
            let _ = map.remove(&k);
        }
        for k in wanted {
            map.insert(k, 1, 0).map_err(map_err("pier_node_ips"))?;
        }
        Ok(())
    }

    /// Removes a service: connections to its VIP are no longer translated.
    pub fn remove_service(&mut self, service: ServiceAddr) -> Result<()> {
        let key = SvcKey::new(*service.addr.ip(), service.addr.port(), service.proto);
        {
            let mut services: BpfHashMap<_, SvcKey, Svc> = BpfHashMap::try_from(
                self.ebpf
                    .map_mut("pier_services")
                    .ok_or(Error::Missing("pier_services"))?,
            )
            .map_err(map_err("pier_services"))?;
            let _ = services.remove(&key);
        }
        if let Some(old) = self.services.remove(&service) {
            self.free(old)?;
        }
        Ok(())
    }

    fn free(&mut self, old: Installed) -> Result<()> {
        {
            let mut slots: BpfHashMap<_, SlotKey, u32> = BpfHashMap::try_from(
                self.ebpf
                    .map_mut("pier_slots")
                    .ok_or(Error::Missing("pier_slots"))?,
            )
            .map_err(map_err("pier_slots"))?;
            for slot in 0..old.slots {
                let _ = slots.remove(&SlotKey {
                    svc_id: old.id,
                    slot,
                });
            }
        }
        for addr in old.backends {
            self.release_backend(addr)?;
        }
        Ok(())
    }
}
