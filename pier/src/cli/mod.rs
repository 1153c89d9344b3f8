//! Client commands: `apply`, `get`, `describe`, `delete`.

pub(crate) mod access;
pub(crate) mod containers;
mod credentials;
pub(crate) mod images;
pub(crate) mod login;
pub(crate) mod manifests;
pub(crate) mod nodes;
pub(crate) mod output;
pub(crate) mod rollout;
mod rollout_canary;

use std::path::PathBuf;

use anyhow::{bail, Result};
use pier_controlplane::api::Client;
use pier_model::{columns, Kind};
use serde_json::Value;

use output::{print_value, s, table, Format};

/// Prints warnings for fields pier accepts but ignores.
fn warn_ignored(files: &[manifests::ManifestFile]) {
    for f in files {
        for o in &f.objects {
            for field in &o.parsed.ignored {
                eprintln!(
                    "Warning: {}: document {}: {}: {field} is accepted but ignored by pier",
                    f.source,
                    o.document,
                    o.parsed.object.describe()
                );
            }
        }
    }
}

/// `pier apply -f ...`: validates every file first, then applies each file atomically.
pub(crate) async fn apply(
    client: &Client,
    files: &[PathBuf],
    namespace: Option<&str>,
) -> Result<()> {
    let manifests = manifests::read(files, namespace)?;
    warn_ignored(&manifests);
    for file in manifests {
        if file.objects.is_empty() {
            continue;
        }
        let values: Vec<Value> = file
            .objects
            .iter()
            .map(|o| o.parsed.object.to_value())
            .collect();
        let result = client
            .apply(values)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.source))?;
        for r in result["results"].as_array().into_iter().flatten() {
            let plural = s(r, "/resource");
            let resource = plural
                .parse::<Kind>()
                .map_or_else(|_| plural.to_string(), singular);
            println!("{resource}/{} {}", s(r, "/name"), s(r, "/outcome"));
        }
    }
    Ok(())
}

/// A kind as `pier apply` and `pier delete` name it, as kubectl does (`ingress/web created`).
fn singular(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// Options of `pier get`.
pub(crate) struct GetOptions<'a> {
    /// Namespace, or `None` with `all_namespaces`.
    pub namespace: &'a str,
    /// Every namespace.
    pub all_namespaces: bool,
    /// Label selector.
    pub selector: Option<&'a str>,
    /// Output format.
    pub format: Format,
    /// Keep `metadata.managedFields` in JSON and YAML.
    pub show_managed_fields: bool,
}

/// `pier get KIND [NAME]`.
pub(crate) async fn get(
    client: &Client,
    kind: Kind,
    name: Option<&str>,
    opts: &GetOptions<'_>,
) -> Result<()> {
    let objects = match name {
        Some(name) => match client.get(kind, opts.namespace, name).await? {
            Some(v) => vec![v],
            None if !kind.namespaced() => bail!(
                "Error from server (NotFound): {} \"{name}\" not found",
                kind.plural()
            ),
            None => bail!(
                "Error from server (NotFound): {} \"{name}\" not found in namespace {:?}",
                kind.plural(),
                opts.namespace
            ),
        },
        None => {
            let ns = (!opts.all_namespaces).then_some(opts.namespace);
            client.list(kind, ns, opts.selector).await?
        }
    };
    match opts.format {
        Format::Json | Format::Yaml => {
            let mut objects = objects;
            if !opts.show_managed_fields {
                for object in &mut objects {
                    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("managedFields");
                    }
                }
            }
            let value = match (name, objects.as_slice()) {
                (Some(_), [one]) => one.clone(),
                _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            };
            print_value(&value, opts.format)
        }
        Format::Table | Format::Wide => {
            if objects.is_empty() {
                match opts.all_namespaces || !kind.namespaced() {
                    true => eprintln!("No resources found"),
                    false => eprintln!("No resources found in {} namespace.", opts.namespace),
                }
                return Ok(());
            }
            let (mut headers, mut rows) = table_rows(kind, &objects, opts.format == Format::Wide);
            if opts.all_namespaces && kind.namespaced() {
                headers.insert(0, "NAMESPACE");
                for (row, obj) in rows.iter_mut().zip(&objects) {
                    row.insert(0, s(obj, "/metadata/namespace").to_string());
                }
            }
            print!("{}", table(&headers, &rows));
            Ok(())
        }
    }
}

