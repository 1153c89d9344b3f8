//! The edge's routing table, compiled from the snapshot's Ingresses: sites by host (exact,
//! then one-label wildcard, then the catch-all), each site's paths in ingress-nginx's order,
//! and for each path its main backend and the canary attached to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pier_snapshot::edge::{
    BackendPort, Canary, EdgeView, IngressBackendView, IngressSettings, IngressView,
};
use pier_snapshot::weights::SlotTable;
use pier_snapshot::{NodeSnapshot, ServiceKey, UpstreamTls};
use regex::Regex;

use super::metrics::{BackendCounters, EdgeMetrics};
use crate::balance::{Cluster, ClusterKey, Speak};
use crate::frontend::{ClusterSet, Frontend, Groups, Mode};
use crate::l7::budget::RetryBudget;
use crate::route::{HttpRouter, PathMatch};

/// Where one Ingress path sends: one Service port, as a frontend of its own.
pub(crate) struct Backend {
    /// Its `pier_ingress_*` handles, kept from table to table while it serves.
    pub counters: Arc<BackendCounters>,
    /// Answers requests (routing, retries, the read timeout).
    pub frontend: Arc<Frontend>,
}

/// A canary Ingress attached to a main Ingress's path.
pub(crate) struct CanaryBackend {
    /// The canary's backend.
    pub backend: Backend,
    /// Its annotations.
    pub rules: Canary,
    /// `canary-by-header-pattern`, compiled.
    pub pattern: Option<Regex>,
    /// Turns of main (0) and canary (1) by weight.
    split: SlotTable,
    next: AtomicU64,
}

impl CanaryBackend {
    /// Whether the next request left to the weight goes to the canary.
    pub(crate) fn weighted_turn(&self) -> bool {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.split.pick(n) == Some(1)
    }
}

/// What serves one path of a host.
pub(crate) struct Target {
    /// The main Ingress's backend.
    pub main: Backend,
    /// The main Ingress's settings.
    pub settings: IngressSettings,
    /// `rewrite-target`: the path pattern and its replacement.
    pub rewrite: Option<(Regex, String)>,
    /// A canary Ingress on the same host and path.
    pub canary: Option<CanaryBackend>,
}

/// Larger sorts first: exact paths, then longer ones.
fn precedence(rule: &PathMatch) -> (bool, usize) {
    match rule {
        PathMatch::Exact(p) => (true, p.len()),
        PathMatch::Prefix(p) => (false, p.len()),
        PathMatch::Regex(r) => (false, r.as_str().len()),
    }
}

struct Route {
    /// `(exact, path)` as written, to find the main path a canary's path names.
    written: (bool, String),
    rule: PathMatch,
    target: Target,
}

/// One host's paths.
#[derive(Default)]
pub(crate) struct Site {
    routes: Vec<Route>,
    fallback: Option<Target>,
    /// The host has a certificate (plain HTTP is redirected unless `ssl-redirect: "false"`).
    pub tls: bool,
}

impl Site {
    /// The target of a request path: the first matching path, else the default backend.
    pub(crate) fn target(&self, path: &str) -> Option<&Target> {
        self.routes
            .iter()
            .find(|r| r.rule.matches(path))
            .map(|r| &r.target)
            .or(self.fallback.as_ref())
    }
}

/// Every host the edge serves.
#[derive(Default)]
pub(crate) struct EdgeTable {
    exact: HashMap<String, Site>,
    wildcard: HashMap<String, Site>,
    any: Site,
}

impl EdgeTable {
    /// The site for a request's host (lowercase, no port).
    pub(crate) fn site(&self, host: &str) -> &Site {
        self.exact
            .get(host)
            .or_else(|| {
                host.split_once('.')
                    .and_then(|(_, suffix)| self.wildcard.get(suffix))
            })
            .unwrap_or(&self.any)
    }

    /// Every backend group, to keep and update.
    pub(crate) fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.backends()
            .flat_map(|b| b.frontend.clusters().into_iter().cloned())
            .collect()
    }

    /// Every backend of every path, main and canary.
    pub(crate) fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain([&self.any])
            .flat_map(|site| site.routes.iter().map(|r| &r.target).chain(&site.fallback))
            .flat_map(|t| [Some(&t.main), t.canary.as_ref().map(|c| &c.backend)])
            .flatten()
    }

    fn site_mut(&mut self, host: Option<&str>) -> &mut Site {
        match host {
            None => &mut self.any,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_string()).or_default(),
                None => self.exact.entry(h.to_string()).or_default(),
            },
        }
    }
}

/// What compiling needs: the services (ports, policies) and the groups to reuse or create.
pub(crate) struct Compiler<'a> {
    pub snapshot: &'a NodeSnapshot,
    pub edge_metrics: &'a EdgeMetrics,
    /// The last table's counters by their labels, to go on counting in.
    pub counters: HashMap<[String; 3], Arc<BackendCounters>>,
    /// The groups the paths send to, kept across tables.
    pub clusters: ClusterSet<'a>,
    /// Groups whose Ingress changed how they speak: they need an update to take it.
    pub respoken: Vec<Arc<Cluster>>,
}

