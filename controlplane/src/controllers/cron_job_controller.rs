//! The CronJob controller: makes each CronJob's Jobs on schedule as `cron_job.rs` plans,
//! writing its status with the Jobs it creates and deletes in one transaction, and requeueing
//! each CronJob for its next scheduled time. Jobs are tied to their CronJob by its controller
//! `ownerReference`; those of a CronJob that is gone are deleted (the Job controller then
//! lets their pods go).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use super::cron_job::{plan, CronPlan};
use super::owned_pods::Owned;
use super::runner::{write_for, Reconciled, Reconciler};
use crate::events::Recorder;
use crate::store::{EventType, Op, Store};
use pier_model::{CronJob, Job, Kind, Object};

type Key = (String, String);

/// The CronJob controller.
pub struct CronJobController {
    store: Arc<Store>,
    events: Recorder,
    crons: HashMap<Key, CronJob>,
    /// Jobs by the object that controls them.
    jobs: Owned<Job>,
}

/// The CronJob that controls `job`.
fn owner(job: &Job) -> Option<Key> {
    job.metadata
        .owner_references
        .iter()
        .find(|o| o.kind == "CronJob" && o.controller == Some(true))
        .map(|o| (job.metadata.namespace().to_string(), o.name.clone()))
}

impl CronJobController {
    /// A controller writing to `store`, reporting what it does to `events`.
    pub fn new(store: Arc<Store>, events: Recorder) -> Self {
        Self {
            store,
            events,
            crons: HashMap::new(),
            jobs: Owned::new(),
        }
    }

    fn observe_job(&mut self, deleted: bool, job: &Job, dirty: &mut BTreeSet<Key>) {
        let meta = &job.metadata;
        let id = (meta.namespace(), meta.name.as_str());
        self.jobs.observe(deleted, id, owner(job), job, dirty);
    }

    /// The writes for `key` this pass, with the plan they came from.
    fn pass(&self, key: &Key, now: SystemTime) -> (Vec<Op>, Option<CronPlan>) {
        let jobs: Vec<&Job> = self.jobs.of(key);
        let cron = self
            .crons
            .get(key)
            .filter(|c| !c.metadata.deleting_in_foreground());
        // Gone, or going in the foreground: its Jobs go.
        let Some(cron) = cron else {
            let ops = jobs
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .map(|j| Op::remove(Kind::Job, &key.0, &j.metadata.name))
                .collect();
            return (ops, None);
        };
        // Jobs of an earlier CronJob of the same name go, as its other Jobs did.
        let (mine, stale): (Vec<&Job>, Vec<&Job>) = jobs.into_iter().partition(|j| {
            j.metadata
                .owner_references
                .iter()
                .any(|o| o.uid == cron.metadata.uid)
        });
        let step = plan(cron, &mine, now);
        let mut ops: Vec<Op> = stale
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| Op::remove(Kind::Job, &key.0, &j.metadata.name))
            .collect();
        if cron.status.as_ref() != Some(&step.status) {
            let mut updated = cron.clone();
            updated.status = Some(step.status.clone());
            ops.push(Op::PutStatus(Object::CronJob(updated)));
        }
        for name in &step.delete {
            tracing::info!(cronjob = %key.1, job = %name, "deleting job");
            ops.push(Op::remove(Kind::Job, &key.0, name));
        }
        if let Some(job) = &step.create {
            tracing::info!(cronjob = %key.1, job = %job.metadata.name, "creating job");
            ops.push(Op::Put(Object::Job(job.clone())));
        }
        (ops, Some(step))
    }

    fn report(&self, key: &Key, step: &CronPlan) {
        let Some(cron) = self.crons.get(key) else {
            return;
        };
        let about = Object::CronJob(cron.clone());
        for e in &step.events {
            e.record(&self.events, &about);
        }
    }
}

impl Reconciler for CronJobController {
    type Key = Key;

    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::CronJob, Kind::Job]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<Key>) {
        let deleted = event_type == EventType::Deleted;
        match object {
            Object::CronJob(c) => {
                let key = (c.metadata.namespace().to_string(), c.metadata.name.clone());
                if deleted {
                    self.crons.remove(&key);
                } else {
                    self.crons.insert(key.clone(), c.clone());
                }
                dirty.insert(key);
            }
            Object::Job(j) => self.observe_job(deleted, j, dirty),
            _ => {}
        }
    }

    /// A CronJob at a time, in one transaction each; what was written is taken into the
    /// cache at once, so a pass before the watch catches up does not make a run twice.
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
                "writing a CronJob and its Jobs",
                &key,
                ops,
                &mut result,
            )
            .await;
            // Events only once what they tell of is written.
            if let (Some(_), Some(step)) = (written, &step) {
                self.report(&key, step);
            }
        }
        result
    }
}
