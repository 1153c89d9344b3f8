//! Objects of every kind (`kind.rs` names the kinds), parsed from JSON values with field-path errors.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::analysis::{AnalysisRun, AnalysisTemplate};
use super::backend_tls::BackendTlsPolicy;
use super::config_map::ConfigMap;
use super::deployment::Deployment;
use super::endpointslice::EndpointSlice;
use super::gateway::{Gateway, GatewayClass};
use super::hpa::HorizontalPodAutoscaler;
use super::ignored::{is_known_ignored, is_unset};
use super::ingress::{Ingress, IngressClass};
pub use super::kind::Kind;
use super::meta::ObjectMeta;
use super::pod::Pod;
use super::replica_set::ReplicaSet;
use super::report::{FieldError, Report};
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

/// Why a value could not become an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectError {
    /// Kind and name, when they could be read (`Service default/web`).
    pub object: Option<String>,
    /// The problems.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => many.iter().try_for_each(|e| write!(f, "\n  - {e}")),
        }
    }
}

/// A valid object plus the Kubernetes fields it carried that pier ignores.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The object.
    pub object: Object,
    /// Paths of accepted-but-ignored fields.
    pub ignored: Vec<String>,
}

/// A typed object, the ignored Kubernetes fields and the unknown-field errors found while parsing.
type TypedParse<T> = (T, Vec<String>, Vec<FieldError>);

fn typed<T: DeserializeOwned>(value: Value, kind: Kind) -> Result<TypedParse<T>, Vec<FieldError>> {
    let mut unused = Vec::new();
    let result = {
        let mut record = |path: serde_ignored::Path<'_>| unused.push(render_path(&path));
        // Read by reference: the value is still needed to tell unset ignored fields apart.
        let de = serde_ignored::Deserializer::new(&value, &mut record);
        serde_path_to_error::deserialize::<_, T>(de)
    };
    let parsed = result.map_err(|e| {
        let path = e.path().to_string();
        vec![FieldError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }]
    })?;
    let mut ignored = Vec::new();
    let mut errors = Vec::new();
    for path in unused {
        if is_known_ignored(kind, &normalize(&path)) {
            if !is_unset(&value, &path) {
                ignored.push(path);
            }
        } else {
            errors.push(FieldError {
                path,
                message: "unknown field".into(),
            });
        }
    }
    Ok((parsed, ignored, errors))
}

fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        Path::Map { parent, key } => {
            let p = render_path(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render_path(parent),
    }
}

/// `spec.ports[3].foo` → `spec.ports[].foo`, the form ignore patterns use.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

