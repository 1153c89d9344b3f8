//! `pier rollout status|history|undo|pause|resume|restart` for Deployments, as kubectl's, and
//! `history|undo|restart` for Rollouts (`ro/NAME`; their status, pause, resume, promote, abort
//! and retry go to `rollout_canary.rs`): history and undo read the revisions the workload
//! controllers keep as ReplicaSets; undo writes an earlier revision's template back into the
//! workload; pause and resume set a Deployment's `spec.paused`; restart stamps a Deployment's
//! template so every pod is replaced, or sets a Rollout's `spec.restartAt` as Argo's plugin
//! does (each a conditional write, tried again if the workload changed meanwhile); status
//! waits until the controller reports the rollout done.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pier_controlplane::api::Client;
use pier_model::deployment::PodTemplateSpec;
use pier_model::replica_set::CHANGE_CAUSE_ANNOTATION;
use pier_model::rollout::ROLLOUT_HASH_LABEL;
use pier_model::{Kind, ReplicaSet};
use serde_json::Value;

use super::output::{table, Format};

/// `pier rollout` subcommands; each takes `deploy/NAME`, `ro/NAME` or a bare NAME (a Deployment).
#[derive(clap::Subcommand)]
pub(crate) enum RolloutCommand {
    /// Wait until a rollout is done, printing its progress.
    Status {
        /// `deploy/NAME` or `ro/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// How long to wait.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
        timeout: Duration,
    },
    /// List the revisions, or show one's pod template.
    History {
        /// `deploy/NAME` or `ro/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Show this revision's pod template.
        #[arg(long)]
        revision: Option<u64>,
        /// Output format of `--revision`: yaml (default) or json.
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Go back to the previous revision, or to `--to-revision`.
    Undo {
        /// `deploy/NAME` or `ro/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// The revision to go back to.
        #[arg(long)]
        to_revision: Option<u64>,
    },
    /// Hold new templates back: the Deployment scales but does not roll out.
    Pause {
        /// `deploy/NAME` or `ro/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Roll out again, starting with any template held back while paused.
    Resume {
        /// `deploy/NAME` or `ro/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Go on past a Rollout's pause or current step (`--full`: past every step).
    Promote {
        /// `ro/NAME` (or a bare NAME).
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Skip every remaining step.
        #[arg(long)]
        full: bool,
    },
    /// Send all of a Rollout's traffic back to stable and scale the canary down.
    Abort {
        /// `ro/NAME` (or a bare NAME).
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Start an aborted Rollout again from its first step.
    Retry {
        /// `ro/NAME` (or a bare NAME).
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Replace every pod: a Deployment by a rolling update, a Rollout one pod at a time.
    Restart {
        /// `deploy/NAME` or `ro/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

/// Runs one `pier rollout` subcommand.
pub(crate) async fn run(client: &Client, command: RolloutCommand) -> Result<()> {
    use super::rollout_canary::{act, Action};
    match command {
        RolloutCommand::Promote {
            target,
            namespace,
            full,
        } => {
            act(
                client,
                &namespace,
                rollout_name(&target)?,
                Action::Promote { full },
            )
            .await
        }
        RolloutCommand::Abort { target, namespace } => {
            act(client, &namespace, rollout_name(&target)?, Action::Abort).await
        }
        RolloutCommand::Retry { target, namespace } => {
            act(client, &namespace, rollout_name(&target)?, Action::Retry).await
        }
        RolloutCommand::Status {
            target,
            namespace,
            timeout,
        } if is_rollout(&target) => {
            super::rollout_canary::status(client, &namespace, rollout_name(&target)?, timeout).await
        }
        RolloutCommand::Pause { target, namespace } if is_rollout(&target) => {
            act(client, &namespace, rollout_name(&target)?, Action::Pause).await
        }
        RolloutCommand::Resume { target, namespace } if is_rollout(&target) => {
            act(client, &namespace, rollout_name(&target)?, Action::Resume).await
        }
        RolloutCommand::Status {
            target,
            namespace,
            timeout,
        } => status(client, &namespace, workload(&target)?.name, timeout).await,
        RolloutCommand::History {
            target,
            namespace,
            revision,
            output,
        } => history(client, &namespace, workload(&target)?, revision, output).await,
        RolloutCommand::Undo {
            target,
            namespace,
            to_revision,
        } => undo(client, &namespace, workload(&target)?, to_revision).await,
        RolloutCommand::Restart { target, namespace } => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let target = workload(&target)?;
            update(client, &namespace, target, "restarted", |d| {
                if target.kind == Kind::Rollout {
                    d["spec"]["restartAt"] = Value::String(now.clone());
                    return Ok(());
                }
                let metadata = &mut d["spec"]["template"]["metadata"];
                if !metadata["annotations"].is_object() {
                    metadata["annotations"] = Value::Object(Default::default());
                }
                metadata["annotations"][RESTARTED_AT] = Value::String(now.clone());
                Ok(())
            })
            .await
        }
        RolloutCommand::Pause { target, namespace } => {
            update(client, &namespace, deployment(&target)?, "paused", |d| {
                if d["spec"]["paused"] == Value::Bool(true) {
                    return Err("is already paused".into());
                }
                d["spec"]["paused"] = Value::Bool(true);
                Ok(())
            })
            .await
        }
        RolloutCommand::Resume { target, namespace } => {
            update(client, &namespace, deployment(&target)?, "resumed", |d| {
                let was = d["spec"]
                    .as_object_mut()
                    .and_then(|spec| spec.remove("paused"));
                match was {
                    Some(Value::Bool(true)) => Ok(()),
                    _ => Err("is not paused".into()),
                }
            })
            .await
        }
    }
}

/// The label that tells one revision of a Deployment's pods from another's.
const HASH_LABEL: &str = "pod-template-hash";
/// The template annotation `restart` sets (kubectl's).
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Whether `target` names a Rollout (`ro/NAME`, `rollout/NAME`, `rollouts/NAME`).
fn is_rollout(target: &str) -> bool {
    target
        .split_once('/')
        .is_some_and(|(kind, _)| kind.parse::<Kind>() == Ok(Kind::Rollout))
}

/// Parses `ro/NAME` (any of Argo's names for Rollouts) or a bare `NAME`.
fn rollout_name(target: &str) -> Result<&str> {
    match target.split_once('/') {
        None => Ok(target),
        Some((kind, name)) => match kind.parse::<Kind>() {
            Ok(Kind::Rollout) if !name.is_empty() => Ok(name),
            _ => bail!("{target:?}: promote, abort and retry work on rollouts (ro/NAME)"),
        },
    }
}

/// A workload `pier rollout` acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target<'a> {
    kind: Kind,
    name: &'a str,
}

impl Target<'_> {
    /// `deployment/NAME` or `rollout/NAME`, as messages name it.
    fn label(&self) -> String {
        format!("{}/{}", self.kind.as_str().to_ascii_lowercase(), self.name)
    }
}

/// Parses `deploy/NAME`, `ro/NAME` (any of their names) or a bare `NAME` (a Deployment).
fn workload(target: &str) -> Result<Target<'_>> {
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(Target {
            kind: Kind::Deployment,
            name: target,
        });
    };
    match kind.parse::<Kind>() {
        Ok(kind @ (Kind::Deployment | Kind::Rollout)) if !name.is_empty() => {
            Ok(Target { kind, name })
        }
        _ => bail!(
            "{target:?}: pier rollout works on deployments (deploy/NAME) and rollouts (ro/NAME)"
        ),
    }
}

/// As [`workload`], for what only Deployments have (`pause`, `resume` of `spec.paused`).
fn deployment(target: &str) -> Result<Target<'_>> {
    let t = workload(target)?;
    if t.kind != Kind::Deployment {
        bail!("{target:?}: expected a deployment (deploy/NAME)");
    }
    Ok(t)
}

/// `pier rollout history`: the revisions, or one revision's pod template.
async fn history(
    client: &Client,
    namespace: &str,
    target: Target<'_>,
    revision: Option<u64>,
    format: Format,
) -> Result<()> {
    let object = object(client, namespace, target).await?;
    let sets = revisions(client, &object).await?;
    let label = target.label();
    if let Some(n) = revision {
        let rs = sets
            .iter()
            .find(|rs| rs.revision() == n)
            .ok_or_else(|| anyhow!("{label} has no revision {n}"))?;
        println!("{label} with revision #{n}");
        let template = serde_json::to_value(&rs.spec.template)?;
        return super::output::print_value(&template, format_or_yaml(format));
    }
    println!("{label}");
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|rs| {
            let cause = rs
                .metadata
                .annotations
                .get(CHANGE_CAUSE_ANNOTATION)
                .map_or("<none>", String::as_str);
            vec![rs.revision().to_string(), cause.to_string()]
        })
        .collect();
    print!("{}", table(&["REVISION", "CHANGE-CAUSE"], &rows));
    Ok(())
}

