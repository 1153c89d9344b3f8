//! The edge: north-south HTTP and HTTPS listeners serving the node snapshot's Ingresses.
//!
//! `table.rs` compiles the Ingresses into sites by host and their paths, `serve.rs` serves a
//! connection (TLS by `crate::tls`) and its requests, `metrics.rs` counts both. Listeners are
//! bound when the first Ingress appears; a new table and certificate set are swapped in whole,
//! so open connections keep going and pick up the change on their next request or handshake.

mod gateway;
mod listeners;
mod metrics;
mod passthrough;
mod serve;
mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pier_snapshot::edge::{EdgeView, ListenerMode};
use pier_snapshot::policy::TrafficPolicy;
use pier_snapshot::{
    ApplyError, NodeSnapshot, PortView, ServiceChange, ServiceKey, ServiceView, SnapshotConsumer,
    SnapshotDiff,
};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::balance::{Cluster, ClusterKey};
use crate::frontend::ClusterSet;
use crate::tls::certs::{certified_key, CertTable};
use crate::{health, Proxy, ProxyMetrics};
use listeners::{Bound, Wanted};
use metrics::EdgeMetrics;
use serve::{EdgeShared, Role};
use table::{Compiler, EdgeTable};

/// Where the edge listens.
#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    /// Plain HTTP for Ingresses.
    pub http: Option<SocketAddr>,
    /// HTTPS for Ingresses.
    pub https: Option<SocketAddr>,
    /// The address Gateway listeners bind, each on its own port (none: Gateways not served).
    pub gateway_ip: Option<IpAddr>,
}

/// The edge listeners and what they serve; feeds on the snapshot as a part of its own.
pub struct Edge {
    config: EdgeConfig,
    shared: Arc<EdgeShared>,
    conn_limit: Arc<Semaphore>,
    proxy_metrics: Arc<ProxyMetrics>,
    bound: BTreeMap<SocketAddr, Bound>,
    clusters: HashMap<ClusterKey, Arc<Cluster>>,
    view: Arc<EdgeView>,
    /// What the table was compiled from of each Service an Ingress names: a change to one
    /// of these (not to its endpoints, which the groups follow) recompiles it.
    compiled_with: HashMap<ServiceKey, Shape>,
}

/// The parts of a Service a compiled table depends on: its ports (names resolve to numbers)
/// and its proxy settings; `None` when it does not exist.
type Shape = Option<(Vec<PortView>, Arc<TrafficPolicy>)>;

fn shape(svc: Option<&Arc<ServiceView>>) -> Shape {
    svc.map(|s| (s.ports.clone(), Arc::clone(&s.policy)))
}

impl Proxy {
    /// The edge, sharing this proxy's HTTP machinery, connection limit and metrics.
    pub fn edge(&self, config: EdgeConfig, registry: &prometheus::Registry) -> crate::Result<Edge> {
        let shared = Arc::new(EdgeShared {
            table: ArcSwap::from_pointee(table::EdgeTable::default()),
            gateways: ArcSwap::from_pointee(gateway::GatewayTable::default()),
            http: Arc::clone(&self.http),
            metrics: EdgeMetrics::register(registry)?,
            listener_metrics: self.metrics.lazy_frontend("ingress:listeners".into()),
            https_port: config.https.map(|a| a.port()),
        });
        Ok(Edge {
            config,
            shared,
            conn_limit: Arc::clone(&self.conn_limit),
            proxy_metrics: Arc::clone(&self.metrics),
            bound: BTreeMap::new(),
            clusters: HashMap::new(),
            view: Arc::default(),
            compiled_with: HashMap::new(),
        })
    }
}

impl Edge {
    /// Applies a snapshot: binds and closes listeners as Ingresses and Gateways want them,
    /// recompiles the tables when the view or the ports or settings of a Service an Ingress
    /// names changed, reloads the certificates when the view did, and refreshes backend
    /// endpoints. A socket that cannot be bound is reported after the rest is applied.
    pub fn apply_diff(
        &mut self,
        diff: &SnapshotDiff,
        snapshot: &NodeSnapshot,
    ) -> crate::Result<()> {
        if let Some(view) = &diff.edge {
            self.view = Arc::clone(view);
        }
        let (bind_error, rebound) = self.reconcile_listeners();
        let changed: HashSet<&ServiceKey> = diff
            .changes
            .iter()
            .map(|c| match c {
                ServiceChange::Upsert(v) => &v.key,
                ServiceChange::Remove(k) => k,
            })
            .collect();
        let reshaped = changed.iter().any(|key| {
            self.compiled_with
                .get(*key)
                .is_some_and(|was| *was != shape(snapshot.services.get(*key)))
        });
        if diff.edge.is_some() || rebound {
            self.reload_certificates();
        }
        if diff.edge.is_some() || reshaped {
            self.recompile(snapshot);
        }
        for cluster in self.clusters.values() {
            let backend = &cluster.key.backend;
            if changed.contains(backend) {
                cluster.update(snapshot.services.get(backend));
                health::ensure_checker(cluster, &self.shared.http);
            }
        }
        bind_error.map_or(Ok(()), Err)
    }

