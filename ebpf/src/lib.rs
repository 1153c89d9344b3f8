//! pier-ebpf: socket-level load balancing on the cgroup `connect`/`sendmsg`/`recvmsg`/
//! `getpeername` hooks of both families (Cilium's socket-LB design): a connection to a service
//! VIP goes straight to a backend picked by weight, and the application only ever sees the VIP.
//!
//! The kernel side is `bpf/sock.bpf.c` (compiled object committed next to it); this crate loads
//! it with aya, pins maps and links under a directory so they outlive the daemon, and writes
//! services in an order that never exposes a half-updated one.

pub mod maps;
pub mod metrics;
mod node_ips;
pub mod pins;
mod services;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::links::{CgroupAttachMode, FdLink, PinnedLink};
use aya::programs::Program;
use aya::Pod;
use aya::{Ebpf, EbpfLoader};

use maps::{Backend, SlotKey, Svc, SvcKey};
pub use node_ips::{node_ips, set_node_ips};
pub use pins::{
    bpffs_mounted, ensure_bpffs, ensure_pin_fs, pinned_owner, stale_pins, Owner, BPFFS,
    MAP_LAYOUTS, OWNER_LEN,
};
use pins::{foreign_pins, link_path, remove_pinned_link, staged_link_path};
pub use services::svc_key;

/// The compiled kernel programs.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/sock.bpf.o");

/// Program names, in the order they are attached: the release hook first, so no socket holds
/// a connected-socket slot that its release would not free.
pub const PROGRAMS: [&str; 10] = [
    "pier_sock_release",
    "pier_connect4",
    "pier_sendmsg4",
    "pier_recvmsg4",
    "pier_getpeername4",
    "pier_connect6",
    "pier_sendmsg6",
    "pier_recvmsg6",
    "pier_getpeername6",
    STATE_PROGRAM,
];

/// The program counting how translated connections end, and the tracepoint it attaches to.
const STATE_PROGRAM: &str = "pier_sock_state";
const STATE_TRACEPOINT: &str = "inet_sock_set_state";

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
    /// The kernel's type information (/sys/kernel/btf/vmlinux), which the connection-state
    /// tracepoint needs, could not be read.
    #[error("reading the kernel's BTF: {0}")]
    Btf(String),
}

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// A map entry removal: an entry already gone is fine; any other failure is the map's error.
fn removed(name: &'static str, result: std::result::Result<(), aya::maps::MapError>) -> Result<()> {
    match result {
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        r => r.map_err(map_err(name)),
    }
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Map { name, source }
}

/// A pinning error at `path`.
pub(crate) fn pin_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Pin {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The cgroup2 mount: the unified hierarchy of a hybrid host, or /sys/fs/cgroup itself.
pub fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && !p.join("cpu").exists())
}

/// A service port as the hooks match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceAddr {
    /// VIP and port (IPv4 or IPv6; NodePorts use the family's unspecified address).
    pub addr: SocketAddr,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
}

struct Installed {
    id: u32,
    slots: u32,
    backends: Vec<SocketAddr>,
}

/// What the socket-LB has written, kept in memory for metrics, so a scrape need not walk maps.
#[derive(Default)]
pub struct Inventory {
    /// Service name of each VIP port (written by the snapshot consumer).
    pub names: RwLock<HashMap<SvcKey, String>>,
    /// Backend address of each backend id.
    pub backends: RwLock<HashMap<u32, SocketAddr>>,
    /// Service ports installed.
    pub services: AtomicUsize,
    /// Selection slots installed.
    pub slots: AtomicUsize,
}

/// One of the object's hash maps, typed.
fn hash_map<'a, K: Pod, V: Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<BpfHashMap<&'a mut MapData, K, V>> {
    BpfHashMap::try_from(ebpf.map_mut(name).ok_or(Error::Missing(name))?).map_err(map_err(name))
}

/// Removes every key of a map that `keep` rejects.
fn retain_keys<K: Pod, V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keep: impl Fn(&K) -> bool,
) -> Result<()> {
    let mut map = hash_map::<K, V>(ebpf, name)?;
    let stale: Vec<K> = map
        .keys()
        .filter_map(|r| r.ok())
        .filter(|k| !keep(k))
        .collect();
    for k in stale {
        removed(name, map.remove(&k))?;
    }
    Ok(())
}

