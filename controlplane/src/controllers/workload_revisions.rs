//! A Deployment's or a Rollout's revisions as ReplicaSets, kept the way Kubernetes and Argo
//! Rollouts keep them: one per pod template the workload has run, named
//! `<workload>-<template-hash>`, controlled by the workload, numbered by the
//! `deployment.kubernetes.io/revision` (or `rollout.argoproj.io/revision`) annotation (a
//! template that comes back, as after an undo, takes the next number), counting its pods, and
//! pruned to `revisionHistoryLimit` once it has none. `kubectl rollout history|undo` and
//! `pier rollout` read them. Pure: the workload controllers write what this plans.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use pier_model::deployment::PodTemplateSpec;
use pier_model::meta::OwnerReference;
use pier_model::replica_set::{
    ReplicaSetSpec, ReplicaSetStatus, CHANGE_CAUSE_ANNOTATION, REVISION_ANNOTATION,
    ROLLOUT_REVISION_ANNOTATION,
};
use pier_model::rollout::ROLLOUT_HASH_LABEL;
use pier_model::{Deployment, Kind, LabelSelector, Object, ObjectMeta, ReplicaSet, Rollout};

use super::deployment::{template_hash, PodView, DEPLOYMENT_LABEL, TEMPLATE_HASH_LABEL};
use super::rollout_controller::ROLLOUT_LABEL;
use crate::store::Op;

/// The ReplicaSets (revisions) a workload controller has seen, by the workload (of one kind)
/// controlling them, then by name.
pub(super) struct Revisions {
    owner_kind: &'static str,
    sets: HashMap<(String, String), BTreeMap<String, ReplicaSet>>,
}

impl Revisions {
    /// Revisions controlled by workloads of `owner_kind` (`Deployment`, `Rollout`).
    pub(super) fn new(owner_kind: &'static str) -> Self {
        Self {
            owner_kind,
            sets: HashMap::new(),
        }
    }

    /// Keeps `rs` (or forgets it, `deleted`) if a workload of this kind controls it, and marks
    /// that workload dirty.
    pub(super) fn observe(
        &mut self,
        deleted: bool,
        rs: &ReplicaSet,
        dirty: &mut BTreeSet<(String, String)>,
    ) {
        let Some(owner) = rs
            .metadata
            .owner_references
            .iter()
            .find(|o| o.kind == self.owner_kind && o.controller == Some(true))
        else {
            return;
        };
        let key = (rs.metadata.namespace().to_string(), owner.name.clone());
        let sets = self.sets.entry(key.clone()).or_default();
        if deleted {
            sets.remove(&rs.metadata.name);
        } else {
            sets.insert(rs.metadata.name.clone(), rs.clone());
        }
        dirty.insert(key);
    }

    /// The revisions of workload `key`.
    pub(super) fn of(&self, key: &(String, String)) -> Vec<&ReplicaSet> {
        self.sets
            .get(key)
            .into_iter()
            .flat_map(BTreeMap::values)
            .collect()
    }
}

/// Old revisions kept when a Deployment does not say (Kubernetes' default).
const DEFAULT_HISTORY: usize = 10;

/// Workload annotations a ReplicaSet does not take (Kubernetes' skip list, and kubectl's
/// record of the last applied manifest).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    ROLLOUT_REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
];

/// A workload whose templates are kept as revisions.
pub(super) struct Workload<'a> {
    meta: &'a ObjectMeta,
    template: &'a PodTemplateSpec,
    selector: &'a LabelSelector,
    replicas: i64,
    min_ready_seconds: Option<i64>,
    history_limit: Option<i64>,
    hash: String,
    /// `(apiVersion, kind)` of the owner reference.
    owner: (&'static str, &'static str),
    /// The template-hash label and the label naming the workload on its pods.
    labels: (&'static str, &'static str),
    revision_annotation: &'static str,
}

impl<'a> Workload<'a> {
    /// A Deployment's revisions.
    pub(super) fn deployment(d: &'a Deployment) -> Self {
        Self {
            meta: &d.metadata,
            template: &d.spec.template,
            selector: &d.spec.selector,
            replicas: d.spec.replicas.unwrap_or(1),
            min_ready_seconds: d.spec.min_ready_seconds,
            history_limit: d.spec.revision_history_limit,
            hash: template_hash(d),
            owner: ("apps/v1", "Deployment"),
            labels: (TEMPLATE_HASH_LABEL, DEPLOYMENT_LABEL),
            revision_annotation: REVISION_ANNOTATION,
        }
    }

