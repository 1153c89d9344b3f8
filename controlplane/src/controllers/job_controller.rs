//! The Job controller: runs each Job's pods to completion as `job.rs` plans, writing the
//! Job's status together with the finalizers it takes off the pods it counted (one
//! transaction, so no finished pod is counted twice or lost), and cleans up after a Job that
//! is gone. Runs on the controller runner, keyed by Job; pods are tied to their Job by its
//! controller `ownerReference`, as Kubernetes ties them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use super::job::{new_pod, plan, JobPlan, Memory};
use super::owned_pods::{terminating, Owned};
use super::runner::{write_for, Reconciled, Reconciler};
use crate::events::Recorder;
use crate::store::{EventType, Op, Outcome, Store};
use pier_model::job::TRACKING_FINALIZER;
use pier_model::{Job, Kind, Object, Pod};

type Key = (String, String);

/// The Job controller.
pub struct JobController {
    store: Arc<Store>,
    events: Recorder,
    jobs: HashMap<Key, Job>,
    /// Pods by the object that controls them.
    pods: Owned<Pod>,
    /// What the controller remembers of each Job between passes (when a pod last failed).
    memory: HashMap<Key, Memory>,
}

/// The Job that controls `pod`, by its controller `ownerReference`.
fn owner(pod: &Pod) -> Option<(Key, String)> {
    pod.metadata
        .owner_references
        .iter()
        .find(|o| o.kind == "Job" && o.controller == Some(true))
        .map(|o| {
            let key = (pod.metadata.namespace().to_string(), o.name.clone());
            (key, o.uid.clone())
        })
}

/// `pod` without the Job's finalizer (and marked for deletion when `terminate`); deleted
/// outright when its node has already stopped it and no other finalizer holds it.
fn release(pod: &Pod, terminate: bool) -> Op {
    let mut pod = pod.clone();
    pod.metadata.finalizers.retain(|f| f != TRACKING_FINALIZER);
    let stopped = pod.is_terminating() && pod.metadata.deletion_grace_period_seconds == Some(0);
    if stopped && pod.metadata.finalizers.is_empty() {
        return Op::Delete {
            kind: Kind::Pod,
            namespace: pod.metadata.namespace().to_string(),
            name: pod.metadata.name.clone(),
            resource_version: Some(pod.metadata.resource_version.clone()),
            must_exist: false,
        };
    }
    if terminate && !pod.is_terminating() {
        return terminating(&pod);
    }
    Op::Put(Object::Pod(pod))
}

impl JobController {
    /// A controller writing to `store`, reporting what it does to `events`.
    pub fn new(store: Arc<Store>, events: Recorder) -> Self {
        Self {
            store,
            events,
            jobs: HashMap::new(),
            pods: Owned::new(),
            memory: HashMap::new(),
        }
    }

    fn observe_pod(&mut self, deleted: bool, pod: &Pod, dirty: &mut BTreeSet<Key>) {
        let meta = &pod.metadata;
        let id = (meta.namespace(), meta.name.as_str());
        self.pods
            .observe(deleted, id, owner(pod).map(|(key, _)| key), pod, dirty);
    }

