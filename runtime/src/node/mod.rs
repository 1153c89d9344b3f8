//! The node agent: runs pods as containers (the kubelet's job), keeps their status in the store,
//! restarts them by policy, probes them, and runs Deployments.

pub mod api;

pub mod grpc_probe;
pub mod probe;

mod image_pull;
mod inputs;
mod pod;
mod pod_store;
pub mod pod_sync;
mod pod_work;
mod registry_api;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pier_controlplane::store::Store;
use pier_model::{Kind, Object, Pod};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::container::{ContainerConfig, Engine};
use crate::error::{Error, Result};
use crate::metrics::Report;

pub use pier_model::pod::CONTAINER_ANNOTATION;
pub use pier_model::pod::RESTARTS_ANNOTATION;
/// Annotation naming the node agent that runs a pod.
pub const NODE_ANNOTATION: &str = "pier.dev/node";
/// Container label naming its pod (`namespace/name`).
pub const POD_LABEL: &str = "pier.dev/pod";

/// Node agent settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name (`spec.nodeName` of its pods).
    pub name: String,
    /// How long a terminating pod stays in endpoints as not ready before it is stopped, so every
    /// dataplane part stops sending it new work first.
    pub drain_delay: Duration,
    /// First pause before a crashed container is restarted; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest pause between restarts.
    pub max_backoff: Duration,
    /// Run pods bound to no node too (the only node of an embedded store); in a cluster the
    /// scheduler binds every pod and a node runs only its own.
    pub run_unbound: bool,
    /// This node's address, which pods see as `status.hostIP`.
    pub host_ip: Option<IpAddr>,
    /// The registries images are pulled from, for pods and `pier pull` alike.
    pub registries: crate::image::pull::Registries,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "pier-node".into(),
            drain_delay: Duration::from_secs(1),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            run_unbound: true,
            host_ip: None,
            registries: crate::image::pull::Registries::default(),
        }
    }
}

/// `(namespace, name)` of a pod.
pub type PodKey = (String, String);

struct PodHandle {
    terminate: watch::Sender<bool>,
    /// The `Ready` status this node last wrote for the pod.
    written_ready: Option<bool>,
}

/// The node agent.
pub struct Node {
    engine: Arc<Engine>,
    store: Arc<Store>,
    config: NodeConfig,
    pods: Mutex<HashMap<PodKey, PodHandle>>,
    ip_lock: tokio::sync::Mutex<()>,
    /// Events about the pods, reported as the kubelet reports them.
    events: pier_controlplane::events::Recorder,
    /// The ConfigMaps and Secrets pods take values from.
    sources: inputs::Sources,
    /// This machine's cores and memory bytes.
    allocatable: (f64, u64),
    /// Held while a pod's volumes are written or removed: a worker making them and the sync
    /// loop refreshing them must not interleave.
    volume_writes: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a blocking store call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> pier_controlplane::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Runtime(e.to_string()))?
        .map_err(Error::Store)
}

