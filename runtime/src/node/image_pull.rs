//! A pod's image before its container is made, as the kubelet gets it: the container's
//! `imagePullPolicy`, credentials from the pod's `imagePullSecrets`, and the kubelet's events
//! and backoff (`ErrImagePull`, then `ImagePullBackOff`, `ErrImageNeverPull`).

use std::time::{Duration, Instant};

use pier_model::core_event::{NORMAL, WARNING};
use pier_model::pod::ERROR_ANNOTATION;
use tokio::sync::watch;

use super::inputs::SourceKind;
use super::pod::{pause, report, write_status};
use super::pod_work::{set_ready, PodWork};
use super::Node;
use crate::image::docker_config::{Credentials, DockerConfig};
use crate::image::pull::{self, Progress};

/// How long a failed pull shows as `ErrImagePull` before the pod waits as `ImagePullBackOff`.
const SYNC: Duration = Duration::from_secs(1);

/// What the policy says to do with the image.
enum Step {
    /// It is here and the policy does not ask for a fresh copy.
    Present,
    /// It must be pulled.
    Pull,
    /// It is not here and `Never` forbids a pull.
    NeverPull,
}

fn step(node: &Node, work: &PodWork) -> Step {
    let present = node.engine.images().resolve(&work.config.image).is_ok();
    let policy = work
        .pod
        .spec
        .containers
        .first()
        .map_or("IfNotPresent", |c| c.pull_policy());
    match policy {
        "Never" if !present => Step::NeverPull,
        "Always" => Step::Pull,
        _ if present => Step::Present,
        _ => Step::Pull,
    }
}

/// Marks the pod as waiting on its image, with the kubelet's reason, and writes it when that
/// changed.
async fn waiting(node: &Node, work: &mut PodWork, reason: &str, message: String) {
    if work.pod.status.reason.as_deref() == Some(reason)
        && work.pod.status.message.as_deref() == Some(message.as_str())
    {
        return;
    }
    work.pod.status.phase = Some("Pending".into());
    work.pod.status.reason = Some(reason.into());
    work.pod.status.message = Some(message.clone());
    work.pod
        .metadata
        .annotations
        .insert(ERROR_ANNOTATION.into(), message);
    set_ready(&mut work.pod, false);
    write_status(node, work).await;
}

/// The kubelet's event for an image it did not have to pull.
pub(super) fn report_present(node: &Node, work: &PodWork) {
    let image = &work.config.image;
    let present = format!("Container image {image:?} already present on machine");
    report(node, work, NORMAL, "Pulled", present);
}

/// Gets the pod's image as its policy says, retrying a failed pull with backoff; false when
/// the pod is terminated first.
pub(super) async fn await_image(
    node: &Node,
    work: &mut PodWork,
    term: &mut watch::Receiver<bool>,
) -> bool {
    let image = work.config.image.clone();
    let mut backoff = node.config.initial_backoff;
    loop {
        match step(node, work) {
            Step::Present => {
                report_present(node, work);
                return true;
            }
            Step::NeverPull => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                report(node, work, WARNING, "ErrImageNeverPull", message.clone());
                waiting(node, work, "ErrImageNeverPull", message).await;
            }
            Step::Pull => {
                report(
                    node,
                    work,
                    NORMAL,
                    "Pulling",
                    format!("Pulling image {image:?}"),
                );
                let started = Instant::now();
                match pull_image(node, work).await {
                    Ok(()) => {
                        let took = started.elapsed().as_secs_f64();
                        let pulled = format!("Successfully pulled image {image:?} in {took:.3}s");
                        report(node, work, NORMAL, "Pulled", pulled);
                        return true;
                    }
                    Err(e) => {
                        let message = format!("Failed to pull image {image:?}: {e}");
                        tracing::warn!(pod = %work.pod.metadata.name, error = %message, "image pull failed; trying again with backoff");
                        report(node, work, WARNING, "Failed", message.clone());
                        report(node, work, WARNING, "Failed", "Error: ErrImagePull".into());
                        waiting(node, work, "ErrImagePull", message.clone()).await;
                        // As the kubelet: the failure shows until its next sync, then the
                        // pod waits out the backoff as `ImagePullBackOff`.
                        if !pause(SYNC.min(backoff), term).await {
                            return false;
                        }
                        let back_off = format!("Back-off pulling image {image:?}");
                        report(node, work, NORMAL, "BackOff", back_off);
                        waiting(node, work, "ImagePullBackOff", message).await;
                        if !pause(backoff, term).await {
                            return false;
                        }
                        backoff = (backoff * 2).min(node.config.max_backoff);
                        continue;
                    }
                }
            }
        }
        // Never pull: wait for someone to put the image here.
        if !pause(Duration::from_secs(5), term).await {
            return false;
        }
    }
}

/// Pulls the pod's image with the credentials its pull secrets hold for the registry.
async fn pull_image(node: &Node, work: &PodWork) -> crate::error::Result<()> {
    let (registry, repository) = pull::source_of(&work.config.image)?;
    let credentials = credentials(node, work, &registry, &repository);
    let quiet = |_: Progress| {};
    let images = node.engine.images();
    let name = &work.config.image;
    pull::pull(
        images,
        name,
        &node.config.registries,
        credentials.as_ref(),
        &quiet,
    )
    .await?;
    Ok(())
}

/// The first of the pod's pull secrets (in order) with an entry for the registry; a secret
/// that is missing or holds no Docker config is reported and skipped, as the kubelet does.
fn credentials(
    node: &Node,
    work: &PodWork,
    registry: &str,
    repository: &str,
) -> Option<Credentials> {
    let ns = work.pod.metadata.namespace();
    let warn = |message| {
        report(
            node,
            work,
            WARNING,
            "FailedToRetrieveImagePullSecret",
            message,
        )
    };
    let mut missing = Vec::new();
    for secret in &work.pod.spec.image_pull_secrets {
        let Some(keys) = node.sources.get(SourceKind::Secret, ns, &secret.name) else {
            missing.push(secret.name.clone());
            continue;
        };
        let config = match (keys.get(".dockerconfigjson"), keys.get(".dockercfg")) {
            (Some(json), _) => DockerConfig::parse(json, false),
            (None, Some(cfg)) => DockerConfig::parse(cfg, true),
            (None, None) => Err("no .dockerconfigjson or .dockercfg key".into()),
        };
        match config {
            Ok(config) => {
                if let Some((_, creds)) = config.find(registry, repository) {
                    return Some(creds.clone());
                }
            }
            Err(e) => warn(format!("image pull secret {:?}: {e}", secret.name)),
        }
    }
    if !missing.is_empty() {
        warn(format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
            missing.join(", ")
        ));
    }
    None
}