/// TLS to `backend` as `ing`'s `proxy-ssl-*` annotations say, ingress-nginx's defaults
/// otherwise: no verification, no SNI; the name is the Service's `name.namespace.svc`.
fn upstream_tls(ing: &IngressView, backend: &ServiceKey) -> UpstreamTls {
    let ssl = &ing.settings.proxy_ssl;
    UpstreamTls {
        source: format!("Ingress {}", ing.id()),
        server_name: ssl
            .name
            .clone()
            .unwrap_or_else(|| format!("{}.{}.svc", backend.name, backend.namespace)),
        sni: ssl.server_name,
        verify: ssl.verify,
        ca_pem: ssl.ca_pem.clone(),
        client: ssl.client.clone(),
    }
}

impl Compiler<'_> {
    /// Compiles the view; an Ingress path whose pattern does not compile is left out and logged.
    pub(crate) fn compile(&mut self, view: &EdgeView) -> EdgeTable {
        let mut table = EdgeTable::default();
        let (canaries, mains): (Vec<_>, Vec<_>) = view
            .ingresses
            .iter()
            .partition(|i| i.settings.canary.is_some());
        for ing in &mains {
            self.add_main(&mut table, ing);
        }
        for ing in &canaries {
            self.add_canary(&mut table, ing);
        }
        for site in table
            .exact
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain([&mut table.any])
        {
            // Stable: equal paths keep the older Ingress first.
            site.routes
                .sort_by_key(|r| std::cmp::Reverse(precedence(&r.rule)));
        }
        table
    }

    fn add_main(&mut self, table: &mut EdgeTable, ing: &IngressView) {
        let tls_hosts: Vec<&str> = ing
            .tls
            .iter()
            .flat_map(|t| {
                if t.hosts.is_empty() {
                    ing.rules.iter().filter_map(|r| r.host.as_deref()).collect()
                } else {
                    t.hosts.iter().map(String::as_str).collect::<Vec<_>>()
                }
            })
            .collect();
        for rule in &ing.rules {
            let host = rule.host.as_deref();
            let mut added = Vec::new();
            for path in &rule.paths {
                let rule_of = match path_rule(&path.path, path.exact, &ing.settings) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(ingress = %ing.id(), path = %path.path, error = %e, "path left out");
                        continue;
                    }
                };
                let written = (path.exact, path.path.clone());
                if table
                    .site_mut(host)
                    .routes
                    .iter()
                    .any(|r| r.written == written)
                {
                    // An older Ingress has this host and path.
                    continue;
                }
                let pattern = match &rule_of {
                    PathMatch::Regex(r) => Some(r.clone()),
                    _ => None,
                };
                let target = self.target(ing, host, &path.backend, pattern);
                added.push(Route {
                    written,
                    rule: rule_of,
                    target,
                });
            }
            let fallback = ing
                .default_backend
                .as_ref()
                .map(|b| self.target(ing, host, b, None));
            let site = table.site_mut(host);
            site.routes.extend(added);
            site.tls |= host.is_some_and(|h| tls_hosts.contains(&h));
            if site.fallback.is_none() {
                site.fallback = fallback;
            }
        }
        if let Some(b) = &ing.default_backend {
            if table.any.fallback.is_none() {
                table.any.fallback = Some(self.target(ing, None, b, None));
            }
        }
    }

    fn add_canary(&mut self, table: &mut EdgeTable, ing: &IngressView) {
        let Some(rules) = &ing.settings.canary else {
            return;
        };
        for rule in &ing.rules {
            for path in &rule.paths {
                let backend = self.backend(ing, rule.host.as_deref(), &path.backend);
                let site = table.site_mut(rule.host.as_deref());
                let written = (path.exact, path.path.clone());
                let Some(route) = site.routes.iter_mut().find(|r| r.written == written) else {
                    tracing::debug!(ingress = %ing.id(), path = %path.path, "canary path has no main Ingress");
                    continue;
                };
                if route.target.canary.is_some() {
                    continue;
                }
                let pattern = rules
                    .by_header_pattern
                    .as_deref()
                    .and_then(|p| Regex::new(p).ok());
                let canary_weight = rules.weight.min(rules.weight_total);
                route.target.canary = Some(CanaryBackend {
                    backend,
                    rules: rules.clone(),
                    pattern,
                    split: SlotTable::new(&[rules.weight_total - canary_weight, canary_weight]),
                    next: AtomicU64::new(0),
                });
            }
        }
    }

    /// A path's target; `pattern` is the path as a regular expression when it is rewritten.
    fn target(
        &mut self,
        ing: &IngressView,
        host: Option<&str>,
        b: &IngressBackendView,
        pattern: Option<Regex>,
    ) -> Target {
        let rewrite = pattern.zip(ing.settings.rewrite_target.clone());
        Target {
            main: self.backend(ing, host, b),
            settings: ing.settings.clone(),
            rewrite,
            canary: None,
        }
    }

    /// A Service port as a frontend of its own: every attempt limited by the read timeout;
    /// counted under the Ingress, its `host` rule (`*` for none) and the backend.
    fn backend(
        &mut self,
        ing: &IngressView,
        host: Option<&str>,
        b: &IngressBackendView,
    ) -> Backend {
        let svc = self.snapshot.services.get(&b.service);
        let port = match &b.port {
            BackendPort::Number(n) => Some(*n),
            BackendPort::Name(name) => svc
                .and_then(|s| s.ports.iter().find(|p| p.name == *name))
                .map(|p| p.port),
        };
        let frontend_key = ServiceKey {
            namespace: format!("ingress:{}", ing.namespace),
            name: ing.name.clone(),
        };
        let cluster = port.map(|port| {
            let key = ClusterKey {
                frontend: frontend_key.clone(),
                backend: b.service.clone(),
                port,
                node: None,
            };
            self.cluster(key, ing)
        });
        let policy = svc.map(|s| Arc::clone(&s.policy)).unwrap_or_default();
        let groups = Groups::new(vec![(cluster, 1)]);
        let label = match &b.port {
            BackendPort::Number(n) => format!("{}:{n}", b.service),
            BackendPort::Name(n) => format!("{}:{n}", b.service),
        };
        let labels = [ing.id(), host.unwrap_or("*").to_string(), label];
        let counters = match self.counters.get(&labels) {
            Some(c) => Arc::clone(c),
            None => {
                let [ingress, host, backend] = &labels;
                let c = Arc::new(self.edge_metrics.backend(ingress, host, backend));
                self.counters.insert(labels, Arc::clone(&c));
                c
            }
        };
        Backend {
            counters,
            frontend: Arc::new(Frontend {
                policy,
                client_affinity: false,
                mode: Mode::L7(HttpRouter::single(groups, Some(ing.settings.read_timeout))),
                metrics: self
                    .clusters
                    .metrics
                    .lazy_frontend(frontend_key.to_string().into()),
                budget: RetryBudget::default(),
            }),
        }
    }

    /// The group of one backend of `ing`, speaking as its `backend-protocol` says.
    fn cluster(&mut self, key: ClusterKey, ing: &IngressView) -> Arc<Cluster> {
        let protocol = ing.settings.backend_protocol;
        let tls = protocol
            .tls()
            .then(|| Arc::new(upstream_tls(ing, &key.backend)));
        let c = self.clusters.get(key, true);
        if c.speak(Speak {
            h2: protocol.h2(),
            tls,
        }) {
            self.respoken.push(Arc::clone(&c));
        }
        c
    }
}

