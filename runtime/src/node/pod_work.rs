//! What one pod's worker runs: the container a pod (or `pier run`) asks for, its probes, and
//! the pod's status conditions.

use std::collections::BTreeMap;

use pier_model::Pod;
use tokio::sync::oneshot;

use super::probe::ProbeSpec;
use super::POD_LABEL;
use crate::container::{ContainerConfig, ContainerRecord, RestartPolicy};
use crate::error::{Error, Result};
use pier_model::quantity;

/// What a worker runs.
pub(crate) struct PodWork {
    pub(crate) pod: Pod,
    pub(crate) config: ContainerConfig,
    pub(crate) readiness: Option<ProbeSpec>,
    pub(crate) liveness: Option<ProbeSpec>,
    pub(crate) adopt: Option<String>,
    /// Whether the container's environment and mounts still come from the pod's spec and the
    /// objects it names (not for `pier run`, whose config says them).
    pub(crate) from_spec: bool,
    /// Told once the container first runs (or fails to), for `pier run`.
    pub(crate) created: Option<oneshot::Sender<Result<ContainerRecord>>>,
}

/// Sets the pod's `Ready` condition.
pub(crate) fn set_ready(pod: &mut Pod, ready: bool) {
    pod.set_condition("Ready", if ready { "True" } else { "False" }, None, None);
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
    pod.spec.containers = vec![pier_model::pod::Container {
        name: config.name.clone(),
        image: config.image.clone(),
        ports: config
            .publish
            .iter()
            .map(|p| pier_model::pod::ContainerPort {
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
        let read = |p: &Option<pier_model::pod::Probe>, which: &str| {
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
                pier_model::meta::IntOrString::Int(n) => Ok(*n),
                pier_model::meta::IntOrString::String(s) => {
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
            from_spec: true,
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
            from_spec: false,
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
            from_spec: false,
            created: None,
        }
    }
}
