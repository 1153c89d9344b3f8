//! Backend groups ("clusters"): their endpoints, health and ejection state, and endpoint picking.

mod in_flight;
pub(crate) mod maglev;
mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pier_snapshot::policy::{LoadBalancer, TrafficPolicy};
use pier_snapshot::{PortView, ServiceKey, ServiceView, TargetPort, UpstreamTls};

use crate::metrics::{EndpointMetrics, GroupMetrics, Lazy, ProxyMetrics};
use crate::tls::upstream::TlsClient;
pub(crate) use in_flight::InFlight;
use maglev::Maglev;
pub(crate) use pool::IdlePool;

/// Milliseconds since the first call: a cheap monotonic clock for atomics.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Longest single ejection.
const MAX_EJECTION: Duration = Duration::from_secs(600);

/// State of one endpoint that outlives snapshots: load, health, ejection, idle connections,
/// metric handles (one allocation per endpoint).
#[derive(Default)]
pub(crate) struct EndpointState {
    /// Idle HTTP/1.1 connections.
    pub idle: IdlePool,
    /// Metric handles, resolved on first use (see [`Cluster::metrics_of`]); boxed, so an
    /// endpoint that never took traffic costs one pointer.
    metrics: OnceLock<Box<EndpointMetrics>>,
    /// Requests or connections in flight.
    pub active: AtomicU32,
    unhealthy: AtomicBool,
    ejected_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    times_ejected: AtomicU32,
    /// Consecutive active-check results: positive = successes, negative = failures.
    pub(crate) check_streak: std::sync::atomic::AtomicI32,
}

impl EndpointState {
    /// Whether the endpoint may take new traffic now (passes checks, not ejected).
    pub(crate) fn available(&self, now: u64) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }

    fn ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now
    }

    /// The active-check verdict.
    pub(crate) fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    /// Sets the active-check verdict.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.unhealthy.store(!healthy, Ordering::Relaxed);
    }
}

/// One endpoint of a group.
pub(crate) struct Member {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Ready for new traffic.
    pub ready: bool,
    /// Serving and terminating: used only when nothing is ready.
    pub draining: bool,
    /// State kept across snapshots.
    pub state: Arc<EndpointState>,
}

/// A snapshot of a group's endpoints and settings.
pub(crate) struct Members {
    /// Every endpoint, ready or not.
    pub list: Vec<Arc<Member>>,
    /// Settings of the backend Service.
    pub policy: Arc<TrafficPolicy>,
    /// Effective balancing.
    pub lb: LoadBalancer,
    /// The backend speaks HTTP/2 (without TLS unless `tls`).
    pub h2c: bool,
    /// TLS toward the endpoints (a BackendTLSPolicy on the port).
    pub tls: Option<Arc<TlsClient>>,
    pool: Vec<usize>,
    maglev: Option<Maglev>,
}

impl Members {
    fn empty() -> Self {
        Self {
            list: Vec::new(),
            policy: TrafficPolicy::shared_default(),
            lb: LoadBalancer::RoundRobin,
            h2c: false,
            tls: None,
            pool: Vec::new(),
            maglev: None,
        }
    }
}

/// Identifies a group: frontend service, backend service and backend port, and whether only
/// one node's endpoints serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClusterKey {
    /// The service clients addressed.
    pub frontend: ServiceKey,
    /// The service whose endpoints serve.
    pub backend: ServiceKey,
    /// Port of the backend service.
    pub port: u16,
    /// Only the endpoints on this node (a `Local` traffic policy); `None`: every endpoint.
    pub node: Option<Arc<str>>,
}