    /// Binds the sockets the view wants and closes the others; the first bind error, and
    /// whether any socket was bound.
    fn reconcile_listeners(&mut self) -> (Option<crate::Error>, bool) {
        let wanted = listeners::wanted(
            &self.view,
            [
                (self.config.http, ListenerMode::Http),
                (self.config.https, ListenerMode::Https),
            ],
            self.config.gateway_ip,
            &self.bound,
        );
        self.bound
            .retain(|addr, b| wanted.get(addr) == Some(&b.wanted));
        let mut first_error = None;
        let mut rebound = false;
        for (addr, want) in wanted {
            if self.bound.contains_key(&addr) {
                continue;
            }
            match self.bind(addr, want) {
                Ok(b) => {
                    self.bound.insert(addr, b);
                    rebound = true;
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "edge listener not bound; retried with the next snapshot");
                    first_error.get_or_insert(e);
                }
            }
        }
        (first_error, rebound)
    }

    fn bind(&self, addr: SocketAddr, want: Wanted) -> crate::Result<Bound> {
        let listener = listeners::bind(addr)?;
        let local = listener.local_addr().ok();
        let port = if addr.port() == 0 {
            local.map_or(0, |a| a.port())
        } else {
            addr.port()
        };
        tracing::info!(addr = ?local, mode = ?want.mode, ingress = want.ingress, "edge listening");
        let shared = Arc::clone(&self.shared);
        let limit = Arc::clone(&self.conn_limit);
        let metrics = Arc::clone(&self.proxy_metrics);
        Bound::new(
            move |role, acceptor| {
                tokio::spawn(accept_loop(
                    listener, shared, acceptor, role, limit, metrics,
                ))
            },
            port,
            want,
        )
    }

    /// Gives every TLS socket its certificate table: the Ingresses' on the Ingress socket,
    /// and each Gateway listener's on its port's socket.
    fn reload_certificates(&self) {
        let ingress = certificates(&self.view);
        for (addr, b) in &self.bound {
            if !b.wanted.mode.terminates_tls() {
                continue;
            }
            let mut table = if b.wanted.ingress {
                ingress.clone()
            } else {
                CertTable::default()
            };
            if self.config.gateway_ip == Some(addr.ip()) {
                listener_certificates(&self.view, addr.port(), &mut table);
            }
            b.certs.replace(table);
        }
    }

    /// Compiles the tables and swaps them in; groups no path uses any more are dropped
    /// (their health checkers stop with them).
    fn recompile(&mut self, snapshot: &NodeSnapshot) {
        let old = self.shared.table.load_full();
        let mut compiler = Compiler {
            snapshot,
            edge_metrics: &self.shared.metrics,
            counters: old
                .backends()
                .map(|b| (b.counters.labels().clone(), Arc::clone(&b.counters)))
                .collect(),
            clusters: ClusterSet {
                existing: &self.clusters,
                created: HashMap::new(),
                metrics: &self.proxy_metrics,
            },
            respoken: Vec::new(),
        };
        let table = compiler.compile(&self.view);
        let gateways = gateway::compile(
            &self.view.listeners,
            &mut compiler.clusters,
            &self.proxy_metrics,
        );
        for (_, cluster) in compiler.clusters.created {
            cluster.update(snapshot.services.get(&cluster.key.backend));
            health::ensure_checker(&cluster, &self.shared.http);
        }
        for cluster in compiler.respoken {
            if self.clusters.contains_key(&cluster.key) {
                cluster.update(snapshot.services.get(&cluster.key.backend));
            }
        }
        let used: HashMap<ClusterKey, Arc<Cluster>> = table
            .clusters()
            .into_iter()
            .chain(gateways.clusters())
            .map(|c| (c.key.clone(), c))
            .collect();
        for (key, cluster) in &self.clusters {
            if !used.contains_key(key) {
                cluster.update(None);
            }
        }
        self.clusters = used;
        self.compiled_with = self
            .view
            .ingresses
            .iter()
            .flat_map(|i| {
                i.rules
                    .iter()
                    .flat_map(|r| &r.paths)
                    .map(|p| &p.backend)
                    .chain(&i.default_backend)
            })
            .map(|b| (b.service.clone(), shape(snapshot.services.get(&b.service))))
            .collect();
        let table = Arc::new(table);
        self.shared.table.store(Arc::clone(&table));
        self.shared.gateways.store(Arc::new(gateways));
        forget_gone(&self.shared.metrics, &old, &table);
    }
}

