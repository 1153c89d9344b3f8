//! One pod's worker: create, start, probe, restart by policy, drain and stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_controlplane::model::pod::PodCondition;
use pier_controlplane::model::{Kind, Pod};
use tokio::sync::{oneshot, watch};

use super::probe::{self, ProbeSpec, Tracker};
use super::{blocking, quantity, Node, CONTAINER_ANNOTATION, POD_LABEL, RESTARTS_ANNOTATION};
use crate::container::{ContainerConfig, ContainerRecord, RestartPolicy, State};
use crate::error::{Error, Result};
use crate::metrics::Report;

/// What a worker runs.
pub(crate) struct PodWork {
    pub(crate) pod: Pod,
    pub(crate) config: ContainerConfig,
    readiness: Option<ProbeSpec>,
    liveness: Option<ProbeSpec>,
    adopt: Option<String>,
    /// Told once the container first runs (or fails to), for `pier run`.
    pub(crate) created: Option<oneshot::Sender<Result<ContainerRecord>>>,
}

/// Sets the pod's `Ready` condition.
pub(crate) fn set_ready(pod: &mut Pod, ready: bool) {
    let status = if ready { "True" } else { "False" };
    pod.status
        .conditions
        .retain(|c| c.condition_type != "Ready");
    pod.status.conditions.push(PodCondition {
        condition_type: "Ready".into(),
        status: status.into(),
    });
}

/// The container name a pod runs under in the engine.
fn container_name(pod: &Pod) -> String {
    let ns = pod.metadata.namespace();
    if ns == "default" {
        pod.metadata.name.clone()
    } else {
        format!("{ns}.{}", pod.metadata.name)
    }
}

/// The Pod object that stands for a `pier run` container.
pub(crate) fn pod_for_container(config: &ContainerConfig, namespace: &str) -> Pod {
    let mut pod = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        ..Default::default()
    };
    pod.metadata.name = config.name.clone();
    pod.metadata.namespace = namespace.to_string();
    pod.metadata.labels = config
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != POD_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    pod.spec.containers = vec![pier_controlplane::model::pod::Container {
        name: config.name.clone(),
        image: config.image.clone(),
        ports: config
            .publish
            .iter()
            .map(|p| pier_controlplane::model::pod::ContainerPort {
                name: None,
                container_port: i64::from(p.container_port),
                protocol: None,
            })
            .collect(),
        ..Default::default()
    }];
    pod.spec.restart_policy = Some(
        match config.restart {
            RestartPolicy::No => "Never",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Always => "Always",
        }
        .into(),
    );
    pod
}

impl PodWork {
    pub(crate) fn key(&self) -> (String, String) {
        (
            self.pod.metadata.namespace().to_string(),
            self.pod.metadata.name.clone(),
        )
    }

    fn probes(pod: &Pod) -> Result<(Option<ProbeSpec>, Option<ProbeSpec>)> {
        let Some(c) = pod.spec.containers.first() else {
            return Ok((None, None));
        };
        let read = |p: &Option<pier_controlplane::model::pod::Probe>, which: &str| {
            p.as_ref()
                .map(|p| ProbeSpec::from_pod(c, p))
                .transpose()
                .map_err(|e| {
                    Error::Invalid(format!(
                        "pod {}: container {}: {which}: {e}",
                        pod.metadata.name, c.name
                    ))
                })
        };
        Ok((
            read(&c.readiness_probe, "readinessProbe")?,
            read(&c.liveness_probe, "livenessProbe")?,
        ))
    }

