//! Which container a pod subresource request (`log`, `exec`) is about: the pod from the
//! store, the container named by `?container=` (or the pod's first), and the id the engine
//! runs it under, each refused with a `Status` kubectl prints.

use std::sync::Arc;

use hyper::StatusCode;

use super::server::ApiContext;
use crate::kube::{failure, Failure};
use pier_model::pod::CONTAINER_ANNOTATION;
use pier_model::{Kind, Object, Pod};

/// A pod's container, found.
pub(crate) struct PodContainer {
    /// The pod.
    pub(crate) pod: Pod,
    /// The container's name in the pod spec.
    pub(crate) name: String,
    /// The engine's id of the running container.
    pub(crate) id: String,
}

/// The pod subresources about a pod's container: served here, or relayed to the pod's node.
const SUBRESOURCES: [&str; 4] = ["log", "exec", "attach", "portforward"];

/// The namespace, pod and subresource (`log`, `exec`, `attach`, `portforward`) a path names.
pub(crate) fn subresource(path: &str) -> Option<(&str, &str, &str)> {
    match path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["api", "v1", "namespaces", ns, "pods", name, sub] if SUBRESOURCES.contains(sub) => {
            Some((ns, name, sub))
        }
        _ => None,
    }
}

/// `400 BadRequest` with `message`.
pub(crate) fn bad(message: String) -> Failure {
    failure(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// Finds container `wanted` (the first when `None`) of pod `namespace`/`name`.
pub(crate) async fn find(
    ctx: &ApiContext,
    namespace: &str,
    name: &str,
    wanted: Option<&str>,
) -> Result<PodContainer, Failure> {
    let store = Arc::clone(&ctx.store);
    let (ns, n) = (namespace.to_string(), name.to_string());
    let found = tokio::task::spawn_blocking(move || store.get(Kind::Pod, &ns, &n))
        .await
        .map_err(|e| bad(format!("reading the pod: {e}")))?
        .map_err(|e| bad(crate::error::chain(&e)))?;
    let Some(Object::Pod(pod)) = found else {
        return Err(failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
            Some(("pods", name)),
        ));
    };
    let names: Vec<&str> = pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let container = match wanted {
        Some(c) if !names.contains(&c) => {
            return Err(bad(format!("container {c} is not valid for pod {name}")))
        }
        Some(c) => c.to_string(),
        None => names.first().map(|c| (*c).to_string()).unwrap_or_default(),
    };
    let Some(id) = pod.metadata.annotations.get(CONTAINER_ANNOTATION).cloned() else {
        return Err(bad(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start"
        )));
    };
    Ok(PodContainer {
        pod,
        name: container,
        id,
    })
}

/// The refusal for a pod whose container the engine here does not run.
pub(crate) fn elsewhere(found: &PodContainer, what: &str, message: &str) -> Failure {
    let name = &found.pod.metadata.name;
    let node = found
        .pod
        .spec
        .node_name
        .as_deref()
        .unwrap_or("another node");
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the {what} of pod \"{name}\" is not on this node (its container runs on {node}): {message}"),
        Some(("pods", name)),
    )
}