/// `pier rollout undo`: back to revision `to` (or the one before the current).
async fn undo(
    client: &Client,
    namespace: &str,
    workload: Target<'_>,
    to: Option<u64>,
) -> Result<()> {
    let object = object(client, namespace, workload).await?;
    if object.pointer("/spec/workloadRef").is_some() {
        bail!(
            "{} runs its workloadRef's template: undo that Deployment instead",
            workload.label()
        );
    }
    let sets = revisions(client, &object).await?;
    let label = workload.label();
    let target = match to {
        Some(n) => sets.iter().find(|rs| rs.revision() == n),
        // The newest is the current template; the one before it is where undo goes.
        None => sets.iter().rev().nth(1),
    };
    let Some(rs) = target else {
        bail!(match to {
            Some(n) => format!("{label} has no revision {n}"),
            None => format!("{label} has no earlier revision to go back to"),
        });
    };
    let revision = rs.revision();
    let mut template = rs.spec.template.clone();
    template.metadata.labels.remove(HASH_LABEL);
    template.metadata.labels.remove(ROLLOUT_HASH_LABEL);
    let template_value = serde_json::to_value(&template)?;
    let cause = rs.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION);
    let done = format!("rolled back to revision {revision}");
    update(client, namespace, workload, &done, |d| {
        let current = serde_json::from_value::<PodTemplateSpec>(d["spec"]["template"].clone());
        if current.is_ok_and(|c| c == template) {
            return Err(format!(
                "skipped rollback (current template already matches revision {revision})"
            ));
        }
        d["spec"]["template"] = template_value.clone();
        set_change_cause(&mut d["metadata"], cause);
        Ok(())
    })
    .await
}

