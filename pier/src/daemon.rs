//! `pier daemon` / `pier up`: store, controllers, snapshot publisher, control API and admin listener in one process.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pier_controlplane::api::{self, ApiContext};
use pier_controlplane::metrics::Metrics;
use pier_controlplane::snapshot;
use pier_controlplane::store::{AllocConfig, Store, StoreConfig};
use pier_controlplane::{controllers, Error};
use pier_snapshot::SnapshotHandle;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, Admin};
use crate::config::{DaemonConfig, DnsConfig};

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

/// Feeds every published snapshot to a dataplane part until the daemon shuts down.
pub(crate) fn follow_until_shutdown<C: pier_snapshot::SnapshotConsumer>(
    snapshot: &Arc<SnapshotHandle>,
    part: C,
    observer: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let follow = pier_snapshot::follow(
        Arc::clone(snapshot),
        part,
        Arc::clone(observer) as Arc<dyn pier_snapshot::ConsumerObserver>,
    );
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = follow => {}
            _ = stop.changed() => {}
        }
    })
}

/// Binds the DNS listeners and starts the server and its snapshot consumer.
async fn start_dns(
    config: &DnsConfig,
    registry: &Registry,
    snapshot: &Arc<SnapshotHandle>,
    observer: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Vec<std::net::SocketAddr>> {
    let sockets = pier_dns::server::bind(&config.listen)
        .await
        .with_context(|| {
            format!(
                "binding DNS listeners {:?} (use --dns-listen or --no-dns)",
                config.listen
            )
        })?;
    let addrs: Vec<std::net::SocketAddr> = sockets
        .iter()
        .filter_map(|(u, _)| u.local_addr().ok())
        .collect();
    let zone = pier_dns::zone::Zone::new(pier_dns::zone::ZoneConfig {
        domain: config.cluster_domain.clone(),
        ttl: config.ttl,
        negative_ttl: config.ttl,
        nameserver_addresses: addrs
            .iter()
            .map(std::net::SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect(),
    })
    .map_err(|e| anyhow::anyhow!("cluster domain {:?}: {e}", config.cluster_domain))?;
    let forwarder =
        pier_dns::forward::Forwarder::new(config.upstreams.clone(), &addrs, Duration::from_secs(2));
    if forwarder.upstreams().is_empty() {
        tracing::warn!("no DNS upstream: names outside the cluster domain will get SERVFAIL");
    }
    let dns_metrics =
        pier_dns::metrics::DnsMetrics::register(registry).context("registering DNS metrics")?;
    let resolver = Arc::new(pier_dns::Resolver::new(
        zone,
        pier_dns::cache::Cache::new(pier_dns::cache::CacheConfig {
            max_ttl: config.max_ttl,
            ..pier_dns::cache::CacheConfig::default()
        }),
        forwarder,
        config.allow.clone(),
        dns_metrics,
    ));
    tasks.push(follow_until_shutdown(
        snapshot,
        pier_dns::DnsConsumer(Arc::clone(&resolver)),
        observer,
        shutdown,
    ));
    let limiter = config.rate_limit.map(|qps| {
        Arc::new(pier_dns::ratelimit::RateLimiter::new(
            qps,
            qps.saturating_mul(2),
        ))
    });
    tasks.push(tokio::spawn(pier_dns::server::serve(
        resolver,
        sockets,
        limiter,
        shutdown.clone(),
    )));
    tracing::info!(listen = ?addrs, domain = %config.cluster_domain, "DNS serving");
    Ok(addrs)
}

/// Starts the userspace proxy and its snapshot consumer.
fn start_proxy(
    config: &pier_proxy::ProxyConfig,
    registry: &Registry,
    snapshot: &Arc<SnapshotHandle>,
    observer: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<()> {
    let proxy = pier_proxy::Proxy::new(config.clone(), registry)
        .context("starting the proxy (use --proxy-vips loopback or --no-proxy)")?;
    tasks.push(follow_until_shutdown(
        snapshot,
        pier_proxy::ProxyConsumer(proxy),
        observer,
        shutdown,
    ));
    tracing::info!(vips = ?config.vip_mode, node_address = %config.node_address, "proxy serving");
    Ok(())
}

/// Opens the container engine, re-adopts the pods it runs and starts the Deployment controller;
/// `None` (with a log line saying why) when it cannot run here.
async fn start_runtime(
    config: &crate::config::RuntimeConfig,
    dns: Option<&DnsConfig>,
    store: &Arc<Store>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Option<Arc<pier_runtime::Node>> {
    if pier_controlplane::api::current_uid() != 0 {
        tracing::info!("container engine off: it needs root (pier run, Deployments)");
        return None;
    }
    let shim_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "container engine off: cannot find the pier binary");
            return None;
        }
    };
    // Containers reach the cluster DNS when it listens on an address they can route to.
    let resolv_conf = dns.and_then(|d| {
        d.listen
            .iter()
            .find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified())
            .map(|a| {
                format!(
                    "nameserver {}\nsearch default.svc.{dom} svc.{dom} {dom}\noptions ndots:5\n",
                    a.ip(),
                    dom = d.cluster_domain
                )
            })
    });
    let engine = match pier_runtime::Engine::open(
        pier_runtime::EngineConfig {
            root: config.root.clone(),
            shim_exe,
            resolv_conf,
        },
        pier_runtime::Network::new(config.network.clone()),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "container engine off");
            return None;
        }
    };
    let node = pier_runtime::Node::new(
        engine,
        Arc::clone(store),
        pier_runtime::NodeConfig {
            name: config.node_name.clone(),
            ..Default::default()
        },
    );
    if let Err(e) = node.start().await {
        tracing::warn!(error = %e, "re-adopting containers failed");
    }
    {
        let node = Arc::clone(&node);
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                r = pier_runtime::node::deployment::run(node) => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "deployment controller stopped");
                    }
                }
                _ = stop.changed() => {}
            }
        }));
    }
    tracing::info!(root = %config.root.display(), pod_cidr = %config.network.subnet, "container engine ready");
    Some(node)
}

