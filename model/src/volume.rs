//! A pod's volumes and where its containers mount them. pier provides `configMap`, `secret`,
//! `emptyDir` and `hostPath` volumes; any other source is kept as written, warned about when
//! applied, and refused by the node that would run the pod.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The volume sources pier provides.
pub const SOURCES: &[&str] = &["configMap", "secret", "emptyDir", "hostPath"];

/// The `hostPath` types Kubernetes defines (`""`: no check).
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// The file mode of a projected key when neither the item nor the volume sets one (0644).
pub const DEFAULT_MODE: i64 = 0o644;

/// A named volume of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its name, which `volumeMounts` refer to.
    pub name: String,
    /// A ConfigMap's keys as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// A Secret's keys as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A directory that lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// A file or directory of the node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    /// Sources pier does not provide (`hostPath`, `persistentVolumeClaim`, ...), as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `configMap` volume source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    /// The ConfigMap.
    #[serde(default)]
    pub name: String,
    /// Only these keys, at these paths; every key at its own name when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// Mode of the files (an octal number in YAML, decimal in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i64>,
    /// Whether the pod starts without it when it or a listed key is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// `secret` volume source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    /// The Secret.
    #[serde(default)]
    pub secret_name: String,
    /// Only these keys, at these paths; every key at its own name when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// Mode of the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i64>,
    /// Whether the pod starts without it when it or a listed key is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// One key projected to a relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// The file's path inside the volume (no `..`, not absolute).
    pub path: String,
    /// Mode of this file, over the volume's `defaultMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
}

/// `emptyDir` volume source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolumeSource {
    /// `""` (the node's disk) or `Memory` (a tmpfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Largest size; the size of a `Memory` tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<crate::meta::IntOrString>,
}

/// `hostPath` volume source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolumeSource {
    /// The path on the node (absolute).
    pub path: String,
    /// What must be there (one of [`HOST_PATH_TYPES`]; `...OrCreate` makes it).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// Where a container mounts a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Absolute path in the container.
    pub mount_path: String,
    /// Mounted read-only (configMap and secret volumes always are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A path inside the volume to mount instead of its root (not updated when it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// `subPath` with `$(VAR)` references, which pier refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path_expr: Option<String>,
}
