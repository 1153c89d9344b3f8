//! Every node's metrics, for leader work that measures the whole cluster (pier's analysis
//! provider and the HorizontalPodAutoscaler): this node's read in process, every other Ready
//! node's through its API's node proxy (`api/node_proxy.rs`), asked with this node's relay
//! token and trusting only the CA that node published, all at once and each within a bound.
//! A node that serves no API is left out with a warning; one that should answer and does not
//! is reported, and the caller decides what a partial reading is worth.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pier_model::pod::CONTAINER_ANNOTATION;
use pier_model::{Kind, Object, Pod};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, GaugeVec, Opts, Registry};
use protobuf::CodedInputStream;

use crate::api::node_proxy::NodeMetricsPath;
use crate::api::PodRelay;
use crate::autoscaling::{ContainerUsage, UsageSource};
use crate::store::Store;

/// Longest one node may take to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// The exposition format asked of other nodes: Prometheus' delimited protobuf, read back whole.
const PROTOBUF_ACCEPT: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
/// Per-pod CPU seconds, as the kubelet's resource metrics name it.
pub(crate) const POD_CPU: &str = "pod_cpu_usage_seconds_total";
/// Per-pod working-set bytes, as the kubelet's resource metrics name it.
pub(crate) const POD_MEMORY: &str = "pod_memory_working_set_bytes";

/// This node's metrics and its pods' resource use, and a way to read every node's.
pub struct NodeMetrics {
    node_name: String,
    store: Arc<Store>,
    registry: Registry,
    usage: Option<Arc<dyn UsageSource>>,
    relay: Option<Arc<PodRelay>>,
    /// Nodes already warned about serving no API.
    warned: Mutex<BTreeSet<String>>,
}

/// What was read of the cluster's nodes.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Each node read, with its metric families.
    pub nodes: Vec<(String, Vec<MetricFamily>)>,
    /// Each node that should have answered and did not, with why.
    pub failed: Vec<(String, String)>,
}

impl NodeMetrics {
    /// Node `node_name`'s metrics from `registry` and its containers' use through `usage`
    /// (none without an engine); other nodes' through `relay` (none on a sole node).
    pub fn new(
        node_name: &str,
        store: Arc<Store>,
        registry: Registry,
        usage: Option<Arc<dyn UsageSource>>,
        relay: Option<Arc<PodRelay>>,
    ) -> Self {
        Self {
            node_name: node_name.to_string(),
            store,
            registry,
            usage,
            relay,
            warned: Mutex::new(BTreeSet::new()),
        }
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// This node's own metrics now.
    pub fn own(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }

    /// This node's pods' CPU and memory now, named as the kubelet's `/metrics/resource`.
    pub async fn own_resource(&self) -> Result<Vec<MetricFamily>, String> {
        let Some(usage) = self.usage.clone() else {
            return Ok(Vec::new());
        };
        let node = self.node_name.clone();
        let pods = self
            .store
            .blocking("reading this node's pods", move |s| {
                Ok(s.list(Kind::Pod, None, None)?
                    .0
                    .into_iter()
                    .filter_map(|o| match o {
                        Object::Pod(p) if p.spec.node_name.as_deref().is_none_or(|n| n == node) => {
                            Some(p)
                        }
                        _ => None,
                    })
                    .collect::<Vec<Pod>>())
            })
            .await
            .map_err(|e| crate::error::chain(&e))?;
        resource_families(&pods, usage.as_ref()).map_err(|e| format!("{e}"))
    }

    /// `which` of every node: this one's in process, each other Ready node's through its API.
    pub async fn gather(&self, which: NodeMetricsPath) -> Gathered {
        let mut gathered = Gathered::default();
        let own = match which {
            NodeMetricsPath::Metrics => Ok(self.own()),
            NodeMetricsPath::Resource => self.own_resource().await,
        };
        match own {
            Ok(families) => gathered.nodes.push((self.node_name.clone(), families)),
            Err(e) => gathered.failed.push((self.node_name.clone(), e)),
        }
        let Some(relay) = &self.relay else {
            return gathered;
        };
        let peers = match self.peers().await {
            Ok(peers) => peers,
            Err(e) => {
                gathered.failed.push(("(every other node)".into(), e));
                return gathered;
            }
        };
        let mut asks = tokio::task::JoinSet::new();
        for node in peers {
            let (relay, store) = (Arc::clone(relay), Arc::clone(&self.store));
            asks.spawn(async move {
                let path = which.path(&node);
                let asked = tokio::time::timeout(
                    SCRAPE_TIMEOUT,
                    relay.get(&store, &node, &path, PROTOBUF_ACCEPT),
                )
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {SCRAPE_TIMEOUT:?}")));
                (node, asked.and_then(|body| decode(&body)))
            });
        }
        while let Some(joined) = asks.join_next().await {
            match joined {
                Ok((node, Ok(families))) => gathered.nodes.push((node, families)),
                Ok((node, Err(e))) => gathered.failed.push((node, e)),
                Err(e) => gathered.failed.push(("(a node)".into(), e.to_string())),
            }
        }
        gathered.nodes.sort_by(|a, b| a.0.cmp(&b.0));
        gathered
    }

    /// The other Ready nodes that serve an API (those that serve none are warned of once).
    async fn peers(&self) -> Result<Vec<String>, String> {
        let nodes = self
            .store
            .blocking("reading Nodes to gather metrics", |s| {
                s.list(Kind::Node, None, None)
            })
            .await
            .map_err(|e| crate::error::chain(&e))?
            .0;
        let mut peers = Vec::new();
        for object in nodes {
            let Object::Node(node) = object else { continue };
            let name = &node.metadata.name;
            if *name == self.node_name || !node.is_ready() {
                continue;
            }
            if node
                .metadata
                .annotations
                .contains_key(crate::api::pod_relay::ENDPOINT_ANNOTATION)
            {
                peers.push(name.clone());
            } else if self
                .warned
                .lock()
                .is_ok_and(|mut warned| warned.insert(name.clone()))
            {
                tracing::warn!(node = %name, "node serves no API other nodes reach (start it with --api-listen on a reachable address): its traffic and pods are left out of analysis and autoscaling");
            }
        }
        Ok(peers)
    }
}

/// Reads delimited protobuf metric families, as `ProtobufEncoder` writes them.
fn decode(body: &[u8]) -> Result<Vec<MetricFamily>, String> {
    let mut input = CodedInputStream::from_bytes(body);
    let mut families = Vec::new();
    while !input
        .eof()
        .map_err(|e| format!("reading metric families: {e}"))?
    {
        families.push(
            input
                .read_message::<MetricFamily>()
                .map_err(|e| format!("reading metric family {}: {e}", families.len() + 1))?,
        );
    }
    Ok(families)
}

/// The kubelet's resource metrics of `pods` that run on `usage`'s engine.
fn resource_families(
    pods: &[Pod],
    usage: &dyn UsageSource,
) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let registry = Registry::new();
    let container_labels = ["container", "namespace", "pod"];
    let container_cpu = CounterVec::new(
        Opts::new(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the container in core-seconds",
        ),
        &container_labels,
    )?;
    let container_memory = GaugeVec::new(
        Opts::new(
            "container_memory_working_set_bytes",
            "Current working set of the container in bytes",
        ),
        &container_labels,
    )?;
    let pod_cpu = CounterVec::new(
        Opts::new(
            POD_CPU,
            "Cumulative cpu time consumed by the pod in core-seconds",
        ),
        &["namespace", "pod"],
    )?;
    let pod_memory = GaugeVec::new(
        Opts::new(POD_MEMORY, "Current working set of the pod in bytes"),
        &["namespace", "pod"],
    )?;
    for c in [&container_cpu, &pod_cpu] {
        registry.register(Box::new(c.clone()))?;
    }
    for g in [&container_memory, &pod_memory] {
        registry.register(Box::new(g.clone()))?;
    }
    for pod in pods {
        let Some(used) = pod
            .metadata
            .annotations
            .get(CONTAINER_ANNOTATION)
            .and_then(|id| usage.usage(id))
        else {
            continue;
        };
        let (ns, name) = (pod.metadata.namespace(), pod.metadata.name.as_str());
        let container = pod.spec.containers.first().map_or("", |c| c.name.as_str());
        container_cpu
            .with_label_values(&[container, ns, name])
            .inc_by(used.cpu_seconds);
        container_memory
            .with_label_values(&[container, ns, name])
            .set(used.memory_bytes);
        pod_cpu
            .with_label_values(&[ns, name])
            .inc_by(used.cpu_seconds);
        pod_memory
            .with_label_values(&[ns, name])
            .set(used.memory_bytes);
    }
    Ok(registry.gather())
}

