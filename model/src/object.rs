//! Objects of every kind (`kind.rs` names the kinds): their identity, validation, defaults
//! and status; `object/parse.rs` parses them from JSON values with field-path errors.

mod parse;

pub use parse::{ObjectError, Parsed};

use serde::Serialize;
use serde_json::Value;

use super::analysis::{AnalysisRun, AnalysisTemplate};
use super::backend_tls::BackendTlsPolicy;
use super::config_map::ConfigMap;
use super::cron_job::CronJob;
use super::daemon_set::DaemonSet;
use super::deployment::Deployment;
use super::endpointslice::EndpointSlice;
use super::gateway::{Gateway, GatewayClass};
use super::hpa::HorizontalPodAutoscaler;
use super::ingress::{Ingress, IngressClass};
use super::job::Job;
pub use super::kind::Kind;
use super::meta::ObjectMeta;
use super::pod::Pod;
use super::replica_set::ReplicaSet;
use super::report::Report;
use super::rollout::Rollout;
use super::route::{HttpRoute, L4Route};
use super::secret::Secret;
use super::service::Service;
use super::validation;
use super::{CoreEvent, Lease, Namespace, Node, ServiceAccount};

/// A stored object of any kind.
// Every variant is a whole Kubernetes object; they travel in short-lived batches or behind
// `Arc`, so boxing each variant would add an allocation without saving memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A Pod.
    Pod(Pod),
    /// A Deployment.
    Deployment(Deployment),
    /// A ReplicaSet.
    ReplicaSet(ReplicaSet),
    /// A Job.
    Job(Job),
    /// A CronJob.
    CronJob(CronJob),
    /// A DaemonSet.
    DaemonSet(DaemonSet),
    /// A horizontal pod autoscaler.
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    /// An Argo Rollout.
    Rollout(Rollout),
    /// An Argo AnalysisTemplate.
    AnalysisTemplate(AnalysisTemplate),
    /// An Argo ClusterAnalysisTemplate.
    ClusterAnalysisTemplate(AnalysisTemplate),
    /// An Argo AnalysisRun.
    AnalysisRun(AnalysisRun),
    /// An HTTPRoute.
    HttpRoute(HttpRoute),
    /// A TCPRoute.
    TcpRoute(L4Route),
    /// A UDPRoute.
    UdpRoute(L4Route),
    /// A TLSRoute.
    TlsRoute(L4Route),
    /// A BackendTLSPolicy.
    BackendTlsPolicy(BackendTlsPolicy),
    /// A Namespace.
    Namespace(Namespace),
    /// A ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Secret.
    Secret(Secret),
    /// An Ingress.
    Ingress(Ingress),
    /// An IngressClass.
    IngressClass(IngressClass),
    /// A GatewayClass.
    GatewayClass(GatewayClass),
    /// A Gateway.
    Gateway(Gateway),
    /// A Node.
    Node(Node),
    /// A Lease.
    Lease(Lease),
    /// An Event.
    Event(CoreEvent),
}