impl Node {
    /// A node agent over `engine` and `store`; call [`Node::start`] to adopt what runs.
    pub fn new(engine: Arc<Engine>, store: Arc<Store>, config: NodeConfig) -> Arc<Self> {
        let events = pier_controlplane::events::Recorder::start(
            Arc::clone(&store),
            "kubelet",
            &config.name,
            pier_controlplane::events::DEFAULT_TTL,
        );
        Arc::new(Self {
            engine,
            store,
            events,
            config,
            pods: Mutex::new(HashMap::new()),
            ip_lock: tokio::sync::Mutex::new(()),
            sources: inputs::Sources::default(),
            volume_writes: Mutex::new(()),
            allocatable: {
                let facts = pier_controlplane::cluster::NodeFacts::of_this_machine();
                (facts.cpus as f64, facts.memory_bytes)
            },
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Re-adopts the containers of pods this node runs (after a daemon restart), removes
    /// containers whose pod is gone, and forgets pods whose container is gone.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        let store = Arc::clone(&self.store);
        let (pods, _) = blocking(move || store.list(Kind::Pod, None, None)).await?;
        let mut by_key: HashMap<PodKey, Pod> = pods
            .into_iter()
            .filter_map(|o| match o {
                Object::Pod(p)
                    if p.metadata.annotations.get(NODE_ANNOTATION) == Some(&self.config.name) =>
                {
                    Some((
                        (p.metadata.namespace().to_string(), p.metadata.name.clone()),
                        p,
                    ))
                }
                _ => None,
            })
            .collect();
        let mut kept = BTreeSet::new();
        for record in self.engine.list() {
            let Some((ns, name)) = record
                .config
                .labels
                .get(POD_LABEL)
                .and_then(|k| k.split_once('/'))
            else {
                continue;
            };
            let key = (ns.to_string(), name.to_string());
            let pod = by_key.remove(&key);
            kept.extend(pod.as_ref().map(inputs::volumes::pod_dir_name));
            match pod {
                Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                    tracing::info!(pod = %format!("{ns}/{name}"), "re-adopting pod");
                    let work =
                        pod_work::PodWork::adopt(pod, record.config.clone(), record.id.clone());
                    self.spawn_worker(key, work);
                }
                Some(pod) => {
                    // It was being terminated when the daemon stopped: finish the job.
                    let work =
                        pod_work::PodWork::adopt(pod, record.config.clone(), record.id.clone());
                    self.spawn_worker(key.clone(), work);
                    self.terminate(&key.0, &key.1);
                }
                None => {
                    tracing::info!(container = %record.config.name, "removing the container of a deleted pod");
                    self.engine
                        .remove(&record.id, true)
                        .await
                        .report("remove-container", &record.id);
                }
            }
        }
        self.remove_volumes_except(&kept);
        for ((ns, name), pod) in by_key {
            tracing::info!(pod = %format!("{ns}/{name}"), "pod lost its container; deleting it");
            self.finish(&pod)
                .await
                .report("delete-pod", &format!("{ns}/{name}"));
        }
        Ok(())
    }

    /// Removes the volume directories of pods this node no longer runs.
    fn remove_volumes_except(&self, kept: &BTreeSet<String>) {
        let dir = inputs::volumes::pods_dir(self.engine.root());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !kept.contains(entry.file_name().to_string_lossy().as_ref()) {
                tracing::info!(dir = %entry.path().display(), "removing the volumes of a pod gone");
                inputs::volumes::remove_dir(&entry.path());
            }
        }
    }

    /// Allocates an address and writes the pod as Pending with it, so the address is held in
    /// the store before any network is made.
    async fn register(&self, pod: &mut Pod) -> Result<Ipv4Addr> {
        let _guard = self.ip_lock.lock().await;
        let store = Arc::clone(&self.store);
        let (pods, _) = blocking(move || store.list(Kind::Pod, None, None)).await?;
        let mut used: BTreeSet<Ipv4Addr> = self.engine.used_ips();
        for o in &pods {
            if let Object::Pod(p) = o {
                if let Some(Ok(IpAddr::V4(ip))) = p.status.pod_ip.as_deref().map(str::parse) {
                    used.insert(ip);
                }
            }
        }
        let ip = self.engine.network().allocate(&used)?;
        pod.status.pod_ip = Some(ip.to_string());
        pod.status.phase = Some("Pending".into());
        pod_work::set_ready(pod, false);
        pod.spec.node_name = Some(self.config.name.clone());
        pod.metadata
            .annotations
            .insert(NODE_ANNOTATION.into(), self.config.name.clone());
        self.write(pod).await?;
        Ok(ip)
    }

