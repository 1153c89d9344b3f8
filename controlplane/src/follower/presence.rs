//! What a follower writes to the API server, and nothing else: an Event saying it follows,
//! and its heartbeat Lease (`kube-node-lease/<node>`, as the kubelet keeps one), renewed
//! every 10 seconds by server-side apply under the field manager `pier`.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::error::Result;

/// How often the Lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long a renewal holds (the kubelet's default).
const LEASE_SECONDS: i32 = 40;
/// The namespace of node heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Reports that this node follows `server`, then renews its Lease until cancelled.
pub(super) async fn run(client: kube::Client, node_name: String, server: String) -> Result<()> {
    report_following(&client, &node_name, &server).await;
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let params = PatchParams::apply("pier").force();
    loop {
        let now = MicroTime(jiff_now());
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": node_name, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now,
            }
        });
        if let Err(e) = leases
            .patch(&node_name, &params, &Patch::Apply(&lease))
            .await
        {
            tracing::warn!(node = %node_name, error = %e, "renewing this node's Lease on the API server");
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

/// An Event on this node's Node: pier follows the API server here.
async fn report_following(client: &kube::Client, node_name: &str, server: &str) {
    let now = jiff_now();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{node_name}.{nanos:x}")),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node_name.to_string()),
            api_version: Some("v1".into()),
            ..ObjectReference::default()
        },
        reason: Some("Following".into()),
        message: Some(format!(
            "pier serves this cluster's Services and DNS on {node_name} (following {server})"
        )),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some("pier".into()),
            host: Some(node_name.to_string()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some("pier".into()),
        reporting_instance: Some(node_name.to_string()),
        ..Event::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(node = %node_name, error = %e, "reporting to the API server that this node follows it");
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}
