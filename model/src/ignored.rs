//! Valid Kubernetes fields pier accepts without acting on them.
//!
//! Any field serde does not map is checked here: known ones are reported as ignored,
//! the rest are errors ("unknown field"), so typos never pass silently.

use super::object::Kind;

const META: &[&str] = &["generateName", "selfLink"];

const SERVICE_SPEC: &[&str] = &[
    "externalIPs",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "loadBalancerClass",
    "healthCheckNodePort",
    "allocateLoadBalancerNodePorts",
    "trafficDistribution",
];

const POD_SPEC: &[&str] = &[
    "initContainers",
    "ephemeralContainers",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "dnsConfig",
    "nodeSelector",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostUsers",
    "shareProcessNamespace",
    "securityContext",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "schedulingGates",
    "resourceClaims",
    "resources",
];

const CONTAINER: &[&str] = &[
    "volumeDevices",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
    "resizePolicy",
    "restartPolicy",
    "ports[].hostPort",
    "ports[].hostIP",
    "resources.claims",
    "volumeMounts[].mountPropagation",
    "volumeMounts[].recursiveReadOnly",
];

const PROBE: &[&str] = &["terminationGracePeriodSeconds", "httpGet.host"];

const POD_STATUS: &[&str] = &[
    "hostIP",
    "hostIPs",
    "podIPs",
    "startTime",
    "containerStatuses",
    "initContainerStatuses",
    "ephemeralContainerStatuses",
    "qosClass",
    "nominatedNodeName",
    "resize",
    "resourceClaimStatuses",
    "conditions[].lastProbeTime",
    "conditions[].lastTransitionTime",
    "conditions[].observedGeneration",
];

const DEPLOYMENT_SPEC: &[&str] = &["progressDeadlineSeconds"];

const HTTP_ROUTE: &[&str] = &[
    "spec.rules[].sessionPersistence",
    "spec.rules[].retry",
    "spec.rules[].backendRefs[].filters",
];

const L4_ROUTE: &[&str] = &["status", "spec.useDefaultGateways"];

/// GatewayClass fields pier accepts and does not act on (it has no parameters to read).
const GATEWAY_CLASS: &[&str] = &["spec.parametersRef", "status.supportedFeatures"];

/// Gateway fields pier accepts and does not act on: infrastructure labels, client
/// certificates toward backends, ListenerSets, TLS options.
const GATEWAY: &[&str] = &[
    "spec.infrastructure",
    "spec.tls",
    "spec.allowedListeners",
    "spec.defaultScope",
    "spec.listeners[].tls.options",
];

const ENDPOINT_SLICE: &[&str] = &["endpoints[].hints", "endpoints[].deprecatedTopology"];

const NODE_SPEC: &[&str] = &["providerID", "externalID", "configSource"];

const NODE_STATUS: &[&str] = &[
    "phase",
    "daemonEndpoints",
    "images",
    "volumesInUse",
    "volumesAttached",
    "config",
    "runtimeHandlers",
    "features",
];

const NODE_INFO: &[&str] = &["kubeProxyVersion", "swap"];

const LEASE_SPEC: &[&str] = &["strategy", "preferredHolder"];

const EVENT: &[&str] = &["series", "related"];

const ROLLOUT_SPEC: &[&str] = &[
    "progressDeadlineSeconds",
    "progressDeadlineAbort",
    "rollbackWindow",
    "analysis",
];

const CANARY: &[&str] = &[
    "canaryMetadata",
    "stableMetadata",
    "antiAffinity",
    "scaleDownDelayRevisionLimit",
    "minPodsPerReplicaSet",
    "pingPong",
];

const TRAFFIC_ROUTING: &[&str] = &[
    "istio",
    "nginx",
    "alb",
    "smi",
    "ambassador",
    "appMesh",
    "traefik",
    "apisix",
    "maxTrafficWeight",
];

const CANARY_STEP: &[&str] = &["experiment", "setMirrorRoute", "plugin"];

const ANALYSIS: &[&str] = &["dryRun", "measurementRetention", "analysisRunMetadata"];