    /// A Rollout's revisions, of the `template` it runs (its own or its workloadRef's).
    pub(super) fn rollout(ro: &'a Rollout, template: &'a PodTemplateSpec, hash: String) -> Self {
        Self {
            meta: &ro.metadata,
            template,
            selector: &ro.spec.selector,
            replicas: ro.spec.replicas.unwrap_or(1),
            min_ready_seconds: ro.spec.min_ready_seconds,
            history_limit: ro.spec.revision_history_limit,
            hash,
            owner: ("argoproj.io/v1alpha1", "Rollout"),
            labels: (ROLLOUT_HASH_LABEL, ROLLOUT_LABEL),
            revision_annotation: ROLLOUT_REVISION_ANNOTATION,
        }
    }
}

/// The Deployment the planners act on. A paused Deployment scales but does not roll out: while
/// its template has no revision yet, it runs its newest revision's template; paused before its
/// first revision, it runs nothing (`None`) until resumed.
pub(super) fn effective<'a>(
    d: &'a Deployment,
    sets: &[&ReplicaSet],
) -> Option<Cow<'a, Deployment>> {
    if d.spec.paused != Some(true) {
        return Some(Cow::Borrowed(d));
    }
    let name = format!("{}-{}", d.metadata.name, template_hash(d));
    if sets.iter().any(|rs| rs.metadata.name == name) {
        return Some(Cow::Borrowed(d));
    }
    let newest = sets.iter().max_by_key(|rs| rs.revision())?;
    let mut running = d.clone();
    running.spec.template = newest.spec.template.clone();
    running
        .spec
        .template
        .metadata
        .labels
        .remove(TEMPLATE_HASH_LABEL);
    Some(Cow::Owned(running))
}

/// The writes that bring `d`'s ReplicaSets (`sets`, as stored) in line with its template
/// and live pods: the current revision created or renumbered, every revision's counts, and
/// old empty revisions beyond the history limit deleted.
pub(super) fn revision_ops(d: &Deployment, sets: &[&ReplicaSet], pods: &[PodView]) -> Vec<Op> {
    workload_revision_ops(&Workload::deployment(d), sets, pods)
}

/// As [`revision_ops`], for any workload.
pub(super) fn workload_revision_ops(
    d: &Workload<'_>,
    sets: &[&ReplicaSet],
    pods: &[PodView],
) -> Vec<Op> {
    let name = format!("{}-{}", d.meta.name, d.hash);
    let mut ops = Vec::new();
    let current = sets.iter().find(|rs| rs.metadata.name == name).copied();
    let wanted = current_revision(d, &name, current, sets, pods);
    if current != Some(&wanted) {
        ops.push(Op::Put(Object::ReplicaSet(wanted)));
    }
    let mut empty = Vec::new();
    for rs in sets.iter().filter(|rs| rs.metadata.name != name) {
        let counted = counted(rs, d.labels.0, pods);
        if counted.status.as_ref().is_some_and(|s| s.replicas == 0) {
            empty.push(*rs);
        }
        if counted != **rs {
            ops.push(Op::Put(Object::ReplicaSet(counted)));
        }
    }
    let limit = d
        .history_limit
        .map_or(DEFAULT_HISTORY, |n| usize::try_from(n).unwrap_or(0));
    empty.sort_by_key(|rs| std::cmp::Reverse(rs.revision()));
    for rs in empty.into_iter().skip(limit) {
        ops.retain(|op| !matches!(op, Op::Put(Object::ReplicaSet(r)) if r.metadata.name == rs.metadata.name));
        ops.push(Op::remove(
            Kind::ReplicaSet,
            rs.metadata.namespace(),
            &rs.metadata.name,
        ));
    }
    ops
}

