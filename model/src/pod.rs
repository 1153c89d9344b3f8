//! `v1/Pod` and the pod template types Deployments share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{IntOrString, ObjectMeta};
pub use crate::env::{EnvFromSource, EnvVar};
use crate::volume::{Volume, VolumeMount};

/// Annotation holding the ID of the container that runs a pod (the engine writes it).
pub const CONTAINER_ANNOTATION: &str = "pier.dev/container-id";

/// Annotation holding how many times a pod's container was restarted (the engine writes it).
pub const RESTARTS_ANNOTATION: &str = "pier.dev/restarts";

/// Annotation holding why a pod's container cannot start (the engine writes it).
pub const ERROR_ANNOTATION: &str = "pier.dev/error";

/// A running group of containers (`v1/Pod`); written by the engine, or by hand for now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// `v1`.
    pub api_version: String,
    /// `Pod`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired containers.
    #[serde(default)]
    pub spec: PodSpec,
    /// Observed state: IP and conditions.
    #[serde(default)]
    pub status: PodStatus,
}

/// What a pod runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Hostname inside the pod and in DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// With `hostname`, publishes `<hostname>.<subdomain>.<ns>.svc` for a headless service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `Always`, `OnFailure` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// Grace period for stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Volumes the containers can mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// `kubernetes.io/dockerconfigjson` Secrets that authenticate image pulls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<crate::namespace::LocalObjectReference>,
    /// The ServiceAccount the pod runs as (`default` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The deprecated alias of `serviceAccountName`, taken when that is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// One container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name, unique in the pod.
    pub name: String,
    /// Image reference.
    #[serde(default)]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; unset, `Always` for an untagged or `:latest`
    /// image and `IfNotPresent` otherwise, as Kubernetes defaults it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Whole ConfigMaps and Secrets as environment variables (`env` wins on a clash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// The pod's volumes this container mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Exposed ports; named ports resolve Service `targetPort` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Resource requests and limits (`cpu`, `memory`, `pids`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Restart the container when this fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Keep the endpoint out of load balancing until this succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
}

impl Container {
    /// The pull policy in force: the one set, or Kubernetes' default for the image.
    pub fn pull_policy(&self) -> &str {
        if let Some(p) = &self.image_pull_policy {
            return p;
        }
        let name = self.image.rsplit('/').next().unwrap_or("");
        if self.image.contains('@') {
            return "IfNotPresent";
        }
        match name.split_once(':') {
            Some((_, tag)) if tag != "latest" => "IfNotPresent",
            _ => "Always",
        }
    }
}

/// A container port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port name (IANA_SVC_NAME).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    pub container_port: i64,
    /// `TCP` (default) or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// Resource requests and limits, as Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// Hard limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, IntOrString>,
    /// Requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, IntOrString>,
}

/// A health probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// HTTP GET check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Command check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// gRPC health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    /// Delay before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i64>,
    /// Interval between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// Per-check timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Successes needed after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i64>,
    /// Failures needed after a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

/// `httpGet` probe action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    /// Request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port number or name.
    pub port: IntOrString,
    /// `HTTP` or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// A header of an HTTP probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// `tcpSocket` probe action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocketAction {
    /// Port number or name.
    pub port: IntOrString,
}

/// `grpc` probe action: `grpc.health.v1.Health/Check` over h2c.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcAction {
    /// Port number (gRPC probes take no port names).
    pub port: i64,
    /// Service name sent in the check; absent or empty asks about the whole server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `exec` probe action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAction {
    /// Command to run in the container.
    #[serde(default)]
    pub command: Vec<String>,
}

/// Observed pod state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Primary pod IP.
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// Conditions such as `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    /// Why the pod is in its state, when it is stuck (`CreateContainerConfigError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For people: what the reason is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A pod condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    /// Condition type (`Ready`, ...).
    #[serde(rename = "type")]
    pub condition_type: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason (`Unschedulable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Pod {
    /// Sets the condition of `condition_type`, replacing the one there was.
    pub fn set_condition(
        &mut self,
        condition_type: &str,
        status: &str,
        reason: Option<&str>,
        message: Option<String>,
    ) {
        self.status
            .conditions
            .retain(|c| c.condition_type != condition_type);
        self.status.conditions.push(PodCondition {
            condition_type: condition_type.into(),
            status: status.into(),
            reason: reason.map(str::to_string),
            message,
        });
    }

    /// Whether the pod's `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.condition_type == "Ready" && c.status == "True")
    }

    /// Whether the pod is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// The number of the container port named `name` with `protocol`.
    pub fn named_port(&self, name: &str, protocol: &str) -> Option<i64> {
        self.spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| {
                p.name.as_deref() == Some(name)
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .map(|p| p.container_port)
    }
}

#[cfg(test)]
mod tests {
    use super::Container;

    fn policy(image: &str, set: Option<&str>) -> String {
        let c = Container {
            image: image.into(),
            image_pull_policy: set.map(str::to_string),
            ..Default::default()
        };
        c.pull_policy().to_string()
    }

    #[test]
    fn pull_policy_defaults_as_kubernetes_does() {
        assert_eq!(policy("nginx", None), "Always");
        assert_eq!(policy("nginx:latest", None), "Always");
        assert_eq!(policy("127.0.0.1:5000/app", None), "Always");
        assert_eq!(policy("127.0.0.1:5000/app:v1", None), "IfNotPresent");
        assert_eq!(policy("app@sha256:0123", None), "IfNotPresent");
        assert_eq!(policy("nginx", Some("Never")), "Never");
    }
}