/// A path as ingress-nginx matches it: with `use-regex` or `rewrite-target`, a
/// case-insensitive regular expression matched from the start; otherwise exact, or a prefix
/// of whole path elements.
fn path_rule(path: &str, exact: bool, settings: &IngressSettings) -> Result<PathMatch, String> {
    if settings.use_regex || settings.rewrite_target.is_some() {
        return Regex::new(&format!("(?i)^{path}"))
            .map(PathMatch::Regex)
            .map_err(|e| format!("bad regular expression: {e}"));
    }
    Ok(if exact {
        PathMatch::Exact(path.to_string())
    } else {
        PathMatch::Prefix(path.trim_end_matches('/').to_string())
    })
}

/// The path after `rewrite-target`, as nginx's `rewrite` makes it: the whole path replaced by
/// the target, `$1`.. naming the pattern's groups.
pub(crate) fn rewritten(pattern: &Regex, target: &str, path: &str) -> String {
    let Some(caps) = pattern.captures(path) else {
        return path.to_string();
    };
    // `$1x` is group 1 then `x` to nginx, but a group named `1x` to the regex crate.
    let mut template = String::with_capacity(target.len() + 8);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            template.push_str("${");
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                template.push(d);
            }
            template.push('}');
        } else {
            template.push(c);
        }
    }
    let mut out = String::new();
    caps.expand(&template, &mut out);
    if out.starts_with('/') {
        out
    } else {
        format!("/{out}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_follow_nginx() {
        let r = Regex::new("(?i)^/something(/|$)(.*)").unwrap();
        assert_eq!(rewritten(&r, "/$2", "/something/new/x"), "/new/x");
        assert_eq!(rewritten(&r, "/$2", "/something"), "/");
        assert_eq!(rewritten(&r, "/v1/$2x", "/SOMETHING/a"), "/v1/ax");
        let app = Regex::new("(?i)^/app").unwrap();
        assert_eq!(rewritten(&app, "/", "/app/deep"), "/");
        assert_eq!(rewritten(&app, "/", "/other"), "/other");
    }

    #[test]
    fn prefixes_match_whole_elements() {
        let p = PathMatch::Prefix("/api".into());
        assert!(p.matches("/api") && p.matches("/api/x") && !p.matches("/apix"));
        assert!(PathMatch::Prefix(String::new()).matches("/anything"));
        assert!(PathMatch::Exact("/a".into()).matches("/a"));
        assert!(!PathMatch::Exact("/a".into()).matches("/a/"));
    }
}
