//! The Gateway half of the edge table: per listener port, sites by host name (exact, then the
//! longest `*.` suffix, then the catch-all). On an HTTP or HTTPS port a site is an L7
//! frontend over the rules of every HTTPRoute attached for that host, in Gateway API
//! precedence (oldest route first on ties); on a passthrough port an L4 frontend over the
//! backends of the oldest TLSRoute taking that SNI name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pier_snapshot::edge::{ListenerMode, ListenerView};
use pier_snapshot::BackendView;
use pier_snapshot::{HttpRouteView, ServiceKey};

use crate::balance::Cluster;
use crate::frontend::{ClusterSet, Frontend, Mode};
use crate::l7::budget::RetryBudget;
use crate::metrics::ProxyMetrics;
use crate::route::{HttpRouter, Rule};

/// One port's sites.
#[derive(Default)]
pub(crate) struct PortSites {
    exact: HashMap<String, Arc<Frontend>>,
    /// `(".example.com", site)`, longest suffix first.
    wildcard: Vec<(String, Arc<Frontend>)>,
    any: Option<Arc<Frontend>>,
}

impl PortSites {
    /// The site for a request's host (lowercase, no port), if any listener takes it.
    pub(crate) fn site(&self, host: &str) -> Option<&Arc<Frontend>> {
        self.exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    })
                    .map(|(_, f)| f)
            })
            .or(self.any.as_ref())
    }

    fn insert(&mut self, host: Option<String>, frontend: Arc<Frontend>) {
        match host {
            None => self.any = Some(frontend),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => self.wildcard.push((suffix.to_string(), frontend)),
                None => {
                    self.exact.insert(h, frontend);
                }
            },
        }
    }

    /// Longest wildcard suffix first.
    fn sort(&mut self) {
        self.wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
    }

    fn frontends(&self) -> impl Iterator<Item = &Arc<Frontend>> {
        self.exact
            .values()
            .chain(self.wildcard.iter().map(|(_, f)| f))
            .chain(&self.any)
    }
}

/// Every Gateway listener port's sites.
#[derive(Default)]
pub(crate) struct GatewayTable {
    ports: HashMap<u16, PortSites>,
}

impl GatewayTable {
    /// The sites of listener port `port`.
    pub(crate) fn port(&self, port: u16) -> Option<&PortSites> {
        self.ports.get(&port)
    }

    /// Every backend group.
    pub(crate) fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.ports
            .values()
            .flat_map(PortSites::frontends)
            .flat_map(|f| f.clusters().into_iter().cloned())
            .collect()
    }
}

/// The routes one host of one port serves, in the order they were attached.
type HostRoutes<'v> = BTreeMap<Option<String>, Vec<&'v Arc<HttpRouteView>>>;

/// Compiles the listeners into per-port sites; a rule that does not compile is logged and
/// left out.
pub(crate) fn compile(
    listeners: &[Arc<ListenerView>],
    clusters: &mut ClusterSet<'_>,
    metrics: &Arc<ProxyMetrics>,
) -> GatewayTable {
    let mut by_port: HashMap<u16, HostRoutes<'_>> = HashMap::new();
    for l in listeners
        .iter()
        .filter(|l| l.mode != ListenerMode::Passthrough)
    {
        let hosts = by_port.entry(l.port).or_default();
        for attached in &l.routes {
            let names: Vec<Option<String>> = if attached.hosts.is_empty() {
                vec![l.hostname.clone()]
            } else {
                attached.hosts.iter().cloned().map(Some).collect()
            };
            for host in names {
                let list = hosts.entry(host).or_default();
                if !list.iter().any(|r| Arc::ptr_eq(r, &attached.route)) {
                    list.push(&attached.route);
                }
            }
        }
    }
    let mut table = GatewayTable::default();
    let mut passthrough: HashMap<u16, BTreeMap<Option<String>, &[BackendView]>> = HashMap::new();
    for l in listeners
        .iter()
        .filter(|l| l.mode == ListenerMode::Passthrough)
    {
        let hosts = passthrough.entry(l.port).or_default();
        for attached in &l.tls_routes {
            let names: Vec<Option<String>> = if attached.hosts.is_empty() {
                vec![l.hostname.clone()]
            } else {
                attached.hosts.iter().cloned().map(Some).collect()
            };
            for host in names {
                // The oldest route keeps a name two claim.
                hosts.entry(host).or_insert(&attached.backends);
            }
        }
    }
    for (port, hosts) in passthrough {
        let mut sites = PortSites::default();
        for (host, backends) in hosts {
            let key = ServiceKey {
                namespace: format!("gateway:{port}"),
                name: host.clone().unwrap_or_else(|| "*".into()),
            };
            let groups = clusters.groups(&key, backends, false, &None);
            let frontend = Arc::new(Frontend {
                policy: Arc::default(),
                client_affinity: false,
                mode: Mode::L4(groups),
                metrics: metrics.lazy_frontend(key.to_string().into()),
                budget: RetryBudget::default(),
            });
            sites.insert(host, frontend);
        }
        sites.sort();
        table.ports.insert(port, sites);
    }
    for (port, hosts) in by_port {
        let mut sites = PortSites::default();
        for (host, routes) in hosts {
            let frontend = site(port, host.as_deref(), &routes, clusters, metrics);
            sites.insert(host, frontend);
        }
        sites.sort();
        table.ports.insert(port, sites);
    }
    table
}

/// One host's frontend: every rule of its routes, 404 when none matches.
fn site(
    port: u16,
    host: Option<&str>,
    routes: &[&Arc<HttpRouteView>],
    clusters: &mut ClusterSet<'_>,
    metrics: &Arc<ProxyMetrics>,
) -> Arc<Frontend> {
    let key = ServiceKey {
        namespace: format!("gateway:{port}"),
        name: host.unwrap_or("*").to_string(),
    };
    let mut rules = Vec::new();
    for route in routes {
        for (i, rule) in route.rules.iter().enumerate() {
            let groups = clusters.groups(&key, &rule.backends, true, &None);
            match Rule::compile(rule, groups) {
                Ok(r) => rules.push(Arc::new(r)),
                Err(e) => tracing::warn!(
                    route = %format!("{}/{}", route.namespace, route.name),
                    rule = i,
                    error = %e,
                    "HTTPRoute rule left out"
                ),
            }
        }
    }
    Arc::new(Frontend {
        policy: Arc::default(),
        client_affinity: false,
        mode: Mode::L7(HttpRouter::new(rules, None)),
        metrics: metrics.lazy_frontend(key.to_string().into()),
        budget: RetryBudget::default(),
    })
}
