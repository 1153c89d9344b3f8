//! What a pod's container takes from the store besides its spec: ConfigMaps and Secrets as
//! environment variables and files, the pod's own fields, and its `emptyDir` volumes, as the
//! kubelet provides them. The pod sync loop keeps [`Sources`] filled; a worker resolves a
//! pod's inputs before its container is made and waits while an object it needs is missing.

mod atomic;
pub(crate) mod env;
mod host_path;
mod sources;
pub(crate) mod volumes;

pub(crate) use sources::{SourceKey, SourceKind, Sources};

use pier_model::Pod;

use super::Node;
use crate::container::ContainerConfig;

/// Why a container cannot be made from its pod's inputs (the kubelet's
/// `CreateContainerConfigError`), in the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

impl ConfigError {
    fn not_found(kind: SourceKind, name: &str) -> Self {
        Self(format!("{} {name:?} not found", kind.noun()))
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `pod` takes anything from the object `key` (by env, envFrom or a volume).
pub(crate) fn uses(pod: &Pod, key: &SourceKey) -> bool {
    let (kind, ns, name) = key;
    if pod.metadata.namespace() != ns {
        return false;
    }
    let volumes = pod.spec.volumes.iter().any(|v| match kind {
        SourceKind::ConfigMap => v.config_map.as_ref().is_some_and(|c| &c.name == name),
        SourceKind::Secret => v.secret.as_ref().is_some_and(|s| &s.secret_name == name),
    });
    let env = pod.spec.containers.iter().any(|c| {
        let from = c.env_from.iter().any(|f| {
            let r = match kind {
                SourceKind::ConfigMap => &f.config_map_ref,
                SourceKind::Secret => &f.secret_ref,
            };
            r.as_ref().is_some_and(|r| &r.name == name)
        });
        let vars = c.env.iter().filter_map(|e| e.value_from.as_ref()).any(|v| {
            let r = match kind {
                SourceKind::ConfigMap => &v.config_map_key_ref,
                SourceKind::Secret => &v.secret_key_ref,
            };
            r.as_ref().is_some_and(|r| &r.name == name)
        });
        from || vars
    });
    volumes || env
}

/// A container's inputs, resolved: what its config takes from the pod and the objects.
pub(crate) struct Resolved {
    env: Vec<(String, String)>,
    mounts: Vec<crate::container::Volume>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
}

impl Resolved {
    /// Sets them on the container's config.
    pub(crate) fn apply(self, config: &mut ContainerConfig) {
        config.env = self.env;
        config.volumes = self.mounts;
        config.command = self.command;
        config.args = self.args;
    }
}

/// Makes the pod's volumes and its container's environment, with `$(NAME)` in the command
/// and arguments expanded from it.
pub(crate) fn resolve(node: &Node, pod: &Pod) -> Result<Resolved, ConfigError> {
    let Some(c) = pod.spec.containers.first() else {
        return Err(ConfigError("spec.containers is empty".into()));
    };
    let cx = env::Context {
        pod,
        sources: &node.sources,
        host_ip: node.config.host_ip,
        allocatable: node.allocatable,
    };
    let env = env::environment(&cx, c)?;
    let pod_volumes = volumes::PodVolumes::of(node.engine.root(), pod);
    {
        let _writing = super::lock(&node.volume_writes);
        pod_volumes.prepare(pod, &node.sources)?;
    }
    let mounts = pod_volumes.mounts(pod, c)?;
    let vars: std::collections::HashMap<String, String> = env.iter().cloned().collect();
    let expand_all = |v: &Vec<String>| {
        (!v.is_empty()).then(|| v.iter().map(|s| env::expand(s, &vars)).collect())
    };
    Ok(Resolved {
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        env,
        mounts,
    })
}
