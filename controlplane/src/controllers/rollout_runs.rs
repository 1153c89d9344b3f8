//! The AnalysisRuns a Rollout's plan calls for, as store writes: wanted runs made from their
//! templates (`analysis::resolve`), running ones no longer wanted terminated, an earlier
//! attempt's and old templates' finished runs deleted.

use std::collections::{BTreeMap, HashMap};

use super::rollout::Plan;
use super::rollout_controller::ROLLOUT_LABEL;
use crate::analysis::resolve::{run_spec, Hashes};
use crate::store::Op;
use pier_model::analysis::{phase, AnalysisRun, AnalysisTemplate};
use pier_model::meta::OwnerReference;
use pier_model::rollout::{RolloutAnalysis, ROLLOUT_HASH_LABEL};
use pier_model::{Kind, Object, ObjectMeta, Rollout};

/// The analysis templates a rollout may name.
pub(super) struct Templates<'a> {
    /// AnalysisTemplates by (namespace, name).
    pub(super) namespaced: &'a HashMap<(String, String), AnalysisTemplate>,
    /// ClusterAnalysisTemplates by name.
    pub(super) cluster: &'a HashMap<String, AnalysisTemplate>,
}

/// Writes that bring `existing` (the rollout's runs by name) in line with `plan`.
pub(super) fn run_ops(
    ro: &Rollout,
    plan: &Plan,
    existing: Option<&BTreeMap<String, AnalysisRun>>,
    templates: &Templates,
) -> Result<Vec<Op>, String> {
    let empty = BTreeMap::new();
    let existing = existing.unwrap_or(&empty);
    let ns = ro.metadata.namespace();
    let current = plan.status.current_pod_hash.clone().unwrap_or_default();
    let mut ops = Vec::new();
    for wanted in &plan.runs {
        if existing.contains_key(&wanted.name) {
            continue;
        }
        let hashes = Hashes {
            stable: &plan.stable,
            latest: &current,
        };
        let run = make_run(ro, &wanted.name, &wanted.analysis, templates, &hashes)?;
        tracing::info!(rollout = %ro.metadata.name, run = %wanted.name, "starting analysis");
        ops.push(Op::Create(Object::AnalysisRun(run)));
    }
    for (name, run) in existing {
        let done = run
            .status
            .as_ref()
            .is_some_and(|s| phase::is_done(&s.phase));
        let hash = run.metadata.labels.get(ROLLOUT_HASH_LABEL);
        let old = hash.is_some_and(|h| *h != current && *h != plan.stable);
        if plan.stale_runs.contains(name) || (done && old) {
            ops.push(Op::remove(Kind::AnalysisRun, ns, name));
        } else if !done
            && run.spec.terminate != Some(true)
            && !plan.runs.iter().any(|w| &w.name == name)
        {
            let mut stopped = run.clone();
            stopped.spec.terminate = Some(true);
            ops.push(Op::Put(Object::AnalysisRun(stopped)));
        }
    }
    Ok(ops)
}

/// A new run of `analysis` for `ro`, named `name`.
fn make_run(
    ro: &Rollout,
    name: &str,
    analysis: &RolloutAnalysis,
    templates: &Templates,
    hashes: &Hashes,
) -> Result<AnalysisRun, String> {
    let ns = ro.metadata.namespace().to_string();
    let mut found = Vec::new();
    for t in &analysis.templates {
        let template = if t.cluster_scope == Some(true) {
            templates.cluster.get(&t.template_name)
        } else {
            templates
                .namespaced
                .get(&(ns.clone(), t.template_name.clone()))
        };
        let kind = if t.cluster_scope == Some(true) {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        };
        found.push(template.ok_or_else(|| format!("{kind} {:?} not found", t.template_name))?);
    }
    let spec = run_spec(&found, &analysis.args, ro, hashes)
        .map_err(|e| format!("analysis {name}: {e}"))?;
    let labels = BTreeMap::from([
        (ROLLOUT_LABEL.to_string(), ro.metadata.name.clone()),
        (ROLLOUT_HASH_LABEL.to_string(), hashes.latest.to_string()),
    ]);
    Ok(AnalysisRun {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "AnalysisRun".into(),
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ns,
            labels,
            owner_references: vec![OwnerReference::controller(
                "argoproj.io/v1alpha1",
                "Rollout",
                &ro.metadata,
            )],
            ..Default::default()
        },
        spec,
        status: None,
    })
}
