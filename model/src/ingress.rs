//! `networking.k8s.io/v1` `Ingress` and `IngressClass`: host and path rules to Service ports,
//! TLS from Secrets, served by the node's edge listeners for the classes pier controls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta::ObjectMeta;

/// The `spec.controller` of an IngressClass pier serves.
pub const CONTROLLER: &str = "pier.dev/ingress-controller";
/// The class pier serves even when no IngressClass object names it.
pub const CLASS: &str = "pier";
/// Marks the IngressClass that Ingresses without a class get.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation older manifests use instead of `spec.ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// An Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ingress {
    /// `networking.k8s.io/v1`.
    pub api_version: String,
    /// `Ingress`.
    pub kind: String,
    /// Object metadata (ingress-nginx annotations live here).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Rules, TLS and the default backend.
    #[serde(default)]
    pub spec: IngressSpec,
    /// The addresses it is served on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IngressStatus>,
}

/// `Ingress.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The IngressClass that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Where requests no rule matches go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<IngressBackend>,
    /// Certificates for hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
    /// Host rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<IngressRule>,
}

/// `spec.tls[]`: a Secret's certificate for some hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Hosts the certificate is for (none: the listener's default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// A `kubernetes.io/tls` Secret in the Ingress's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// `spec.rules[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Host (`*.example.com` wildcards one label); none matches every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpIngressRuleValue>,
}

/// `rules[].http`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressRuleValue {
    /// Paths to backends.
    #[serde(default)]
    pub paths: Vec<HttpIngressPath>,
}

/// `rules[].http.paths[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressPath {
    /// The path (`/` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Exact`, `Prefix` or `ImplementationSpecific` (a prefix here).
    #[serde(default)]
    pub path_type: String,
    /// Where matching requests go.
    #[serde(default)]
    pub backend: IngressBackend,
}

/// A backend: a Service port, or a resource (which pier does not route to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressBackend {
    /// A Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<IngressServiceBackend>,
    /// A typed reference to another kind of object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
}

/// `backend.service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressServiceBackend {
    /// Service name, in the Ingress's namespace.
    pub name: String,
    /// Its port, by number or name.
    #[serde(default)]
    pub port: ServiceBackendPort,
}

/// `backend.service.port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackendPort {
    /// The port's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
}

/// `Ingress.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressStatus {
    /// Where it is served.
    #[serde(default)]
    pub load_balancer: IngressLoadBalancerStatus,
}

/// `status.loadBalancer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressLoadBalancerStatus {
    /// One entry per address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressLoadBalancerIngress>,
}

/// `status.loadBalancer.ingress[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressLoadBalancerIngress {
    /// An IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// A host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port statuses (kept as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Value>,
}

impl ServiceBackendPort {
    /// The number, when set (0, which Go clients send with a name, is unset).
    pub fn number(&self) -> Option<i64> {
        self.number.filter(|n| *n != 0)
    }
}

impl Ingress {
    /// Whether pier serves it, given the IngressClasses: its class is `pier` or one whose
    /// controller is pier's, or it names none and pier's class is the default.
    pub fn is_served_by_pier<'a>(
        &self,
        classes: impl IntoIterator<Item = &'a IngressClass>,
    ) -> bool {
        let mut classes = classes.into_iter();
        match self.class_name() {
            Some(CLASS) => true,
            Some(name) => classes.any(|c| c.metadata.name == name && c.is_pier()),
            None => classes.any(|c| c.is_pier() && c.is_default()),
        }
    }

    /// Drops backend ports' `number: 0`, which Go clients send beside a name and the API
    /// server does not keep.
    pub fn set_defaults(&mut self) {
        let paths = self
            .spec
            .rules
            .iter_mut()
            .filter_map(|r| r.http.as_mut())
            .flat_map(|h| h.paths.iter_mut())
            .map(|p| &mut p.backend);
        for backend in paths.chain(self.spec.default_backend.as_mut()) {
            if let Some(s) = backend.service.as_mut() {
                s.port.number = s.port.number();
            }
        }
    }

    /// The class it asks for: `spec.ingressClassName`, else the older annotation.
    pub fn class_name(&self) -> Option<&str> {
        self.spec.ingress_class_name.as_deref().or_else(|| {
            self.metadata
                .annotations
                .get(CLASS_ANNOTATION)
                .map(String::as_str)
        })
    }
}

/// An IngressClass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressClass {
    /// `networking.k8s.io/v1`.
    pub api_version: String,
    /// `IngressClass`.
    pub kind: String,
    /// Object metadata (the default-class annotation lives here).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The controller and its parameters.
    #[serde(default)]
    pub spec: IngressClassSpec,
}

/// `IngressClass.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressClassSpec {
    /// Which controller serves the class (`pier.dev/ingress-controller` for pier).
    #[serde(default)]
    pub controller: String,
    /// Controller-specific parameters (kept, not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, Value>>,
}

impl IngressClass {
    /// Whether pier serves this class.
    pub fn is_pier(&self) -> bool {
        self.spec.controller == CONTROLLER
    }

    /// Whether Ingresses without a class get this one.
    pub fn is_default(&self) -> bool {
        self.metadata
            .annotations
            .get(DEFAULT_CLASS_ANNOTATION)
            .is_some_and(|v| v == "true")
    }
}