/// Runs `f` again after a growing pause each time it fails, until shutdown.
fn supervise<F, Fut>(
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
                    Err(e) => tracing::error!(task = name, error = %e, retry_in = ?backoff, "background task failed"),
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

impl Daemon {
    /// Opens the store and starts every part.
    pub(crate) async fn start(config: &DaemonConfig) -> Result<Daemon> {
        let store_path = config.state_dir.join("pier.redb");
        let store_config = StoreConfig {
            alloc: AllocConfig {
                service_cidr: config.service_cidrs.v4,
                service_cidr_v6: config.service_cidrs.v6,
                ipv6_primary: config.service_cidrs.ipv6_primary,
                node_ports: config.node_ports.clone(),
            },
            event_history: config.event_history,
            ..StoreConfig::default()
        };
        let store = {
            let path = store_path.clone();
            tokio::task::spawn_blocking(move || Store::open(&path, store_config))
                .await?
                .with_context(|| format!("opening store {}", store_path.display()))?
        };
        let registry = Registry::new();
        let metrics =
            Metrics::register(&registry, Arc::clone(&store)).context("registering metrics")?;
        let snapshot = Arc::new(SnapshotHandle::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let admin_listener = TcpListener::bind(config.admin)
            .await
            .with_context(|| format!("binding admin listener {}", config.admin))?;
        let admin_addr = admin_listener.local_addr()?;
        let admin = Arc::new(Admin {
            registry,
            metrics: Arc::clone(&metrics),
            snapshot: Arc::clone(&snapshot),
            ready: false.into(),
        });
        {
            let (admin, rx) = (Arc::clone(&admin), shutdown_rx.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = admin::serve(admin, admin_listener, rx).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }));
        }
        {
            let (store, handle, observer) = (
                Arc::clone(&store),
                Arc::clone(&snapshot),
                Arc::clone(&metrics),
            );
            tasks.push(supervise("snapshot", shutdown_rx.clone(), move || {
                snapshot::run(Arc::clone(&store), Arc::clone(&handle), observer.clone())
            }));
        }
        {
            let store = Arc::clone(&store);
            tasks.push(supervise(
                "endpoints-controller",
                shutdown_rx.clone(),
                move || controllers::run_endpoints(Arc::clone(&store)),
            ));
        }
        let dns_addrs = match &config.dns {
            Some(dns) => {
                start_dns(
                    dns,
                    &admin.registry,
                    &snapshot,
                    &metrics,
                    &shutdown_rx,
                    &mut tasks,
                )
                .await?
            }
            None => Vec::new(),
        };
        if let Some(proxy) = &config.proxy {
            start_proxy(
                proxy,
                &admin.registry,
                &snapshot,
                &metrics,
                &shutdown_rx,
                &mut tasks,
            )?;
        }
        if config.ebpf.enabled {
            crate::socket_lb::start_ebpf(
                &config.ebpf,
                &store.id(),
                config.proxy.as_ref(),
                &admin.registry,
                &snapshot,
                &metrics,
                &shutdown_rx,
                &mut tasks,
            );
        } else {
            crate::socket_lb::detach_leftover_ebpf(&config.ebpf.pin_dir)?;
            tracing::info!("eBPF socket-LB off (--no-ebpf); the userspace proxy serves every port");
        }
        let node = match &config.runtime {
            Some(rt) => {
                start_runtime(rt, config.dns.as_ref(), &store, &shutdown_rx, &mut tasks).await
            }
            None => None,
        };
        let extension = match (&node, &config.runtime) {
            (Some(node), Some(rt)) => Some(Arc::new(pier_runtime::node::api::EngineApi::new(
                Arc::clone(node),
                rt.insecure_registries.clone(),
            )) as Arc<dyn api::Extension>),
            _ => None,
        };
        let ctx = Arc::new(ApiContext {
            store: Arc::clone(&store),
            snapshot: Arc::clone(&snapshot),
            metrics,
            admin_addr: Some(admin_addr),
            dns_addrs,
            extension,
        });
        let listener = api::bind(&config.socket)?;
        {
            let (rx, socket) = (shutdown_rx.clone(), config.socket.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = api::serve(ctx, listener, &socket, rx).await {
                    tracing::error!(error = %e, "control API stopped");
                }
            }));
        }
        // Ready once the first snapshot reflecting the store is published.
        let mut snap_rx = snapshot.subscribe();
        while snapshot.load().revision < store.revision() {
            if tokio::time::timeout(Duration::from_secs(30), snap_rx.changed())
                .await
                .is_err()
            {
                let _ = shutdown.send(true);
                anyhow::bail!("pier daemon failed to start: no snapshot published within 30s");
            }
        }
        admin.ready.store(true, Ordering::Release);
        tracing::info!(
            socket = %config.socket.display(),
            admin = %admin_addr,
            state = %config.state_dir.display(),
            revision = store.revision(),
            "pier daemon ready"
        );
        Ok(Daemon {
            store,
            snapshot,
            node,
            shutdown,
            tasks,
        })
    }

    /// Stops every part and waits (bounded) for them to finish.
    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

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
