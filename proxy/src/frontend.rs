//! What a listener serves: one service port, its weighted backend groups, and for L7 its HTTP routes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pier_snapshot::policy::TrafficPolicy;
use pier_snapshot::{BackendView, PortMode, PortView, ServiceKey, ServiceView};

use crate::balance::{Cluster, ClusterKey};
use crate::l7::budget::RetryBudget;
use crate::metrics::{FrontendMetrics, Lazy, ProxyMetrics};
use crate::route::{HttpRouter, Rule};
use pier_snapshot::weights::SlotTable;

/// Weighted backend groups split per connection, flow or request.
pub(crate) struct Groups {
    table: SlotTable,
    /// One per weighted backend; `None` for an unresolved one, whose turns are refused.
    clusters: Vec<Option<Arc<Cluster>>>,
    next: AtomicU64,
}

impl Groups {
    /// Groups with their weights (zero-weight groups get no traffic; `None` is a backend
    /// that cannot be resolved, whose share is refused).
    pub(crate) fn new(weighted: Vec<(Option<Arc<Cluster>>, u32)>) -> Self {
        let weights: Vec<u32> = weighted.iter().map(|(_, w)| *w).collect();
        Self {
            table: SlotTable::new(&weights),
            clusters: weighted.into_iter().map(|(c, _)| c).collect(),
            next: AtomicU64::new(0),
        }
    }

    /// The next group in weighted turn, or the one `sticky` hashes to; `None` when there is
    /// none or the turn is an unresolved backend's.
    pub(crate) fn pick(&self, sticky: Option<u64>) -> Option<&Arc<Cluster>> {
        let n = sticky.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed));
        self.table
            .pick(n)
            .and_then(|i| self.clusters.get(i))
            .and_then(Option::as_ref)
    }

    /// Every group, for cluster bookkeeping.
    pub(crate) fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.iter().flatten()
    }
}

/// How a frontend's traffic is handled.
pub(crate) enum Mode {
    /// Per connection or UDP flow.
    L4(Groups),
    /// Per HTTP request.
    L7(HttpRouter),
}

/// One service port as served by the proxy.
pub(crate) struct Frontend {
    /// The service's proxy settings.
    pub policy: Arc<TrafficPolicy>,
    /// `sessionAffinity: ClientIP`.
    pub client_affinity: bool,
    /// L4 or L7 handling.
    pub mode: Mode,
    /// Metric handles, resolved on first use.
    pub metrics: Lazy<FrontendMetrics>,
    /// Retry allowance shared by the frontend's requests.
    pub budget: RetryBudget,
}

impl Frontend {
    /// Every group this frontend can send to.
    pub(crate) fn clusters(&self) -> Vec<&Arc<Cluster>> {
        match &self.mode {
            Mode::L4(g) => g.clusters().collect(),
            Mode::L7(r) => r.clusters(),
        }
    }

    /// Time a TCP connection or UDP flow may stay idle.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.policy.idle_timeout
    }
}

/// Finds or creates the groups frontends refer to; keeps them across snapshots.
pub(crate) struct ClusterSet<'a> {
    /// Groups that existed before this snapshot.
    pub existing: &'a HashMap<ClusterKey, Arc<Cluster>>,
    /// Groups created for this snapshot.
    pub created: HashMap<ClusterKey, Arc<Cluster>>,
    /// Metrics for new groups.
    pub metrics: &'a Arc<ProxyMetrics>,
}

/// Whose endpoints a listener's groups balance over: the cluster's, or (a `Local` traffic
/// policy) this node's.
pub(crate) type Locality = Option<Arc<str>>;

impl ClusterSet<'_> {
    /// The group `key` names: an existing one, else one made for this snapshot.
    pub(crate) fn get(&mut self, key: ClusterKey, l7: bool) -> Arc<Cluster> {
        if let Some(c) = self.existing.get(&key).or_else(|| self.created.get(&key)) {
            return Arc::clone(c);
        }
        let c = Arc::new(Cluster::new(key.clone(), l7, self.metrics));
        self.created.insert(key, Arc::clone(&c));
        c
    }

    /// The weighted groups of `backends`, as seen from `frontend`.
    pub(crate) fn groups(
        &mut self,
        frontend: &ServiceKey,
        backends: &[BackendView],
        l7: bool,
        node: &Locality,
    ) -> Groups {
        Groups::new(
            backends
                .iter()
                .map(|b| {
                    let key = ClusterKey {
                        frontend: frontend.clone(),
                        backend: b.service.clone(),
                        port: b.port,
                        node: node.clone(),
                    };
                    let cluster = b.unresolved.is_none().then(|| self.get(key, l7));
                    (cluster, b.weight)
                })
                .collect(),
        )
    }
}

/// Builds the frontend of one port of `svc`, balancing over the endpoints `node` allows;
/// errors describe a route that cannot be compiled.
pub(crate) fn build(
    svc: &ServiceView,
    port: &PortView,
    node: &Locality,
    clusters: &mut ClusterSet<'_>,
    metrics: &Arc<ProxyMetrics>,
) -> Result<Frontend, String> {
    let own = || BackendView::service(svc.key.clone(), port.port, 1);
    let mode = match port.mode {
        PortMode::L7 => {
            let mut rules = Vec::new();
            for route in &svc.http_routes {
                if !route
                    .parents
                    .iter()
                    .any(|a| a.service == svc.key && a.covers(port))
                {
                    continue;
                }
                for (i, rule) in route.rules.iter().enumerate() {
                    let groups = clusters.groups(&svc.key, &rule.backends, true, node);
                    let r = Rule::compile(rule, groups).map_err(|e| {
                        format!("HTTPRoute {}/{} rule {i}: {e}", route.namespace, route.name)
                    })?;
                    rules.push(Arc::new(r));
                }
            }
            let default = rules
                .is_empty()
                .then(|| clusters.groups(&svc.key, &[own()], true, node));
            Mode::L7(HttpRouter::new(rules, default))
        }
        PortMode::L4 => {
            let route = svc.l4_routes.iter().find(|r| {
                r.protocol == port.protocol
                    && r.parents
                        .iter()
                        .any(|a| a.service == svc.key && a.covers(port))
            });
            let backends = match route {
                Some(r) => r.backends.clone(),
                None => vec![own()],
            };
            Mode::L4(clusters.groups(&svc.key, &backends, false, node))
        }
    };
    Ok(Frontend {
        policy: Arc::clone(&svc.policy),
        client_affinity: svc.affinity_timeout.is_some(),
        mode,
        metrics: metrics.lazy_frontend(svc.key.to_string().into()),
        budget: RetryBudget::default(),
    })
}
