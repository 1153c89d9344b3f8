//! Secrets, after Kubernetes' `ValidateSecret`: keys, base64, size, and the keys each type
//! must hold.

use base64::Engine;

use super::config::config_key;
use crate::report::{FieldPath, Report};
use crate::secret::{self, Secret, MAX_SIZE};
use crate::syntax::dns1123_subdomain;

/// The keys a Secret type must hold, as Kubernetes requires them.
fn required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        secret::TLS => &[secret::TLS_CERT_KEY, secret::TLS_PRIVATE_KEY_KEY],
        secret::DOCKER_CONFIG_JSON => &[secret::DOCKER_CONFIG_JSON_KEY],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    }
}

pub(crate) fn secret(s: &Secret, r: &mut Report) {
    super::metadata(&s.metadata, dns1123_subdomain, r);
    let root = FieldPath::root();
    let secret_type = s.secret_type();
    if secret_type.is_empty() || secret_type.len() > 253 {
        r.error(&root.field("type"), "must be 1 to 253 characters");
    }
    let mut size = 0;
    let data = root.field("data");
    for (key, value) in &s.data {
        r.check(&data.key(key), config_key(key));
        match base64::engine::general_purpose::STANDARD.decode(value) {
            Ok(bytes) => size += key.len() + bytes.len(),
            Err(e) => r.error(&data.key(key), format!("not base64: {e}")),
        }
    }
    let string_data = root.field("stringData");
    for (key, value) in &s.string_data {
        r.check(&string_data.key(key), config_key(key));
        if !s.data.contains_key(key) {
            size += key.len() + value.len();
        }
    }
    if size > MAX_SIZE {
        r.error(
            &root.field("data"),
            format!("too long: must have at most {MAX_SIZE} bytes (has {size})"),
        );
    }
    for key in required_keys(secret_type) {
        if s.value(key).is_none() {
            r.error(
                &data.key(key),
                format!("required for a Secret of type {secret_type}"),
            );
        }
    }
    if secret_type == secret::DOCKER_CONFIG_JSON {
        if let Some(bytes) = s.value(secret::DOCKER_CONFIG_JSON_KEY) {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                r.error(
                    &data.key(secret::DOCKER_CONFIG_JSON_KEY),
                    format!("not valid JSON: {e}"),
                );
            }
        }
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
    fn types_keys_and_encoding_are_checked_with_the_field_named() {
        let ok = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "admin"}});
        assert_eq!(errors(ok), "");
        let not_base64 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "hunter2!"}});
        assert!(errors(not_base64).contains("data[password]"));
        let bad_key = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"a/b": "x"}});
        assert!(errors(bad_key).contains("stringData[a/b]"));
        let tls = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert"},
            "type": "kubernetes.io/tls", "stringData": {"tls.crt": "x"}});
        assert!(errors(tls).contains("data[tls.key]"));
        let docker = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}});
        assert!(errors(docker).contains("not valid JSON"));
    }
}
