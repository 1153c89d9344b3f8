//! The edge: north-south HTTP and HTTPS listeners serving the node snapshot's Ingresses.
//!
//! `table.rs` compiles the Ingresses into sites by host and their paths, `serve.rs` serves a
//! connection (TLS by `crate::tls`) and its requests, `metrics.rs` counts both. Listeners are
//! bound when the first Ingress appears; a new table and certificate set are swapped in whole,
//! so open connections keep going and pick up the change on their next request or handshake.

mod metrics;
mod serve;
mod table;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pier_snapshot::edge::EdgeView;
use pier_snapshot::policy::TrafficPolicy;
use pier_snapshot::{
    ApplyError, NodeSnapshot, PortView, ServiceChange, ServiceKey, ServiceView, SnapshotConsumer,
    SnapshotDiff,
};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::balance::{Cluster, ClusterKey};
use crate::frontend::ClusterSet;
use crate::tls::certs::{certified_key, CertTable, Certificates};
use crate::{health, Proxy, ProxyMetrics};
use metrics::EdgeMetrics;
use serve::EdgeShared;
use table::{Compiler, EdgeTable};

/// Where the edge listens.
#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    /// Plain HTTP.
    pub http: Option<SocketAddr>,
    /// HTTPS.
    pub https: Option<SocketAddr>,
}

/// The edge listeners and what they serve; feeds on the snapshot as a part of its own.
pub struct Edge {
    config: EdgeConfig,
    shared: Arc<EdgeShared>,
    certs: Arc<Certificates>,
    acceptor: TlsAcceptor,
    conn_limit: Arc<Semaphore>,
    proxy_metrics: Arc<ProxyMetrics>,
    listeners: Vec<JoinHandle<()>>,
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

impl Drop for Edge {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

impl Proxy {
    /// The edge, sharing this proxy's HTTP machinery, connection limit and metrics.
    pub fn edge(&self, config: EdgeConfig, registry: &prometheus::Registry) -> crate::Result<Edge> {
        let certs = Arc::new(Certificates::default());
        let tls =
            crate::tls::config::server_config(Arc::clone(&certs)).map_err(crate::Error::Tls)?;
        let shared = Arc::new(EdgeShared {
            table: ArcSwap::from_pointee(table::EdgeTable::default()),
            http: Arc::clone(&self.http),
            metrics: EdgeMetrics::register(registry)?,
            listener_metrics: self.metrics.lazy_frontend("ingress:listeners".into()),
            https_port: config.https.map(|a| a.port()),
        });
        Ok(Edge {
            config,
            shared,
            certs,
            acceptor: TlsAcceptor::from(tls),
            conn_limit: Arc::clone(&self.conn_limit),
            proxy_metrics: Arc::clone(&self.metrics),
            listeners: Vec::new(),
            clusters: HashMap::new(),
            view: Arc::default(),
            compiled_with: HashMap::new(),
        })
    }
}

impl Edge {
    /// Applies a snapshot: binds the listeners once there is an Ingress, recompiles the table
    /// when the Ingresses or the ports or settings of a Service they name changed, reloads the
    /// certificates when the Ingresses did, and refreshes backend endpoints.
    pub fn apply_diff(
        &mut self,
        diff: &SnapshotDiff,
        snapshot: &NodeSnapshot,
    ) -> crate::Result<()> {
        if let Some(view) = &diff.edge {
            self.view = Arc::clone(view);
        }
        if !self.view.is_empty() && self.listeners.is_empty() {
            self.bind()?;
        }
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
        if diff.edge.is_some() {
            self.certs.replace(certificates(&self.view));
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
        Ok(())
    }

    fn bind(&mut self) -> crate::Result<()> {
        let mut bound = Vec::new();
        for (addr, tls) in [(self.config.http, false), (self.config.https, true)] {
            let Some(addr) = addr else { continue };
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| crate::Error::Bind {
                    addr,
                    proto: "tcp",
                    service: "ingress".into(),
                    source,
                })?;
            bound.push((listener, tls));
        }
        for (listener, tls) in bound {
            let addr = listener.local_addr().ok();
            let listener =
                TcpListener::from_std(listener).map_err(|source| crate::Error::Bind {
                    addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                    proto: "tcp",
                    service: "ingress".into(),
                    source,
                })?;
            let acceptor = tls.then(|| self.acceptor.clone());
            tracing::info!(addr = ?addr, tls, "ingress listening");
            self.listeners.push(tokio::spawn(accept_loop(
                listener,
                Arc::clone(&self.shared),
                acceptor,
                Arc::clone(&self.conn_limit),
                Arc::clone(&self.proxy_metrics),
            )));
        }
        Ok(())
    }

    /// Compiles the table and the certificates and swaps both in; groups no path uses any
    /// more are dropped (their health checkers stop with them).
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
        };
        let table = compiler.compile(&self.view);
        for (_, cluster) in compiler.clusters.created {
            cluster.update(snapshot.services.get(&cluster.key.backend));
            health::ensure_checker(&cluster, &self.shared.http);
        }
        let used: HashMap<ClusterKey, Arc<Cluster>> = table
            .clusters()
            .into_iter()
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<EdgeShared>,
    tls: Option<TlsAcceptor>,
    limit: Arc<Semaphore>,
    metrics: Arc<ProxyMetrics>,
) {
    crate::io::accept_each(listener, limit, metrics, move |stream, peer| {
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        async move {
            shared.listener_metrics.active.inc();
            serve::connection(Arc::clone(&shared), stream, peer, tls).await;
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
