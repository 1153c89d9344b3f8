//! The resources pier serves on the Kubernetes API: for each stored kind, its API group and
//! versions, plural and singular names, short names and scope, as a real cluster names them.
//! The one place discovery and request paths learn what exists.

use pier_model::Kind;

/// The verbs every served resource answers.
pub(crate) const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// One resource at one group version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) kind: Kind,
    /// API group, empty for the core group.
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) short_names: &'static [&'static str],
    pub(crate) namespaced: bool,
}

impl Resource {
    /// `v1` or `group/version`, as `apiVersion` fields write it.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every resource at every version served, preferred version first within a group.
pub(crate) fn resources() -> impl Iterator<Item = Resource> {
    // Events are served in the core group and, under other field names, in events.k8s.io.
    let events = Resource {
        kind: Kind::Event,
        group: super::events_v1::GROUP,
        version: "v1",
        plural: Kind::Event.plural(),
        singular: singular(Kind::Event),
        short_names: short_names(Kind::Event),
        namespaced: true,
    };
    // Autoscalers are stored as autoscaling/v2 and served as v1 too (kubectl before 1.32
    // creates them there).
    let autoscalers_v1 = Resource {
        kind: Kind::HorizontalPodAutoscaler,
        group: "autoscaling",
        version: super::hpa_v1::VERSION,
        plural: Kind::HorizontalPodAutoscaler.plural(),
        singular: singular(Kind::HorizontalPodAutoscaler),
        short_names: short_names(Kind::HorizontalPodAutoscaler),
        namespaced: true,
    };
    stored_kinds().chain([events, autoscalers_v1])
}

fn stored_kinds() -> impl Iterator<Item = Resource> {
    Kind::ALL.into_iter().flat_map(|kind| {
        kind.api_versions().iter().map(move |api_version| {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            Resource {
                kind,
                group,
                version,
                plural: kind.plural(),
                singular: singular(kind),
                short_names: short_names(kind),
                namespaced: kind.namespaced(),
            }
        })
    })
}

/// The resource named `plural` at `group`/`version`.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
    resources().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The API groups (not the core group), each with its versions, preferred first.
pub(crate) fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in resources().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

fn singular(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "service",
        Kind::EndpointSlice => "endpointslice",
        Kind::Pod => "pod",
        Kind::Deployment => "deployment",
        Kind::ReplicaSet => "replicaset",
        Kind::Job => "job",
        Kind::CronJob => "cronjob",
        Kind::DaemonSet => "daemonset",
        Kind::HorizontalPodAutoscaler => "horizontalpodautoscaler",
        Kind::Rollout => "rollout",
        Kind::AnalysisTemplate => "analysistemplate",
        Kind::ClusterAnalysisTemplate => "clusteranalysistemplate",
        Kind::AnalysisRun => "analysisrun",
        Kind::HttpRoute => "httproute",
        Kind::TcpRoute => "tcproute",
        Kind::UdpRoute => "udproute",
        Kind::TlsRoute => "tlsroute",
        Kind::BackendTlsPolicy => "backendtlspolicy",
        Kind::Namespace => "namespace",
        Kind::ServiceAccount => "serviceaccount",
        Kind::ConfigMap => "configmap",
        Kind::Ingress => "ingress",
        Kind::IngressClass => "ingressclass",
        Kind::GatewayClass => "gatewayclass",
        Kind::Gateway => "gateway",
        Kind::Secret => "secret",
        Kind::Node => "node",
        Kind::Lease => "lease",
        Kind::Event => "event",
    }
}

/// Short names as a real cluster's discovery lists them.
fn short_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Service => &["svc"],
        Kind::Pod => &["po"],
        Kind::Deployment => &["deploy"],
        Kind::ReplicaSet => &["rs"],
        Kind::CronJob => &["cj"],
        Kind::DaemonSet => &["ds"],
        Kind::HorizontalPodAutoscaler => &["hpa"],
        Kind::Rollout => &["ro"],
        Kind::AnalysisTemplate => &["at"],
        Kind::ClusterAnalysisTemplate => &["cat"],
        Kind::AnalysisRun => &["ar"],
        Kind::Namespace => &["ns"],
        Kind::ServiceAccount => &["sa"],
        Kind::ConfigMap => &["cm"],
        Kind::Ingress => &["ing"],
        Kind::Secret | Kind::IngressClass | Kind::Job => &[],
        Kind::GatewayClass => &["gc"],
        Kind::Gateway => &["gtw"],
        Kind::Node => &["no"],
        Kind::Event => &["ev"],
        Kind::EndpointSlice
        | Kind::HttpRoute
        | Kind::TcpRoute
        | Kind::UdpRoute
        | Kind::TlsRoute
        | Kind::Lease => &[],
        Kind::BackendTlsPolicy => &["btlspolicy"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_served_where_kubernetes_serves_it() {
        let svc = find("", "v1", "services").unwrap();
        assert_eq!((svc.kind, svc.namespaced), (Kind::Service, true));
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().kind,
            Kind::Deployment
        );
        assert!(!find("", "v1", "nodes").unwrap().namespaced);
        assert_eq!(
            find("discovery.k8s.io", "v1", "endpointslices")
                .unwrap()
                .api_version(),
            "discovery.k8s.io/v1"
        );
        assert!(find("apps", "v1", "services").is_none());
        let gateway = groups()
            .into_iter()
            .find(|(g, _)| *g == "gateway.networking.k8s.io")
            .unwrap();
        assert_eq!(gateway.1, vec!["v1", "v1beta1", "v1alpha2", "v1alpha3"]);
        for kind in Kind::ALL {
            assert!(resources().any(|r| r.kind == kind), "{kind} is served");
        }
    }
}
