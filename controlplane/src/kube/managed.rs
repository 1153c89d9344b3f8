//! Field ownership (`metadata.managedFields`) as the API server keeps it. An update gives its
//! manager the fields it added or changed and takes them from every other manager. An apply
//! (server-side apply) merges the applied configuration into the object, removes the fields
//! the manager applied last time and no longer does (unless another manager owns them), and
//! refuses to change a field another manager owns unless forced: the rules of Kubernetes'
//! structured-merge-diff, over the field sets of `fields.rs`.

use serde_json::Value;

use super::fields::{self, FieldSet, Path};
use super::patch;
use super::status::Failure;
use pier_model::meta::ManagedFieldsEntry;

/// Who writes: the field manager, the subresource written (empty for the object) and the API
/// version the fields are named in.
pub(crate) struct Writer<'a> {
    pub(crate) manager: &'a str,
    pub(crate) subresource: &'a str,
    pub(crate) api_version: String,
}

/// A field another manager owns that an apply would change.
#[derive(Debug)]
pub(crate) struct Conflict {
    pub(crate) manager: String,
    pub(crate) subresource: String,
    pub(crate) api_version: String,
    pub(crate) path: Path,
}

/// Why an apply was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Fields other managers own would change (and the apply was not forced).
    Conflicts(Vec<Conflict>),
    /// The configuration does not merge into the object.
    Invalid(Failure),
}

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
/// The annotation client-side `kubectl apply` keeps its last configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Ownership after an update by `writer` turned `live` (`None`: created it) into `new`.
pub(crate) fn update(
    live: Option<&Value>,
    new: &Value,
    entries: &[ManagedFieldsEntry],
    writer: &Writer<'_>,
) -> Vec<ManagedFieldsEntry> {
    let mut owners = Owners::load(entries);
    let diff = Diff::between(live, new);
    let me = owners.find_or_add(writer, UPDATE);
    owners.take_from_others(me, &diff);
    let mine = &mut owners.list[me].set;
    mine.extend(diff.changed.iter().cloned());
    mine.retain(|p| !diff.removed.contains(p));
    owners.finish(me, writer)
}

/// The object after `writer` applied `applied` to `live` (`{}` when it does not exist yet),
/// with the ownership after; conflicts with other managers refuse it unless `force`.
pub(crate) fn apply(
    live: &Value,
    applied: &Value,
    entries: &[ManagedFieldsEntry],
    writer: &Writer<'_>,
    force: bool,
) -> Result<(Value, Vec<ManagedFieldsEntry>), Refused> {
    let mut owners = Owners::load(entries);
    let me = owners.find_or_add(writer, APPLY);
    let applied_set = fields::of(applied);
    let last = std::mem::replace(&mut owners.list[me].set, applied_set.clone());
    let mut merged = patch::merge(live, applied).map_err(Refused::Invalid)?;
    let others = owners.others(me);
    for path in last.difference(&applied_set) {
        if !owned_below(&others, path) {
            fields::remove(&mut merged, path);
        }
    }
    let diff = Diff::between(Some(live), &merged);
    let conflicts = owners.conflicts(me, &diff);
    if !conflicts.is_empty() && !force && !kubectl_may_take_over(writer, live, &conflicts) {
        return Err(Refused::Conflicts(conflicts));
    }
    owners.take_from_others(me, &diff);
    carry_last_applied(writer, applied, &mut merged);
    Ok((merged, owners.finish(me, writer)))
}

/// Whether another manager owns `path` or, for a list element, anything inside it (the
/// element then stays).
fn owned_below(others: &FieldSet, path: &[String]) -> bool {
    let prefix = match path.split_last() {
        Some((last, parent)) if last == "." => parent,
        _ => path,
    };
    others.iter().any(|o| o.starts_with(prefix))
}