/// A backend group: what one weighted backendRef (or a plain service port) balances over.
pub(crate) struct Cluster {
    /// Identity.
    pub key: ClusterKey,
    /// `namespace/name` of the frontend, for metric labels.
    pub frontend_label: Arc<str>,
    /// `namespace/name` of the backend, for metric labels.
    pub backend_label: Arc<str>,
    members: ArcSwap<Members>,
    /// The backend's latest view while `members` is not yet built from it: a group builds
    /// its endpoints when traffic first needs them, so thousands of Services nobody calls
    /// cost one pointer each. Once used, a group builds on every update.
    pending: Mutex<Option<Arc<ServiceView>>>,
    /// `pending` holds a view newer than `members`.
    stale: AtomicBool,
    /// Traffic has asked for this group's endpoints.
    used: AtomicBool,
    rr: AtomicU64,
    /// Per-group metrics.
    pub metrics: Lazy<GroupMetrics>,
    proxy_metrics: Arc<ProxyMetrics>,
    /// Which protocol the group serves: decides the default balancer.
    l7: bool,
    /// An active health checker runs for this group.
    pub checker_running: AtomicBool,
    /// How an Ingress's annotations make the group speak, whatever the Service says.
    speak: Mutex<Speak>,
}

/// How an Ingress (`backend-protocol`, `proxy-ssl-*`) makes a group speak to its endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Speak {
    /// HTTP/2 whatever the port's appProtocol says (`GRPC`, `GRPCS`).
    pub h2: bool,
    /// TLS (`HTTPS`, `GRPCS`); a BackendTLSPolicy on the port takes precedence.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// Why nothing could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoEndpoint {
    /// The group has no ready or draining endpoint.
    Empty,
    /// Every candidate was already tried.
    Exhausted,
}

impl Cluster {
    /// An empty group; fill it with `update`.
    pub(crate) fn new(key: ClusterKey, l7: bool, metrics: &Arc<ProxyMetrics>) -> Self {
        let frontend_label: Arc<str> = key.frontend.to_string().into();
        let backend_label: Arc<str> = key.backend.to_string().into();
        Self {
            metrics: metrics.lazy_group(Arc::clone(&frontend_label), Arc::clone(&backend_label)),
            frontend_label,
            backend_label,
            key,
            members: ArcSwap::from_pointee(Members::empty()),
            pending: Mutex::new(None),
            stale: AtomicBool::new(false),
            used: AtomicBool::new(false),
            rr: AtomicU64::new(0),
            proxy_metrics: Arc::clone(metrics),
            l7,
            checker_running: AtomicBool::new(false),
            speak: Mutex::new(Speak::default()),
        }
    }

    /// Sets how the group speaks to its endpoints; whether that changed (it then applies
    /// from the group's next `update`).
    pub(crate) fn speak(&self, speak: Speak) -> bool {
        let mut current = self.speak.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == speak {
            return false;
        }
        *current = speak;
        true
    }

    /// Current endpoints (built from the latest view first, if it has not been yet).
    pub(crate) fn members(&self) -> arc_swap::Guard<Arc<Members>> {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        if self.stale.load(Ordering::Acquire) {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(view) = pending.take() {
                // Built before it is marked fresh: a request that then skips the lock must
                // find the endpoints, not the empty list from before.
                self.build(Some(&view));
                self.stale.store(false, Ordering::Release);
            }
        }
        self.members.load()
    }

    /// Whether the group's Service asks for active health checks.
    pub(crate) fn wants_health_checks(&self) -> bool {
        // A group whose Service asks for checks is never left unbuilt (see `update`).
        !self.stale.load(Ordering::Acquire) && self.members.load().policy.health_check.is_some()
    }

    /// Takes the backend service's latest view (or none if it is gone): builds the endpoint
    /// list from it now if the group has taken traffic or is health-checked, otherwise when
    /// traffic first asks for it.
    pub(crate) fn update(&self, backend: Option<&Arc<ServiceView>>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let checked = backend.is_some_and(|b| b.policy.health_check.is_some());
        if let Some(view) = backend.filter(|_| !checked && !self.used.load(Ordering::Relaxed)) {
            *pending = Some(Arc::clone(view));
            self.stale.store(true, Ordering::Release);
            return;
        }
        *pending = None;
        self.build(backend.map(AsRef::as_ref));
        self.stale.store(false, Ordering::Release);
    }

