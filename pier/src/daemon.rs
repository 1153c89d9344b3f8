//! `pier daemon` / `pier up`: store, controllers, snapshot publisher, control API and admin listener in one process.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pier_controlplane::api::{self, ApiContext};
use pier_controlplane::cluster::NodeMetrics;
use pier_controlplane::metrics::Metrics;
use pier_controlplane::store::{AllocConfig, Keyring, Store, StoreConfig};
use pier_controlplane::Error;
use pier_snapshot::SnapshotHandle;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, Admin};
use crate::config::{DaemonConfig, StoreLocation};
use crate::parts::{self, Parts};

/// A running daemon.
pub(crate) struct Daemon {
    /// The store.
    pub store: Arc<Store>,
    /// The published snapshot.
    pub snapshot: Arc<SnapshotHandle>,
    /// The node agent, when the container engine runs.
    pub node: Option<Arc<pier_runtime::Node>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs `f` again after a growing pause each time it fails, until shutdown.
pub(crate) fn supervise<F, Fut>(
    name: &'static str,
    mut shutdown: watch::Receiver<bool>,
    mut f: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                result = f() => match result {
                    Ok(()) => return,
                    Err(e) => tracing::error!(task = name, error = %pier_controlplane::error::chain(&e), retry_in = ?backoff, "background task failed"),
                },
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}

/// Opens the store (off the async threads: redb reads and may repair the file; etcd is a
/// network round trip).
async fn open_store(config: &DaemonConfig) -> Result<Arc<Store>> {
    let keyring = match &config.encryption_key_file {
        Some(path) => Keyring::load(path),
        None => Keyring::load_or_create(&config.state_dir.join("secrets.key")),
    }
    .context("loading the key for Secrets at rest")?;
    let store_config = StoreConfig {
        alloc: AllocConfig {
            service_cidr: config.service_cidrs.v4,
            service_cidr_v6: config.service_cidrs.v6,
            ipv6_primary: config.service_cidrs.ipv6_primary,
            node_ports: config.node_ports.clone(),
            pod_cidr: Some(config.cluster_pod_cidr),
            ..AllocConfig::default()
        },
        event_history: config.event_history,
        keyring: Arc::new(keyring),
        ..StoreConfig::default()
    };
    let location = config.store.clone();
    let store = tokio::task::spawn_blocking(move || match location {
        StoreLocation::Redb(path) => Store::open(&path, store_config),
        StoreLocation::Etcd(etcd) => Store::connect(etcd, store_config),
    })
    .await?
    .with_context(|| format!("opening store {}", config.store))?;
    Ok(store)
}

/// Binds the admin listener (metrics, health, snapshot) and serves it; not ready until the
/// first snapshot is out.
async fn start_admin(
    parts: &mut Parts,
    addr: std::net::SocketAddr,
) -> Result<(Arc<Admin>, std::net::SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding admin listener {addr}"))?;
    let bound = listener.local_addr()?;
    let admin = Arc::new(Admin {
        registry: parts.registry.clone(),
        metrics: Arc::clone(&parts.metrics),
        snapshot: Arc::clone(&parts.snapshot),
        ready: false.into(),
        store: Arc::clone(&parts.store),
    });
    let (served, rx) = (Arc::clone(&admin), parts.shutdown.clone());
    parts.tasks.push(tokio::spawn(async move {
        if let Err(e) = admin::serve(served, listener, rx).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }));
    Ok((admin, bound))
}

/// Waits until a snapshot reflecting the store as opened is published.
async fn first_snapshot(parts: &Parts) -> Result<()> {
    let mut published = parts.snapshot.subscribe();
    while parts.snapshot.load().revision < parts.store.revision() {
        if tokio::time::timeout(Duration::from_secs(30), published.changed())
            .await
            .is_err()
        {
            anyhow::bail!("pier daemon failed to start: no snapshot published within 30s");
        }
    }
    Ok(())
}

impl Daemon {
    /// Opens the store and starts every part.
    pub(crate) async fn start(config: &DaemonConfig) -> Result<Daemon> {
        let store = open_store(config).await?;
        let registry = Registry::new();
        let metrics =
            Metrics::register(&registry, Arc::clone(&store)).context("registering metrics")?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut parts = Parts {
            store,
            snapshot: Arc::new(SnapshotHandle::default()),
            registry,
            metrics,
            shutdown: shutdown_rx,
            tasks: Vec::new(),
        };
        let (admin, admin_addr) = start_admin(&mut parts, config.admin).await?;
        let tcp = match &config.api {
            Some(listen) => Some(
                parts::api::bind_tcp(
                    listen,
                    &config.state_dir,
                    config.cluster.node_ip,
                    &config.cluster.node_name,
                )
                .await?,
            ),
            None => None,
        };
        // The node's membership, with what it publishes for the pod relay.
        let (cluster, relay) = parts::api::relay(&config.cluster, tcp.as_ref())?;
        let pod_cidr = parts::control::register(&parts, &cluster)
            .await
            .context("registering this node")?;
        // Routes to other nodes' pods belong to pod networking, which the engine owns: a node
        // without it (or without root) leaves the machine's routing table alone.
        let routes = config.runtime.is_some() && pier_controlplane::api::current_uid() == 0;
        let leadership =
            parts::control::start(&mut parts, &cluster, routes, config.follow.is_none());
        if let Some(source) = &config.follow {
            parts::follower::start(&mut parts, source, &config.cluster.node_name).await?;
        }
        parts::memory::start(&mut parts);
        let dns_addrs = match &config.dns {
            Some(dns) => parts::dns::start(&mut parts, dns).await?,
            None => Vec::new(),
        };
        if let Some(proxy) = &config.proxy {
            parts::proxy::start(&mut parts, proxy, config.ingress.as_ref())?;
        }
        if config.ebpf.enabled {
            parts::ebpf::start(
                &mut parts,
                &config.ebpf,
                config.proxy.as_ref(),
                &config.cluster.node_name,
            );
        } else {
            parts::ebpf::detach_leftover(&config.ebpf.pin_dir)?;
            tracing::info!("eBPF socket-LB off (--no-ebpf); the userspace proxy serves every port");
        }
        let runtime = config.runtime.clone().map(|mut rt| {
            // In a cluster each node's pods take its own range, which other nodes route to.
            if let (false, Some(cidr)) = (config.cluster.sole, pod_cidr) {
                rt.network.subnet = cidr;
            }
            rt
        });
        let node = match &runtime {
            Some(rt) => {
                parts::runtime::start(&mut parts, rt, config.dns.as_ref(), config.cluster.node_ip)
                    .await
            }
            None => None,
        };
        let usage = node.as_ref().map(|n| {
            Arc::clone(n.engine()) as Arc<dyn pier_controlplane::autoscaling::UsageSource>
        });
        // This node's metrics (served to the others) and the way to read every node's.
        let node_metrics = Arc::new(NodeMetrics::new(
            &config.cluster.node_name,
            Arc::clone(&parts.store),
            parts.registry.clone(),
            usage,
            relay.clone(),
        ));
        if let Some(leadership) = &leadership {
            parts::control::analyse_and_autoscale(
                &mut parts,
                &config.cluster,
                leadership,
                Arc::clone(&node_metrics),
            );
        }
        let extension = match (&node, &config.runtime) {
            (Some(node), Some(_)) => Some(Arc::new(pier_runtime::node::api::EngineApi::new(
                Arc::clone(node),
            )) as Arc<dyn api::Extension>),
            _ => None,
        };
        let api = ApiContext {
            store: Arc::clone(&parts.store),
            snapshot: Arc::clone(&parts.snapshot),
            metrics: Arc::clone(&parts.metrics),
            admin_addr: Some(admin_addr),
            dns_addrs,
            extension,
            tokens: Some(parts::api::tokens(&config.state_dir)?),
            api_listener: tcp.as_ref().map(|t| t.reported.clone()),
            relay,
            node_metrics: Some(node_metrics),
        };
        parts::api::start(&mut parts, api, &config.socket, tcp)?;
        if let Err(e) = first_snapshot(&parts).await {
            if shutdown.send(true).is_err() {
                tracing::debug!("no part was listening for shutdown");
            }
            return Err(e);
        }
        admin.ready.store(true, Ordering::Release);
        tracing::info!(
            socket = %config.socket.display(),
            admin = %admin_addr,
            state = %config.state_dir.display(),
            store = %config.store,
            revision = parts.store.revision(),
            "pier daemon ready"
        );
        Ok(Daemon {
            store: parts.store,
            snapshot: parts.snapshot,
            node,
            shutdown,
            tasks: parts.tasks,
        })
    }

    /// Stops every part and waits for them to finish, 5 s in all: parts still busy then (one
    /// waiting on an unreachable etcd, say) are aborted, so a stop never takes longer.
    pub(crate) async fn stop(self) {
        if self.shutdown.send(true).is_err() {
            tracing::debug!("no part was listening for shutdown");
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut aborted = 0;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                aborted += 1;
            }
        }
        if aborted > 0 {
            tracing::warn!(
                aborted,
                "parts still busy {STOP_GRACE:?} after shutdown were aborted"
            );
        }
    }
}

/// How long the daemon's parts get to finish after shutdown, together.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// SIGTERM/SIGINT handlers, installed before start-up so no signal is lost to the default action.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub(crate) fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves when SIGTERM or SIGINT arrives (or has arrived since `install`).
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
