//! `v1/ConfigMap`: configuration for pods, as text values (`data`) and bytes (`binaryData`,
//! base64 in JSON), optionally `immutable`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// The most a ConfigMap may hold, keys and values together (Kubernetes' limit).
pub const MAX_SIZE: usize = 1024 * 1024;

/// A ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Text values by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Byte values by key, base64-encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    /// Whether `data` and `binaryData` can no longer change (set once, for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl ConfigMap {
    /// Whether its contents can no longer change.
    pub fn is_immutable(&self) -> bool {
        self.immutable == Some(true)
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.data.len() + self.binary_data.len()
    }

    /// Every key with its value as bytes; a `binaryData` value that is not base64 (which
    /// validation refuses) is left out.
    pub fn values(&self) -> BTreeMap<String, Vec<u8>> {
        use base64::Engine as _;
        let mut values: BTreeMap<String, Vec<u8>> = self
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        for (k, v) in &self.binary_data {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(v) {
                values.insert(k.clone(), bytes);
            }
        }
        values
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
