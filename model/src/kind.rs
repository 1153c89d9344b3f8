//! The kinds of object pier stores: their `kind` and `apiVersion` values, plural names and
//! scope, and the names the CLI accepts for them.

use std::fmt;
use std::str::FromStr;

/// The kinds of object pier understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1/Service`.
    Service,
    /// `discovery.k8s.io/v1/EndpointSlice`.
    EndpointSlice,
    /// `v1/Pod`.
    Pod,
    /// `apps/v1/Deployment`.
    Deployment,
    /// `apps/v1/ReplicaSet` (one revision of a Deployment).
    ReplicaSet,
    /// `batch/v1/Job`.
    Job,
    /// `batch/v1/CronJob`.
    CronJob,
    /// `apps/v1/DaemonSet`.
    DaemonSet,
    /// `gateway.networking.k8s.io/v1/HTTPRoute`.
    HttpRoute,
    /// `gateway.networking.k8s.io/v1alpha2/TCPRoute`.
    TcpRoute,
    /// `gateway.networking.k8s.io/v1alpha2/UDPRoute`.
    UdpRoute,
    /// `gateway.networking.k8s.io/v1alpha2/TLSRoute` (passthrough by SNI on a Gateway).
    TlsRoute,
    /// `gateway.networking.k8s.io/v1/BackendTLSPolicy` (TLS toward a Service's endpoints).
    BackendTlsPolicy,
    /// `v1/Namespace` (cluster-scoped).
    Namespace,
    /// `v1/ServiceAccount`.
    ServiceAccount,
    /// `v1/Node` (cluster-scoped).
    Node,
    /// `coordination.k8s.io/v1/Lease`.
    Lease,
    /// `v1/Event`.
    Event,
    /// `autoscaling/v2/HorizontalPodAutoscaler`.
    HorizontalPodAutoscaler,
    /// `argoproj.io/v1alpha1/Rollout`.
    Rollout,
    /// `argoproj.io/v1alpha1/AnalysisTemplate`.
    AnalysisTemplate,
    /// `argoproj.io/v1alpha1/ClusterAnalysisTemplate` (cluster-scoped).
    ClusterAnalysisTemplate,
    /// `argoproj.io/v1alpha1/AnalysisRun`.
    AnalysisRun,
    /// `v1/ConfigMap`.
    ConfigMap,
    /// `v1/Secret`.
    Secret,
    /// `networking.k8s.io/v1/Ingress`.
    Ingress,
    /// `networking.k8s.io/v1/IngressClass` (cluster-scoped).
    IngressClass,
    /// `gateway.networking.k8s.io/v1/GatewayClass` (cluster-scoped).
    GatewayClass,
    /// `gateway.networking.k8s.io/v1/Gateway`.
    Gateway,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 29] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::HttpRoute,
        Kind::TcpRoute,
        Kind::UdpRoute,
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Node,
        Kind::Lease,
        Kind::Event,
        Kind::HorizontalPodAutoscaler,
        Kind::Rollout,
        Kind::AnalysisTemplate,
        Kind::ClusterAnalysisTemplate,
        Kind::AnalysisRun,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Ingress,
        Kind::IngressClass,
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::TlsRoute,
        Kind::BackendTlsPolicy,
        Kind::Job,
        Kind::CronJob,
        Kind::DaemonSet,
    ];

    /// Whether objects of this kind live in a namespace (all but Namespace, Node,
    /// ClusterAnalysisTemplate, IngressClass and GatewayClass).
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace
                | Kind::Node
                | Kind::ClusterAnalysisTemplate
                | Kind::IngressClass
                | Kind::GatewayClass
        )
    }

    /// The `kind` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::DaemonSet => "DaemonSet",
            Kind::HttpRoute => "HTTPRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::UdpRoute => "UDPRoute",
            Kind::Namespace => "Namespace",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::GatewayClass => "GatewayClass",
            Kind::TlsRoute => "TLSRoute",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::Gateway => "Gateway",
            Kind::Node => "Node",
            Kind::Lease => "Lease",
            Kind::Event => "Event",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::Rollout => "Rollout",
            Kind::AnalysisTemplate => "AnalysisTemplate",
            Kind::ClusterAnalysisTemplate => "ClusterAnalysisTemplate",
            Kind::AnalysisRun => "AnalysisRun",
        }
    }

    /// Lowercase plural resource name (`services`), as in kubectl and API paths.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Pod => "pods",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::Job => "jobs",
            Kind::CronJob => "cronjobs",
            Kind::DaemonSet => "daemonsets",
            Kind::HttpRoute => "httproutes",
            Kind::TcpRoute => "tcproutes",
            Kind::UdpRoute => "udproutes",
            Kind::Namespace => "namespaces",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Ingress => "ingresses",
            Kind::IngressClass => "ingressclasses",
            Kind::GatewayClass => "gatewayclasses",
            Kind::TlsRoute => "tlsroutes",
            Kind::BackendTlsPolicy => "backendtlspolicies",
            Kind::Gateway => "gateways",
            Kind::Node => "nodes",
            Kind::Lease => "leases",
            Kind::Event => "events",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Kind::Rollout => "rollouts",
            Kind::AnalysisTemplate => "analysistemplates",
            Kind::ClusterAnalysisTemplate => "clusteranalysistemplates",
            Kind::AnalysisRun => "analysisruns",
        }
    }

    /// The apiVersions accepted for this kind; the first is the one pier writes.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Service
            | Kind::Pod
            | Kind::Namespace
            | Kind::ServiceAccount
            | Kind::ConfigMap
            | Kind::Secret
            | Kind::Node
            | Kind::Event => &["v1"],
            Kind::Lease => &["coordination.k8s.io/v1"],
            Kind::Ingress | Kind::IngressClass => &["networking.k8s.io/v1"],
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
            Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet => &["apps/v1"],
            Kind::Job | Kind::CronJob => &["batch/v1"],
            Kind::HorizontalPodAutoscaler => &["autoscaling/v2"],
            Kind::Rollout
            | Kind::AnalysisTemplate
            | Kind::ClusterAnalysisTemplate
            | Kind::AnalysisRun => &["argoproj.io/v1alpha1"],
            Kind::HttpRoute | Kind::GatewayClass | Kind::Gateway => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1beta1",
            ],
            Kind::BackendTlsPolicy => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1alpha3",
            ],
            Kind::TlsRoute => &[
                "gateway.networking.k8s.io/v1alpha2",
                "gateway.networking.k8s.io/v1alpha3",
                "gateway.networking.k8s.io/v1",
            ],
            Kind::TcpRoute | Kind::UdpRoute => &[
                "gateway.networking.k8s.io/v1alpha2",
                "gateway.networking.k8s.io/v1",
            ],
        }
    }

    /// Whether the kind's status is written apart from its spec (the `status` subresource).
    pub fn has_status_subresource(self) -> bool {
        matches!(
            self,
            Kind::Deployment
                | Kind::Job
                | Kind::CronJob
                | Kind::DaemonSet
                | Kind::Rollout
                | Kind::AnalysisRun
                | Kind::HorizontalPodAutoscaler
                | Kind::Ingress
                | Kind::HttpRoute
                | Kind::TlsRoute
                | Kind::GatewayClass
                | Kind::Gateway
        )
    }

    /// Resolves a `kind` field value.
    pub fn from_kind_field(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    /// Parses a CLI kind name: singular, plural, short name or Kind, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let kind = match lower.as_str() {
            "service" | "services" | "svc" => Kind::Service,
            "endpointslice" | "endpointslices" | "eps" => Kind::EndpointSlice,
            "pod" | "pods" | "po" => Kind::Pod,
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "replicaset" | "replicasets" | "rs" => Kind::ReplicaSet,
            "job" | "jobs" => Kind::Job,
            "cronjob" | "cronjobs" | "cj" => Kind::CronJob,
            "daemonset" | "daemonsets" | "ds" => Kind::DaemonSet,
            "httproute" | "httproutes" => Kind::HttpRoute,
            "tcproute" | "tcproutes" => Kind::TcpRoute,
            "udproute" | "udproutes" => Kind::UdpRoute,
            "tlsroute" | "tlsroutes" => Kind::TlsRoute,
            "backendtlspolicy" | "backendtlspolicies" | "btlspolicy" => Kind::BackendTlsPolicy,
            "namespace" | "namespaces" | "ns" => Kind::Namespace,
            "serviceaccount" | "serviceaccounts" | "sa" => Kind::ServiceAccount,
            "configmap" | "configmaps" | "cm" => Kind::ConfigMap,
            "secret" | "secrets" => Kind::Secret,
            "ingress" | "ingresses" | "ing" => Kind::Ingress,
            "ingressclass" | "ingressclasses" => Kind::IngressClass,
            "gatewayclass" | "gatewayclasses" | "gc" => Kind::GatewayClass,
            "gateway" | "gateways" | "gtw" => Kind::Gateway,
            "node" | "nodes" | "no" => Kind::Node,
            "lease" | "leases" => Kind::Lease,
            "event" | "events" | "ev" => Kind::Event,
            "horizontalpodautoscaler" | "horizontalpodautoscalers" | "hpa" => {
                Kind::HorizontalPodAutoscaler
            }
            "rollout" | "rollouts" | "ro" => Kind::Rollout,
            "analysistemplate" | "analysistemplates" | "at" => Kind::AnalysisTemplate,
            "clusteranalysistemplate" | "clusteranalysistemplates" | "cat" => {
                Kind::ClusterAnalysisTemplate
            }
            "analysisrun" | "analysisruns" | "ar" => Kind::AnalysisRun,
            _ => {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
                return Err(format!(
                    "unknown resource type {s:?}; known: {}",
                    known.join(", ")
                ));
            }
        };
        Ok(kind)
    }
}