/// Each pod's use from resource metric families, by namespace and name.
pub(crate) fn pod_usage(families: &[MetricFamily]) -> HashMap<(String, String), ContainerUsage> {
    let mut by_pod: HashMap<(String, String), ContainerUsage> = HashMap::new();
    for family in families {
        let cpu = match family.name() {
            POD_CPU => true,
            POD_MEMORY => false,
            _ => continue,
        };
        for m in family.get_metric() {
            let label = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map_or(String::new(), |l| l.value().to_string())
            };
            let entry =
                by_pod
                    .entry((label("namespace"), label("pod")))
                    .or_insert(ContainerUsage {
                        cpu_seconds: 0.0,
                        memory_bytes: 0.0,
                    });
            if cpu {
                entry.cpu_seconds = m.get_counter().value();
            } else {
                entry.memory_bytes = m.get_gauge().value();
            }
        }
    }
    by_pod
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, ProtobufEncoder};

    use super::*;

    struct Fixed;

    impl UsageSource for Fixed {
        fn usage(&self, id: &str) -> Option<ContainerUsage> {
            (id == "abc").then_some(ContainerUsage {
                cpu_seconds: 12.5,
                memory_bytes: 4096.0,
            })
        }
    }

    fn pod(name: &str, container_id: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = "shop".into();
        if let Some(id) = container_id {
            p.metadata
                .annotations
                .insert(CONTAINER_ANNOTATION.into(), id.into());
        }
        p
    }

    /// What a node serves as protobuf is read back whole by the node that asked.
    #[test]
    fn resource_metrics_round_trip_through_the_protobuf_format() {
        let pods = [
            pod("web-1", Some("abc")),
            pod("gone", Some("def")),
            pod("new", None),
        ];
        let families = resource_families(&pods, &Fixed).unwrap();
        let mut wire = Vec::new();
        ProtobufEncoder::new().encode(&families, &mut wire).unwrap();
        let read = decode(&wire).unwrap();
        assert_eq!(read, families);
        let usage = pod_usage(&read);
        assert_eq!(usage.len(), 1, "{usage:?}");
        assert_eq!(
            usage[&("shop".to_string(), "web-1".to_string())],
            ContainerUsage {
                cpu_seconds: 12.5,
                memory_bytes: 4096.0
            }
        );
        assert!(decode(&wire[..wire.len() - 3]).is_err());
        assert!(decode(&[]).unwrap().is_empty());
    }
}
