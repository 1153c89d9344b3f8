//! `v1/Service`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{IntOrString, ObjectMeta};

/// A named, load-balanced set of endpoints (`v1/Service`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    #[serde(default)]
    pub spec: ServiceSpec,
}

/// The desired behaviour of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pods with all these labels are the service's endpoints; empty means selector-less.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Exposed ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Virtual IP: empty allocates one, `None` makes the service headless.
    #[serde(
        default,
        rename = "clusterIP",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_ip: String,
    /// Every virtual IP, one per family, the first equal to `clusterIP` (dual-stack).
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    /// `IPv4` and/or `IPv6`, the primary family first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<String>,
    /// `SingleStack` (default), `PreferDualStack` or `RequireDualStack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<String>,
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` (served as NodePort) or `ExternalName`.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub service_type: String,
    /// `None` (default) or `ClientIP`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_affinity: String,
    /// Settings for `sessionAffinity: ClientIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// DNS name an `ExternalName` service aliases.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_name: String,
    /// Publish endpoints in DNS before they are ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_not_ready_addresses: bool,
    /// `Cluster` (default) or `Local`: ClusterIP traffic from a node only to that node's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
    /// `Cluster` (default) or `Local`: NodePort traffic from outside only to the node's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
}

/// One port a Service exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name; required when there is more than one port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `TCP` (default) or `UDP`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Application protocol: `http` or `kubernetes.io/h2c` select L7 mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// Port on the virtual IP.
    pub port: i64,
    /// Port (number or container port name) on the endpoints; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// Node port for `NodePort` services; 0 allocates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i64>,
}

/// `spec.sessionAffinityConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// Client-IP affinity settings.
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

/// `spec.sessionAffinityConfig.clientIP`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// Affinity lifetime; Kubernetes' default is 10800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
}

impl Service {
    /// Fills what the API server defaults when a Service is written (`SetDefaults_Service`):
    /// `type: ClusterIP`, `sessionAffinity: None`, each port's `protocol: TCP` and
    /// `targetPort` (its `port`), and the traffic policies (`Cluster`).
    pub fn set_defaults(&mut self) {
        let spec = &mut self.spec;
        if spec.service_type.is_empty() {
            spec.service_type = "ClusterIP".into();
        }
        if spec.session_affinity.is_empty() {
            spec.session_affinity = "None".into();
        }
        for port in &mut spec.ports {
            if port.protocol.is_empty() {
                port.protocol = "TCP".into();
            }
            if port.target_port.is_none() {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        if spec.service_type != "ExternalName" && spec.internal_traffic_policy.is_none() {
            spec.internal_traffic_policy = Some("Cluster".into());
        }
        if matches!(spec.service_type.as_str(), "NodePort" | "LoadBalancer")
            && spec.external_traffic_policy.is_none()
        {
            spec.external_traffic_policy = Some("Cluster".into());
        }
    }

    /// The effective service type.
    pub fn service_type(&self) -> &str {
        if self.spec.service_type.is_empty() {
            "ClusterIP"
        } else {
            &self.spec.service_type
        }
    }

    /// Whether the type asks for node ports.
    pub fn wants_node_ports(&self) -> bool {
        matches!(self.service_type(), "NodePort" | "LoadBalancer")
    }

    /// `internalTrafficPolicy: Local`.
    pub fn internal_traffic_local(&self) -> bool {
        self.spec.internal_traffic_policy.as_deref() == Some("Local")
    }

    /// `externalTrafficPolicy: Local` (only NodePort and LoadBalancer Services take it).
    pub fn external_traffic_local(&self) -> bool {
        self.spec.external_traffic_policy.as_deref() == Some("Local")
    }

    /// Whether the service is headless (`clusterIP: None`).
    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip == "None"
    }
}

impl ServicePort {
    /// The effective protocol.
    pub fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "TCP"
        } else {
            &self.protocol
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_are_the_api_servers() {
        let mut s = service("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}, {port: 53, protocol: UDP, targetPort: dns}]}\n");
        s.set_defaults();
        assert_eq!(s.spec.service_type, "ClusterIP");
        assert_eq!(s.spec.session_affinity, "None");
        assert_eq!(s.spec.ports[0].protocol, "TCP");
        assert_eq!(s.spec.ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(s.spec.ports[1].protocol, "UDP");
        assert_eq!(
            s.spec.ports[1].target_port,
            Some(IntOrString::String("dns".into()))
        );
        assert_eq!(s.spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(
            s.spec.external_traffic_policy, None,
            "only for NodePort and LoadBalancer"
        );
        let again = s.clone();
        s.set_defaults();
        assert_eq!(s, again, "defaulting twice changes nothing");
        let mut np = service("apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec: {type: NodePort, externalTrafficPolicy: Local, ports: [{port: 80}]}\n");
        np.set_defaults();
        assert_eq!(np.spec.external_traffic_policy.as_deref(), Some("Local"));
        let mut ext = service("apiVersion: v1\nkind: Service\nmetadata: {name: e}\nspec: {type: ExternalName, externalName: example.com}\n");
        ext.set_defaults();
        assert_eq!(ext.spec.internal_traffic_policy, None);
    }
}