/// Analysis fields pier accepts but does not act on, and the providers it does not run.
const ANALYSIS_SPEC: &[&str] = &["dryRun", "measurementRetention"];
const METRIC: &[&str] = &["dryRun"];
const PROVIDERS: &[&str] = &[
    "job",
    "kayenta",
    "datadog",
    "newRelic",
    "wavefront",
    "cloudWatch",
    "graphite",
    "influxdb",
    "skywalking",
];
const PROMETHEUS: &[&str] = &["insecure", "authentication", "rangeQuery"];

fn analysis_field(path: &str) -> bool {
    const METRICS: &str = "spec.metrics[]";
    path == "status"
        || under("spec", ANALYSIS_SPEC, path)
        || under(METRICS, METRIC, path)
        || under("spec.metrics[].provider", PROVIDERS, path)
        || under("spec.metrics[].provider.prometheus", PROMETHEUS, path)
}

/// Job fields pier accepts and does not act on: per-index limits and policies of Indexed
/// Jobs, pod failure and success policies, when replacement pods are made, who manages it.
const JOB_SPEC: &[&str] = &[
    "podFailurePolicy",
    "successPolicy",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "podReplacementPolicy",
    "managedBy",
];

fn under(prefix: &str, names: &[&str], path: &str) -> bool {
    path.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| names.contains(&rest))
}

fn pod_spec_field(prefix: &str, path: &str) -> bool {
    if under(prefix, POD_SPEC, path) {
        return true;
    }
    let container = format!("{prefix}.containers[]");
    if under(&container, CONTAINER, path) {
        return true;
    }
    ["livenessProbe", "readinessProbe"]
        .iter()
        .any(|p| under(&format!("{container}.{p}"), PROBE, path))
}

fn rollout_field(path: &str) -> bool {
    const CANARY_PATH: &str = "spec.strategy.canary";
    path == "status"
        || under("spec", ROLLOUT_SPEC, path)
        || under("spec.template.metadata", META, path)
        || pod_spec_field("spec.template.spec", path)
        || under(CANARY_PATH, CANARY, path)
        || under("spec.strategy.canary.trafficRouting", TRAFFIC_ROUTING, path)
        || under("spec.strategy.canary.steps[]", CANARY_STEP, path)
        || under("spec.strategy.canary.analysis", ANALYSIS, path)
        || under("spec.strategy.canary.steps[].analysis", ANALYSIS, path)
}

/// Whether `path` (indexes written `[]`) is a Kubernetes field of `kind` that pier ignores.
pub(crate) fn is_known_ignored(kind: Kind, path: &str) -> bool {
    if under("metadata", META, path) {
        return true;
    }
    match kind {
        Kind::Service => path == "status" || under("spec", SERVICE_SPEC, path),
        Kind::EndpointSlice => ENDPOINT_SLICE.contains(&path),
        Kind::Pod => pod_spec_field("spec", path) || under("status", POD_STATUS, path),
        Kind::Deployment => {
            path == "status"
                || under("spec", DEPLOYMENT_SPEC, path)
                || under("spec.template.metadata", META, path)
                || pod_spec_field("spec.template.spec", path)
        }
        Kind::Job => {
            path == "status"
                || under("spec", JOB_SPEC, path)
                || under("spec.template.metadata", META, path)
                || pod_spec_field("spec.template.spec", path)
        }
        Kind::CronJob => {
            path == "status"
                || under("spec.jobTemplate.spec", JOB_SPEC, path)
                || under("spec.jobTemplate.metadata", META, path)
                || under("spec.jobTemplate.spec.template.metadata", META, path)
                || pod_spec_field("spec.jobTemplate.spec.template.spec", path)
        }
        Kind::DaemonSet => {
            path == "status"
                || path == "spec.revisionHistoryLimit"
                || under("spec.template.metadata", META, path)
                || pod_spec_field("spec.template.spec", path)
        }
        Kind::ReplicaSet => {
            path == "status"
                || under("spec.template.metadata", META, path)
                || pod_spec_field("spec.template.spec", path)
        }
        // Kubernetes 1.33's alpha per-direction tolerance; pier keeps the 10% default.
        Kind::HorizontalPodAutoscaler => {
            path == "status"
                || path == "spec.behavior.scaleUp.tolerance"
                || path == "spec.behavior.scaleDown.tolerance"
        }
        Kind::Rollout => rollout_field(path),
        Kind::AnalysisTemplate | Kind::ClusterAnalysisTemplate | Kind::AnalysisRun => {
            analysis_field(path)
        }
        Kind::HttpRoute => HTTP_ROUTE.contains(&path),
        Kind::TcpRoute | Kind::UdpRoute => L4_ROUTE.contains(&path),
        Kind::TlsRoute => path == "spec.useDefaultGateways",
        Kind::GatewayClass => GATEWAY_CLASS.contains(&path),
        // Ancestor statuses are not written; SAN lists and options are not applied.
        Kind::BackendTlsPolicy => {
            path == "status" || path == "spec.validation.subjectAltNames" || path == "spec.options"
        }
        Kind::Gateway => GATEWAY.contains(&path),
        Kind::Node => {
            under("spec", NODE_SPEC, path)
                || under("status", NODE_STATUS, path)
                || under("status.nodeInfo", NODE_INFO, path)
        }
        Kind::Lease => under("spec", LEASE_SPEC, path),
        Kind::Event => EVENT.contains(&path),
        // A stored Namespace, ServiceAccount, ConfigMap or Secret carries every field it maps.
        Kind::Namespace
        | Kind::ServiceAccount
        | Kind::ConfigMap
        | Kind::Secret
        | Kind::Ingress
        | Kind::IngressClass => false,
    }
}

