//! `v1/Secret`: sensitive values for pods (`data`, base64 in JSON; `stringData`, folded into
//! `data` when written), of a `type` that says which keys it must hold.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// The most a Secret may hold, keys and values together (Kubernetes' limit).
pub const MAX_SIZE: usize = 1024 * 1024;

/// The type of a Secret with arbitrary keys.
pub const OPAQUE: &str = "Opaque";
/// The type of a Secret holding a certificate chain and its key (`tls.crt`, `tls.key`).
pub const TLS: &str = "kubernetes.io/tls";
/// The type of a Secret holding registry credentials (`.dockerconfigjson`).
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The key of a TLS Secret's certificate chain.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The key of a TLS Secret's private key.
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";
/// The key of a registry-credentials Secret's Docker config.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

/// A Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// `v1`.
    pub api_version: String,
    /// `Secret`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the Secret holds (`Opaque` when unset).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Values by key, base64-encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values by key as text, write-only: folded into `data` when stored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// Whether `data` can no longer change (set once, for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Secret {
    /// Its type, `Opaque` when unset.
    pub fn secret_type(&self) -> &str {
        self.type_.as_deref().unwrap_or(OPAQUE)
    }

    /// Whether its contents can no longer change.
    pub fn is_immutable(&self) -> bool {
        self.immutable == Some(true)
    }

    /// Every key with its value as bytes, `stringData` winning over `data` as the API server
    /// merges them; a `data` value that is not base64 (which validation refuses) is left out.
    pub fn values(&self) -> BTreeMap<String, Vec<u8>> {
        let mut values: BTreeMap<String, Vec<u8>> = self
            .data
            .iter()
            .filter_map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
                Some((k.clone(), bytes))
            })
            .collect();
        for (k, v) in &self.string_data {
            values.insert(k.clone(), v.clone().into_bytes());
        }
        values
    }

    /// One value as bytes.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(text) = self.string_data.get(key) {
            return Some(text.clone().into_bytes());
        }
        let encoded = self.data.get(key)?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
    }

    /// The Secret as stored: `stringData` folded into `data`, the type made explicit.
    pub fn folded(mut self) -> Secret {
        for (k, v) in std::mem::take(&mut self.string_data) {
            self.data
                .insert(k, base64::engine::general_purpose::STANDARD.encode(v));
        }
        if self.type_.is_none() {
            self.type_ = Some(OPAQUE.to_string());
        }
        self
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.data.len()
            + self
                .string_data
                .keys()
                .filter(|k| !self.data.contains_key(*k))
                .count()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_folds_into_data_and_wins() {
        let mut s = Secret {
            data: BTreeMap::from([("a".to_string(), "eA==".to_string())]),
            ..Secret::default()
        };
        s.string_data.insert("a".into(), "y".into());
        s.string_data.insert("b".into(), "z".into());
        assert_eq!(s.len(), 2);
        assert_eq!(s.value("a").as_deref(), Some(&b"y"[..]));
        let stored = s.folded();
        assert!(stored.string_data.is_empty());
        assert_eq!(stored.data["a"], "eQ==");
        assert_eq!(stored.values()["b"], b"z");
        assert_eq!(stored.secret_type(), OPAQUE);
    }
}
