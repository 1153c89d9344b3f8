//! Pins and the BPF filesystem: which maps an object pins and their layouts, whose pins they
//! are (the store recorded in `pier_owner`), where links are pinned, and mounting bpffs.

use std::path::{Path, PathBuf};

use aya::maps::MapData;
use aya::programs::links::PinnedLink;

use crate::maps::{self, Backend, Ip, SlotKey, Svc, SvcKey};
use crate::{pin_err, Result};

/// Key and value sizes of every map the object pins. A pinned map from an older pier with
/// another layout cannot be reused: [`SocketLb::load`] replaces it (and the programs using it).
pub const MAP_LAYOUTS: [(&str, usize, usize); 12] = [
    (
        "pier_services",
        std::mem::size_of::<SvcKey>(),
        std::mem::size_of::<Svc>(),
    ),
    ("pier_slots", std::mem::size_of::<SlotKey>(), 4),
    ("pier_backends", 4, std::mem::size_of::<Backend>()),
    ("pier_revnat", 32, 20),
    ("pier_sock_nat", 4, 36),
    ("pier_conn_nat", 4, 48),
    ("pier_affinity", 32, 16),
    ("pier_node_ips", std::mem::size_of::<Ip>(), 1),
    (
        "pier_svc_stats",
        std::mem::size_of::<SvcKey>(),
        std::mem::size_of::<maps::SvcStats>(),
    ),
    ("pier_backend_stats", 4, 8),
    (
        "pier_backend_fails",
        std::mem::size_of::<Backend>(),
        std::mem::size_of::<maps::BackendFails>(),
    ),
    ("pier_owner", 4, OWNER_LEN),
];

/// Length of the owner identity kept in the pinned `pier_owner` map.
pub const OWNER_LEN: usize = 16;

/// The identity of the store whose snapshots write the socket-LB (its UUID's bytes).
pub type Owner = [u8; OWNER_LEN];

/// The owner recorded in the maps pinned under `pin_dir`: `None` when nothing is pinned
/// there, `Some(None)` when maps are pinned with no owner an older pier did not record.
pub fn pinned_owner(pin_dir: &Path) -> Option<Option<Owner>> {
    let pinned = std::fs::read_dir(pin_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("pier_") || name.starts_with("link_")
        });
    if !pinned {
        return None;
    }
    let read = || -> Option<Owner> {
        let data = MapData::from_pin(pin_dir.join("pier_owner")).ok()?;
        let map = aya::maps::Array::<_, Owner>::try_from(aya::maps::Map::Array(data)).ok()?;
        map.get(&0, 0).ok().filter(|id| *id != [0; OWNER_LEN])
    };
    Some(read())
}

/// Why the pins under `pin_dir` cannot be adopted by `owner`, if they cannot.
pub(crate) fn foreign_pins(pin_dir: &Path, owner: &Owner) -> Option<String> {
    let stale = stale_pins(pin_dir);
    if !stale.is_empty() {
        return Some(format!(
            "pinned maps {stale:?} have another layout (an older pier)"
        ));
    }
    match pinned_owner(pin_dir)? {
        Some(id) if id == *owner => None,
        Some(id) => Some(format!(
            "they were written for another store ({}), not this daemon's ({})",
            uuid::Uuid::from_bytes(id),
            uuid::Uuid::from_bytes(*owner)
        )),
        None => Some("they record no owning store".to_string()),
    }
}

/// Names of pinned maps under `pin_dir` whose layout is not this version's.
pub fn stale_pins(pin_dir: &Path) -> Vec<&'static str> {
    MAP_LAYOUTS
        .iter()
        .filter(|(name, key, value)| {
            let path = pin_dir.join(name);
            path.exists()
                && aya::maps::MapInfo::from_pin(&path).map_or(true, |info| {
                    (info.key_size() as usize, info.value_size() as usize) != (*key, *value)
                })
        })
        .map(|(name, _, _)| *name)
        .collect()
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
    .map_err(|e| pin_err(path, format!("mounting bpffs: {e}")))?;
    Ok(true)
}

/// `statfs` magic of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` is on a BPF filesystem.
fn on_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` can hold pins: its parent must be on a BPF filesystem, which is
/// mounted at the conventional [`BPFFS`] when the pin directory is there and nothing is
/// mounted yet (as Cilium does on a bare node). Returns whether it mounted one.
pub fn ensure_pin_fs(pin_dir: &Path) -> Result<bool> {
    let parent = pin_dir.parent().unwrap_or(pin_dir);
    if on_bpffs(parent) {
        return Ok(false);
    }
    if parent == Path::new(BPFFS) {
        return ensure_bpffs(parent);
    }
    Err(pin_err(
        pin_dir,
        format!(
            "{} is not on a BPF filesystem (mount one there: mount -t bpf bpf DIR)",
            parent.display()
        ),
    ))
}

/// Where the link of program `name` is pinned under `pin_dir`.
pub(crate) fn link_path(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("link_{name}"))
}

/// Where a new link is pinned before it is renamed over `path` (bpffs names take no dots).
pub(crate) fn staged_link_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push("_staged");
    path.with_file_name(name)
}

/// Unpins the link pinned at `path`, if any, which detaches its program.
pub(crate) fn remove_pinned_link(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let link = PinnedLink::from_pin(path).map_err(|e| pin_err(path, e))?;
    // Unpinning hands back the link; dropping it detaches the program.
    drop(link.unpin().map_err(|e| pin_err(path, e))?);
    Ok(())
}