/// Attaches the cgroup hook `prog` to `cgroup` and hands back its link, ready to pin at `pin`.
fn attach_hook(
    name: &'static str,
    prog: &mut Program,
    cgroup: &std::fs::File,
    pin: &Path,
) -> Result<FdLink> {
    let program_err = |source| Error::Program { name, source };
    match prog {
        Program::CgroupSockAddr(p) => {
            let id = p
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(program_err)?;
            FdLink::try_from(p.take_link(id).map_err(program_err)?).map_err(|e| pin_err(pin, e))
        }
        Program::CgroupSock(p) => {
            let id = p
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(program_err)?;
            FdLink::try_from(p.take_link(id).map_err(program_err)?).map_err(|e| pin_err(pin, e))
        }
        // The tracepoint is the machine's, not the cgroup's: it counts only sockets the
        // cgroup's connect hooks translated.
        Program::BtfTracePoint(p) => {
            let id = p.attach().map_err(program_err)?;
            Ok(FdLink::from(p.take_link(id).map_err(program_err)?))
        }
        _ => Err(Error::Missing(name)),
    }
}

/// Loads the connection-state tracepoint, which needs the kernel's BTF; without it the
/// socket-LB still balances, but counts no connect failures or resets (logged once).
fn load_state_tracepoint(p: &mut aya::programs::BtfTracePoint) -> bool {
    let loaded = aya::Btf::from_sys_fs()
        .map_err(|e| Error::Btf(e.to_string()))
        .and_then(|btf| {
            p.load(STATE_TRACEPOINT, &btf)
                .map_err(|source| Error::Program {
                    name: STATE_PROGRAM,
                    source,
                })
        });
    match loaded {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "the socket-LB counts no connect failures or resets per backend (pier's \
                 analysis sees its connections only)"
            );
            false
        }
    }
}

/// The loaded programs and their maps.
pub struct SocketLb {
    /// Whether the connection-state tracepoint loaded (it needs the kernel's BTF).
    counts_fails: bool,
    ebpf: Ebpf,
    pin_dir: PathBuf,
    services: HashMap<ServiceAddr, Installed>,
    backend_ids: HashMap<SocketAddr, (u32, usize)>,
    next_backend: u32,
    next_service: u32,
    inventory: Arc<Inventory>,
}

impl SocketLb {
    /// Loads the programs for the store `owner`; maps are pinned in (and reused from)
    /// `pin_dir`. Pins another store wrote, or an older version left with another map
    /// layout, are detached and removed first, so a daemon never adopts services it does not
    /// own.
    pub fn load(pin_dir: &Path, owner: &Owner) -> Result<Self> {
        if let Some(why) = foreign_pins(pin_dir, owner) {
            tracing::warn!(
                pins = %pin_dir.display(),
                "replacing the pinned socket-LB hooks and maps: {why} (VIP connects are not \
                 translated until they are attached again)"
            );
            Self::detach(pin_dir)?;
        }
        std::fs::create_dir_all(pin_dir).map_err(|e| pin_err(pin_dir, e))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(OBJECT)?;
        let mut counts_fails = true;
        for name in PROGRAMS {
            let loaded = match ebpf.program_mut(name).ok_or(Error::Missing(name))? {
                Program::CgroupSockAddr(p) => p.load(),
                Program::CgroupSock(p) => p.load(),
                Program::BtfTracePoint(p) => {
                    counts_fails = load_state_tracepoint(p);
                    Ok(())
                }
                _ => return Err(Error::Missing(name)),
            };
            loaded.map_err(|source| Error::Program { name, source })?;
        }
        let mut lb = Self {
            counts_fails,
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            services: HashMap::new(),
            backend_ids: HashMap::new(),
            next_backend: 1,
            next_service: 1,
            inventory: Arc::default(),
        };
        lb.set_owner(owner)?;
        lb.adopt()?;
        Ok(lb)
    }

    /// Records `owner` in the pinned `pier_owner` map.
    fn set_owner(&mut self, owner: &Owner) -> Result<()> {
        let name = "pier_owner";
        let map = self.ebpf.map_mut(name).ok_or(Error::Missing(name))?;
        aya::maps::Array::<_, Owner>::try_from(map)
            .and_then(|mut a| a.set(0, *owner, 0))
            .map_err(map_err(name))
    }

