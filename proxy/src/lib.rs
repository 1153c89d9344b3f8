//! pier's userspace proxy: L4 TCP/UDP and L7 HTTP balancing of every service port in the node
//! snapshot, with weighted canary groups, health checks, outlier ejection and retries.

mod balance;
mod config;
pub mod error;
mod frontend;
mod health;
mod io;
mod l4;
mod l7;
mod metrics;
mod route;
mod vip;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pier_snapshot::{
    ApplyError, NodeSnapshot, Protocol, ServiceChange, ServiceKey, ServiceView, SnapshotConsumer,
    SnapshotDiff,
};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use balance::{Cluster, ClusterKey};
pub use config::{ProxyConfig, VipMode};
pub use error::{Error, Result};
use frontend::{ClusterSet, Frontend, Mode};
use l7::Http;
pub use metrics::ProxyMetrics;
use vip::VipInterface;

/// A listening address and its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerKey {
    /// Local address.
    pub addr: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

struct Listener {
    owner: ServiceKey,
    frontend: Arc<ArcSwap<Frontend>>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Stops accepting; connections already accepted run on in their own tasks (drain).
        self.task.abort();
    }
}

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// The proxy: listeners, frontends and backend groups, kept in step with the snapshot.
pub struct Proxy {
    config: ProxyConfig,
    metrics: Arc<ProxyMetrics>,
    http: Arc<Http>,
    conn_limit: Arc<Semaphore>,
    listeners: HashMap<ListenerKey, Listener>,
    by_service: HashMap<ServiceKey, Vec<ListenerKey>>,
    clusters: HashMap<ClusterKey, Arc<Cluster>>,
    /// Groups by backend service: which to update when its endpoints change.
    by_backend: HashMap<ServiceKey, HashSet<ClusterKey>>,
    /// Groups by frontend service: which may become unused when it changes.
    by_frontend: HashMap<ServiceKey, HashSet<ClusterKey>>,
    vip: Option<VipInterface>,
}

impl Proxy {
    /// A proxy serving nothing yet; in interface mode, creates the VIP interface.
    pub fn new(config: ProxyConfig, registry: &prometheus::Registry) -> Result<Self> {
        let metrics = Arc::new(ProxyMetrics::register(registry)?);
        let vip = match &config.vip_mode {
            VipMode::Interface(name) => Some(VipInterface::create(name)?),
            VipMode::Loopback { .. } => None,
        };
        Ok(Self {
            http: Arc::new(Http::new(&config)),
            conn_limit: Arc::new(Semaphore::new(config.max_connections)),
            config,
            metrics,
            listeners: HashMap::new(),
            by_service: HashMap::new(),
            clusters: HashMap::new(),
            by_backend: HashMap::new(),
            by_frontend: HashMap::new(),
            vip,
        })
    }

    /// Where the proxy listens now.
    pub fn listening(&self) -> Vec<ListenerKey> {
        let mut keys: Vec<ListenerKey> = self.listeners.keys().copied().collect();
        keys.sort();
        keys
    }

    fn listener_keys(&self, svc: &ServiceView) -> Vec<(ListenerKey, usize)> {
        let mut out = Vec::new();
        if svc.headless || svc.external_name.is_some() {
            return out;
        }
        for (i, port) in svc.ports.iter().enumerate() {
            let protocol = port.protocol;
            for addr in svc
                .cluster_ips
                .iter()
                .filter_map(|ip| self.config.vip_listen_addr(*ip, port.port))
            {
                out.push((ListenerKey { addr, protocol }, i));
            }
            if let Some(np) = port.node_port {
                let addr = SocketAddr::new(self.config.node_address, np);
                out.push((ListenerKey { addr, protocol }, i));
            }
        }
        out
    }

    fn bind(&self, key: ListenerKey, owner: &ServiceKey) -> Result<Bound> {
        let err = |source: std::io::Error| Error::Bind {
            addr: key.addr,
            proto: proto_name(key.protocol),
            service: owner.to_string(),
            source,
        };
        let domain = Domain::for_address(key.addr);
        let ty = match key.protocol {
            Protocol::Tcp => Type::STREAM,
            Protocol::Udp => Type::DGRAM,
        };
        let socket = Socket::new(domain, ty, None).map_err(err)?;
        socket.set_reuse_address(true).map_err(err)?;
        if self.vip.is_some() && !key.addr.ip().is_unspecified() {
            // The VIP is put on the interface right after binding.
            match key.addr.ip() {
                IpAddr::V4(_) => socket.set_freebind_v4(true).map_err(err)?,
                IpAddr::V6(_) => socket.set_freebind_v6(true).map_err(err)?,
            }
        }
        socket.set_nonblocking(true).map_err(err)?;
        socket.bind(&key.addr.into()).map_err(err)?;
        Ok(match key.protocol {
            Protocol::Tcp => {
                socket.listen(4096).map_err(err)?;
                Bound::Tcp(socket.into())
            }
            Protocol::Udp => Bound::Udp(socket.into()),
        })
    }

