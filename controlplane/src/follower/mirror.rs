//! One kind followed from the API server into the local store with a kube-rs watcher: each
//! object as the server has it (without the server's resourceVersion, uid and field owners,
//! marked with `ORIGIN_ANNOTATION`), removals removed, and after every (re)list the mirrored
//! objects the list no longer has pruned. An object pier cannot read is logged and skipped;
//! a kind the server does not serve (no Gateway API CRDs) is looked for again later.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;

use crate::error::Result;
use crate::store::{Op, Store};
use pier_model::{Kind, Object};

/// Annotation on every object pier mirrors from an API server: that server's URL.
pub const ORIGIN_ANNOTATION: &str = "mirror.pier.dev/from";

/// How long before a kind the server does not serve is looked for again.
const ABSENT_RETRY: Duration = Duration::from_secs(60);

type Key = (String, String);

/// The follower of one kind.
pub(super) struct Mirror {
    store: Arc<Store>,
    kind: Kind,
    /// This node's name: its own Node stays as this node registered it.
    node_name: String,
    /// The API server's URL, the value of `ORIGIN_ANNOTATION`.
    origin: String,
}

/// Which objects of `kind` are followed: all, but for Secrets only TLS ones (the edge's
/// certificates; nothing else a follower serves reads a Secret).
fn selection(kind: Kind) -> watcher::Config {
    match kind {
        Kind::Secret => watcher::Config::default().fields("type=kubernetes.io/tls"),
        _ => watcher::Config::default(),
    }
}

impl Mirror {
    pub(super) fn new(store: Arc<Store>, kind: Kind, node_name: String, origin: String) -> Mirror {
        Mirror {
            store,
            kind,
            node_name,
            origin,
        }
    }

    /// Watches the kind until the stream ends (never, unless the client is dropped).
    pub(super) async fn run(
        self,
        client: kube::Client,
        mut listed: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<()> {
        let api_version = self.kind.api_versions()[0];
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, self.kind.as_str());
        let resource = ApiResource::from_gvk_with_plural(&gvk, self.kind.plural());
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        let mut events = watcher::watcher(api, selection(self.kind))
            .default_backoff()
            .boxed();
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => seen.clear(),
                Ok(Event::InitApply(object)) => {
                    if let Some(key) = self.put(object).await {
                        seen.insert(key);
                    }
                }
                Ok(Event::InitDone) => {
                    self.prune(&seen).await;
                    if let Some(tx) = listed.take() {
                        // The daemon may have stopped waiting; nothing else needs telling.
                        tx.send(()).unwrap_or_default();
                    }
                    tracing::info!(kind = %self.kind, objects = seen.len(), "following the API server");
                }
                Ok(Event::Apply(object)) => {
                    self.put(object).await;
                }
                Ok(Event::Delete(object)) => self.delete(&object).await,
                Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                    if status.code == 404 =>
                {
                    tracing::info!(kind = %self.kind, "the API server does not serve this kind; looking again in a minute");
                    if let Some(tx) = listed.take() {
                        tx.send(()).unwrap_or_default();
                    }
                    tokio::time::sleep(ABSENT_RETRY).await;
                }
                Err(e) => tracing::warn!(kind = %self.kind, error = %e, "following the API server"),
            }
        }
        Ok(())
    }

    /// Writes `object` to the store as pier reads it; its key, or `None` when pier cannot
    /// read it (logged) or it is this node's own Node.
    async fn put(&self, object: DynamicObject) -> Option<Key> {
        let name = object.metadata.name.clone().unwrap_or_default();
        if self.kind == Kind::Node && name == self.node_name {
            return None;
        }
        let mut value = match serde_json::to_value(&object) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(kind = %self.kind, %name, error = %e, "not mirrored");
                return None;
            }
        };
        local_form(&mut value, &self.origin);
        let parsed = match Object::from_value(value) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(kind = %self.kind, %name, error = %e, "not mirrored: pier cannot read it");
                return None;
            }
        };
        let key = (parsed.object.meta().namespace.clone(), name.clone());
        let written = self
            .store
            .blocking("mirroring an object", move |s| {
                s.write(vec![Op::Put(parsed.object)])
            })
            .await;
        match written {
            Ok(_) => Some(key),
            Err(e) => {
                let error = crate::error::chain(&e);
                tracing::warn!(kind = %self.kind, %name, %error, "not mirrored");
                None
            }
        }
    }

    async fn delete(&self, object: &DynamicObject) {
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        if self.kind == Kind::Node && name == self.node_name {
            return;
        }
        let op = Op::remove(self.kind, namespace, name.clone());
        if let Err(e) = self
            .store
            .blocking("removing a mirrored object", move |s| s.write(vec![op]))
            .await
        {
            let error = crate::error::chain(&e);
            tracing::warn!(kind = %self.kind, %name, %error, "mirrored object not removed");
        }
    }

    /// Removes the mirrored objects of the kind that the latest list did not have.
    async fn prune(&self, seen: &BTreeSet<Key>) {
        let (kind, seen) = (self.kind, seen.clone());
        let pruned = self
            .store
            .blocking("pruning mirrored objects", move |s| {
                let (objects, _) = s.list(kind, None, None)?;
                let ops: Vec<Op> = objects
                    .iter()
                    .filter(|o| o.meta().annotations.contains_key(ORIGIN_ANNOTATION))
                    .filter(|o| {
                        let meta = o.meta();
                        !seen.contains(&(meta.namespace.clone(), meta.name.clone()))
                    })
                    .map(|o| Op::remove(kind, o.meta().namespace.clone(), o.meta().name.clone()))
                    .collect();
                let count = ops.len();
                if count > 0 {
                    s.write(ops)?;
                }
                Ok(count)
            })
            .await;
        match pruned {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(kind = %self.kind, removed = n, "mirrored objects gone from the API server removed")
            }
            Err(e) => {
                tracing::warn!(kind = %self.kind, error = %crate::error::chain(&e), "pruning mirrored objects")
            }
        }
    }
}

