//! `pier rollout status|promote|abort|retry|pause|resume` for Argo Rollouts, as Argo's
//! kubectl plugin does them: promote, abort and retry write the Rollout's status through the
//! `status` subresource (promote clears the pause the controller set, or skips the current
//! step; `--full` skips them all), pause and resume set `spec.paused`; each is a conditional
//! write, tried again if the Rollout changed meanwhile. Status waits for Healthy or Degraded.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use pier_controlplane::api::Client;
use pier_model::Kind;
use serde_json::Value;

/// What `pier rollout` does to a Rollout.
pub(crate) enum Action {
    /// Go on past the current pause or step; with `full`, past every step.
    Promote {
        /// Skip every remaining step.
        full: bool,
    },
    /// All traffic back on stable.
    Abort,
    /// Start an aborted rollout again from its first step.
    Retry,
    /// Hold at the current step.
    Pause,
    /// Go on from where it was held.
    Resume,
}

/// Runs `action` on rollout `name`.
pub(crate) async fn act(
    client: &Client,
    namespace: &str,
    name: &str,
    action: Action,
) -> Result<()> {
    match action {
        Action::Promote { full } => {
            let done = if full { "fully promoted" } else { "promoted" };
            let held = rollout(client, namespace, name).await?["spec"]["paused"] == true;
            write(client, namespace, name, true, done, move |ro| {
                promote(ro, full)
            })
            .await?;
            // Promote also lets go of a rollout held by `pier rollout pause`, as Argo's does.
            if held {
                write(client, namespace, name, false, "resumed", resume).await?;
            }
            Ok(())
        }
        Action::Abort => {
            write(client, namespace, name, true, "aborted", |ro| {
                if ro["status"]["abort"] == Value::Bool(true) {
                    return Err("is already aborted".into());
                }
                ro["status"]["abort"] = Value::Bool(true);
                Ok(())
            })
            .await
        }
        Action::Retry => {
            write(client, namespace, name, true, "retried", |ro| {
                if ro["status"]["abort"] != Value::Bool(true) {
                    return Err("is not aborted".into());
                }
                // abortedAt stays: it tells the controller this attempt is a retry.
                remove(&mut ro["status"], &["abort", "message"]);
                ro["status"]["currentStepIndex"] = Value::from(0);
                Ok(())
            })
            .await
        }
        Action::Pause => {
            write(client, namespace, name, false, "paused", |ro| {
                if ro["spec"]["paused"] == Value::Bool(true) {
                    return Err("is already paused".into());
                }
                ro["spec"]["paused"] = Value::Bool(true);
                Ok(())
            })
            .await
        }
        Action::Resume => write(client, namespace, name, false, "resumed", resume).await,
    }
}

