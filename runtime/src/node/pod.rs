//! One pod's worker: create, start, probe, restart by policy, drain and stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_model::core_event::{NORMAL, WARNING};
use pier_model::pod::ERROR_ANNOTATION;
use pier_model::{Kind, Pod};
use tokio::sync::{oneshot, watch};

use super::inputs::{self, volumes::PodVolumes};
use super::pod_work::{set_ready, PodWork};
use super::probe::{self, Tracker};
use super::{Node, CONTAINER_ANNOTATION, RESTARTS_ANNOTATION};
use crate::container::{ContainerRecord, State};
use crate::error::{Error, Result};
use crate::metrics::Report;

enum Outcome {
    Exited(i32),
    Unhealthy,
    Terminate,
}

/// Runs probes until the container exits, fails liveness, or the pod is terminated.
async fn supervise(
    node: &Node,
    work: &mut PodWork,
    id: &str,
    term: &mut watch::Receiver<bool>,
) -> Outcome {
    let Some(mut exit) = node.engine.exited(id) else {
        let code = node
            .engine
            .get(id)
            .ok()
            .and_then(|r| r.exit)
            .map_or(255, |e| e.code);
        return Outcome::Exited(code);
    };
    let ip = work
        .pod
        .status
        .pod_ip
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let target = probe::Target {
        ip,
        id: id.to_string(),
        exec_helper: node.engine.shim_exe().to_path_buf(),
        state_root: node.engine.state_root(),
    };
    let start = tokio::time::Instant::now();
    let mut ready = Tracker::new(false);
    let mut live = Tracker::new(true);
    let mut next_ready = work.readiness.as_ref().map(|p| start + p.initial_delay);
    let mut next_live = work.liveness.as_ref().map(|p| start + p.initial_delay);
    let far = start + Duration::from_secs(86_400 * 365);
    loop {
        tokio::select! {
            code = async { exit.wait_for(Option::is_some).await.ok().and_then(|s| s.as_ref().map(|s| s.code)) } => {
                return Outcome::Exited(code.unwrap_or(255));
            }
            () = terminated(term) => return Outcome::Terminate,
            () = tokio::time::sleep_until(next_ready.unwrap_or(far)) => {
                if let Some(spec) = &work.readiness {
                    let ok = probe::run(spec, &target, "readiness").await;
                    if !ok {
                        report(node, work, WARNING, "Unhealthy", format!("Readiness probe failed: {}", spec.check.describe()));
                    }
                    let before = work.pod.is_ready();
                    let now = ready.record(ok, spec);
                    if now != before {
                        set_ready(&mut work.pod, now);
                        tracing::info!(pod = %work.pod.metadata.name, ready = now, "readiness changed");
                        write_status(node, work).await;
                    }
                    next_ready = Some(tokio::time::Instant::now() + spec.period);
                }
            }
            () = tokio::time::sleep_until(next_live.unwrap_or(far)) => {
                if let Some(spec) = &work.liveness {
                    let ok = probe::run(spec, &target, "liveness").await;
                    if !ok {
                        report(node, work, WARNING, "Unhealthy", format!("Liveness probe failed: {}", spec.check.describe()));
                    }
                    if !live.record(ok, spec) {
                        tracing::warn!(pod = %work.pod.metadata.name, "liveness probe failed; restarting the container");
                        let container = container(work);
                        report(node, work, NORMAL, "Killing", format!("Container {container} failed liveness probe, will be restarted"));
                        return Outcome::Unhealthy;
                    }
                    next_live = Some(tokio::time::Instant::now() + spec.period);
                }
            }
        }
    }
}

/// Sleeps, unless the pod is terminated first; false when it was.
pub(super) async fn pause(d: Duration, term: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = terminated(term) => false,
    }
}

/// Records that the pod's container could not be started: the pod stays `Pending` and not
/// ready while it is tried again with backoff, as the kubelet keeps a pod whose image or
/// container cannot be made (`ErrImagePull`, `CreateContainerError`), so its Deployment
/// waits for it instead of replacing it in a loop.
async fn fail(node: &Node, work: &mut PodWork, e: &Error) {
    tracing::warn!(pod = %work.pod.metadata.name, error = %e, "pod's container cannot start; trying again with backoff");
    report(node, work, WARNING, "Failed", format!("Error: {e}"));
    work.pod.status.phase = Some("Pending".into());
    set_ready(&mut work.pod, false);
    work.pod
        .metadata
        .annotations
        .insert(ERROR_ANNOTATION.into(), e.to_string());
    write_status(node, work).await;
}

/// The name of the pod's container, as its spec gives it.
fn container(work: &PodWork) -> String {
    work.pod
        .spec
        .containers
        .first()
        .map_or_else(|| work.config.name.clone(), |c| c.name.clone())
}