impl Object {
    /// Parses and validates one manifest document.
    pub fn from_value(value: Value) -> Result<Parsed, ObjectError> {
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let api_version = field("apiVersion");
        let kind_name = field("kind");
        let fail = |path: &str, message: String| ObjectError {
            object: None,
            errors: vec![FieldError {
                path: path.into(),
                message,
            }],
        };
        let Some(kind_name) = kind_name else {
            return Err(fail("kind", "required value".into()));
        };
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default")
            .to_string();
        let cluster_scoped = Kind::from_kind_field(&kind_name).is_some_and(|k| !k.namespaced());
        let scoped_name = if cluster_scoped {
            name.clone()
        } else {
            format!("{ns}/{name}")
        };
        let Some(kind) = Kind::from_kind_field(&kind_name) else {
            let served: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(ObjectError {
                object: Some(format!("{kind_name} {scoped_name}")),
                errors: vec![FieldError {
                    path: "kind".into(),
                    message: format!(
                        "unsupported kind {kind_name:?}: pier serves {}",
                        served.join(", ")
                    ),
                }],
            });
        };
        let Some(api_version) = api_version else {
            return Err(fail("apiVersion", "required value".into()));
        };
        if !kind.api_versions().contains(&api_version.as_str()) {
            return Err(fail(
                "apiVersion",
                format!(
                    "{kind} is not served at {api_version:?}; use one of {:?}",
                    kind.api_versions()
                ),
            ));
        }
        let label = format!("{kind} {scoped_name}");
        let with_label = |errors| ObjectError {
            object: Some(label.clone()),
            errors,
        };
        let (object, ignored, errors) = match kind {
            Kind::Service => typed(value, kind).map(|(o, i, e)| (Object::Service(o), i, e)),
            Kind::EndpointSlice => {
                typed(value, kind).map(|(o, i, e)| (Object::EndpointSlice(o), i, e))
            }
            Kind::Pod => typed(value, kind).map(|(o, i, e)| (Object::Pod(o), i, e)),
            Kind::Deployment => typed(value, kind).map(|(o, i, e)| (Object::Deployment(o), i, e)),
            Kind::ReplicaSet => typed(value, kind).map(|(o, i, e)| (Object::ReplicaSet(o), i, e)),
            Kind::HorizontalPodAutoscaler => {
                typed(value, kind).map(|(o, i, e)| (Object::HorizontalPodAutoscaler(o), i, e))
            }
            Kind::Rollout => typed(value, kind).map(|(o, i, e)| (Object::Rollout(o), i, e)),
            Kind::AnalysisTemplate => {
                typed(value, kind).map(|(o, i, e)| (Object::AnalysisTemplate(o), i, e))
            }
            Kind::ClusterAnalysisTemplate => {
                typed(value, kind).map(|(o, i, e)| (Object::ClusterAnalysisTemplate(o), i, e))
            }
            Kind::AnalysisRun => typed(value, kind).map(|(o, i, e)| (Object::AnalysisRun(o), i, e)),
            Kind::HttpRoute => typed(value, kind).map(|(o, i, e)| (Object::HttpRoute(o), i, e)),
            Kind::TcpRoute => typed(value, kind).map(|(o, i, e)| (Object::TcpRoute(o), i, e)),
            Kind::UdpRoute => typed(value, kind).map(|(o, i, e)| (Object::UdpRoute(o), i, e)),
            Kind::TlsRoute => typed(value, kind).map(|(o, i, e)| (Object::TlsRoute(o), i, e)),
            Kind::BackendTlsPolicy => {
                typed(value, kind).map(|(o, i, e)| (Object::BackendTlsPolicy(o), i, e))
            }
            Kind::Namespace => typed(value, kind).map(|(o, i, e)| (Object::Namespace(o), i, e)),
            Kind::ServiceAccount => {
                typed(value, kind).map(|(o, i, e)| (Object::ServiceAccount(o), i, e))
            }
            Kind::ConfigMap => typed(value, kind).map(|(o, i, e)| (Object::ConfigMap(o), i, e)),
            Kind::Secret => typed(value, kind).map(|(o, i, e)| (Object::Secret(o), i, e)),
            Kind::Ingress => typed(value, kind).map(|(o, i, e)| (Object::Ingress(o), i, e)),
            Kind::IngressClass => {
                typed(value, kind).map(|(o, i, e)| (Object::IngressClass(o), i, e))
            }
            Kind::GatewayClass => {
                typed(value, kind).map(|(o, i, e)| (Object::GatewayClass(o), i, e))
            }
            Kind::Gateway => typed(value, kind).map(|(o, i, e)| (Object::Gateway(o), i, e)),
            Kind::Node => typed(value, kind).map(|(o, i, e)| (Object::Node(o), i, e)),
            Kind::Lease => typed(value, kind).map(|(o, i, e)| (Object::Lease(o), i, e)),
            Kind::Event => typed(value, kind).map(|(o, i, e)| (Object::Event(o), i, e)),
        }
        .map_err(with_label)?;
        let mut report = Report { errors, ignored };
        object.validate(&mut report);
        if report.errors.is_empty() {
            Ok(Parsed {
                object,
                ignored: report.ignored,
            })
        } else {
            Err(with_label(report.errors))
        }
    }

    /// Parses an object the store wrote (already valid).
    pub fn from_stored(bytes: &[u8]) -> Result<Object, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Object::from_value(value)
            .map(|p| p.object)
            .map_err(|e| e.to_string())
    }

    /// Runs the kind's validation into `report`.
    pub fn validate(&self, report: &mut Report) {
        match self {
            Object::Service(s) => validation::service(s, report),
            Object::EndpointSlice(s) => validation::endpoint_slice(s, report),
            Object::Pod(p) => validation::pod(p, report),
            Object::Deployment(d) => validation::deployment(d, report),
            Object::ReplicaSet(r) => validation::replica_set(r, report),
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
    /// alias, an Ingress backend port's `number: 0` dropped; other kinds as given).
    pub fn set_defaults(&mut self) {
        match self {
            Object::Service(s) => s.set_defaults(),
            Object::Ingress(i) => i.set_defaults(),
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
    fn normalizes_indexes() {
        assert_eq!(normalize("spec.ports[12].foo"), "spec.ports[].foo");
        assert_eq!(normalize("metadata.labels[a.b/c]"), "metadata.labels[]");
    }

    #[test]
    fn kind_names() {
        assert_eq!("svc".parse::<Kind>(), Ok(Kind::Service));
        assert_eq!("HTTPRoutes".parse::<Kind>(), Ok(Kind::HttpRoute));
        assert!("widgets".parse::<Kind>().is_err());
    }
}