/// Gives `metadata` the change cause of the revision it goes back to, or none.
fn set_change_cause(metadata: &mut Value, cause: Option<&String>) {
    match cause {
        Some(cause) => {
            if !metadata["annotations"].is_object() {
                metadata["annotations"] = Value::Object(Default::default());
            }
            metadata["annotations"][CHANGE_CAUSE_ANNOTATION] = Value::String(cause.clone());
        }
        None => {
            if let Some(map) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                map.remove(CHANGE_CAUSE_ANNOTATION);
            }
        }
    }
}

/// Changes the workload with `change` and writes it back, conditional on the version read and
/// tried again if it changed meanwhile; prints `deployment/NAME <done>`, or why nothing was to
/// be done (`change`'s `Err`).
async fn update(
    client: &Client,
    namespace: &str,
    target: Target<'_>,
    done: &str,
    change: impl Fn(&mut Value) -> std::result::Result<(), String>,
) -> Result<()> {
    let label = target.label();
    for _ in 0..5 {
        let mut object = object(client, namespace, target).await?;
        if let Err(nothing) = change(&mut object) {
            println!("{label} {nothing}");
            return Ok(());
        }
        match client.apply(vec![object]).await {
            Ok(_) => {
                println!("{label} {done}");
                return Ok(());
            }
            Err(pier_controlplane::Error::Conflict(_)) => continue,
            Err(e) => return Err(e).with_context(|| format!("updating {label}")),
        }
    }
    bail!("{label} kept changing while it was being updated; try again")
}