/// Reports an event about the pod's container, as the kubelet does.
pub(super) fn report(
    node: &Node,
    work: &PodWork,
    event_type: &'static str,
    reason: &str,
    message: String,
) {
    let mut about = pier_controlplane::events::reference_to(Kind::Pod, &work.pod.metadata);
    about.field_path = format!("spec.containers{{{}}}", container(work));
    node.events.report(about, event_type, reason, message);
}

/// Writes the pod's status (phase, readiness, annotations) to the store; a failure is logged
/// and counted, and the next change writes the whole status again.
pub(super) async fn write_status(node: &Node, work: &PodWork) {
    node.write(&work.pod)
        .await
        .report("write-pod-status", &work.pod.metadata.name);
}

/// Waits until the pod is terminated, or its node shuts down (which drops the sender).
async fn terminated(term: &mut watch::Receiver<bool>) {
    if term.wait_for(|t| *t).await.is_err() {
        tracing::debug!("node shutting down: pod worker ends");
    }
}

/// Answers the `pier run` waiting for the container; one that stopped waiting is fine.
fn answer(tx: oneshot::Sender<Result<ContainerRecord>>, result: Result<ContainerRecord>) {
    if tx.send(result).is_err() {
        tracing::debug!("pier run stopped waiting for its container");
    }
}

/// The pod's life on this node.
pub(crate) async fn worker(node: Arc<Node>, mut work: PodWork, mut term: watch::Receiver<bool>) {
    let mut created = work.created.take();
    let id = match work.adopt.clone() {
        Some(id) => Some(id),
        None => {
            let made = async {
                let ip = node.register(&mut work.pod).await?;
                if !await_inputs(&node, &mut work, &mut term).await {
                    return Ok(None);
                }
                // `pier run` names an image it has; a pod's is got as its policy says.
                if work.from_spec
                    && !super::image_pull::await_image(&node, &mut work, &mut term).await
                {
                    return Ok(None);
                }
                node.engine.create(work.config.clone(), Some(ip)).map(Some)
            }
            .await;
            match made {
                // Deleted while it waited for its inputs.
                Ok(None) => None,
                Ok(Some(record)) => {
                    work.pod
                        .metadata
                        .annotations
                        .insert(CONTAINER_ANNOTATION.into(), record.id.clone());
                    if !work.from_spec {
                        super::image_pull::report_present(&node, &work);
                    }
                    let created = format!("Created container: {}", container(&work));
                    report(&node, &work, NORMAL, "Created", created);
                    Some(record.id)
                }
                Err(e) => {
                    if work.pod.status.pod_ip.is_some() {
                        fail(&node, &mut work, &e).await;
                    }
                    if let Some(tx) = created.take() {
                        answer(tx, Err(e));
                        // `pier run` failed: nothing of it is left behind.
                        delete_pod(&node, &work.pod).await;
                        return;
                    }
                    None
                }
            }
        }
    };
    if let Some(id) = id {
        run_loop(&node, &mut work, &id, &mut term, &mut created).await;
        terminate(&node, &mut work, &id).await;
    } else {
        terminated(&mut term).await;
    }
    {
        let _writing = super::lock(&node.volume_writes);
        PodVolumes::of(node.engine.root(), &work.pod).remove();
    }
    delete_pod(&node, &work.pod).await;
}

/// The kubelet's reason for a pod whose container's inputs cannot be resolved.
const CONFIG_ERROR: &str = "CreateContainerConfigError";

