//! A container's environment as the kubelet makes it: `envFrom` objects first, then `env` in
//! order (later wins), each `value` with `$(NAME)` expanded from what came before; `valueFrom`
//! reads a ConfigMap or Secret key, a pod field or a resource.

use std::collections::HashMap;
use std::net::IpAddr;

use pier_model::env::{EnvVarSource, FieldSelector, KeySelector, ResourceFieldSelector};
use pier_model::pod::Container;
use pier_model::{quantity, IntOrString, Pod};

use super::sources::{SourceKind, Sources};
use super::ConfigError;

/// What the values may come from besides the pod: the objects and the node.
pub(crate) struct Context<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// ConfigMaps and Secrets.
    pub sources: &'a Sources,
    /// This node's address (`status.hostIP`).
    pub host_ip: Option<IpAddr>,
    /// This node's cores and memory bytes, a limit's value when the container sets none.
    pub allocatable: (f64, u64),
}

/// Expands `$(NAME)` from `env` as Kubernetes does: `$$` is a `$`, an unknown name stays as
/// written.
pub(crate) fn expand(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|a| a.find(')').map(|j| (&a[..j], &a[j + 1..])))
        {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's variables in order, each name once.
pub(crate) fn environment(
    cx: &Context<'_>,
    c: &Container,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = cx.pod.metadata.namespace();
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut set = |name: String, value: String, values: &mut HashMap<String, String>| {
        if values.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for from in &c.env_from {
        let (kind, object) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(o), _) => (SourceKind::ConfigMap, o),
            (None, Some(o)) => (SourceKind::Secret, o),
            (None, None) => continue,
        };
        let Some(keys) = cx.sources.get(kind, ns, &object.name) else {
            if object.optional == Some(true) {
                continue;
            }
            return Err(ConfigError::not_found(kind, &object.name));
        };
        let prefix = from.prefix.as_deref().unwrap_or("");
        for (key, value) in keys.iter() {
            let name = format!("{prefix}{key}");
            if name.contains('=') {
                tracing::warn!(pod = %cx.pod.metadata.name, variable = %name, "envFrom: not a valid variable name; skipped");
                continue;
            }
            set(
                name,
                String::from_utf8_lossy(value).into_owned(),
                &mut values,
            );
        }
    }
    for e in &c.env {
        let value = match &e.value_from {
            None => Some(expand(&e.value, &values)),
            Some(from) => value_from(cx, c, from)?,
        };
        if let Some(value) = value {
            set(e.name.clone(), value, &mut values);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|name| values.remove(&name).map(|v| (name, v)))
        .collect())
}

/// One `valueFrom`; `None` when an optional key is missing (the variable is left out).
fn value_from(
    cx: &Context<'_>,
    c: &Container,
    from: &EnvVarSource,
) -> Result<Option<String>, ConfigError> {
    if let Some(k) = &from.config_map_key_ref {
        return key(cx, SourceKind::ConfigMap, k);
    }
    if let Some(k) = &from.secret_key_ref {
        return key(cx, SourceKind::Secret, k);
    }
    if let Some(f) = &from.field_ref {
        return field(cx, f).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource(cx, c, r).map(Some);
    }
    Ok(None)
}

fn key(cx: &Context<'_>, kind: SourceKind, k: &KeySelector) -> Result<Option<String>, ConfigError> {
    let optional = k.optional == Some(true);
    let ns = cx.pod.metadata.namespace();
    let Some(keys) = cx.sources.get(kind, ns, &k.name) else {
        return if optional {
            Ok(None)
        } else {
            Err(ConfigError::not_found(kind, &k.name))
        };
    };
    match keys.get(&k.key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional => Ok(None),
        None => Err(ConfigError(format!(
            "couldn't find key {} in {} {ns}/{}",
            k.key,
            kind.kind(),
            k.name
        ))),
    }
}

fn field(cx: &Context<'_>, f: &FieldSelector) -> Result<String, ConfigError> {
    let pod = cx.pod;
    let keyed = |prefix: &str| {
        f.field_path
            .strip_prefix(prefix)
            .and_then(|k| k.strip_suffix("']"))
    };
    if let Some(k) = keyed("metadata.labels['") {
        return Ok(pod.metadata.labels.get(k).cloned().unwrap_or_default());
    }
    if let Some(k) = keyed("metadata.annotations['") {
        return Ok(pod.metadata.annotations.get(k).cloned().unwrap_or_default());
    }
    let host_ip = || cx.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
    Ok(match f.field_path.as_str() {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace().to_string(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => pod.spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => host_ip(),
        "status.podIP" | "status.podIPs" => pod.status.pod_ip.clone().unwrap_or_default(),
        other => {
            return Err(ConfigError(format!(
                "unsupported fieldRef fieldPath {other:?}"
            )))
        }
    })
}

fn resource(
    cx: &Context<'_>,
    own: &Container,
    r: &ResourceFieldSelector,
) -> Result<String, ConfigError> {
    let c = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => cx
            .pod
            .spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ConfigError(format!("resourceFieldRef: no container {name:?}")))?,
        None => own,
    };
    let (which, what) = r.resource.split_once('.').unwrap_or(("", ""));
    let resources = c.resources.as_ref();
    let stated = resources.and_then(|res| match which {
        "limits" => res.limits.get(what),
        _ => res.requests.get(what),
    });
    let bad = |e: String| ConfigError(format!("resourceFieldRef {}: {e}", r.resource));
    let value = match (what, stated) {
        ("cpu", Some(q)) => quantity::cores(q).map_err(bad)?,
        ("memory", Some(q)) => quantity::bytes(q).map_err(bad)? as f64,
        // A limit never set is the node's allocatable, a request never set is nothing.
        ("cpu", None) if which == "limits" => cx.allocatable.0,
        ("memory", None) if which == "limits" => cx.allocatable.1 as f64,
        _ => 0.0,
    };
    let one = IntOrString::Int(1);
    let divisor = r.divisor.as_ref().unwrap_or(&one);
    let divisor = match what {
        "cpu" => quantity::cores(divisor).map_err(bad)?,
        _ => quantity::bytes(divisor).map_err(bad)? as f64,
    };
    if divisor <= 0.0 {
        return Err(bad("divisor must be positive".into()));
    }
    Ok(format!("{}", (value / divisor).ceil() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env: HashMap<String, String> =
            [("A".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)", &env), "x-$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost: $5 $(A", &env), "cost: $5 $(A");
        assert_eq!(expand("", &env), "");
        assert_eq!(expand("$", &env), "$");
    }
}
