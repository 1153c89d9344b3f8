//! ConfigMaps, after Kubernetes' `ValidateConfigMap`.

use base64::Engine;

use crate::config_map::{ConfigMap, MAX_SIZE};
use crate::report::{FieldPath, Report};
use crate::syntax::dns1123_subdomain;

/// A key of `data` or `binaryData`: a file name pods can mount it as.
pub(super) fn config_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    if key == "." || key == ".." {
        return Err("must not be '.' or '..'".into());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (got {key:?})"
        ));
    }
    Ok(())
}

pub(crate) fn config_map(cm: &ConfigMap, r: &mut Report) {
    super::metadata(&cm.metadata, dns1123_subdomain, r);
    let mut size = 0;
    let data = FieldPath::root().field("data");
    for (key, value) in &cm.data {
        r.check(&data.key(key), config_key(key));
        size += key.len() + value.len();
    }
    let binary = FieldPath::root().field("binaryData");
    for (key, value) in &cm.binary_data {
        r.check(&binary.key(key), config_key(key));
        if cm.data.contains_key(key) {
            r.error(&binary.key(key), "duplicate of key present in data");
        }
        match base64::engine::general_purpose::STANDARD.decode(value) {
            Ok(bytes) => size += key.len() + bytes.len(),
            Err(e) => r.error(&binary.key(key), format!("not base64: {e}")),
        }
    }
    if size > MAX_SIZE {
        r.error(
            &FieldPath::root(),
            format!("too long: must have at most {MAX_SIZE} bytes (has {size})"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::Object;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> String {
        Object::from_value(value)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn keys_values_and_size_are_checked_with_the_field_named() {
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
            "data": {"app.properties": "a=1", "LOG_LEVEL": "debug"}, "binaryData": {"logo.png": "iVBORw0K"}});
        assert_eq!(errors(ok), "");
        let bad_key = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
            "data": {"a/b": "x"}});
        assert!(errors(bad_key).contains("data[a/b]"));
        let twice = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
            "data": {"k": "x"}, "binaryData": {"k": "eA=="}});
        assert!(errors(twice).contains("duplicate"));
        let not_base64 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
            "binaryData": {"k": "%%%"}});
        assert!(errors(not_base64).contains("binaryData[k]"));
        let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
            "data": {"k": "x".repeat(1024 * 1024)}});
        assert!(errors(big).contains("too long"));
    }
}