/// Resolves the environment and volumes of a pod's container into its config. While an
/// object they need is missing the pod stays `Pending` with the kubelet's
/// `CreateContainerConfigError`, and is tried again whenever a ConfigMap or Secret changes;
/// false when the pod is terminated first.
async fn await_inputs(node: &Node, work: &mut PodWork, term: &mut watch::Receiver<bool>) -> bool {
    if !work.from_spec {
        return true;
    }
    let mut changed = node.sources.subscribe();
    loop {
        changed.borrow_and_update();
        let error = match inputs::resolve(node, &work.pod) {
            Ok(resolved) => {
                resolved.apply(&mut work.config);
                return true;
            }
            Err(e) => e.to_string(),
        };
        if work.pod.status.message.as_deref() != Some(error.as_str()) {
            tracing::warn!(pod = %work.pod.metadata.name, error = %error, "pod waits for the objects its container needs");
            report(node, work, WARNING, "Failed", format!("Error: {error}"));
            work.pod.status.reason = Some(CONFIG_ERROR.into());
            work.pod.status.message = Some(error);
            write_status(node, work).await;
        }
        tokio::select! {
            _ = changed.changed() => {}
            () = terminated(term) => return false,
            // A missed change (the sync loop restarted) is caught up with all the same.
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Deletes the pod, or leaves it stopped while its finalizers hold it.
async fn delete_pod(node: &Node, pod: &Pod) {
    if let Err(e) = node.finish(pod).await {
        tracing::warn!(pod = %pod.metadata.name, error = %e, "deleting pod");
    }
}

async fn run_loop(
    node: &Node,
    work: &mut PodWork,
    id: &str,
    term: &mut watch::Receiver<bool>,
    created: &mut Option<oneshot::Sender<Result<ContainerRecord>>>,
) {
    let mut backoff = node.config.initial_backoff;
    loop {
        if *term.borrow() {
            return;
        }
        let running = node.engine.get(id).is_ok_and(|r| r.state == State::Running);
        if !running {
            let engine = Arc::clone(&node.engine);
            match engine.start(id).await {
                Ok(record) => {
                    report(
                        node,
                        work,
                        NORMAL,
                        "Started",
                        format!("Started container {}", container(work)),
                    );
                    if let Some(tx) = created.take() {
                        answer(tx, Ok(record));
                    }
                }
                Err(e) => {
                    if let Some(tx) = created.take() {
                        answer(tx, Err(e));
                        return;
                    }
                    fail(node, work, &e).await;
                    if !pause(backoff, term).await {
                        return;
                    }
                    backoff = (backoff * 2).min(node.config.max_backoff);
                    continue;
                }
            }
        } else if let Some(tx) = created.take() {
            answer(tx, node.engine.get(id));
        }
        let restarts = node.engine.get(id).map_or(0, |r| r.restart_count);
        work.pod.status.phase = Some("Running".into());
        work.pod.metadata.annotations.remove(ERROR_ANNOTATION);
        work.pod.status.reason = None;
        work.pod.status.message = None;
        work.pod
            .metadata
            .annotations
            .insert(RESTARTS_ANNOTATION.into(), restarts.to_string());
        // Without a readiness probe a running container is ready; an adopted one keeps its state.
        let ready = work.readiness.is_none() || (work.adopt.is_some() && work.pod.is_ready());
        work.adopt = None;
        set_ready(&mut work.pod, ready);
        write_status(node, work).await;
        let started = Instant::now();
        let outcome = supervise(node, work, id, term).await;
        let code = match outcome {
            Outcome::Terminate => return,
            Outcome::Exited(code) => code,
            Outcome::Unhealthy => {
                set_ready(&mut work.pod, false);
                write_status(node, work).await;
                let grace = work.config.stop_grace_seconds.map(Duration::from_secs);
                node.engine
                    .stop(id, grace)
                    .await
                    .report("stop-container", id);
                137
            }
        };
        set_ready(&mut work.pod, false);
        let by_user = node.engine.get(id).is_ok_and(|r| r.stopped_by_user);
        tracing::info!(pod = %work.pod.metadata.name, code, "container exited");
        if by_user || !work.config.restart.restarts(code) {
            work.pod.status.phase = Some(if code == 0 { "Succeeded" } else { "Failed" }.into());
            write_status(node, work).await;
            terminated(term).await;
            return;
        }
        write_status(node, work).await;
        if started.elapsed() > Duration::from_secs(60) {
            backoff = node.config.initial_backoff;
        }
        let back_off = format!(
            "Back-off restarting failed container {} in pod {}_{}({})",
            container(work),
            work.pod.metadata.name,
            work.pod.metadata.namespace(),
            work.pod.metadata.uid
        );
        report(node, work, WARNING, "BackOff", back_off);
        if !pause(backoff, term).await {
            return;
        }
        backoff = (backoff * 2).min(node.config.max_backoff);
    }
}

/// Marks the pod terminating (endpoints stop sending it new work), waits the drain delay, then
/// stops and removes its container.
async fn terminate(node: &Node, work: &mut PodWork, id: &str) {
    if work.pod.metadata.deletion_timestamp.is_none() {
        work.pod.metadata.deletion_timestamp = Some(pier_controlplane::store::now_rfc3339());
    }
    set_ready(&mut work.pod, false);
    if let Err(e) = node.write(&work.pod).await {
        tracing::warn!(pod = %work.pod.metadata.name, error = %e, "marking pod terminating");
    }
    tokio::time::sleep(node.config.drain_delay).await;
    report(
        node,
        work,
        NORMAL,
        "Killing",
        format!("Stopping container {}", container(work)),
    );
    let grace = work.config.stop_grace_seconds.map(Duration::from_secs);
    if let Err(e) = node.engine.stop(id, grace).await {
        tracing::debug!(pod = %work.pod.metadata.name, error = %e, "stopping");
    }
    // The kubelet's final phase of a deleted pod, which finalizers may keep for a while.
    let exited = node.engine.get(id).ok().and_then(|r| r.exit);
    let succeeded = exited.is_some_and(|exit| exit.code == 0);
    work.pod.status.phase = Some(if succeeded { "Succeeded" } else { "Failed" }.into());
    if let Err(e) = node.engine.remove(id, true).await {
        tracing::warn!(pod = %work.pod.metadata.name, error = %e, "removing container");
    }
}