    /// The writes for `key` this pass, with what to report and when to look again.
    fn pass(&mut self, key: &Key, now: SystemTime) -> (Vec<Op>, Option<JobPlan>) {
        let pods: Vec<&Pod> = self.pods.of(key);
        let job = self
            .jobs
            .get(key)
            .filter(|j| !j.metadata.deleting_in_foreground());
        // Gone, or going in the foreground: its pods go, released from counting.
        let Some(job) = job else {
            self.memory.remove(key);
            return (pods.into_iter().map(|p| release(p, true)).collect(), None);
        };
        // Being deleted with its pods orphaned (`kube/cascade.rs`): hands off.
        if job.metadata.deletion_timestamp.is_some() {
            return (Vec::new(), None);
        }
        // Pods of an earlier Job of the same name go.
        let (mine, stale): (Vec<&Pod>, Vec<&Pod>) = pods
            .into_iter()
            .partition(|p| owner(p).is_some_and(|(_, uid)| uid == job.metadata.uid));
        let mut ops: Vec<Op> = stale.into_iter().map(|p| release(p, true)).collect();
        let memory = self.memory.entry(key.clone()).or_default();
        let step = plan(job, &mine, memory, now);
        let by_name: HashMap<&str, &Pod> = mine
            .iter()
            .map(|p| (p.metadata.name.as_str(), *p))
            .collect();
        if job.status.as_ref() != Some(&step.status) {
            let mut updated = job.clone();
            updated.status = Some(step.status.clone());
            ops.push(Op::PutStatus(Object::Job(updated)));
        }
        for name in &step.counted {
            if let Some(pod) = by_name.get(name.as_str()) {
                ops.push(release(pod, false));
            }
        }
        for name in &step.terminate {
            if let Some(pod) = by_name.get(name.as_str()) {
                tracing::info!(job = %key.1, pod = %name, "terminating pod");
                ops.push(terminating(pod));
            }
        }
        for _ in 0..step.create {
            let pod = new_pod(job);
            tracing::info!(job = %key.1, pod = %pod.metadata.name, "creating pod");
            ops.push(Op::Put(Object::Pod(pod)));
        }
        if step.expired {
            tracing::info!(job = %key.1, "deleting a finished Job whose ttlSecondsAfterFinished ran out");
            ops.push(Op::remove(Kind::Job, &key.0, &key.1));
        }
        (ops, Some(step))
    }

    /// Reports what a pass did on its Job, as Kubernetes' Job controller does.
    fn report(&self, key: &Key, written: &[crate::store::Written], step: Option<&JobPlan>) {
        let Some(job) = self.jobs.get(key) else {
            return;
        };
        let owner = Object::Job(job.clone());
        let terminated = step.map(|s| s.terminate.as_slice()).unwrap_or_default();
        for w in written {
            let Some(Object::Pod(pod)) = &w.object else {
                continue;
            };
            let name = &pod.metadata.name;
            if w.outcome == Outcome::Created {
                self.events
                    .normal(&owner, "SuccessfulCreate", format!("Created pod: {name}"));
            } else if terminated.contains(name) {
                self.events
                    .normal(&owner, "SuccessfulDelete", format!("Deleted pod: {name}"));
            }
        }
        for e in step.into_iter().flat_map(|s| &s.events) {
            e.record(&self.events, &owner);
        }
    }
}

impl Reconciler for JobController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "job"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Job, Kind::Pod]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let deleted = event_type == EventType::Deleted;
        match object {
            Object::Job(j) => {
                let key = (j.metadata.namespace().to_string(), j.metadata.name.clone());
                if deleted {
                    self.jobs.remove(&key);
                } else {
                    self.jobs.insert(key.clone(), j.clone());
                }
                dirty.insert(key);
            }
            Object::Pod(p) => self.observe_pod(deleted, p, dirty),
            _ => {}
        }
    }

    /// A Job at a time, in one transaction each: its status, the pods it counted, created
    /// and let go. What was written is taken into the cache at once, so a pass before the
    /// watch catches up neither counts a pod twice nor makes one too many.
    async fn reconcile(&mut self, keys: BTreeSet<Key>) -> Reconciled<Key> {
        let mut result = Reconciled::default();
        for key in keys {
            let (ops, step) = self.pass(&key, SystemTime::now());
            if let Some(after) = step.as_ref().and_then(|s| s.requeue) {
                result.requeue.push((key.clone(), after));
            }
            let store = Arc::clone(&self.store);
            let written = write_for(
                self,
                &store,
                "writing a Job and its pods",
                &key,
                ops,
                &mut result,
            )
            .await;
            if let Some(written) = written {
                self.report(&key, &written, step.as_ref());
            }
        }
        result
    }
}
