//! pier's userspace proxy: L4 TCP/UDP and L7 HTTP balancing of every service port in the node
//! snapshot, with weighted canary groups, health checks, outlier ejection and retries.

mod apply;
mod balance;
mod config;
mod edge;
pub mod error;
mod frontend;
mod group_index;
mod health;
mod io;
mod l4;
mod l7;
mod metrics;
mod route;
mod route_filters;
pub mod tls;
mod vip;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pier_snapshot::{
    ApplyError, NodeSnapshot, Protocol, ServiceKey, ServiceView, SnapshotConsumer, SnapshotDiff,
};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use balance::{Cluster, ClusterKey};
pub use config::{ProxyConfig, VipMode};
pub use edge::{Edge, EdgeConfig, EdgeConsumer};
pub use error::{Error, Result};
use frontend::{Frontend, Locality, Mode};
use group_index::GroupIndex;
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
    by_backend: GroupIndex,
    /// Groups by frontend service: which may become unused when it changes.
    by_frontend: GroupIndex,
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
            by_backend: GroupIndex::default(),
            by_frontend: GroupIndex::default(),
            vip,
        })
    }

    /// Where the proxy listens now.
    pub fn listening(&self) -> Vec<ListenerKey> {
        let mut keys: Vec<ListenerKey> = self.listeners.keys().copied().collect();
        keys.sort();
        keys
    }

    /// Where each port of `svc` is listened on, and whose endpoints serve there: a VIP follows
    /// `internalTrafficPolicy`, a NodePort (traffic from outside the node) `externalTrafficPolicy`.
    fn listener_keys(&self, svc: &ServiceView) -> Vec<(ListenerKey, usize, Locality)> {
        let mut out = Vec::new();
        if svc.headless || svc.external_name.is_some() {
            return out;
        }
        let node: Locality = self.config.node_name.as_deref().map(Arc::from);
        let local = |on: bool| -> Locality {
            // With no node name, a Local policy matches no endpoint.
            on.then(|| node.clone().unwrap_or_else(|| Arc::from("")))
        };
        for (i, port) in svc.ports.iter().enumerate() {
            let protocol = port.protocol;
            for addr in svc
                .cluster_ips
                .iter()
                .filter_map(|ip| self.config.vip_listen_addr(*ip, port.port))
            {
                out.push((ListenerKey { addr, protocol }, i, local(svc.internal_local)));
            }
            if let Some(np) = port.node_port {
                let addr = SocketAddr::new(self.config.node_address, np);
                out.push((ListenerKey { addr, protocol }, i, local(svc.external_local)));
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
        self.0
            .apply_diff(diff, snapshot)
            .map_err(|e| e.to_apply_error())
    }
}

async fn accept_loop(
    listener: TcpListener,
    frontend: Arc<ArcSwap<Frontend>>,
    http: Arc<Http>,
    limit: Arc<Semaphore>,
    metrics: Arc<ProxyMetrics>,
) {
    io::accept_each(listener, limit, metrics, move |stream, peer| {
        let fe = frontend.load_full();
        let frontend = Arc::clone(&frontend);
        let http = Arc::clone(&http);
        async move {
            fe.metrics.active.inc();
            match &fe.mode {
                Mode::L7(_) => http.serve(stream, peer, frontend).await,
                Mode::L4(_) => l4::tcp::serve(stream, peer, Arc::clone(&fe)).await,
            }
            fe.metrics.active.dec();
        }
    })
    .await;
}
