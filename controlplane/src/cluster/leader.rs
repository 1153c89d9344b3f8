//! Leader election for the controllers, as client-go's `leaderelection` does it: one Lease
//! (`kube-system/pier-controllers`) written with conditional writes. The holder renews it
//! every `lease/5`; a holder that cannot renew for `2/3` of the lease steps down; another node
//! takes it over once it has seen the lease unchanged for a whole lease duration (measured
//! on its own clock, so clock skew between nodes does not matter). With the embedded store
//! there is one node, which always leads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::micro_time;
use crate::error::{Error, Result};
use crate::store::{Op, Store};
use pier_model::node::{LeaseSpec, LEADER_ROLE};
use pier_model::{Kind, Lease, Object, ObjectMeta};

/// The Lease the controllers' leader holds.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Its name.
pub const LEASE_NAME: &str = "pier-controllers";

/// Whether this node leads, as it changes.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// Leadership that never changes hands (one node).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Leadership(rx)
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until this node's leadership is `leading`.
    pub async fn until(&mut self, leading: bool) {
        // A closed channel never changes again: wait forever unless it already holds.
        if self.0.wait_for(|l| *l == leading).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What the elector last saw of someone else's lease, and when it first saw it so.
struct Observed {
    record: (Option<String>, Option<String>, String),
    since: Instant,
}

/// One node's side of the election.
struct Elector {
    store: Arc<Store>,
    me: String,
    lease: Duration,
    observed: Option<Observed>,
    last_renewed: Option<Instant>,
    /// This node's Node carries the leader role (checked again after leadership changes).
    labelled: bool,
    tx: watch::Sender<bool>,
}

/// Runs the election for `me` until the process stops; returns the leadership to follow.
pub fn elect(
    store: Arc<Store>,
    me: String,
    lease: Duration,
) -> (Leadership, impl std::future::Future<Output = ()>) {
    let (tx, rx) = watch::channel(false);
    let mut elector = Elector {
        store,
        me,
        lease,
        observed: None,
        last_renewed: None,
        labelled: false,
        tx,
    };
    let run = async move {
        let mut tick = tokio::time::interval(elector.lease / 5);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            elector.round().await;
        }
    };
    (Leadership(rx), run)
}

impl Elector {
    /// One look at the lease: acquire, renew, or wait.
    async fn round(&mut self) {
        let outcome = self.try_lead().await;
        let leading = match outcome {
            Ok(leading) => leading,
            Err(e) => {
                let keep = self.is_leading() && self.renewed_within(self.lease * 2 / 3);
                tracing::warn!(node = %self.me, error = %crate::error::chain(&e), still_leading = keep, "leader election round failed");
                keep
            }
        };
        if leading != self.is_leading() {
            tracing::info!(node = %self.me, leading, "controllers' leadership changed");
            self.tx.send_replace(leading);
            self.labelled = false;
        }
        if leading && !self.labelled {
            match self.label_leader().await {
                Ok(done) => self.labelled = done,
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "labelling the leader's Node failed")
                }
            }
        }
    }

    fn is_leading(&self) -> bool {
        *self.tx.borrow()
    }

    fn renewed_within(&self, window: Duration) -> bool {
        self.last_renewed.is_some_and(|at| at.elapsed() < window)
    }

    /// Whether this node leads after this round.
    async fn try_lead(&mut self) -> Result<bool> {
        let current = self
            .store
            .blocking("reading the leader lease", |s| {
                s.get(Kind::Lease, LEASE_NAMESPACE, LEASE_NAME)
            })
            .await?;
        let lease = match current {
            Some(Object::Lease(l)) => l,
            _ => return self.write(None).await,
        };
        let holder = lease.spec.holder_identity.clone();
        if holder.as_deref() == Some(self.me.as_str()) {
            return self.write(Some(lease)).await;
        }
        let record = (
            holder,
            lease.spec.renew_time.clone(),
            lease.metadata.resource_version.clone(),
        );
        let now = Instant::now();
        let since = match &self.observed {
            Some(o) if o.record == record => o.since,
            _ => {
                self.observed = Some(Observed { record, since: now });
                now
            }
        };
        let held = lease
            .spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.lease, Duration::from_secs);
        if now.duration_since(since) < held {
            return Ok(false);
        }
        self.write(Some(lease)).await
    }

    /// Creates the lease for this node, renews it, or takes it over; a conditional write, so
    /// of two nodes trying at once exactly one wins.
    async fn write(&mut self, current: Option<Lease>) -> Result<bool> {
        let now = micro_time();
        let taking = current
            .as_ref()
            .is_none_or(|l| l.spec.holder_identity.as_deref() != Some(self.me.as_str()));
        let mut lease = current.clone().unwrap_or_else(|| Lease {
            api_version: "coordination.k8s.io/v1".into(),
            kind: "Lease".into(),
            metadata: ObjectMeta {
                name: LEASE_NAME.into(),
                namespace: LEASE_NAMESPACE.into(),
                ..ObjectMeta::default()
            },
            spec: LeaseSpec::default(),
        });
        lease.spec.holder_identity = Some(self.me.clone());
        lease.spec.lease_duration_seconds =
            Some(i64::try_from(self.lease.as_secs().max(1)).unwrap_or(5));
        lease.spec.renew_time = Some(now.clone());
        if taking {
            lease.spec.acquire_time = Some(now);
            if current.is_some() {
                lease.spec.lease_transitions = Some(lease.spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        let op = match current {
            None => Op::Create(Object::Lease(lease)),
            // Put with the resourceVersion read: a conflict if anyone wrote it since.
            Some(_) => Op::Put(Object::Lease(lease)),
        };
        match self
            .store
            .blocking("writing the leader lease", move |s| s.write(vec![op]))
            .await
        {
            Ok(_) => {
                self.last_renewed = Some(Instant::now());
                self.observed = None;
                Ok(true)
            }
            Err(Error::Conflict(_)) => {
                // Someone else got there first; we lead only if we still hold a fresh renewal.
                Ok(!taking && self.renewed_within(self.lease * 2 / 3))
            }
            Err(e) => Err(e),
        }
    }

    /// Marks this node's Node with the leader role and takes it off every other Node, once per
    /// term; says whether this Node carries the role now (not when it is not registered yet).
    async fn label_leader(&self) -> Result<bool> {
        let me = self.me.clone();
        self.store
            .blocking("labelling the leader", move |s| {
                match s.get(Kind::Node, "", &me)? {
                    Some(Object::Node(n)) if !n.metadata.labels.contains_key(LEADER_ROLE) => {}
                    Some(_) => return Ok(true),
                    // Not registered yet: the next round looks again.
                    None => return Ok(false),
                }
                let (nodes, _) = s.list(Kind::Node, None, None)?;
                let mut ops = Vec::new();
                for object in nodes {
                    let Object::Node(mut node) = object else {
                        continue;
                    };
                    let should = node.metadata.name == me;
                    let has = node.metadata.labels.contains_key(LEADER_ROLE);
                    if should == has {
                        continue;
                    }
                    if should {
                        node.metadata
                            .labels
                            .insert(LEADER_ROLE.into(), String::new());
                    } else {
                        node.metadata.labels.remove(LEADER_ROLE);
                    }
                    ops.push(Op::Put(Object::Node(node)));
                }
                if !ops.is_empty() {
                    s.write(ops)?;
                }
                Ok(true)
            })
            .await
    }
}