    /// Writes back the `Ready` status this node last wrote for `stored` when someone else
    /// changed it (the node lifecycle controller marks the pods of a node it lost not Ready;
    /// the node, back, knows better). True when it wrote.
    pub(crate) async fn restore_ready(&self, stored: &Pod) -> Result<bool> {
        let key = (
            stored.metadata.namespace().to_string(),
            stored.metadata.name.clone(),
        );
        let written = lock(&self.pods).get(&key).and_then(|h| h.written_ready);
        let Some(ready) = written.filter(|r| *r != stored.is_ready()) else {
            return Ok(false);
        };
        if stored.is_terminating() {
            return Ok(false);
        }
        let mut pod = stored.clone();
        pod_work::set_ready(&mut pod, ready);
        let store = Arc::clone(&self.store);
        // Conditional on the stored resourceVersion: a write in between is newer news.
        match blocking(move || store.apply(vec![Object::Pod(pod)])).await {
            Ok(_) => Ok(true),
            Err(Error::Store(pier_controlplane::Error::Conflict(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs a pod from its spec (a Deployment's template).
    pub fn run_pod(self: &Arc<Self>, pod: Pod) -> Result<()> {
        let work = pod_work::PodWork::from_pod(pod)?;
        let key = work.key();
        if lock(&self.pods).contains_key(&key) {
            return Err(Error::Exists(format!("pod {}/{}", key.0, key.1)));
        }
        self.spawn_worker(key, work);
        Ok(())
    }

    /// Runs a container with docker-like options as a pod of the same name.
    pub async fn run_container(
        self: &Arc<Self>,
        config: ContainerConfig,
        namespace: &str,
    ) -> Result<crate::ContainerRecord> {
        let pod = pod_work::pod_for_container(&config, namespace);
        let key = (namespace.to_string(), config.name.clone());
        if lock(&self.pods).contains_key(&key) || self.engine.get(&config.name).is_ok() {
            return Err(Error::Exists(format!("container name {:?}", config.name)));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut work = pod_work::PodWork::from_container(pod, config);
        work.created = Some(tx);
        let worker = self.spawn_worker(key, work);
        let result = match rx.await {
            Ok(result) => result,
            Err(_) => Err(Error::Runtime(
                "pod worker ended before the container started".into(),
            )),
        };
        if result.is_err() {
            // The worker gives up and cleans after itself: the name is free again only when it
            // has, so a `pier run` retried at once with the same name does not conflict.
            if let Err(e) = worker.await {
                tracing::warn!(error = %e, "pod worker of a failed `run` did not finish cleanly");
            }
        }
        result
    }

    /// Starts a pod's worker; the handle ends once the pod is gone from this node.
    fn spawn_worker(self: &Arc<Self>, key: PodKey, work: pod_work::PodWork) -> JoinHandle<()> {
        let (tx, rx) = watch::channel(false);
        lock(&self.pods).insert(
            key.clone(),
            PodHandle {
                terminate: tx,
                written_ready: None,
            },
        );
        let node = Arc::clone(self);
        tokio::spawn(async move {
            pod::worker(Arc::clone(&node), work, rx).await;
            lock(&node.pods).remove(&key);
        })
    }

    /// Drains and stops a pod, then deletes it from the store.
    pub fn terminate(&self, namespace: &str, name: &str) -> bool {
        match lock(&self.pods).get(&(namespace.to_string(), name.to_string())) {
            Some(h) => {
                h.terminate.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Terminates the pod whose container is `key` (ID, prefix or name); false when it has none.
    pub fn terminate_container(&self, key: &str) -> Result<bool> {
        let record = self.engine.get(key)?;
        Ok(record
            .config
            .labels
            .get(POD_LABEL)
            .and_then(|k| k.split_once('/'))
            .is_some_and(|(ns, name)| self.terminate(ns, name)))
    }

    /// Drains, stops and removes every pod and container this node runs (for `pier up`, whose
    /// containers end with it). Stop the Deployment controller first, or it makes new ones.
    pub async fn remove_all(&self) {
        let keys: Vec<PodKey> = lock(&self.pods).keys().cloned().collect();
        for (ns, name) in &keys {
            self.terminate(ns, name);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !lock(&self.pods).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for record in self.engine.list() {
            if let Err(e) = self.engine.remove(&record.id, true).await {
                tracing::warn!(container = %record.config.name, error = %e, "removing container");
            }
        }
    }

    /// Whether a worker runs the pod `key` on this node (terminating or not).
    pub fn has_worker(&self, key: &PodKey) -> bool {
        lock(&self.pods).contains_key(key)
    }
}
