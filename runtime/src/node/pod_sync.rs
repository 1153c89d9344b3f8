//! The kubelet's sync loop: Pods in the store that are this node's (bound to it, or to no
//! node while pier runs one) get a worker; a Pod marked for deletion, or deleted, has its
//! worker drain and stop it; a changed ConfigMap or Secret rewrites the volumes of the pods
//! that mount it. Runs on the control plane's controller runner, keyed by Pod.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use pier_controlplane::controllers::runner::{Reconciled, Reconciler};
use pier_controlplane::store::EventType;
use pier_model::{Kind, Object, Pod};

use super::inputs::{self, volumes::PodVolumes};
use super::{Node, PodKey};

/// This node's side of the Pods in the store.
pub struct PodSync {
    node: Arc<Node>,
    pods: HashMap<PodKey, Pod>,
}

impl PodSync {
    /// The sync loop of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            pods: HashMap::new(),
        }
    }

    /// Whether this node runs `pod`: bound here, or (the only node) bound nowhere.
    fn ours(&self, pod: &Pod) -> bool {
        match pod.spec.node_name.as_deref() {
            Some(n) if !n.is_empty() => n == self.node.config.name,
            _ => self.node.config.run_unbound,
        }
    }

    /// Writes a running pod's ConfigMap and Secret volumes again from the objects as they are.
    fn refresh_volumes(&self, pod: &Pod) {
        // A pod without a container yet gets its volumes made whole when it is created.
        let created = pod
            .metadata
            .annotations
            .contains_key(super::CONTAINER_ANNOTATION);
        if !created || pod.is_terminating() || pod.spec.volumes.is_empty() {
            return;
        }
        let volumes = PodVolumes::of(self.node.engine.root(), pod);
        let changed = {
            let _writing = super::lock(&self.node.volume_writes);
            volumes.refresh(pod, &self.node.sources)
        };
        for name in changed {
            tracing::info!(pod = %pod.metadata.name, volume = %name, "volume files updated");
        }
    }

    /// Sets the stored readiness back to what this node sees, if someone else changed it.
    async fn restore(&self, pod: &Pod) -> Result<(), String> {
        match self.node.restore_ready(pod).await {
            Ok(true) => {
                let key = format!("{}/{}", pod.metadata.namespace(), pod.metadata.name);
                tracing::info!(pod = %key, ready = !pod.is_ready(), "pod readiness set back to what the node sees");
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn sync(&self, key: &PodKey) -> Result<(), String> {
        let stored = self.pods.get(key).filter(|p| self.ours(p));
        let running = self.node.has_worker(key);
        match (stored, running) {
            (Some(pod), false) if !pod.is_terminating() => {
                tracing::info!(pod = %format!("{}/{}", key.0, key.1), "starting pod");
                self.node.run_pod(pod.clone()).map_err(|e| e.to_string())
            }
            (Some(pod), true) if pod.is_terminating() => {
                self.node.terminate(&key.0, &key.1);
                Ok(())
            }
            (Some(pod), true) => {
                self.refresh_volumes(pod);
                self.restore(pod).await
            }
            (None, true) => {
                tracing::info!(pod = %format!("{}/{}", key.0, key.1), "pod deleted; stopping it");
                self.node.terminate(&key.0, &key.1);
                Ok(())
            }
            (Some(pod), false) => {
                // Marked for deletion with nothing running it here: nothing to drain.
                self.node.finish(pod).await.map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    }
}

impl Reconciler for PodSync {
    type Key = PodKey;

    fn name(&self) -> &'static str {
        "pod-sync"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Pod, Kind::ConfigMap, Kind::Secret]
    }

    fn observe(&mut self, event_type: EventType, object: &Object, dirty: &mut BTreeSet<PodKey>) {
        let Object::Pod(pod) = object else {
            if let Some(source) = self.node.sources.observe(event_type, object) {
                let users = self.pods.iter().filter(|(_, p)| inputs::uses(p, &source));
                dirty.extend(users.map(|(k, _)| k.clone()));
            }
            return;
        };
        let key = (
            pod.metadata.namespace().to_string(),
            pod.metadata.name.clone(),
        );
        if event_type == EventType::Deleted {
            self.pods.remove(&key);
        } else {
            self.pods.insert(key.clone(), pod.clone());
        }
        dirty.insert(key);
    }

    async fn reconcile(&mut self, keys: BTreeSet<PodKey>) -> Reconciled<PodKey> {
        let mut result = Reconciled::default();
        for key in keys {
            if let Err(error) = self.sync(&key).await {
                result.failed.push((key, error));
            }
        }
        result
    }
}