/// `pier rollout status`: prints progress until every replica runs the current template
/// and is available, or fails after `timeout`.
async fn status(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    let target = Target {
        kind: Kind::Deployment,
        name,
    };
    loop {
        let d = object(client, namespace, target).await?;
        let (message, done) = progress(&d, name);
        if message != last {
            println!("{message}");
            last = message;
        }
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for deployment {name:?} to roll out");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What kubectl's rollout status says of a Deployment, and whether the rollout is done.
fn progress(d: &Value, name: &str) -> (String, bool) {
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let generation = n("/metadata/generation");
    let observed = n("/status/observedGeneration");
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let (updated, replicas, available) = (
        n("/status/updatedReplicas"),
        n("/status/replicas"),
        n("/status/availableReplicas"),
    );
    if observed < generation {
        return (
            "Waiting for deployment spec update to be observed...".into(),
            false,
        );
    }
    if updated < desired {
        return (
            format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."),
            false,
        );
    }
    if replicas > updated {
        return (
            format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", replicas - updated),
            false,
        );
    }
    if available < updated {
        return (
            format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."),
            false,
        );
    }
    (format!("deployment {name:?} successfully rolled out"), true)
}

async fn object(client: &Client, namespace: &str, target: Target<'_>) -> Result<Value> {
    client
        .get(target.kind, namespace, target.name)
        .await?
        .ok_or_else(|| anyhow!("{} not found in namespace {namespace}", target.label()))
}

/// The ReplicaSets `workload` controls, oldest revision first.
async fn revisions(client: &Client, workload: &Value) -> Result<Vec<ReplicaSet>> {
    let namespace = workload
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let uid = workload.pointer("/metadata/uid").and_then(Value::as_str);
    let mut sets: Vec<ReplicaSet> = client
        .list(Kind::ReplicaSet, Some(namespace), None)
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value::<ReplicaSet>(v).ok())
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
                && rs.revision() > 0
        })
        .collect();
    sets.sort_by_key(ReplicaSet::revision);
    Ok(sets)
}

/// A pod template prints as YAML unless JSON was asked for.
fn format_or_yaml(format: Format) -> Format {
    match format {
        Format::Json => Format::Json,
        _ => Format::Yaml,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_deployments_and_rollouts() {
        assert_eq!(workload("deploy/web").unwrap().name, "web");
        assert_eq!(workload("deployments/web").unwrap().kind, Kind::Deployment);
        assert_eq!(workload("web").unwrap().kind, Kind::Deployment);
        assert_eq!(workload("ro/web").unwrap().label(), "rollout/web");
        assert!(workload("svc/web").is_err());
        assert!(workload("deploy/").is_err());
        assert!(deployment("ro/web").is_err());
    }

    #[test]
    fn a_change_cause_follows_the_revision_and_never_leaves_a_null() {
        let mut bare = serde_json::json!({"name": "web"});
        set_change_cause(&mut bare, None);
        assert_eq!(bare, serde_json::json!({"name": "web"}));
        set_change_cause(&mut bare, Some(&"v1".to_string()));
        assert_eq!(bare["annotations"][CHANGE_CAUSE_ANNOTATION], "v1");
        set_change_cause(&mut bare, None);
        assert_eq!(bare["annotations"], serde_json::json!({}));
    }

    #[test]
    fn progress_reads_like_kubectl() {
        let d = |gen: i64, obs: i64, updated: i64, replicas: i64, available: i64| {
            serde_json::json!({
                "metadata": {"generation": gen},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": obs, "updatedReplicas": updated, "replicas": replicas, "availableReplicas": available},
            })
        };
        assert!(!progress(&d(2, 1, 2, 2, 2), "w").1);
        assert!(progress(&d(2, 2, 1, 3, 1), "w")
            .0
            .contains("1 out of 2 new replicas"));
        assert!(progress(&d(2, 2, 2, 3, 2), "w")
            .0
            .contains("1 old replicas are pending"));
        assert!(progress(&d(2, 2, 2, 2, 1), "w")
            .0
            .contains("1 of 2 updated replicas"));
        assert_eq!(
            progress(&d(2, 2, 2, 2, 2), "w"),
            ("deployment \"w\" successfully rolled out".into(), true)
        );
    }
}