/// The server's object as the local store takes it: the server's resourceVersion (a
/// condition here), uid, generation and field owners go, the origin annotation comes; a
/// Node's pod ranges stay the cluster's business (the local store allocates its own).
fn local_form(value: &mut Value, origin: &str) {
    if value.get("kind").and_then(Value::as_str) == Some("Node") {
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("podCIDR");
            spec.remove("podCIDRs");
        }
    }
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for server_owned in [
        "resourceVersion",
        "uid",
        "generation",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(server_owned);
    }
    let notes = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(notes) = notes.as_object_mut() {
        notes.insert(ORIGIN_ANNOTATION.into(), Value::String(origin.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_servers_bookkeeping_stays_behind() {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "812",
                         "uid": "u", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"ports": [{"port": 80}]}});
        local_form(&mut svc, "https://k8s:6443/");
        assert_eq!(
            svc["metadata"],
            json!({"name": "web", "namespace": "default", "annotations": {ORIGIN_ANNOTATION: "https://k8s:6443/"}})
        );
        let parsed = Object::from_value(svc).unwrap();
        assert_eq!(parsed.object.meta().name, "web");
    }
}

#[cfg(test)]
mod real_cluster {
    use super::*;
    use serde_json::json;

    /// A Node as a v1.33 kubelet registers it, every status field included.
    fn kubelet_node() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "worker-1", "uid": "u", "resourceVersion": "991",
                "labels": {"kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                     "providerID": "kind://docker/kind/worker-1",
                     "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "172.18.0.3"}, {"type": "Hostname", "address": "worker-1"}],
                "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi", "hugepages-2Mi": "0"},
                "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi", "hugepages-2Mi": "0"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status", "lastHeartbeatTime": "2026-12-01T10:00:00Z",
                    "lastTransitionTime": "2026-12-01T09:00:00Z"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320_368}],
                "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.0.3",
                    "kernelVersion": "6.8.0", "kubeProxyVersion": "", "kubeletVersion": "v1.33.1",
                    "machineID": "m", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "systemUUID": "s", "swap": {}},
                "runtimeHandlers": [{"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}}],
                "features": {"supplementalGroupsPolicy": true},
                "config": {"active": {}},
                "volumesInUse": [], "volumesAttached": []
            }
        })
    }

    #[test]
    fn a_kubelets_node_is_mirrored() {
        let mut node = kubelet_node();
        local_form(&mut node, "https://k8s:6443/");
        let parsed = Object::from_value(node).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.object.meta().name, "worker-1");
    }

    #[test]
    fn a_clusters_services_slices_and_namespaces_are_mirrored() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "kube-system", "uid": "n", "resourceVersion": "4",
                             "labels": {"kubernetes.io/metadata.name": "kube-system"}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "uid": "s", "resourceVersion": "260",
                    "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true"},
                    "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
                "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": {"k8s-app": "kube-dns"},
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                              {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                              {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}],
                    "sessionAffinity": "None", "type": "ClusterIP"},
                "status": {"loadBalancer": {}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "shop", "namespace": "default", "uid": "l", "resourceVersion": "7"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.96.3.4", "clusterIPs": ["10.96.3.4"],
                    "allocateLoadBalancerNodePorts": true, "externalTrafficPolicy": "Local",
                    "healthCheckNodePort": 31234, "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP", "targetPort": 8080}],
                    "selector": {"app": "shop"}, "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kube-dns-x7k2p", "namespace": "kube-system", "uid": "e", "resourceVersion": "300",
                    "generateName": "kube-dns-", "generation": 3,
                    "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                               "kubernetes.io/service-name": "kube-dns"},
                    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-01T10:00:00Z"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "kube-dns", "uid": "s",
                                         "controller": true, "blockOwnerDeletion": true}]},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.3"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "worker-1", "zone": "z1", "hints": {"forZones": [{"name": "z1"}]},
                    "targetRef": {"kind": "Pod", "namespace": "kube-system", "name": "coredns-1", "uid": "p"}}],
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
        ];
        for mut object in objects {
            local_form(&mut object, "https://k8s:6443/");
            let text = object.to_string();
            if let Err(e) = Object::from_value(object) {
                panic!("{e}: {text}");
            }
        }
    }
}
