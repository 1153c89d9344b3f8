//! Containers: rootfs, OCI spec, shim process, lifecycle and persisted state.

pub mod exec;
pub mod launcher;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod users;

mod publish;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::{broadcast, watch};

use crate::error::{Error, IoContext, Result, SysContext};
use crate::image::{write_atomic, ImageRecord, ImageStore};
use crate::network::Network;
pub use publish::Publish;
pub use shim::ExitStatus;

/// A bind mount from the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Host path.
    pub host: String,
    /// Path in the container.
    pub container: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// When a container that exits is started again.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (`--restart no`, the default).
    #[default]
    No,
    /// When it exits with a non-zero code.
    OnFailure,
    /// Whenever it exits.
    Always,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "no" | "Never" => Ok(Self::No),
            "on-failure" | "OnFailure" => Ok(Self::OnFailure),
            "always" | "Always" | "unless-stopped" => Ok(Self::Always),
            other => Err(Error::Invalid(format!(
                "restart policy {other:?}: use no, on-failure or always"
            ))),
        }
    }
}

impl RestartPolicy {
    /// Whether an exit with `code` is followed by a restart.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            Self::No => false,
            Self::OnFailure => code != 0,
            Self::Always => true,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerConfig {
    /// Unique name.
    pub name: String,
    /// Image reference or ID.
    pub image: String,
    /// Replaces the image entrypoint.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Replaces the image `Cmd`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Extra environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `user[:group]`, names (from the image's passwd and group files) or numeric ids.
    #[serde(default)]
    pub user: Option<String>,
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory: Option<u64>,
    /// CPU limit in cores.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Process limit.
    #[serde(default)]
    pub pids: Option<i64>,
    /// Read-only root filesystem.
    #[serde(default)]
    pub read_only: bool,
    /// Bind mounts.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Published ports.
    #[serde(default)]
    pub publish: Vec<Publish>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hostname (default: the first 12 characters of the ID).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    #[serde(default)]
    pub stop_grace_seconds: Option<u64>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Set up, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

/// A container as the engine records it (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// What it runs.
    pub config: ContainerConfig,
    /// Image reference it was created from.
    pub image: String,
    /// Image ID.
    pub image_id: String,
    /// Address on the bridge.
    pub ip: Option<Ipv4Addr>,
    /// State.
    pub state: State,
    /// Init process, while running.
    pub pid: Option<i32>,
    /// Shim process and its start time (to tell it from a reused PID).
    pub shim: Option<(i32, u64)>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last start (RFC 3339).
    pub started_at: Option<String>,
    /// How the last run ended.
    pub exit: Option<ExitStatus>,
    /// Starts after the first.
    pub restart_count: u32,
    /// Set by a user's stop: the restart policy does not apply.
    #[serde(default)]
    pub stopped_by_user: bool,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// State directory (`/var/lib/pier/runtime`).
    pub root: PathBuf,
    /// The program run as `<shim_exe> shim-launcher` and `<shim_exe> exec-helper` (the pier binary).
    pub shim_exe: PathBuf,
    /// `/etc/resolv.conf` content for containers; `None` copies the host's non-loopback servers.
    pub resolv_conf: Option<String>,
}

/// Something the engine observed about a container.
#[derive(Debug, Clone)]
pub struct ExitEvent {
    /// Which container.
    pub id: String,
    /// How it ended.
    pub status: ExitStatus,
}

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

fn is_mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&p)))
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

    fn save(&self, record: &ContainerRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(record).map_err(|e| Error::Runtime(e.to_string()))?;
        write_atomic(&self.dir(&record.id).join("state.json"), &data)
    }

    fn load(self: &Arc<Self>) -> Result<()> {
        let dir = self.config.root.join("containers");
        for entry in fs::read_dir(&dir).at(&dir)?.flatten() {
            let state = entry.path().join("state.json");
            let Ok(data) = fs::read(&state) else { continue };
            let mut record: ContainerRecord = match serde_json::from_slice(&data) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %state.display(), error = %e, "unreadable container state; skipped");
                    continue;
                }
            };
            if record.state == State::Running {
                let alive = record
                    .shim
                    .is_some_and(|(pid, start)| process_start(pid) == Some(start));
                if alive {
                    tracing::info!(id = %&record.id[..12], name = %record.config.name, "re-adopted running container");
                    let (tx, rx) = watch::channel(None);
                    lock(&self.running).insert(record.id.clone(), rx);
                    let shim_pid = record.shim.map(|(p, _)| p).unwrap_or(0);
                    self.spawn_adopted_waiter(record.id.clone(), shim_pid, tx);
                    if let Some(ip) = record.ip {
                        self.start_forwarders(&record.id, ip, &record.config.publish);
                    }
                } else {
                    self.finish(&mut record);
                }
            }
            lock(&self.records).insert(record.id.clone(), record);
        }
        Ok(())
    }

    /// Marks a container whose shim is gone as exited, with the shim's record if it left one.
    fn finish(&self, record: &mut ContainerRecord) {
        let status = self.read_exit(&record.id).unwrap_or_else(|| {
            // The shim died without recording: its init (if any) is orphaned; end it.
            if let Some(pid) = record.pid {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            ExitStatus {
                code: 255,
                signal: None,
                oom_killed: false,
                finished_at: now(),
            }
        });
        record.state = State::Exited;
        record.pid = None;
        record.shim = None;
        record.exit = Some(status);
        let _ = self.save(record);
    }

    fn read_exit(&self, id: &str) -> Option<ExitStatus> {
        let data = fs::read(self.dir(id).join("exit.json")).ok()?;
        serde_json::from_slice(&data).ok()
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

    /// Creates a container (rootfs, spec, network) without starting it. `ip` is its address;
    /// `None` keeps it off the network (loopback only).
    pub fn create(&self, config: ContainerConfig, ip: Option<Ipv4Addr>) -> Result<ContainerRecord> {
        let name_ok = !config.name.is_empty()
            && config.name.len() <= 128
            && config
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(Error::Invalid(format!(
                "container name {:?}: use letters, digits, '-', '_' and '.'",
                config.name
            )));
        }
        let image = self.images.resolve(&config.image)?;
        let id = new_id();
        {
            let mut records = lock(&self.records);
            if records.values().any(|r| r.config.name == config.name) {
                return Err(Error::Exists(format!("container name {:?}", config.name)));
            }
            // Reserves the name while the rest is set up.
            records.insert(
                id.clone(),
                ContainerRecord {
                    id: id.clone(),
                    config: config.clone(),
                    image: image.reference.clone(),
                    image_id: image.id.clone(),
                    ip,
                    state: State::Created,
                    pid: None,
                    shim: None,
                    created_at: now(),
                    started_at: None,
                    exit: None,
                    restart_count: 0,
                    stopped_by_user: false,
                },
            );
        }
        let result = self.prepare(&id, &config, &image, ip);
        let record = lock(&self.records).get(&id).cloned();
        match (result, record) {
            (Ok(()), Some(record)) => {
                self.save(&record)?;
                Ok(record)
            }
            (Err(e), _) => {
                self.teardown(&id);
                lock(&self.records).remove(&id);
                Err(e)
            }
            (Ok(()), None) => Err(Error::Runtime("container vanished while created".into())),
        }
    }

    /// Rootfs, `/etc` files, network and `config.json` of a new container.
    fn prepare(
        &self,
        id: &str,
        config: &ContainerConfig,
        image: &ImageRecord,
        ip: Option<Ipv4Addr>,
    ) -> Result<()> {
        let dir = self.dir(id);
        for d in ["upper", "work", "rootfs", "etc"] {
            fs::create_dir_all(dir.join(d)).at(dir.join(d))?;
        }
        // The layers first (unpacked once per image and kept): user and group names mean what
        // their passwd and group files say. Then the whole spec, validated before the rootfs is
        // mounted or the network made; the netns path is known before the namespace exists.
        let netns = ip.map(|_| Network::netns_path(id));
        let etc = dir.join("etc");
        let layers = self.images.layer_dirs(image)?;
        let mut config = config.clone();
        if let Some(user) = config.user.clone().or(image.run.user.clone()) {
            if !user.is_empty() {
                let (uid, gid) = users::resolve(&user, &layers)?;
                config.user = Some(format!("{uid}:{gid}"));
            }
        }
        let spec = spec::build(
            id,
            &config,
            &image.run,
            &dir.join("rootfs"),
            netns.as_deref(),
            Some(&etc),
        )?;
        self.mount_rootfs(&dir, &layers)?;
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let ip_line = ip
            .map(|ip| format!("{ip}\t{hostname}\n"))
            .unwrap_or_default();
        fs::write(etc.join("hostname"), format!("{hostname}\n")).at(etc.join("hostname"))?;
        fs::write(
            etc.join("hosts"),
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip_line}"),
        )
        .at(etc.join("hosts"))?;
        fs::write(etc.join("resolv.conf"), self.resolv_conf()).at(etc.join("resolv.conf"))?;
        if let Some(ip) = ip {
            self.network.attach(id, ip)?;
        }
        let data = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Runtime(e.to_string()))?;
        write_atomic(&dir.join("config.json"), &data)
    }

    fn resolv_conf(&self) -> String {
        if let Some(r) = &self.config.resolv_conf {
            return r.clone();
        }
        let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        // The host's loopback resolvers are not reachable from a container's namespace.
        host.lines()
            .filter(|l| {
                !l.split_whitespace().nth(1).is_some_and(|a| {
                    l.starts_with("nameserver")
                        && a.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                })
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn mount_rootfs(&self, dir: &Path, layers: &[PathBuf]) -> Result<()> {
        let target = dir.join("rootfs");
        if is_mounted(&target) {
            return Ok(());
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .doing(|| format!("mounting the overlay rootfs at {}", target.display()))
    }

    /// Starts a created or exited container.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<ContainerRecord> {
        let mut record = self.get(id)?;
        if record.state == State::Running {
            return Err(Error::Invalid(format!(
                "container {} is already running",
                record.config.name
            )));
        }
        let id = record.id.clone();
        let dir = self.dir(&id);
        if record.state == State::Exited {
            self.delete_runtime_state(&id);
            let _ = fs::remove_file(dir.join("exit.json"));
            record.restart_count += 1;
        }
        let image = self
            .images
            .resolve(&record.image_id)
            .or_else(|_| self.images.resolve(&record.image))?;
        self.mount_rootfs(&dir, &self.images.layer_dirs(&image)?)?;
        if let Some(ip) = record.ip {
            if !Network::netns_path(&id).exists() {
                self.network.attach(&id, ip)?;
            }
        }
        let args = shim::ShimArgs {
            id: id.clone(),
            bundle: dir.clone(),
            state_root: self.config.root.join("libcontainer"),
            log: dir.join("container.log"),
            exit_file: dir.join("exit.json"),
        };
        let shim_log = fs::File::create(dir.join("shim.log")).at(dir.join("shim.log"))?;
        let report = self.launcher.launch(&args, &shim_log)?;
        let report = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(report))
            .map_err(|e| Error::Runtime(format!("shim report pipe: {e}")))?;
        let mut report = tokio::io::BufReader::new(report);
        let mut line = String::new();
        let _ = report.read_line(&mut line).await;
        let started = match launcher::parse_report(&line) {
            Ok(started) => started,
            Err(e) => {
                // The shim exits right after reporting a failure.
                let _ = report.read_to_end(&mut Vec::new()).await;
                self.delete_runtime_state(&id);
                return Err(e);
            }
        };
        let (pid, shim_pid) = (started.pid, started.shim_pid);
        record.state = State::Running;
        record.pid = Some(pid);
        record.shim = Some((shim_pid, process_start(shim_pid).unwrap_or(0)));
        record.started_at = Some(now());
        record.exit = None;
        record.stopped_by_user = false;
        self.save(&record)?;
        lock(&self.records).insert(id.clone(), record.clone());
        let (tx, rx) = watch::channel(None);
        lock(&self.running).insert(id.clone(), rx);
        let engine = Arc::clone(self);
        let waited = id.clone();
        tokio::spawn(async move {
            // The shim holds the report pipe open until the exit status is recorded.
            let _ = report.read_to_end(&mut Vec::new()).await;
            engine.on_exit(&waited, &tx);
        });
        if let Some(ip) = record.ip {
            self.start_forwarders(&id, ip, &record.config.publish);
        }
        Ok(record)
    }

    fn spawn_adopted_waiter(
        self: &Arc<Self>,
        id: String,
        shim_pid: i32,
        tx: watch::Sender<Option<ExitStatus>>,
    ) {
        let engine = Arc::clone(self);
        let start = process_start(shim_pid);
        tokio::spawn(async move {
            while process_start(shim_pid).is_some() && process_start(shim_pid) == start {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            engine.on_exit(&id, &tx);
        });
    }

    fn on_exit(&self, id: &str, tx: &watch::Sender<Option<ExitStatus>>) {
        if let Some(handles) = lock(&self.forwarders).remove(id) {
            handles.iter().for_each(tokio::task::JoinHandle::abort);
        }
        let mut records = lock(&self.records);
        let Some(record) = records.get_mut(id) else {
            return;
        };
        self.finish(record);
        let status = record.exit.clone();
        drop(records);
        lock(&self.running).remove(id);
        if let Some(status) = status {
            let _ = tx.send(Some(status.clone()));
            let _ = self.exits.send(ExitEvent {
                id: id.to_string(),
                status,
            });
        }
    }

    fn start_forwarders(&self, id: &str, ip: Ipv4Addr, publish: &[Publish]) {
        let handles: Vec<_> = publish.iter().filter_map(|p| p.spawn(ip).ok()).collect();
        if !handles.is_empty() {
            lock(&self.forwarders).insert(id.to_string(), handles);
        }
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace`. Returns how it ended.
    pub async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<Option<ExitStatus>> {
        let record = self.get(id)?;
        let grace = grace.unwrap_or(Duration::from_secs(
            record.config.stop_grace_seconds.unwrap_or(10),
        ));
        if let Some(r) = lock(&self.records).get_mut(&record.id) {
            r.stopped_by_user = true;
            let _ = self.save(r);
        }
        let (Some(pid), Some(mut rx)) = (record.pid, lock(&self.running).get(&record.id).cloned())
        else {
            return Ok(record.exit);
        };
        let pid = Pid::from_raw(pid);
        let _ = kill(pid, Signal::SIGTERM);
        let exited = tokio::time::timeout(grace, rx.wait_for(Option::is_some))
            .await
            .is_ok();
        if !exited {
            let _ = kill(pid, Signal::SIGKILL);
            let _ =
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(Option::is_some)).await;
        }
        let status = rx.borrow().clone();
        Ok(status)
    }

    /// Sends a signal to a running container's init.
    pub fn signal(&self, id: &str, signal: Signal) -> Result<()> {
        let record = self.get(id)?;
        let pid = record.pid.ok_or_else(|| {
            Error::Invalid(format!("container {} is not running", record.config.name))
        })?;
        kill(Pid::from_raw(pid), signal)
            .doing(|| format!("signal {signal} to {}", record.config.name))
    }

    /// Removes a container; a running one only with `force` (it is killed first).
    pub async fn remove(&self, id: &str, force: bool) -> Result<ContainerRecord> {
        let record = self.get(id)?;
        if record.state == State::Running {
            if !force {
                return Err(Error::Invalid(format!(
                    "container {} is running; stop it first or use --force",
                    record.config.name
                )));
            }
            self.stop(&record.id, Some(Duration::ZERO)).await?;
        }
        self.teardown(&record.id);
        lock(&self.records).remove(&record.id);
        Ok(record)
    }

    fn delete_runtime_state(&self, id: &str) {
        delete_state(&self.config.root.join("libcontainer"), id);
    }

    /// Removes everything a container holds: runtime state, network, rootfs mount, files.
    fn teardown(&self, id: &str) {
        if let Some(handles) = lock(&self.forwarders).remove(id) {
            handles.iter().for_each(tokio::task::JoinHandle::abort);
        }
        self.delete_runtime_state(id);
        if let Err(e) = self.network.detach(id) {
            tracing::warn!(id = %&id[..12.min(id.len())], error = %e, "network cleanup");
        }
        let dir = self.dir(id);
        let rootfs = dir.join("rootfs");
        if is_mounted(&rootfs) {
            if let Err(e) = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(path = %rootfs.display(), error = %e, "unmounting rootfs");
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Deletes libcontainer's state and cgroups of container `id` under `state_root` (it must not
/// run any more); missing pieces are fine.
pub fn delete_state(state_root: &Path, id: &str) {
    let root = state_root.join(id);
    if root.exists() {
        match libcontainer::container::Container::load(root.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    tracing::debug!(id, error = %e, "libcontainer delete");
                }
            }
            Err(e) => tracing::debug!(id, error = %e, "libcontainer load"),
        }
        let _ = fs::remove_dir_all(&root);
    }
    // libcontainer removes the cgroups it made; leftovers of a crash go here.
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(entries) = fs::read_dir(base) {
            for e in entries.flatten() {
                let _ = fs::remove_dir(e.path().join("pier").join(id));
            }
        }
        let _ = fs::remove_dir(Path::new(base).join("pier").join(id));
    }
}