    /// Rebuilds the endpoint list from the backend service's view (or none if it is gone).
    ///
    /// Endpoints that stay keep their load, health and ejection state.
    fn build(&self, backend: Option<&ServiceView>) {
        let old = self.members.load_full();
        let port = backend.and_then(|s| s.ports.iter().find(|p| p.port == self.key.port));
        let (Some(svc), Some(port)) = (backend, port) else {
            self.forget(&old.list, &[]);
            self.members.store(Arc::new(Members::empty()));
            return;
        };
        let mut list: Vec<Arc<Member>> = Vec::with_capacity(svc.endpoints.len());
        let here = |ep: &pier_snapshot::EndpointView| {
            self.key.node.as_deref().is_none_or(|n| ep.on_node(n))
        };
        for ep in svc.endpoints.iter().filter(|ep| here(ep)) {
            let Some(target) = target_port(port, ep) else {
                continue;
            };
            let addr = SocketAddr::new(ep.address, target);
            if list.iter().any(|m| m.addr == addr) {
                continue;
            }
            let draining = ep.serving && ep.terminating;
            let ready = ep.ready && !ep.terminating;
            let state = old
                .list
                .iter()
                .find(|m| m.addr == addr)
                .map_or_else(Arc::default, |m| Arc::clone(&m.state));
            list.push(Arc::new(Member {
                addr,
                ready,
                draining,
                state,
            }));
        }
        self.forget(&old.list, &list);
        let policy = Arc::clone(&svc.policy);
        let lb = match policy.load_balancer {
            Some(lb) => lb,
            None if svc.affinity_timeout.is_some() => LoadBalancer::Maglev,
            None if self.l7 => LoadBalancer::LeastRequest,
            None => LoadBalancer::RoundRobin,
        };
        let mut pool: Vec<usize> = (0..list.len()).filter(|i| list[*i].ready).collect();
        if pool.is_empty() {
            pool = (0..list.len()).filter(|i| list[*i].draining).collect();
        }
        let maglev = (lb == LoadBalancer::Maglev)
            .then(|| {
                let keys: Vec<String> = pool.iter().map(|i| list[*i].addr.to_string()).collect();
                Maglev::new(&keys)
            })
            .flatten();
        let speak = self
            .speak
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let tls = match (port.upstream_tls.as_ref().or(speak.tls.as_ref()), &old.tls) {
            (None, _) => None,
            (Some(want), Some(had)) if *had.source == **want => Some(Arc::clone(had)),
            (Some(want), _) => Some(Arc::new(TlsClient::new(Arc::clone(want)))),
        };
        let tls_changed = match (&tls, &old.tls) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, None) => false,
            _ => true,
        };
        if tls_changed {
            // Idle connections were opened the other way (TLS or not, or another policy).
            for m in &list {
                m.state.idle.clear();
            }
        }
        self.members.store(Arc::new(Members {
            tls,
            list,
            h2c: speak.h2 || port.app_protocol.as_deref() == Some("kubernetes.io/h2c"),
            policy,
            lb,
            pool,
            maglev,
        }));
    }

    fn forget(&self, old: &[Arc<Member>], new: &[Arc<Member>]) {
        for m in old {
            if m.state.metrics.get().is_some() && !new.iter().any(|n| n.addr == m.addr) {
                self.proxy_metrics.forget_endpoint(
                    &self.frontend_label,
                    &self.backend_label,
                    m.addr,
                );
            }
        }
    }

    /// Picks an endpoint for new traffic, skipping `tried`; `hash` drives Maglev.
    pub(crate) fn pick(&self, hash: u64, tried: &[SocketAddr]) -> Result<Arc<Member>, NoEndpoint> {
        let m = self.members();
        let pool = &m.pool;
        if pool.is_empty() {
            return Err(NoEndpoint::Empty);
        }
        let now = now_ms();
        let len = pool.len() as u64;
        let usable = |i: usize| -> Option<&Arc<Member>> {
            let member = m.list.get(i)?;
            (member.state.available(now) && !tried.contains(&member.addr)).then_some(member)
        };
        let start = match m.lb {
            LoadBalancer::RoundRobin => self.rr.fetch_add(1, Ordering::Relaxed),
            LoadBalancer::Random => rand::random::<u64>(),
            LoadBalancer::LeastRequest => {
                let (a, b) = (rand::random::<u64>() % len, rand::random::<u64>() % len);
                let pa = usable(pool[a as usize]);
                let pb = usable(pool[b as usize]);
                match (pa, pb) {
                    (Some(x), Some(y)) => {
                        let load = |m: &Member| m.state.active.load(Ordering::Relaxed);
                        return Ok(Arc::clone(if load(y) < load(x) { y } else { x }));
                    }
                    (Some(x), None) | (None, Some(x)) => return Ok(Arc::clone(x)),
                    (None, None) => a,
                }
            }
            LoadBalancer::Maglev => match &m.maglev {
                Some(table) => {
                    let i = table.lookup(hash);
                    if let Some(member) = pool.get(i).and_then(|i| usable(*i)) {
                        return Ok(Arc::clone(member));
                    }
                    hash
                }
                None => hash,
            },
        };
        for k in 0..len {
            let i = pool[((start.wrapping_add(k)) % len) as usize];
            if let Some(member) = usable(i) {
                return Ok(Arc::clone(member));
            }
        }
        // Panic mode, as Envoy: when every candidate fails its checks, ignore health rather than fail.
        for k in 0..len {
            let i = pool[((start.wrapping_add(k)) % len) as usize];
            if let Some(member) = m.list.get(i).filter(|m| !tried.contains(&m.addr)) {
                return Ok(Arc::clone(member));
            }
        }
        Err(NoEndpoint::Exhausted)
    }

    /// The metric handles of `member`, resolved on first use.
    pub(crate) fn metrics_of<'a>(&self, member: &'a Member) -> &'a EndpointMetrics {
        member.state.metrics.get_or_init(|| {
            Box::new(self.proxy_metrics.endpoint(
                &self.frontend_label,
                &self.backend_label,
                member.addr,
            ))
        })
    }

    /// Records a good response or connect; resets the failure streak.
    pub(crate) fn success(&self, member: &Member) {
        if member.state.consecutive_failures.load(Ordering::Relaxed) != 0 {
            member
                .state
                .consecutive_failures
                .store(0, Ordering::Relaxed);
        }
    }

    /// Records a 5xx or a failed connect; ejects the endpoint after enough in a row.
    pub(crate) fn failure(&self, member: &Member) {
        let m = self.members.load();
        let outlier = &m.policy.outlier;
        let streak = member
            .state
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if outlier.consecutive_failures == 0 || streak < outlier.consecutive_failures {
            return;
        }
        let now = now_ms();
        if member.state.ejected(now) {
            return;
        }
        let ejected = m.list.iter().filter(|x| x.state.ejected(now)).count();
        let allowed = (ejected + 1) * 100 <= m.list.len() * outlier.max_ejection_percent as usize;
        if ejected > 0 && !allowed {
            return;
        }
        let times = member.state.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = outlier
            .base_ejection_time
            .saturating_mul(times)
            .min(MAX_EJECTION);
        let until = now + u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 2);
        member
            .state
            .ejected_until_ms
            .store(until, Ordering::Relaxed);
        member
            .state
            .consecutive_failures
            .store(0, Ordering::Relaxed);
        self.metrics_of(member).ejections.inc();
        tracing::warn!(
            service = %self.frontend_label,
            backend = %self.backend_label,
            endpoint = %member.addr,
            ?duration,
            "endpoint ejected after {streak} consecutive failures"
        );
    }
}

/// The endpoint port that serves `port`: a fixed number, or the endpoint's port of that name.
fn target_port(port: &PortView, ep: &pier_snapshot::EndpointView) -> Option<u16> {
    match &port.target_port {
        TargetPort::Number(n) if ep.ports.is_empty() => Some(*n),
        TargetPort::Number(_) => ep.port_for(port),
        TargetPort::Named(_) => ep.port_for(port),
    }
}

#[cfg(test)]
mod tests;
