//! Gateway API routes: `HTTPRoute` (on Services GAMMA-style, or on Gateway listeners),
//! `TCPRoute` and `UDPRoute` (on Services), `TLSRoute` (on Gateway passthrough listeners).

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

pub use pier_snapshot::route::{
    HeaderModifier, HttpPathMatch, HttpRouteFilter, HttpRouteMatch, HttpValueMatch, PathModifier,
    RequestRedirect, UrlRewrite,
};

use crate::gateway::RouteStatus;

/// Per-request routing for a Service port (`gateway.networking.k8s.io/v1/HTTPRoute`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`).
    pub api_version: String,
    /// `HTTPRoute`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Routing rules.
    #[serde(default)]
    pub spec: HttpRouteSpec,
    /// Whether each Gateway parent accepted the route (written by pier's gateway controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Services (GAMMA) this route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names to match (`Host` header).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules, first match wins by Gateway API precedence.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// One rule of an HTTPRoute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Any of these matches selects the rule; none means match everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// What is done to matching requests and their answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Request and per-try timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
}

/// `rules[].timeouts`, as Gateway API durations (`10s`, `500ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// Whole-request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Per-try timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// Reference to the parent a route attaches to: a Service (GAMMA) or a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group: `""` or absent with kind `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service` for GAMMA routes, `Gateway` (the default) for Gateway listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Parent namespace; defaults to the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Parent name.
    pub name: String,
    /// Port name of the parent Service, or listener name of the parent Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Port number of the parent Service or of the Gateway listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// A weighted backend: a Service and port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// API group: `""` or absent for a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Service name.
    pub name: String,
    /// Service namespace; defaults to the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Relative weight, 0..=1,000,000; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// A per-connection (TCP, TLS by SNI) or per-flow (UDP) weighted split: `TCPRoute`,
/// `UDPRoute`, `TLSRoute`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4Route {
    /// `gateway.networking.k8s.io/v1alpha2` or `v1`.
    pub api_version: String,
    /// `TCPRoute`, `UDPRoute` or `TLSRoute`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Parents and rules.
    #[serde(default)]
    pub spec: L4RouteSpec,
    /// Whether each Gateway parent accepted the route (TLSRoute; written by pier's gateway
    /// controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// `TCPRoute.spec` / `UDPRoute.spec` / `TLSRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteSpec {
    /// Services (TCP, UDP) or Gateways (TLS) this route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// TLSRoute: the SNI host names it takes (none: every name its listener takes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules; pier uses the first rule's backends.
    #[serde(default)]
    pub rules: Vec<L4RouteRule>,
}

/// One TCP/UDP route rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteRule {
    /// Rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}

/// Whether `group` names the core API group: empty, as Gateway API writes it, or `core`,
/// as Linkerd's and Argo's examples do.
pub fn is_core_group(group: &str) -> bool {
    group.is_empty() || group == "core"
}

impl BackendRef {
    /// `group/Kind` when the reference is not to a Service (pier cannot resolve it).
    pub fn unsupported_kind(&self) -> Option<String> {
        let group = self.group.as_deref().unwrap_or("");
        let kind = self.kind.as_deref().unwrap_or("Service");
        (!is_core_group(group) || kind != "Service").then(|| format!("{group}/{kind}"))
    }

    /// Effective weight.
    pub fn weight(&self) -> i64 {
        self.weight.unwrap_or(1)
    }
}

impl ParentReference {
    /// Whether this names a Gateway (`gateway.networking.k8s.io/Gateway`, the default).
    pub fn is_gateway(&self) -> bool {
        self.group.as_deref().unwrap_or(crate::gateway::GROUP) == crate::gateway::GROUP
            && self.kind.as_deref().unwrap_or("Gateway") == "Gateway"
    }

    /// Whether this names a Service (GAMMA).
    pub fn is_service(&self) -> bool {
        is_core_group(self.group.as_deref().unwrap_or(""))
            && self.kind.as_deref() == Some("Service")
    }
}