impl Object {
    /// Runs the kind's validation into `report`.
    pub fn validate(&self, report: &mut Report) {
        match self {
            Object::Service(s) => validation::service(s, report),
            Object::EndpointSlice(s) => validation::endpoint_slice(s, report),
            Object::Pod(p) => validation::pod(p, report),
            Object::Deployment(d) => validation::deployment(d, report),
            Object::ReplicaSet(r) => validation::replica_set(r, report),
            Object::Job(j) => validation::job(j, report),
            Object::CronJob(c) => validation::cron_job(c, report),
            Object::DaemonSet(d) => validation::daemon_set(d, report),
            Object::HorizontalPodAutoscaler(h) => validation::hpa(h, report),
            Object::Rollout(r) => validation::rollout(r, report),
            Object::AnalysisTemplate(t) | Object::ClusterAnalysisTemplate(t) => {
                validation::analysis_template(t, report)
            }
            Object::AnalysisRun(run) => validation::analysis_run(run, report),
            Object::HttpRoute(r) => validation::http_route(r, report),
            Object::TcpRoute(r) | Object::UdpRoute(r) | Object::TlsRoute(r) => {
                validation::l4_route(r, report)
            }
            Object::Namespace(n) => validation::namespace(n, report),
            Object::ServiceAccount(a) => validation::service_account(a, report),
            Object::ConfigMap(c) => validation::config_map(c, report),
            Object::Secret(c) => validation::secret(c, report),
            Object::Ingress(i) => validation::ingress(i, report),
            Object::IngressClass(c) => validation::ingress_class(c, report),
            Object::GatewayClass(c) => validation::gateway_class(c, report),
            Object::BackendTlsPolicy(p) => validation::backend_tls_policy(p, report),
            Object::Gateway(g) => validation::gateway(g, report),
            Object::Node(n) => validation::node(n, report),
            Object::Lease(l) => validation::lease(l, report),
            Object::Event(e) => validation::event(e, report),
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Pod(_) => Kind::Pod,
            Object::Deployment(_) => Kind::Deployment,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::Job(_) => Kind::Job,
            Object::CronJob(_) => Kind::CronJob,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::HorizontalPodAutoscaler(_) => Kind::HorizontalPodAutoscaler,
            Object::Rollout(_) => Kind::Rollout,
            Object::AnalysisTemplate(_) => Kind::AnalysisTemplate,
            Object::ClusterAnalysisTemplate(_) => Kind::ClusterAnalysisTemplate,
            Object::AnalysisRun(_) => Kind::AnalysisRun,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::TcpRoute(_) => Kind::TcpRoute,
            Object::UdpRoute(_) => Kind::UdpRoute,
            Object::TlsRoute(_) => Kind::TlsRoute,
            Object::BackendTlsPolicy(_) => Kind::BackendTlsPolicy,
            Object::Namespace(_) => Kind::Namespace,
            Object::ServiceAccount(_) => Kind::ServiceAccount,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
            Object::Ingress(_) => Kind::Ingress,
            Object::IngressClass(_) => Kind::IngressClass,
            Object::GatewayClass(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::Node(_) => Kind::Node,
            Object::Lease(_) => Kind::Lease,
            Object::Event(_) => Kind::Event,
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::HorizontalPodAutoscaler(o) => &o.metadata,
            Object::Rollout(o) => &o.metadata,
            Object::AnalysisTemplate(o) | Object::ClusterAnalysisTemplate(o) => &o.metadata,
            Object::AnalysisRun(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::TcpRoute(o) | Object::UdpRoute(o) | Object::TlsRoute(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::BackendTlsPolicy(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Lease(o) => &o.metadata,
            Object::Event(o) => &o.metadata,
        }
    }

    /// The object's metadata, mutably.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::ReplicaSet(o) => &mut o.metadata,
            Object::Job(o) => &mut o.metadata,
            Object::CronJob(o) => &mut o.metadata,
            Object::DaemonSet(o) => &mut o.metadata,
            Object::HorizontalPodAutoscaler(o) => &mut o.metadata,
            Object::Rollout(o) => &mut o.metadata,
            Object::AnalysisTemplate(o) | Object::ClusterAnalysisTemplate(o) => &mut o.metadata,
            Object::AnalysisRun(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::TcpRoute(o) | Object::UdpRoute(o) | Object::TlsRoute(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::ServiceAccount(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::Ingress(o) => &mut o.metadata,
            Object::IngressClass(o) => &mut o.metadata,
            Object::GatewayClass(o) => &mut o.metadata,
            Object::BackendTlsPolicy(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::Lease(o) => &mut o.metadata,
            Object::Event(o) => &mut o.metadata,
        }
    }

    /// The object as a JSON value.
    pub fn to_value(&self) -> Value {
        fn v<T: Serialize>(t: &T) -> Value {
            serde_json::to_value(t).unwrap_or(Value::Null)
        }
        match self {
            Object::Service(o) => v(o),
            Object::EndpointSlice(o) => v(o),
            Object::Pod(o) => v(o),
            Object::Deployment(o) => v(o),
            Object::ReplicaSet(o) => v(o),
            Object::Job(o) => v(o),
            Object::CronJob(o) => v(o),
            Object::DaemonSet(o) => v(o),
            Object::HorizontalPodAutoscaler(o) => v(o),
            Object::Rollout(o) => v(o),
            Object::AnalysisTemplate(o) | Object::ClusterAnalysisTemplate(o) => v(o),
            Object::GatewayClass(o) => v(o),
            Object::BackendTlsPolicy(o) => v(o),
            Object::Gateway(o) => v(o),
            Object::AnalysisRun(o) => v(o),
            Object::HttpRoute(o) => v(o),
            Object::TcpRoute(o) | Object::UdpRoute(o) | Object::TlsRoute(o) => v(o),
            Object::Namespace(o) => v(o),
            Object::ServiceAccount(o) => v(o),
            Object::ConfigMap(o) => v(o),
            Object::Secret(o) => v(o),
            Object::Ingress(o) => v(o),
            Object::IngressClass(o) => v(o),
            Object::Node(o) => v(o),
            Object::Lease(o) => v(o),
            Object::Event(o) => v(o),
        }
    }

    /// Fills the fields the API server defaults on a write (Services' defaults, a Secret's
    /// `stringData` folded into `data`, a Pod's `serviceAccountName` from its deprecated
    /// alias, an Ingress backend port's `number: 0` dropped, a DaemonSet's update strategy;
    /// other kinds as given).
    pub fn set_defaults(&mut self) {
        match self {
            Object::Service(s) => s.set_defaults(),
            Object::Ingress(i) => i.set_defaults(),
            Object::DaemonSet(d) => d.set_defaults(),
            Object::Secret(s) => *s = std::mem::take(s).folded(),
            Object::Pod(p) if p.spec.service_account_name.is_none() => {
                p.spec
                    .service_account_name
                    .clone_from(&p.spec.service_account);
            }
            _ => {}
        }
    }

    /// Whether this object's status is written apart from the rest (Kubernetes' `status`
    /// subresource): writes of the object keep the stored status, status writes keep the rest.
    pub fn has_status_subresource(&self) -> bool {
        self.kind().has_status_subresource()
    }

    /// Takes `from`'s status (for kinds with a status subresource; `None` clears it).
    pub fn set_status_from(&mut self, from: Option<&Object>) {
        match self {
            Object::Deployment(d) => {
                d.status = match from {
                    Some(Object::Deployment(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::Rollout(r) => {
                r.status = match from {
                    Some(Object::Rollout(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::Job(j) => {
                j.status = match from {
                    Some(Object::Job(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::DaemonSet(d) => {
                d.status = match from {
                    Some(Object::DaemonSet(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::CronJob(c) => {
                c.status = match from {
                    Some(Object::CronJob(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::HorizontalPodAutoscaler(h) => {
                h.status = match from {
                    Some(Object::HorizontalPodAutoscaler(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::AnalysisRun(run) => {
                run.status = match from {
                    Some(Object::AnalysisRun(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::Ingress(i) => {
                i.status = match from {
                    Some(Object::Ingress(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::HttpRoute(r) => {
                r.status = match from {
                    Some(Object::HttpRoute(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::TlsRoute(r) => {
                r.status = match from {
                    Some(Object::TlsRoute(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::GatewayClass(c) => {
                c.status = match from {
                    Some(Object::GatewayClass(f)) => f.status.clone(),
                    _ => None,
                };
            }
            Object::Gateway(g) => {
                g.status = match from {
                    Some(Object::Gateway(f)) => f.status.clone(),
                    _ => None,
                };
            }
            _ => {}
        }
    }

    /// The spec-like part whose change bumps `generation` (everything but metadata and status).
    pub fn spec_value(&self) -> Value {
        let mut v = self.to_value();
        if let Value::Object(map) = &mut v {
            map.remove("metadata");
            map.remove("status");
        }
        v
    }

    /// `kind namespace/name` (`kind name` when cluster-scoped), for messages.
    pub fn describe(&self) -> String {
        if self.kind().namespaced() {
            format!(
                "{} {}/{}",
                self.kind(),
                self.meta().namespace(),
                self.meta().name
            )
        } else {
            format!("{} {}", self.kind(), self.meta().name)
        }
    }

    /// The namespace the object lives in; `""` for a cluster-scoped one.
    pub fn scope(&self) -> &str {
        if self.kind().namespaced() {
            self.meta().namespace()
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names() {
        assert_eq!("svc".parse::<Kind>(), Ok(Kind::Service));
        assert_eq!("HTTPRoutes".parse::<Kind>(), Ok(Kind::HttpRoute));
        assert!("widgets".parse::<Kind>().is_err());
    }
}
