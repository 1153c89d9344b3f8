//! Containers: the engine and what it knows of each container. One file per operation:
//! `create.rs` (rootfs, `/etc` files, network, OCI spec), `start.rs` (through the shim
//! launcher, and the exit watch), `stop.rs` (stop, signal, remove, teardown), `state.rs`
//! (`state.json` and re-adoption of running shims), `rootfs.rs` (the overlay mount),
//! `publish.rs` (port forwarders), `connect.rs` (a connection to a container's loopback),
//! `usage.rs` (resource use for autoscaling); `cgroup.rs` says
//! where a container's cgroups are.

mod cgroup;
mod config;
mod connect;
mod create;
pub mod exec;
pub mod launcher;
mod publish;
mod record;
mod rootfs;
pub(crate) use rootfs::is_mounted;
pub mod seccomp;
pub mod shim;
pub mod spec;
mod start;
mod state;
mod stop;
mod usage;
pub mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{broadcast, watch};

use crate::error::{Error, IoContext, Result};
use crate::image::ImageStore;
use crate::network::Network;
pub use config::{ContainerConfig, EngineConfig, RestartPolicy, Volume};
pub use connect::connect_loopback;
pub use publish::Publish;
pub use record::{ContainerRecord, ExitEvent, State};
pub use shim::ExitStatus;
pub use stop::delete_state;

/// The container engine.
pub struct Engine {
    config: EngineConfig,
    images: Arc<ImageStore>,
    network: Network,
    records: Mutex<BTreeMap<String, ContainerRecord>>,
    running: Mutex<HashMap<String, watch::Receiver<Option<ExitStatus>>>>,
    forwarders: Mutex<HashMap<String, Vec<tokio::task::JoinHandle<()>>>>,
    exits: broadcast::Sender<ExitEvent>,
    launcher: launcher::Launcher,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22).
fn process_start(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Engine {
    /// Opens the engine's state; containers whose shims still run are adopted, the others are
    /// marked exited.
    pub fn open(config: EngineConfig, network: Network) -> Result<Arc<Self>> {
        for d in ["containers", "libcontainer", "images"] {
            fs::create_dir_all(config.root.join(d)).at(config.root.join(d))?;
        }
        let images = Arc::new(ImageStore::open(&config.root.join("images"))?);
        let (exits, _) = broadcast::channel(1024);
        let launcher = launcher::Launcher::new(&config.shim_exe);
        let engine = Arc::new(Self {
            config,
            images,
            network,
            records: Mutex::new(BTreeMap::new()),
            running: Mutex::new(HashMap::new()),
            forwarders: Mutex::new(HashMap::new()),
            exits,
            launcher,
        });
        engine.load()?;
        Ok(engine)
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// The pod network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// A receiver that turns `Some` when the running container `id` exits; `None` if not running.
    pub fn exited(&self, id: &str) -> Option<watch::Receiver<Option<ExitStatus>>> {
        lock(&self.running).get(id).cloned()
    }

    /// The engine's state directory.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// libcontainer's state root (for `exec`).
    pub fn state_root(&self) -> PathBuf {
        self.config.root.join("libcontainer")
    }

    /// The program shims and exec helpers run as.
    pub fn shim_exe(&self) -> &Path {
        &self.config.shim_exe
    }

    /// Exit notifications.
    pub fn subscribe(&self) -> broadcast::Receiver<ExitEvent> {
        self.exits.subscribe()
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers").join(id)
    }

    /// Every container.
    pub fn list(&self) -> Vec<ContainerRecord> {
        lock(&self.records).values().cloned().collect()
    }

    /// A container by ID, ID prefix or name.
    pub fn get(&self, key: &str) -> Result<ContainerRecord> {
        let records = lock(&self.records);
        if let Some(r) = records.get(key) {
            return Ok(r.clone());
        }
        if let Some(r) = records.values().find(|r| r.config.name == key) {
            return Ok(r.clone());
        }
        let matches: Vec<&ContainerRecord> = records
            .values()
            .filter(|r| key.len() >= 4 && r.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!("container {key:?}"))),
            _ => Err(Error::Invalid(format!(
                "container ID prefix {key:?} is ambiguous"
            ))),
        }
    }

    /// Addresses held by containers.
    pub fn used_ips(&self) -> BTreeSet<Ipv4Addr> {
        lock(&self.records).values().filter_map(|r| r.ip).collect()
    }

    /// Whether any container was created from image `id`.
    pub fn image_in_use(&self, image_id: &str) -> bool {
        lock(&self.records).values().any(|r| r.image_id == image_id)
    }

    /// Path of a container's log file.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("container.log")
    }
}