/// Promote as Argo's plugin does: past the pause the controller set, else past the current
/// step; `full` past all of them.
fn promote(ro: &mut Value, full: bool) -> std::result::Result<(), String> {
    let steps = ro
        .pointer("/spec/strategy/canary/steps")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as i64;
    let index = ro
        .pointer("/status/currentStepIndex")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let stable = ro.pointer("/status/stableRS").and_then(Value::as_str);
    let current = ro.pointer("/status/currentPodHash").and_then(Value::as_str);
    if stable.is_some() && stable == current {
        return Err("is not rolling out: nothing to promote".into());
    }
    if ro["status"]["abort"] == Value::Bool(true) {
        return Err("is aborted: `pier rollout retry` starts it again".into());
    }
    let paused = ro["status"]["pauseConditions"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    if full {
        ro["status"]["promoteFull"] = Value::Bool(true);
    } else if paused {
        remove(&mut ro["status"], &["pauseConditions"]);
    } else if index < steps {
        ro["status"]["currentStepIndex"] = Value::from(index + 1);
    } else {
        return Err("has no step left to promote past".into());
    }
    Ok(())
}

/// Lets go of a rollout held by `spec.paused`.
fn resume(ro: &mut Value) -> std::result::Result<(), String> {
    let was = ro["spec"].as_object_mut().and_then(|s| s.remove("paused"));
    match was {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err("is not paused".into()),
    }
}

/// Removes `fields` from object `v` (nothing when it is not an object).
fn remove(v: &mut Value, fields: &[&str]) {
    if let Some(map) = v.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
}

/// Changes rollout `name` with `change` and writes it back (its status, or its spec),
/// conditional on the version read and tried again if it changed meanwhile.
async fn write(
    client: &Client,
    namespace: &str,
    name: &str,
    status: bool,
    done: &str,
    change: impl Fn(&mut Value) -> std::result::Result<(), String>,
) -> Result<()> {
    for _ in 0..5 {
        let mut ro = rollout(client, namespace, name).await?;
        if let Err(nothing) = change(&mut ro) {
            println!("rollout '{name}' {nothing}");
            return Ok(());
        }
        let result = if status {
            let path =
                format!("/apis/argoproj.io/v1alpha1/namespaces/{namespace}/rollouts/{name}/status");
            let (code, body) = client.request(Method::PUT, &path, Some(&ro)).await?;
            match code {
                c if c.is_success() => Ok(()),
                StatusCode::CONFLICT => continue,
                _ => Err(anyhow!(
                    "{}",
                    body["message"].as_str().unwrap_or("status write failed")
                )),
            }
        } else {
            match client.apply(vec![ro.clone()]).await {
                Ok(_) => Ok(()),
                Err(pier_controlplane::Error::Conflict(_)) => continue,
                Err(e) => Err(e.into()),
            }
        };
        result.with_context(|| format!("updating rollout {name}"))?;
        println!("rollout '{name}' {done}");
        return Ok(());
    }
    bail!("rollout {name} kept changing while it was being updated; try again")
}

/// Waits until rollout `name` is Healthy (success) or Degraded (failure), printing each
/// change of phase and message (a pause is printed and waited through).
pub(crate) async fn status(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let ro = rollout(client, namespace, name).await?;
        let generation = ro
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let observed: i64 = ro
            .pointer("/status/observedGeneration")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok())
            .unwrap_or(-1);
        let phase = ro
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Progressing");
        let message = ro
            .pointer("/status/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        let line = if message.is_empty() {
            phase.to_string()
        } else {
            format!("{phase} - {message}")
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        if observed >= generation {
            match phase {
                "Healthy" => return Ok(()),
                "Degraded" => bail!("rollout {name} is degraded: {message}"),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for rollout {name:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn rollout(client: &Client, namespace: &str, name: &str) -> Result<Value> {
    client
        .get(Kind::Rollout, namespace, name)
        .await?
        .ok_or_else(|| anyhow!("rollout {namespace}/{name} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ro(status: Value) -> Value {
        json!({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}}}, "status": status})
    }

    #[test]
    fn promote_clears_the_pause_or_skips_the_step() {
        let mut paused = ro(
            json!({"currentStepIndex": 1, "currentPodHash": "b", "stableRS": "a",
            "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "x"}], "controllerPause": true}),
        );
        promote(&mut paused, false).unwrap();
        assert!(paused["status"]["pauseConditions"].is_null());
        assert_eq!(paused["status"]["controllerPause"], true);
        assert_eq!(paused["status"]["currentStepIndex"], 1);
        let mut running =
            ro(json!({"currentStepIndex": 0, "currentPodHash": "b", "stableRS": "a"}));
        promote(&mut running, false).unwrap();
        assert_eq!(running["status"]["currentStepIndex"], 1);
        let mut full = ro(json!({"currentStepIndex": 0, "currentPodHash": "b", "stableRS": "a"}));
        promote(&mut full, true).unwrap();
        assert_eq!(full["status"]["promoteFull"], true);
        let mut settled = ro(json!({"currentPodHash": "a", "stableRS": "a"}));
        assert!(promote(&mut settled, false).is_err());
    }
}