/// The API server's upgrade path from client-side to server-side apply: `kubectl apply
/// --server-side` may take fields from their owners where the last client-side configuration
/// set them to the value they still have.
fn kubectl_may_take_over(writer: &Writer<'_>, live: &Value, conflicts: &[Conflict]) -> bool {
    let Some(last) = last_applied(writer, live) else {
        return false;
    };
    conflicts
        .iter()
        .all(|c| fields::get(&last, &c.path).is_some_and(|v| fields::get(live, &c.path) == Some(v)))
}

/// After `kubectl apply --server-side`, the client-side annotation (when there is one) holds
/// the configuration just applied, so a later client-side apply computes its deletions right.
fn carry_last_applied(writer: &Writer<'_>, applied: &Value, merged: &mut Value) {
    if last_applied(writer, merged).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(notes)) = config.pointer_mut("/metadata/annotations") {
        notes.remove(LAST_APPLIED);
    }
    if let Some(Value::Object(notes)) = merged.pointer_mut("/metadata/annotations") {
        notes.insert(LAST_APPLIED.into(), Value::String(config.to_string()));
    }
}

/// The object's last client-side configuration, when `writer` is `kubectl` (the server-side
/// apply of kubectl itself) and the object has one.
fn last_applied(writer: &Writer<'_>, object: &Value) -> Option<Value> {
    if writer.manager != "kubectl" || !writer.subresource.is_empty() {
        return None;
    }
    let text = object
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// What a write changed: the fields it added or gave another value, and those it removed.
struct Diff {
    changed: FieldSet,
    removed: FieldSet,
}

impl Diff {
    fn between(live: Option<&Value>, new: &Value) -> Diff {
        let old = live.map(fields::of).unwrap_or_default();
        let now = fields::of(new);
        let changed = now
            .iter()
            .filter(|p| {
                !old.contains(*p)
                    || (p.last().is_some_and(|s| s != ".")
                        && live.and_then(|l| fields::get(l, p)) != fields::get(new, p))
            })
            .cloned()
            .collect();
        let removed = old.difference(&now).cloned().collect();
        Diff { changed, removed }
    }
}

/// One managedFields entry with its set read.
struct Owner {
    entry: ManagedFieldsEntry,
    before: Option<FieldSet>,
    set: FieldSet,
}

/// Every manager of one object.
struct Owners {
    list: Vec<Owner>,
}

impl Owners {
    fn load(entries: &[ManagedFieldsEntry]) -> Owners {
        let list = entries
            .iter()
            .map(|entry| {
                let set = fields::from_v1(&entry.fields_v1);
                Owner {
                    entry: entry.clone(),
                    before: Some(set.clone()),
                    set,
                }
            })
            .collect();
        Owners { list }
    }

    /// The index of `writer`'s entry for `operation`, added if it has none.
    fn find_or_add(&mut self, writer: &Writer<'_>, operation: &str) -> usize {
        let found = self.list.iter().position(|o| {
            o.entry.manager == writer.manager
                && o.entry.operation == operation
                && o.entry.subresource == writer.subresource
        });
        found.unwrap_or_else(|| {
            self.list.push(Owner {
                entry: ManagedFieldsEntry {
                    manager: writer.manager.to_string(),
                    operation: operation.to_string(),
                    subresource: writer.subresource.to_string(),
                    ..ManagedFieldsEntry::default()
                },
                before: None,
                set: FieldSet::new(),
            });
            self.list.len() - 1
        })
    }

    /// Every field some manager other than `me` owns.
    fn others(&self, me: usize) -> FieldSet {
        let others = self.list.iter().enumerate().filter(|(i, _)| *i != me);
        others.flat_map(|(_, o)| o.set.iter().cloned()).collect()
    }

    /// The changed fields other managers own.
    fn conflicts(&self, me: usize, diff: &Diff) -> Vec<Conflict> {
        let others = self.list.iter().enumerate().filter(|(i, _)| *i != me);
        others
            .flat_map(|(_, o)| {
                o.set
                    .intersection(&diff.changed)
                    .filter(|p| p.last().is_some_and(|s| s != "."))
                    .map(|p| Conflict {
                        manager: o.entry.manager.clone(),
                        subresource: o.entry.subresource.clone(),
                        api_version: o.entry.api_version.clone(),
                        path: p.clone(),
                    })
            })
            .collect()
    }

    /// Other managers lose the fields `diff` changed or removed.
    fn take_from_others(&mut self, me: usize, diff: &Diff) {
        for (i, owner) in self.list.iter_mut().enumerate() {
            if i != me {
                owner
                    .set
                    .retain(|p| !diff.changed.contains(p) && !diff.removed.contains(p));
            }
        }
    }

    /// The entries to store: empty ones dropped, `me` stamped when its set changed.
    fn finish(self, me: usize, writer: &Writer<'_>) -> Vec<ManagedFieldsEntry> {
        let now = crate::store::now_rfc3339();
        self.list
            .into_iter()
            .enumerate()
            .filter(|(_, o)| !o.set.is_empty())
            .map(|(i, o)| {
                let mut entry = o.entry;
                if i == me && o.before.as_ref() != Some(&o.set) {
                    entry.time = Some(now.clone());
                    entry.api_version.clone_from(&writer.api_version);
                }
                entry.fields_type = "FieldsV1".into();
                entry.fields_v1 = fields::to_v1(&o.set);
                entry
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            subresource: "",
            api_version: "apps/v1".into(),
        }
    }

    fn deployment(replicas: i64, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": labels},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "app", "image": "a:1"}]}}}})
    }

    #[test]
    fn an_apply_removes_what_its_manager_no_longer_applies() {
        let first = deployment(2, json!({"app": "web", "tier": "x"}));
        let (live, owners) = apply(&json!({}), &first, &[], &writer("kubectl"), false).unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].operation, "Apply");
        assert_eq!(
            owners[0].fields_v1["f:spec"]["f:replicas"],
            json!({}),
            "{owners:?}"
        );
        let second = deployment(3, json!({"app": "web"}));
        let (after, _) = apply(&live, &second, &owners, &writer("kubectl"), false).unwrap();
        assert_eq!(after["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(after["spec"]["replicas"], 3);
    }

    #[test]
    fn changing_another_managers_field_conflicts_unless_forced() {
        let created = deployment(2, json!({"app": "web"}));
        let owners = update(None, &created, &[], &writer("kubectl-create"));
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        let owners = update(Some(&created), &scaled, &owners, &writer("scaler"));
        let creator = &owners[0].fields_v1;
        assert!(creator["f:spec"].get("f:replicas").is_none(), "{creator}");

        let config = deployment(2, json!({"app": "web"}));
        let Err(Refused::Conflicts(found)) =
            apply(&scaled, &config, &owners, &writer("mine"), false)
        else {
            panic!("an apply over the scaler's replicas must conflict");
        };
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].manager, "scaler");
        assert_eq!(fields::display(&found[0].path), ".spec.replicas");

        let same = deployment(5, json!({"app": "web"}));
        assert!(
            apply(&scaled, &same, &owners, &writer("mine"), false).is_ok(),
            "applying the value a field already has is no conflict"
        );
        let (after, owners) = apply(&scaled, &config, &owners, &writer("mine"), true).unwrap();
        assert_eq!(after["spec"]["replicas"], 2);
        assert!(
            owners.iter().all(|o| o.manager != "scaler"),
            "a forced apply takes the field: {owners:?}"
        );
    }

    #[test]
    fn kubectl_takes_over_fields_its_client_side_apply_set() {
        let config = deployment(2, json!({"app": "web"}));
        let mut live = config.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED: config.to_string()});
        let owners = update(None, &live, &[], &writer("kubectl-client-side-apply"));
        let changed = deployment(4, json!({"app": "web"}));
        let (after, owners) = apply(&live, &changed, &owners, &writer("kubectl"), false).unwrap();
        assert_eq!(after["spec"]["replicas"], 4);
        let note = after["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(note.contains("\"replicas\":4"), "{note}");
        assert!(apply(&live, &changed, &owners, &writer("other"), false).is_err());
    }
}