/// Whether the ignored field at `path` (as `spec.ports[0].name`) in `object` holds its type's
/// zero value (`false`, `0`, `""`, empty, or an object of zeros), which Kubernetes reads as unset:
/// pier already behaves as asked, so it is not worth a warning. Protobuf bodies carry every such
/// field.
pub(crate) fn is_unset(object: &serde_json::Value, path: &str) -> bool {
    let mut at = object;
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
        let Some(next) = at.get(key) else {
            return false;
        };
        at = next;
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let Some(next) = index
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .and_then(|i| at.get(i))
            else {
                return false;
            };
            at = next;
        }
    }
    is_zero(at)
}

fn is_zero(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.values().all(is_zero),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values_read_as_unset() {
        let object = serde_json::json!({
            "spec": {"hostNetwork": false, "ports": [{"hostPort": 0}, {"hostPort": 8080}],
                     "status": {"loadBalancer": {}}, "tty": true}
        });
        assert!(is_unset(&object, "spec.hostNetwork"));
        assert!(is_unset(&object, "spec.ports[0].hostPort"));
        assert!(!is_unset(&object, "spec.ports[1].hostPort"));
        assert!(is_unset(&object, "spec.status"));
        assert!(!is_unset(&object, "spec.tty"));
        assert!(!is_unset(&object, "spec.missing"));
        assert!(!is_unset(&object, "spec.ports[7].hostPort"));
    }

    #[test]
    fn patterns() {
        assert!(is_known_ignored(Kind::Service, "spec.healthCheckNodePort"));
        // Traffic policies are acted on, not ignored.
        assert!(!is_known_ignored(
            Kind::Service,
            "spec.internalTrafficPolicy"
        ));
        // Dual-stack fields are acted on, not ignored.
        assert!(!is_known_ignored(Kind::Service, "spec.ipFamilyPolicy"));
        assert!(!is_known_ignored(Kind::Service, "spec.prots"));
        assert!(is_known_ignored(
            Kind::Deployment,
            "spec.template.spec.containers[].stdin"
        ));
        assert!(is_known_ignored(
            Kind::Deployment,
            "spec.template.spec.containers[].readinessProbe.terminationGracePeriodSeconds"
        ));
        assert!(!is_known_ignored(
            Kind::Deployment,
            "spec.template.spec.containers[].imagePull"
        ));
        assert!(is_known_ignored(
            Kind::Pod,
            "status.conditions[].lastTransitionTime"
        ));
    }
}
