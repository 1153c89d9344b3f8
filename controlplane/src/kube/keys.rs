//! The schema facts the patch and apply formats need about built-in kinds: which lists merge
//! element by element, and on which key (`patchMergeKey` / `listMapKeys` in the Kubernetes
//! types); every other list is atomic, replaced whole.

/// The merge key of the list at `path` (field names from the object's root), as the
/// Kubernetes types declare `patchMergeKey`; `None` for a list that is replaced whole.
pub(crate) fn merge_key(path: &[String]) -> Option<&'static str> {
    let field = path.last()?.as_str();
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" if matches!(parent, Some("spec")) && path.len() == 2 => Some("port"),
        "ports" if path.iter().any(|p| p.ends_with("ontainers")) => Some("containerPort"),
        _ => None,
    }
}
