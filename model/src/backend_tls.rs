//! Gateway API `BackendTLSPolicy`: TLS from pier to a Service's endpoints, verified against a
//! CA in a ConfigMap (or the system's) for a host name.

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// The ConfigMap key holding the CA certificates, PEM.
pub const CA_KEY: &str = "ca.crt";

/// TLS toward the endpoints of the Services it targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicy {
    /// `gateway.networking.k8s.io/v1` (or `v1alpha3`).
    pub api_version: String,
    /// `BackendTLSPolicy`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Targets and validation.
    #[serde(default)]
    pub spec: BackendTlsPolicySpec,
}

/// `BackendTLSPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    /// The Services (and optionally their ports, by name) it applies to.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    /// How the endpoints' certificates are checked.
    #[serde(default)]
    pub validation: BackendTlsValidation,
}

/// A Service, and optionally one of its ports by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// `""` (core).
    #[serde(default)]
    pub group: String,
    /// `Service`.
    pub kind: String,
    /// The Service's name (same namespace).
    pub name: String,
    /// The port's name; none: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `spec.validation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsValidation {
    /// ConfigMaps whose `ca.crt` holds the CA certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System`: the machine's CA certificates instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub well_known_ca_certificates: Option<String>,
    /// The name sent as SNI and checked in the endpoint's certificate.
    #[serde(default)]
    pub hostname: String,
}

/// A reference to an object in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// `""` (core).
    #[serde(default)]
    pub group: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Name.
    pub name: String,
}

impl BackendTlsPolicy {
    /// Whether it applies to port `port_name` of Service `service` (its namespace's).
    pub fn targets(&self, service: &str, port_name: &str) -> bool {
        self.spec.target_refs.iter().any(|t| {
            crate::route::is_core_group(&t.group)
                && t.kind == "Service"
                && t.name == service
                && t.section_name.as_deref().is_none_or(|s| s == port_name)
        })
    }
}