/// Removes the series of backends and Ingresses the new table no longer serves, so a churn of
/// Ingresses does not grow `/metrics` without end.
fn forget_gone(metrics: &EdgeMetrics, old: &EdgeTable, new: &EdgeTable) {
    let kept: HashSet<&[String; 3]> = new.backends().map(|b| b.counters.labels()).collect();
    let ingresses: HashSet<&String> = kept.iter().map(|[ingress, _, _]| ingress).collect();
    let mut forgotten = HashSet::new();
    for b in old.backends() {
        let labels = b.counters.labels();
        if !kept.contains(labels) && forgotten.insert(labels) {
            b.counters.forget();
            if !ingresses.contains(&labels[0]) {
                metrics.forget_ingress(&labels[0]);
            }
        }
    }
}

/// The certificate table: each TLS entry's Secret for its hosts (every rule host when it
/// names none); the first entry without hosts is also the default. A Secret that is missing or
/// does not parse is logged and left out, so the other hosts keep theirs.
fn certificates(view: &EdgeView) -> CertTable {
    let mut table = CertTable::default();
    let mut has_default = false;
    for ing in &view.ingresses {
        for tls in &ing.tls {
            let Some(id) = &tls.secret else { continue };
            let Some(cert) = view.certificates.get(id) else {
                tracing::warn!(ingress = %ing.id(), secret = %id, "TLS Secret not found (or not kubernetes.io/tls)");
                continue;
            };
            let key = match certified_key(id, &cert.cert_pem, &cert.key_pem) {
                Ok(k) => Arc::new(k),
                Err(e) => {
                    tracing::warn!(ingress = %ing.id(), error = %e, "TLS certificate left out");
                    continue;
                }
            };
            let hosts: Vec<&str> = if tls.hosts.is_empty() {
                if !has_default {
                    table.set_default(Arc::clone(&key));
                    has_default = true;
                }
                ing.rules.iter().filter_map(|r| r.host.as_deref()).collect()
            } else {
                tls.hosts.iter().map(String::as_str).collect()
            };
            for host in hosts {
                if let Err(e) = table.insert(host, Arc::clone(&key)) {
                    tracing::warn!(ingress = %ing.id(), error = %e, "TLS host left out");
                }
            }
        }
    }
    table
}

/// Adds the certificates of the Gateway listeners on `port`: each for its host name, or as the
/// default when it has none. A Secret that is missing or does not parse is logged and left out.
fn listener_certificates(view: &EdgeView, port: u16, table: &mut CertTable) {
    for l in view
        .listeners
        .iter()
        .filter(|l| l.mode.terminates_tls() && l.port == port)
    {
        let Some(id) = l.certificates.first() else {
            continue;
        };
        let Some(cert) = view.certificates.get(id) else {
            tracing::warn!(gateway = %l.gateway, listener = %l.name, secret = %id, "TLS Secret not found (or not kubernetes.io/tls)");
            continue;
        };
        let key = match certified_key(id, &cert.cert_pem, &cert.key_pem) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                tracing::warn!(gateway = %l.gateway, listener = %l.name, error = %e, "TLS certificate left out");
                continue;
            }
        };
        match &l.hostname {
            None => table.set_default(key),
            Some(h) => {
                if let Err(e) = table.insert(h, key) {
                    tracing::warn!(gateway = %l.gateway, listener = %l.name, error = %e, "TLS host left out");
                }
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<EdgeShared>,
    tls: Option<TlsAcceptor>,
    role: Role,
    limit: Arc<Semaphore>,
    metrics: Arc<ProxyMetrics>,
) {
    crate::io::accept_each(listener, limit, metrics, move |stream, peer| {
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        async move {
            shared.listener_metrics.active.inc();
            if role.passthrough {
                passthrough::connection(&shared, stream, peer, role.port).await;
            } else {
                serve::connection(Arc::clone(&shared), stream, peer, tls, role).await;
            }
            shared.listener_metrics.active.dec();
        }
    })
    .await;
}

/// Feeds snapshots to the edge.
pub struct EdgeConsumer(pub Edge);

impl SnapshotConsumer for EdgeConsumer {
    fn name(&self) -> &'static str {
        "edge"
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