/// The ReplicaSet of `d`'s current template, as it should be stored: the stored one (keeping
/// its identity) with the Deployment's template, annotations and replicas, and a revision
/// number above every other revision's.
fn current_revision(
    d: &Workload<'_>,
    name: &str,
    stored: Option<&ReplicaSet>,
    sets: &[&ReplicaSet],
    pods: &[PodView],
) -> ReplicaSet {
    let mut rs = stored.cloned().unwrap_or_else(|| ReplicaSet {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        ..Default::default()
    });
    rs.metadata.name = name.to_string();
    rs.metadata.namespace = d.meta.namespace().to_string();
    let highest_other = sets
        .iter()
        .filter(|s| s.metadata.name != name)
        .map(|s| s.revision())
        .max()
        .unwrap_or(0);
    let revision = match stored.map(ReplicaSet::revision) {
        Some(r) if r > highest_other => r,
        _ => highest_other + 1,
    };
    let mut annotations: std::collections::BTreeMap<String, String> = d
        .meta
        .annotations
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A change cause belongs to the revision it was given for: a later template without one
    // does not inherit it, an earlier revision keeps its own.
    if !d.meta.annotations.contains_key(CHANGE_CAUSE_ANNOTATION) {
        if let Some(cause) = rs.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION) {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), cause.clone());
        }
    }
    annotations.insert(d.revision_annotation.into(), revision.to_string());
    rs.metadata.annotations = annotations;
    let (hash_label, owner_label) = d.labels;
    let mut labels = d.template.metadata.labels.clone();
    labels.insert(hash_label.into(), d.hash.clone());
    labels.insert(owner_label.into(), d.meta.name.clone());
    rs.metadata.labels = labels;
    rs.metadata.owner_references = vec![OwnerReference::controller(d.owner.0, d.owner.1, d.meta)];
    let mut spec = ReplicaSetSpec {
        replicas: Some(d.replicas),
        selector: d.selector.clone(),
        template: d.template.clone(),
        min_ready_seconds: d.min_ready_seconds,
    };
    spec.selector
        .match_labels
        .insert(hash_label.into(), d.hash.clone());
    spec.template
        .metadata
        .labels
        .insert(hash_label.into(), d.hash.clone());
    rs.spec = spec;
    rs.status = Some(status(&d.hash, pods));
    rs
}

/// An old revision with its replicas and status set to the pods of its template still alive.
fn counted(rs: &ReplicaSet, hash_label: &str, pods: &[PodView]) -> ReplicaSet {
    let hash = rs
        .metadata
        .labels
        .get(hash_label)
        .cloned()
        .unwrap_or_default();
    let mut out = rs.clone();
    let status = status(&hash, pods);
    out.spec.replicas = Some(status.replicas);
    out.status = Some(status);
    out
}