    fn spawn(
        &self,
        bound: Bound,
        frontend: Arc<ArcSwap<Frontend>>,
    ) -> std::io::Result<JoinHandle<()>> {
        Ok(match bound {
            Bound::Tcp(l) => tokio::spawn(accept_loop(
                TcpListener::from_std(l)?,
                Arc::clone(&frontend),
                Arc::clone(&self.http),
                Arc::clone(&self.conn_limit),
                Arc::clone(&self.metrics),
            )),
            Bound::Udp(s) => tokio::spawn(l4::udp::serve(
                Arc::new(UdpSocket::from_std(s)?),
                Arc::clone(&frontend),
                Arc::clone(&self.metrics),
                self.config.max_udp_flows,
                self.config.udp_idle_timeout,
            )),
        })
    }

    /// Applies a snapshot diff: validate and bind everything new first, then swap; on error
    /// nothing has changed.
    pub fn apply_diff(&mut self, diff: &SnapshotDiff, snapshot: &NodeSnapshot) -> Result<()> {
        let mut set = ClusterSet {
            existing: &self.clusters,
            created: HashMap::new(),
            metrics: &self.metrics,
        };
        let mut changed: Vec<(ServiceKey, Vec<(ListenerKey, Frontend)>)> = Vec::new();
        for change in &diff.changes {
            match change {
                ServiceChange::Upsert(view) => {
                    let mut list = Vec::new();
                    for (key, i) in self.listener_keys(view) {
                        let fe = frontend::build(view, &view.ports[i], &mut set, &self.metrics)
                            .map_err(Error::Route)?;
                        list.push((key, fe));
                    }
                    changed.push((view.key.clone(), list));
                }
                ServiceChange::Remove(key) => changed.push((key.clone(), Vec::new())),
            }
        }
        let created = set.created;
        // Who claims each address after this diff; only changed services' claims can conflict.
        let changed_keys: HashSet<&ServiceKey> = changed.iter().map(|(k, _)| k).collect();
        let mut claimed: HashMap<ListenerKey, &ServiceKey> = HashMap::new();
        for (svc, list) in &changed {
            for (key, _) in list {
                let holder = claimed.insert(*key, svc).or_else(|| {
                    self.listeners
                        .get(key)
                        .map(|l| &l.owner)
                        .filter(|o| !changed_keys.contains(o))
                });
                if let Some(first) = holder.filter(|o| *o != svc) {
                    return Err(Error::Conflict {
                        addr: key.addr,
                        proto: proto_name(key.protocol),
                        first: first.to_string(),
                        second: svc.to_string(),
                    });
                }
            }
        }
        let released: Vec<ListenerKey> = changed
            .iter()
            .flat_map(|(svc, _)| self.by_service.get(svc).into_iter().flatten())
            .filter(|k| !claimed.contains_key(k))
            .copied()
            .collect();
        let mut bound: HashMap<ListenerKey, Bound> = HashMap::new();
        for (key, svc) in &claimed {
            if !self.listeners.contains_key(key) {
                bound.insert(*key, self.bind(*key, svc)?);
            }
        }
        if let Some(vip) = &mut self.vip {
            let node = self.config.node_address;
            let add: BTreeSet<IpAddr> = claimed
                .keys()
                .map(|k| k.addr.ip())
                .filter(|ip| *ip != node)
                .collect();
            // A ClusterIP belongs to one Service, so a released address is free unless re-claimed.
            let remove: BTreeSet<IpAddr> = released
                .iter()
                .map(|k| k.addr.ip())
                .filter(|ip| *ip != node && !add.contains(ip))
                .collect();
            vip.change(&add, &remove)?;
        }

        // Commit: nothing below fails.
        for key in &released {
            self.listeners.remove(key);
        }
        for (svc, list) in changed {
            let mut keys = Vec::with_capacity(list.len());
            for (key, fe) in list {
                keys.push(key);
                let fe = Arc::new(fe);
                if let Some(l) = self.listeners.get_mut(&key) {
                    l.frontend.store(fe);
                    l.owner = svc.clone();
                    continue;
                }
                let Some(b) = bound.remove(&key) else {
                    continue;
                };
                let frontend = Arc::new(ArcSwap::new(fe));
                match self.spawn(b, Arc::clone(&frontend)) {
                    Ok(task) => {
                        self.listeners.insert(
                            key,
                            Listener {
                                owner: svc.clone(),
                                frontend,
                                task,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(addr = %key.addr, error = %e, "listener failed to start")
                    }
                }
            }
            if keys.is_empty() {
                self.by_service.remove(&svc);
            } else {
                self.by_service.insert(svc, keys);
            }
        }
        self.metrics.listeners.set(self.listeners.len() as i64);
        for (key, cluster) in created {
            cluster.update(snapshot.services.get(&key.backend).map(AsRef::as_ref));
            health::ensure_checker(&cluster, &self.http);
            self.by_backend
                .entry(key.backend.clone())
                .or_default()
                .insert(key.clone());
            self.by_frontend
                .entry(key.frontend.clone())
                .or_default()
                .insert(key.clone());
            self.clusters.insert(key, cluster);
        }
        for change in &diff.changes {
            let svc = match change {
                ServiceChange::Upsert(v) => &v.key,
                ServiceChange::Remove(k) => k,
            };
            // Groups whose endpoints changed.
            for key in self.by_backend.get(svc).into_iter().flatten() {
                if let Some(cluster) = self.clusters.get(key) {
                    cluster.update(snapshot.services.get(svc).map(AsRef::as_ref));
                    health::ensure_checker(cluster, &self.http);
                }
            }
            // Groups this service's frontends no longer use (their checkers stop with them).
            let in_use: HashSet<&ClusterKey> = self
                .by_service
                .get(svc)
                .into_iter()
                .flatten()
                .filter_map(|k| self.listeners.get(k))
                .flat_map(|l| {
                    l.frontend
                        .load()
                        .clusters()
                        .into_iter()
                        .map(|c| c.key.clone())
                        .collect::<Vec<_>>()
                })
                .filter_map(|k| self.clusters.get_key_value(&k).map(|(k, _)| k))
                .collect();
            let unused: Vec<ClusterKey> = self
                .by_frontend
                .get(svc)
                .into_iter()
                .flatten()
                .filter(|k| !in_use.contains(k))
                .cloned()
                .collect();
            for key in unused {
                if let Some(cluster) = self.clusters.remove(&key) {
                    cluster.update(None);
                }
                if let Some(set) = self.by_backend.get_mut(&key.backend) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_backend.remove(&key.backend);
                    }
                }
                if let Some(set) = self.by_frontend.get_mut(&key.frontend) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_frontend.remove(&key.frontend);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listeners.clear();
        if let Some(vip) = &self.vip {
            vip.delete();
        }
    }
}

/// Feeds snapshots to the proxy.
pub struct ProxyConsumer(pub Proxy);

impl SnapshotConsumer for ProxyConsumer {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn apply(
        &mut self,
        diff: &SnapshotDiff,
        snapshot: &Arc<NodeSnapshot>,
    ) -> std::result::Result<(), ApplyError> {
        self.0.apply_diff(diff, snapshot).map_err(|e| {
            if e.is_transient() {
                ApplyError::Transient(e.to_string())
            } else {
                ApplyError::Invalid(e.to_string())
            }
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    frontend: Arc<ArcSwap<Frontend>>,
    http: Arc<Http>,
    limit: Arc<Semaphore>,
    metrics: Arc<ProxyMetrics>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            metrics.connections_refused.inc();
            continue;
        };
        let fe = frontend.load_full();
        let frontend = Arc::clone(&frontend);
        let http = Arc::clone(&http);
        tokio::spawn(async move {
            let _permit = permit;
            fe.metrics.active.inc();
            match &fe.mode {
                Mode::L7(_) => http.serve(stream, peer, frontend).await,
                Mode::L4(_) => l4::tcp::serve(stream, peer, Arc::clone(&fe)).await,
            }
            fe.metrics.active.dec();
        });
    }
}
