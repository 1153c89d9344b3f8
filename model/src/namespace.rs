//! `v1/Namespace` (cluster-scoped; deleting one deletes what is in it) and `v1/ServiceAccount`
//! (stored, inert for now).

use serde::{Deserialize, Serialize};

use super::meta::{ObjectMeta, ObjectReference};

/// Namespaces every store has, as a Kubernetes cluster does; they cannot be deleted.
pub const BUILT_IN: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// A namespace: a scope for names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// `v1`.
    pub api_version: String,
    /// `Namespace`.
    pub kind: String,
    /// Object metadata (no namespace: namespaces are cluster-scoped).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Finalizers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NamespaceSpec>,
    /// `phase`: Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NamespaceStatus>,
}

impl Namespace {
    /// A namespace named `name`, Active.
    pub fn named(name: &str) -> Self {
        Namespace {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            metadata: ObjectMeta {
                name: name.into(),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(NamespaceStatus {
                phase: Some("Active".into()),
            }),
        }
    }
}

/// `Namespace.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// Finalizers (kept, not acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// `Namespace.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// `Active` (pier deletes a namespace's objects with it, so none is left Terminating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A reference to an object by name in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalObjectReference {
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// An identity for processes in pods (stored; pier issues no tokens yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    /// `v1`.
    pub api_version: String,
    /// `ServiceAccount`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Secrets the account may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<ObjectReference>,
    /// Pull secrets given to pods that run as the account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Whether pods mount the account's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
}

impl ServiceAccount {
    /// The `default` account Kubernetes gives every namespace.
    pub fn default_in(namespace: &str) -> Self {
        ServiceAccount {
            api_version: "v1".into(),
            kind: "ServiceAccount".into(),
            metadata: ObjectMeta {
                name: "default".into(),
                namespace: namespace.into(),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }
}