/// Counts of the live pods of template `hash`.
fn status(hash: &str, pods: &[PodView]) -> ReplicaSetStatus {
    let ours: Vec<&PodView> = pods.iter().filter(|p| p.hash == hash).collect();
    let replicas = ours.len() as i64;
    let ready = ours.iter().filter(|p| p.ready).count() as i64;
    ReplicaSetStatus {
        replicas,
        fully_labeled_replicas: replicas,
        ready_replicas: ready,
        available_replicas: ready,
        observed_generation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(image: &str) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.uid = "u1".into();
        d.spec.replicas = Some(2);
        d.spec
            .selector
            .match_labels
            .insert("app".into(), "web".into());
        d.spec
            .template
            .metadata
            .labels
            .insert("app".into(), "web".into());
        d.spec.template.spec.containers = vec![pier_model::pod::Container {
            name: "c".into(),
            image: image.into(),
            ..Default::default()
        }];
        d
    }

    fn puts(ops: &[Op]) -> Vec<ReplicaSet> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Put(Object::ReplicaSet(rs)) => Some(rs.clone()),
                _ => None,
            })
            .collect()
    }

    fn pod(hash: &str, ready: bool) -> PodView {
        PodView {
            name: format!("p-{hash}"),
            hash: hash.into(),
            ready,
        }
    }

    #[test]
    fn the_first_template_is_revision_one_controlled_by_its_deployment() {
        let d = dep("v1");
        let h = template_hash(&d);
        let ops = revision_ops(&d, &[], &[pod(&h, true)]);
        let rs = &puts(&ops)[0];
        assert_eq!(rs.metadata.name, format!("web-{h}"));
        assert_eq!(rs.revision(), 1);
        assert_eq!(rs.metadata.owner_references[0].uid, "u1");
        assert_eq!(rs.metadata.owner_references[0].controller, Some(true));
        assert_eq!(rs.spec.selector.match_labels[TEMPLATE_HASH_LABEL], h);
        assert_eq!(rs.spec.template.metadata.labels[TEMPLATE_HASH_LABEL], h);
        assert_eq!(rs.spec.replicas, Some(2));
        assert_eq!(rs.status.as_ref().unwrap().ready_replicas, 1);
        // Stored as planned: nothing more to write.
        assert!(revision_ops(&d, &[rs], &[pod(&h, true)]).is_empty());
    }

    #[test]
    fn a_template_that_comes_back_takes_the_next_revision() {
        let (v1, v2) = (dep("v1"), dep("v2"));
        let first = puts(&revision_ops(&v1, &[], &[]))[0].clone();
        let second = puts(&revision_ops(&v2, &[&first], &[]))[0].clone();
        assert_eq!(second.revision(), 2);
        let back = puts(&revision_ops(&v1, &[&first, &second], &[]));
        let again = back
            .iter()
            .find(|rs| rs.metadata.name == first.metadata.name)
            .unwrap();
        assert_eq!(again.revision(), 3);
    }

    #[test]
    fn old_revisions_count_their_pods_and_empty_ones_beyond_the_limit_go() {
        let mut d = dep("v9");
        d.spec.revision_history_limit = Some(1);
        let mut old = Vec::new();
        for (i, image) in ["v1", "v2", "v3"].iter().enumerate() {
            let mut rs = puts(&revision_ops(&dep(image), &[], &[]))[0].clone();
            rs.metadata
                .annotations
                .insert(REVISION_ANNOTATION.into(), (i + 1).to_string());
            rs.status = Some(ReplicaSetStatus::default());
            rs.spec.replicas = Some(0);
            old.push(rs);
        }
        let v1_hash = template_hash(&dep("v1"));
        let refs: Vec<&ReplicaSet> = old.iter().collect();
        let ops = revision_ops(&d, &refs, &[pod(&v1_hash, true)]);
        let deleted: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Delete { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        // v1 still has a pod; of the empty v2 and v3 only the newest is kept.
        assert_eq!(deleted, vec![old[1].metadata.name.as_str()]);
        let written = puts(&ops);
        let v1 = written
            .iter()
            .find(|rs| rs.metadata.name == old[0].metadata.name)
            .unwrap();
        assert_eq!(v1.spec.replicas, Some(1));
        let current = written.iter().find(|rs| rs.revision() == 4).unwrap();
        assert_eq!(current.spec.template.spec.containers[0].image, "v9");
    }

    #[test]
    fn a_paused_deployment_keeps_running_its_newest_revision() {
        let first = puts(&revision_ops(&dep("v1"), &[], &[]))[0].clone();
        let mut v2 = dep("v2");
        v2.spec.paused = Some(true);
        let running = effective(&v2, &[&first]).unwrap();
        assert_eq!(running.spec.template.spec.containers[0].image, "v1");
        assert_eq!(template_hash(&running), template_hash(&dep("v1")));
        assert!(
            revision_ops(&running, &[&first], &[]).is_empty(),
            "no new revision while paused"
        );
        assert!(
            effective(&v2, &[]).is_none(),
            "paused before any revision: nothing runs"
        );
        v2.spec.paused = Some(false);
        assert_eq!(
            effective(&v2, &[&first])
                .unwrap()
                .spec
                .template
                .spec
                .containers[0]
                .image,
            "v2"
        );
    }

    #[test]
    fn a_change_cause_stays_with_its_revision() {
        let mut v1 = dep("v1");
        v1.metadata
            .annotations
            .insert(CHANGE_CAUSE_ANNOTATION.into(), "first".into());
        v1.metadata.annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{}".into(),
        );
        let first = puts(&revision_ops(&v1, &[], &[]))[0].clone();
        assert_eq!(first.metadata.annotations[CHANGE_CAUSE_ANNOTATION], "first");
        assert!(!first
            .metadata
            .annotations
            .contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        let second = puts(&revision_ops(&dep("v2"), &[&first], &[]));
        assert!(!second[0]
            .metadata
            .annotations
            .contains_key(CHANGE_CAUSE_ANNOTATION));
    }
}