    /// What has been written, for metrics.
    pub fn inventory(&self) -> Arc<Inventory> {
        Arc::clone(&self.inventory)
    }

    /// Continues numbering above what pinned maps from an earlier run hold, so their entries
    /// keep translating until [`SocketLb::sweep`] replaces them.
    fn adopt(&mut self) -> Result<()> {
        let max_svc = hash_map::<SvcKey, Svc>(&mut self.ebpf, "pier_services")?
            .iter()
            .filter_map(|r| r.ok().map(|(_, v)| v.id))
            .max()
            .unwrap_or(0);
        let max_backend = hash_map::<u32, Backend>(&mut self.ebpf, "pier_backends")?
            .keys()
            .filter_map(|r| r.ok())
            .max()
            .unwrap_or(0);
        self.next_service = max_svc.wrapping_add(1).max(1);
        self.next_backend = max_backend.wrapping_add(1).max(1);
        Ok(())
    }

    /// Removes map entries this process did not write: services, slots and backends left by
    /// an earlier run that the current snapshot no longer has. Call after the first full sync.
    pub fn sweep(&mut self) -> Result<()> {
        let services: HashSet<SvcKey> = self.services.keys().map(svc_key).collect();
        let ids: HashSet<u32> = self.services.values().map(|i| i.id).collect();
        let backends: HashSet<u32> = self.backend_ids.values().map(|(id, _)| *id).collect();
        retain_keys::<SvcKey, Svc>(&mut self.ebpf, "pier_services", |k| services.contains(k))?;
        retain_keys::<SlotKey, u32>(&mut self.ebpf, "pier_slots", |k| ids.contains(&k.svc_id))?;
        retain_keys::<u32, Backend>(&mut self.ebpf, "pier_backends", |k| backends.contains(k))
    }

    /// Attaches every hook to the cgroup v2 directory `cgroup`, pinning the links. A link an
    /// earlier run pinned is replaced: the new program is attached before the old one is
    /// detached, so connects are translated throughout, and an upgrade's programs take over.
    pub fn attach(&mut self, cgroup: &Path) -> Result<()> {
        let dir = std::fs::File::open(cgroup).map_err(|source| Error::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        for name in PROGRAMS {
            if name == STATE_PROGRAM && !self.counts_fails {
                continue;
            }
            let path = link_path(&self.pin_dir, name);
            let staged = staged_link_path(&path);
            // Left by a run that died between pinning and renaming.
            remove_pinned_link(&staged)?;
            let prog = self.ebpf.program_mut(name).ok_or(Error::Missing(name))?;
            let fd_link = attach_hook(name, prog, &dir, &path)?;
            fd_link.pin(&staged).map_err(|e| pin_err(&staged, e))?;
            // Renamed over, the old link is held only by this fd: dropping it detaches it.
            let old = path
                .exists()
                .then(|| PinnedLink::from_pin(&path).map_err(|e| pin_err(&path, e)))
                .transpose()?;
            std::fs::rename(&staged, &path).map_err(|e| pin_err(&path, e))?;
            drop(old);
        }
        Ok(())
    }

    /// Detaches the hooks and removes every pinned link and map under `pin_dir`.
    pub fn detach(pin_dir: &Path) -> Result<()> {
        if !pin_dir.exists() {
            return Ok(());
        }
        // In reverse order of attaching: the release hook goes last.
        for name in PROGRAMS.iter().rev() {
            let path = link_path(pin_dir, name);
            remove_pinned_link(&staged_link_path(&path))?;
            remove_pinned_link(&path)?;
        }
        // Every map the object pins is named pier_*.
        let entries = std::fs::read_dir(pin_dir).map_err(|e| pin_err(pin_dir, e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with("pier_") {
                std::fs::remove_file(entry.path()).map_err(|e| pin_err(pin_dir, e))?;
            }
        }
        match std::fs::remove_dir(pin_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(pins = %pin_dir.display(), error = %e, "pin directory left in place");
            }
            _ => {}
        }
        Ok(())
    }
}