fn describe_service(v: &Value, slices: &[Value], routes: &[(Kind, Value)]) -> String {
    let mut lines = vec![
        ("Name", s(v, "/metadata/name").to_string()),
        ("Namespace", s(v, "/metadata/namespace").to_string()),
        ("Labels", columns::key_values(v, "/metadata/labels")),
        (
            "Annotations",
            columns::key_values(v, "/metadata/annotations"),
        ),
        ("Selector", columns::key_values(v, "/spec/selector")),
        (
            "Type",
            v.pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string(),
        ),
        (
            "IP",
            v.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_string(),
        ),
    ];
    if let Some(name) = v.pointer("/spec/externalName").and_then(Value::as_str) {
        lines.push(("External Name", name.to_string()));
    }
    for p in v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        let name = p["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("<unset>");
        lines.push(("Port", format!("{name}  {}/{proto}", p["port"])));
        let target = match &p["targetPort"] {
            Value::Null => p["port"].to_string(),
            Value::String(t) => t.clone(),
            t => t.to_string(),
        };
        lines.push(("TargetPort", format!("{target}/{proto}")));
        if let Some(np) = p["nodePort"].as_i64() {
            lines.push(("NodePort", format!("{name}  {np}/{proto}")));
        }
        let port_name = p["name"].as_str().unwrap_or("");
        let mut eps = Vec::new();
        for slice in slices {
            let Some(port) = slice["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|sp| sp["name"].as_str().unwrap_or("") == port_name)
            else {
                continue;
            };
            for ep in slice["endpoints"].as_array().into_iter().flatten() {
                let ready = ep
                    .pointer("/conditions/ready")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if let Some(addr) = ep.pointer("/addresses/0").and_then(Value::as_str) {
                    let suffix = if ready { "" } else { " (not ready)" };
                    eps.push(format!("{addr}:{}{suffix}", port["port"]));
                }
            }
        }
        lines.push((
            "Endpoints",
            if eps.is_empty() {
                "<none>".into()
            } else {
                eps.join(",")
            },
        ));
    }
    lines.push((
        "Session Affinity",
        v.pointer("/spec/sessionAffinity")
            .and_then(Value::as_str)
            .unwrap_or("None")
            .to_string(),
    ));
    let attached: Vec<String> = routes
        .iter()
        .map(|(k, r)| {
            format!(
                "{}/{} ({})",
                k.as_str(),
                s(r, "/metadata/name"),
                columns::backends(r)
            )
        })
        .collect();
    lines.push((
        "Routes",
        if attached.is_empty() {
            "<none>".into()
        } else {
            attached.join("; ")
        },
    ));
    lines
        .into_iter()
        .map(|(k, v)| format!("{:<19}{v}\n", format!("{k}:")))
        .collect()
}

/// `pier describe KIND NAME`.
pub(crate) async fn describe(
    client: &Client,
    kind: Kind,
    name: &str,
    namespace: &str,
) -> Result<()> {
    let Some(obj) = client.get(kind, namespace, name).await? else {
        bail!(
            "Error from server (NotFound): {} \"{name}\" not found in namespace {namespace:?}",
            kind.plural()
        );
    };
    if kind == Kind::Service {
        let selector = format!("kubernetes.io/service-name={name}");
        let slices = client
            .list(Kind::EndpointSlice, Some(namespace), Some(&selector))
            .await?;
        let mut routes = Vec::new();
        for rk in [Kind::HttpRoute, Kind::TcpRoute, Kind::UdpRoute] {
            for r in client.list(rk, None, None).await? {
                let route_ns = s(&r, "/metadata/namespace").to_string();
                let attached = r
                    .pointer("/spec/parentRefs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|p| {
                        s(p, "/kind") == "Service"
                            && s(p, "/name") == name
                            && p["namespace"].as_str().unwrap_or(&route_ns) == namespace
                    });
                if attached {
                    routes.push((rk, r));
                }
            }
        }
        print!("{}", describe_service(&obj, &slices, &routes));
    } else {
        println!("{:<19}{}", "Name:", s(&obj, "/metadata/name"));
        println!("{:<19}{}", "Namespace:", s(&obj, "/metadata/namespace"));
        println!("{:<19}{}", "Kind:", kind.as_str());
        println!(
            "{:<19}{}",
            "Labels:",
            columns::key_values(&obj, "/metadata/labels")
        );
        println!(
            "{:<19}{}",
            "Created:",
            s(&obj, "/metadata/creationTimestamp")
        );
        let mut body = obj.clone();
        if let Some(map) = body.as_object_mut() {
            for k in ["apiVersion", "kind", "metadata"] {
                map.remove(k);
            }
        }
        print!("{}", serde_yaml_ng::to_string(&body)?);
    }
    Ok(())
}

/// Deletes each `(kind, namespace, name)`, printing what went; fails naming every one that was missing.
async fn delete_each(client: &Client, targets: Vec<(Kind, String, String)>) -> Result<()> {
    let mut missing = Vec::new();
    for (kind, namespace, name) in targets {
        if client.delete(kind, &namespace, &name).await? {
            println!("{}/{name} deleted", singular(kind));
        } else {
            missing.push(format!(
                "Error from server (NotFound): {} \"{name}\" not found in namespace {namespace:?}",
                kind.plural()
            ));
        }
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

/// `pier delete KIND NAME...`.
pub(crate) async fn delete_named(
    client: &Client,
    kind: Kind,
    names: &[String],
    namespace: &str,
) -> Result<()> {
    let targets = names
        .iter()
        .map(|n| (kind, namespace.to_string(), n.clone()))
        .collect();
    delete_each(client, targets).await
}

/// `pier delete -f FILE`.
pub(crate) async fn delete_files(
    client: &Client,
    files: &[PathBuf],
    namespace: Option<&str>,
) -> Result<()> {
    let targets = manifests::read(files, namespace)?
        .into_iter()
        .flat_map(|f| f.objects)
        .map(|o| {
            let meta = o.parsed.object.meta();
            (
                o.parsed.object.kind(),
                meta.namespace().to_string(),
                meta.name.clone(),
            )
        })
        .collect();
    delete_each(client, targets).await
}

/// Headers and rows of `kind`'s columns (the wide ones too with `wide`).
fn table_rows(kind: Kind, objects: &[Value], wide: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let now = std::time::SystemTime::now();
    let shown: Vec<bool> = columns::columns(kind)
        .iter()
        .map(|c| wide || c.priority == 0)
        .collect();
    let headers = columns::columns(kind)
        .into_iter()
        .zip(&shown)
        .filter(|(_, show)| **show)
        .map(|(c, _)| c.name)
        .collect();
    let rows = objects
        .iter()
        .map(|v| {
            columns::row(kind, v, now)
                .into_iter()
                .zip(&shown)
                .filter(|(_, show)| **show)
                .map(|(cell, _)| cell)
                .collect()
        })
        .collect();
    (headers, rows)
}