    /// Work for a pod from its spec.
    pub(crate) fn from_pod(pod: Pod) -> Result<Self> {
        let name = &pod.metadata.name;
        let c = match pod.spec.containers.as_slice() {
            [c] => c,
            [] => {
                return Err(Error::Invalid(format!(
                    "pod {name}: spec.containers is empty"
                )))
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "pod {name}: spec.containers: pier runs one container per pod"
                )))
            }
        };
        let bad = |field: &str, e: String| {
            Error::Invalid(format!(
                "pod {name}: containers[0].resources.limits.{field}: {e}"
            ))
        };
        let limits = c.resources.as_ref().map(|r| &r.limits);
        let memory = limits
            .and_then(|l| l.get("memory"))
            .map(quantity::bytes)
            .transpose()
            .map_err(|e| bad("memory", e))?;
        let cpus = limits
            .and_then(|l| l.get("cpu"))
            .map(quantity::cores)
            .transpose()
            .map_err(|e| bad("cpu", e))?;
        let pids = limits
            .and_then(|l| l.get("pids"))
            .map(|q| match q {
                pier_controlplane::model::meta::IntOrString::Int(n) => Ok(*n),
                pier_controlplane::model::meta::IntOrString::String(s) => {
                    s.parse().map_err(|_| format!("{s:?} is not a number"))
                }
            })
            .transpose()
            .map_err(|e| bad("pids", e))?;
        let restart = pod
            .spec
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
            .parse::<RestartPolicy>()?;
        let mut labels: BTreeMap<String, String> = pod.metadata.labels.clone();
        labels.insert(
            POD_LABEL.into(),
            format!("{}/{}", pod.metadata.namespace(), name),
        );
        let config = ContainerConfig {
            name: container_name(&pod),
            image: c.image.clone(),
            command: (!c.command.is_empty()).then(|| c.command.clone()),
            args: (!c.args.is_empty()).then(|| c.args.clone()),
            env: c
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
            working_dir: c.working_dir.clone(),
            memory,
            cpus,
            pids,
            restart,
            labels,
            hostname: Some(pod.spec.hostname.clone().unwrap_or_else(|| name.clone())),
            stop_grace_seconds: pod
                .spec
                .termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok()),
            ..Default::default()
        };
        let (readiness, liveness) = Self::probes(&pod)?;
        Ok(Self {
            pod,
            config,
            readiness,
            liveness,
            adopt: None,
            created: None,
        })
    }

    /// Work for a `pier run` container.
    pub(crate) fn from_container(pod: Pod, mut config: ContainerConfig) -> Self {
        config.labels.insert(
            POD_LABEL.into(),
            format!("{}/{}", pod.metadata.namespace(), pod.metadata.name),
        );
        Self {
            pod,
            config,
            readiness: None,
            liveness: None,
            adopt: None,
            created: None,
        }
    }

    /// Work for a pod whose container already exists.
    pub(crate) fn adopt(pod: Pod, config: ContainerConfig, id: String) -> Self {
        let (readiness, liveness) = Self::probes(&pod).unwrap_or((None, None));
        Self {
            pod,
            config,
            readiness,
            liveness,
            adopt: Some(id),
            created: None,
        }
    }
}

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
                    if !live.record(ok, spec) {
                        tracing::warn!(pod = %work.pod.metadata.name, "liveness probe failed; restarting the container");
                        return Outcome::Unhealthy;
                    }
                    next_live = Some(tokio::time::Instant::now() + spec.period);
                }
            }
        }
    }
}

/// Sleeps, unless the pod is terminated first; false when it was.
async fn pause(d: Duration, term: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = terminated(term) => false,
    }
}

async fn fail(node: &Node, work: &mut PodWork, e: &Error) {
    tracing::warn!(pod = %work.pod.metadata.name, error = %e, "pod failed");
    work.pod.status.phase = Some("Failed".into());
    set_ready(&mut work.pod, false);
    work.pod
        .metadata
        .annotations
        .insert("pier.dev/error".into(), e.to_string());
    write_status(node, work).await;
}

/// Writes the pod's status (phase, readiness, annotations) to the store; a failure is logged
/// and counted, and the next change writes the whole status again.
async fn write_status(node: &Node, work: &PodWork) {
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
                node.engine.create(work.config.clone(), Some(ip))
            }
            .await;
            match made {
                Ok(record) => {
                    work.pod
                        .metadata
                        .annotations
                        .insert(CONTAINER_ANNOTATION.into(), record.id.clone());
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
    delete_pod(&node, &work.pod).await;
}

async fn delete_pod(node: &Node, pod: &Pod) {
    let store = Arc::clone(&node.store);
    let (ns, name) = (
        pod.metadata.namespace().to_string(),
        pod.metadata.name.clone(),
    );
    if let Err(e) = blocking(move || store.delete(Kind::Pod, &ns, &name, None)).await {
        tracing::debug!(pod = %pod.metadata.name, error = %e, "deleting pod");
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
        work.pod.metadata.annotations.remove("pier.dev/error");
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
        work.pod.metadata.deletion_timestamp =
            Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    }
    set_ready(&mut work.pod, false);
    if let Err(e) = node.write(&work.pod).await {
        tracing::warn!(pod = %work.pod.metadata.name, error = %e, "marking pod terminating");
    }
    tokio::time::sleep(node.config.drain_delay).await;
    let grace = work.config.stop_grace_seconds.map(Duration::from_secs);
    if let Err(e) = node.engine.stop(id, grace).await {
        tracing::debug!(pod = %work.pod.metadata.name, error = %e, "stopping");
    }
    if let Err(e) = node.engine.remove(id, true).await {
        tracing::warn!(pod = %work.pod.metadata.name, error = %e, "removing container");
    }
}
