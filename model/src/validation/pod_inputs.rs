//! What a pod takes from outside its image: volumes, where containers mount them, and
//! environment variables from ConfigMaps, Secrets and the pod's own fields.

use std::collections::HashSet;

use crate::env::{EnvVar, EnvVarSource};
use crate::pod::{Container, PodSpec};
use crate::report::{FieldPath, Report};
use crate::syntax::{dns1123_label, dns1123_subdomain};
use crate::volume::{KeyToPath, Volume};

use super::config::config_key;

/// The pod fields `fieldRef` may name, besides `metadata.labels['k']` and
/// `metadata.annotations['k']`.
const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The resources `resourceFieldRef` may name.
const RESOURCES: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "requests.cpu",
    "requests.memory",
];

/// A path inside a volume: relative, without `..`.
fn relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("required value".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} must be a relative path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("{path:?} must not contain '..'"));
    }
    Ok(())
}

fn mode(path: &FieldPath, mode: Option<i64>, r: &mut Report) {
    if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
        r.error(
            path,
            format!(
                "invalid value {m}: must be a number between 0 and 0777 (octal), both inclusive"
            ),
        );
    }
}

fn items(path: &FieldPath, items: &[KeyToPath], r: &mut Report) {
    for (i, item) in items.iter().enumerate() {
        let p = path.field("items").index(i);
        r.check(&p.field("key"), config_key(&item.key));
        r.check(&p.field("path"), relative_path(&item.path));
        mode(&p.field("mode"), item.mode, r);
    }
}

fn volume(path: &FieldPath, v: &Volume, r: &mut Report) {
    r.check(&path.field("name"), dns1123_label(&v.name));
    // A source pier does not provide (a pod exported from a cluster carries a projected
    // service-account volume) is kept and warned about; the node refuses to start the pod.
    if let Some(other) = v.other.keys().next() {
        r.ignored.push(path.field(other).to_string());
        return;
    }
    let set = [
        v.config_map.is_some(),
        v.secret.is_some(),
        v.empty_dir.is_some(),
        v.host_path.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        0 => r.error(path, "must specify a volume type"),
        1 => {}
        _ => r.error(path, "may not specify more than 1 volume type"),
    }
    if let Some(c) = &v.config_map {
        let p = path.field("configMap");
        r.check(&p.field("name"), dns1123_subdomain(&c.name));
        items(&p, &c.items, r);
        mode(&p.field("defaultMode"), c.default_mode, r);
    }
    if let Some(s) = &v.secret {
        let p = path.field("secret");
        r.check(&p.field("secretName"), dns1123_subdomain(&s.secret_name));
        items(&p, &s.items, r);
        mode(&p.field("defaultMode"), s.default_mode, r);
    }
    if let Some(h) = &v.host_path {
        let p = path.field("hostPath");
        if !h.path.starts_with('/') {
            r.error(&p.field("path"), "must be an absolute path");
        } else if h.path.split('/').any(|part| part == "..") {
            r.error(&p.field("path"), "must not contain '..'");
        }
        r.one_of(
            &p.field("type"),
            h.type_.as_deref().unwrap_or(""),
            crate::volume::HOST_PATH_TYPES,
        );
    }
    if let Some(e) = &v.empty_dir {
        let p = path.field("emptyDir");
        r.one_of(
            &p.field("medium"),
            e.medium.as_deref().unwrap_or(""),
            &["", "Memory"],
        );
        if let Some(size) = &e.size_limit {
            if let Err(e) = crate::quantity::bytes(size) {
                r.error(&p.field("sizeLimit"), e);
            }
        }
    }
}

/// The pod's volumes: named once each, one source each.
pub(super) fn volumes(path: &FieldPath, spec: &PodSpec, r: &mut Report) {
    let mut names = HashSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let p = path.field("volumes").index(i);
        if !names.insert(v.name.as_str()) {
            r.error(
                &p.field("name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        volume(&p, v, r);
    }
}

/// A container's mounts: of the pod's volumes, at distinct absolute paths.
pub(super) fn mounts(path: &FieldPath, c: &Container, spec: &PodSpec, r: &mut Report) {
    let mut targets = HashSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let p = path.field("volumeMounts").index(i);
        if !spec.volumes.iter().any(|v| v.name == m.name) {
            r.error(
                &p.field("name"),
                format!("not found: no volume {:?}", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            r.error(&p.field("mountPath"), "must be an absolute path");
        } else if !targets.insert(m.mount_path.trim_end_matches('/')) {
            r.error(&p.field("mountPath"), "must be unique");
        }
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            r.check(&p.field("subPath"), relative_path(sub));
        }
        if m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
            r.error(
                &p.field("subPathExpr"),
                "pier does not expand subPathExpr; use subPath",
            );
        }
    }
}

fn field_path(path: &str) -> Result<(), String> {
    let keyed = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|k| k.ends_with("']") && k.len() > 2)
        });
    if keyed || FIELD_PATHS.contains(&path) {
        Ok(())
    } else {
        Err(format!(
            "unsupported value {path:?}: supported values: {}, metadata.labels['<KEY>'], metadata.annotations['<KEY>']",
            FIELD_PATHS.join(", ")
        ))
    }
}

fn value_from(path: &FieldPath, from: &EnvVarSource, r: &mut Report) {
    let set = [
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        r.error(
            path,
            "exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef must be set",
        );
    }
    for (field, key) in [
        ("configMapKeyRef", &from.config_map_key_ref),
        ("secretKeyRef", &from.secret_key_ref),
    ] {
        if let Some(k) = key {
            let p = path.field(field);
            r.check(&p.field("name"), dns1123_subdomain(&k.name));
            r.check(&p.field("key"), config_key(&k.key));
        }
    }
    if let Some(f) = &from.field_ref {
        r.check(
            &path.field("fieldRef").field("fieldPath"),
            field_path(&f.field_path),
        );
    }
    if let Some(f) = &from.resource_field_ref {
        let p = path.field("resourceFieldRef");
        r.one_of(&p.field("resource"), &f.resource, RESOURCES);
        if let Some(d) = &f.divisor {
            if let Err(e) = crate::quantity::cores(d) {
                r.error(&p.field("divisor"), e);
            }
        }
    }
}

/// A container's environment: named variables with a value or one source; whole objects.
pub(super) fn env(path: &FieldPath, c: &Container, r: &mut Report) {
    for (i, e) in c.env.iter().enumerate() {
        let p = path.field("env").index(i);
        variable(&p, e, r);
    }
    for (i, from) in c.env_from.iter().enumerate() {
        let p = path.field("envFrom").index(i);
        let refs = [
            ("configMapRef", &from.config_map_ref),
            ("secretRef", &from.secret_ref),
        ];
        if refs.iter().filter(|(_, s)| s.is_some()).count() != 1 {
            r.error(&p, "exactly one of configMapRef or secretRef must be set");
        }
        for (field, object) in refs {
            if let Some(o) = object {
                r.check(&p.field(field).field("name"), dns1123_subdomain(&o.name));
            }
        }
        if let Some(prefix) = &from.prefix {
            if prefix.contains('=') {
                r.error(&p.field("prefix"), "must not contain '='");
            }
        }
    }
}

fn variable(path: &FieldPath, e: &EnvVar, r: &mut Report) {
    if e.name.is_empty() || e.name.contains('=') {
        r.error(&path.field("name"), "must be non-empty and not contain '='");
    }
    if let Some(from) = &e.value_from {
        if !e.value.is_empty() {
            r.error(
                &path.field("valueFrom"),
                "may not be specified when `value` is not empty",
            );
        }
        value_from(&path.field("valueFrom"), from, r);
    }
}
