//! Gateway API `GatewayClass` and `Gateway` (`gateway.networking.k8s.io/v1`), and the status
//! conditions Gateway API objects share.

use serde::{Deserialize, Serialize};

use super::meta::{LabelSelector, ObjectMeta};
use super::route::ParentReference;

/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The `spec.controllerName` of a GatewayClass pier serves.
pub const CONTROLLER: &str = "pier.dev/gateway-controller";

/// A class of Gateways and the controller serving them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClass {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`).
    pub api_version: String,
    /// `GatewayClass`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The controller.
    #[serde(default)]
    pub spec: GatewayClassSpec,
    /// Whether the controller accepted the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConditionsStatus>,
}

/// `GatewayClass.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller serving Gateways of this class (`pier.dev/gateway-controller` for pier).
    #[serde(default)]
    pub controller_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl GatewayClass {
    /// Whether pier serves Gateways of this class.
    pub fn is_pier(&self) -> bool {
        self.spec.controller_name == CONTROLLER
    }
}

/// A status made of conditions only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionsStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A `metav1.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `Programmed`, `ResolvedRefs`, ...
    #[serde(rename = "type")]
    pub condition_type: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
}

/// A load balancer: listeners on the node addresses, for routes to attach to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`).
    pub api_version: String,
    /// `Gateway`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Class and listeners.
    #[serde(default)]
    pub spec: GatewaySpec,
    /// Addresses, conditions and each listener's state (written by pier's gateway controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass.
    #[serde(default)]
    pub gateway_class_name: String,
    /// Listeners (1..=64).
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses (pier serves on every node's address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayAddress>,
}

/// An address of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` (default) or `Hostname`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
    /// The address.
    #[serde(default)]
    pub value: String,
}

/// One listener: a port, a protocol and the host names it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway; routes name it as `sectionName`.
    pub name: String,
    /// Host name or `*.` wildcard; none takes every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port.
    pub port: i64,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP` or `UDP`.
    pub protocol: String,
    /// Certificates (HTTPS, TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Secrets holding the certificate and key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
}

impl ListenerTls {
    /// Whether TLS is passed through to the backend (SNI picks the TLSRoute).
    pub fn passthrough(&self) -> bool {
        self.mode.as_deref() == Some("Passthrough")
    }
}

/// A reference to a Secret (`group: ""`, `kind: Secret`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Secret` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; defaults to the Gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl SecretObjectReference {
    /// Whether this names a core Secret.
    pub fn is_secret(&self) -> bool {
        crate::route::is_core_group(self.group.as_deref().unwrap_or(""))
            && self.kind.as_deref().unwrap_or("Secret") == "Secret"
    }
}

/// `listeners[].allowedRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Whose routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Which route kinds (default: the protocol's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Namespace labels, with `Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A route kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Group (default `gateway.networking.k8s.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `HTTPRoute`, `TLSRoute`, ...
    pub kind: String,
}

/// `Gateway.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Where the Gateway is reached: the Ready nodes' addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayAddress>,
    /// `Accepted`, `Programmed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Each listener's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// `status.listeners[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener.
    pub name: String,
    /// Route kinds it takes.
    #[serde(default)]
    pub supported_kinds: Vec<RouteGroupKind>,
    /// How many routes are attached.
    #[serde(default)]
    pub attached_routes: i64,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A route's `status`: one entry per parent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// Per parent.
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// `status.parents[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent, as the route names it.
    pub parent_ref: ParentReference,
    /// The controller writing this entry.
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
