//! `pier cordon`, `uncordon` and `drain`, as kubectl's: cordoning marks a Node
//! unschedulable; draining cordons it, then deletes its pods gracefully (each is marked for
//! deletion; its node stops it and removes it) and waits until they are gone. Pods no
//! controller would replace are refused unless `--force`, as kubectl refuses them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use pier_model::Kind;
use serde_json::Value;

/// Sets `spec.unschedulable` on `node` (a conditional write, tried again if the Node changed).
pub(crate) async fn cordon(client: &Client, node: &str, unschedulable: bool) -> Result<()> {
    for _ in 0..5 {
        let Some(mut value) = client.get(Kind::Node, "", node).await? else {
            bail!("node {node:?} not found");
        };
        if value
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            == Some(unschedulable)
        {
            println!(
                "node/{node} already {}",
                if unschedulable {
                    "cordoned"
                } else {
                    "uncordoned"
                }
            );
            return Ok(());
        }
        value["spec"]["unschedulable"] = Value::Bool(unschedulable);
        match client.apply(vec![value]).await {
            Ok(_) => {
                println!(
                    "node/{node} {}",
                    if unschedulable {
                        "cordoned"
                    } else {
                        "uncordoned"
                    }
                );
                return Ok(());
            }
            Err(pier_controlplane::Error::Conflict(_)) => continue,
            Err(e) => return Err(e).with_context(|| format!("updating node {node}")),
        }
    }
    bail!("node {node} kept changing while it was being updated; try again")
}

/// Cordons `node`, deletes its pods gracefully and waits up to `timeout` for them to go.
pub(crate) async fn drain(
    client: &Client,
    node: &str,
    force: bool,
    timeout: Duration,
) -> Result<()> {
    cordon(client, node, true).await?;
    let pods = pods_on(client, node).await?;
    let unmanaged: Vec<String> = pods.iter().filter(|p| !managed(p)).map(name_of).collect();
    if !unmanaged.is_empty() && !force {
        bail!(
            "cannot delete pods that no controller manages (use --force to delete them anyway): {}",
            unmanaged.join(", ")
        );
    }
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let marked: Vec<Value> = pods
        .into_iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|mut p| {
            p["metadata"]["deletionTimestamp"] = Value::String(now.clone());
            println!("evicting pod {}", name_of(&p));
            p
        })
        .collect();
    if !marked.is_empty() {
        client.apply(marked).await.context("evicting pods")?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = pods_on(client, node).await?;
        if left.is_empty() {
            println!("node/{node} drained");
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = left.iter().map(name_of).collect();
            bail!(
                "timed out after {timeout:?} waiting for pods to go: {}",
                names.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pods bound to `node`, in every namespace.
async fn pods_on(client: &Client, node: &str) -> Result<Vec<Value>> {
    Ok(client
        .list(Kind::Pod, None, None)
        .await?
        .into_iter()
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
        .collect())
}

/// Whether a controller would replace the pod: the scheduler's and the node lifecycle
/// controller's notion of an owner.
fn managed(pod: &Value) -> bool {
    serde_json::from_value::<pier_model::Pod>(pod.clone())
        .is_ok_and(|p| pier_controlplane::controllers::scheduling::owner(&p).is_some())
}

fn name_of(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default"),
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    )
}
