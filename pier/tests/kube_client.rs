//! kube-rs, the Rust Kubernetes client, against pier's Kubernetes API: from a kubeconfig that
//! `pier kubeconfig` printed, it lists with a label selector, creates, patches (merge and
//! strategic), follows a watcher (kube-runtime's, which lists and then watches), and sees a
//! NotFound error as one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

mod common;
use common::*;

async fn client(daemon: &Daemon) -> kube::Client {
    let out = daemon.pier(&["kubeconfig", "--name", "kube-rs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig: Kubeconfig = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn service(name: &str, tier: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"tier": tier}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_creates_patches_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &["--no-proxy", "--api-listen", "127.0.0.1:0"]);
    let client = client(&daemon).await;
    let services: Api<Service> = Api::namespaced(client, "default");

    let mut watch = watcher::watcher(services.clone(), watcher::Config::default()).boxed();
    let post = PostParams::default();
    services
        .create(&post, &service("web", "front"))
        .await
        .unwrap();
    services
        .create(&post, &service("db", "data"))
        .await
        .unwrap();
    let front = services
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    let names: Vec<String> = front
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["web"]);
    let ip = front.items[0]
        .spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .clone()
        .unwrap();
    assert!(ip.starts_with("10.96."), "{ip}");

    let merged = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.unwrap()["v"], "2");
    let strategic = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"name": "admin", "port": 9090}]}})),
        )
        .await
        .unwrap();
    let ports: Vec<i32> = strategic
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [80, 9090], "ports merge by their key");

    let apply = PatchParams::apply("pier-test");
    let config = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cache", "labels": {"tier": "cache"}},
        "spec": {"ports": [{"port": 6379}]}});
    let applied = services
        .patch("cache", &apply, &Patch::Apply(&config))
        .await
        .unwrap();
    let owners = applied.metadata.managed_fields.unwrap();
    assert_eq!(owners[0].manager.as_deref(), Some("pier-test"));
    assert_eq!(owners[0].operation.as_deref(), Some("Apply"));
    let conflict = services
        .patch(
            "cache",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "cache", "labels": {"tier": "other"}}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{conflict}"
    );

    // deletecollection: what the selector selects goes, the rest stays.
    let gone = services
        .delete_collection(
            &kube::api::DeleteParams::default(),
            &ListParams::default().labels("tier=data"),
        )
        .await
        .unwrap();
    let gone: Vec<String> = gone
        .left()
        .expect("the deleted objects")
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(gone, ["db"]);
    assert!(services.get_opt("db").await.unwrap().is_none());
    assert!(services.get_opt("web").await.unwrap().is_some());

    let err = services.get("nope").await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 404);
            assert_eq!(status.reason, "NotFound");
        }
        other => panic!("not an API error: {other}"),
    }

    let mut seen_patch = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen_patch {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("the watcher saw the patch within 15 s")
            .unwrap()
            .unwrap();
        if let Event::Apply(svc) | Event::InitApply(svc) = event {
            let labels = svc.metadata.labels.unwrap_or_default();
            let ports = svc.spec.and_then(|s| s.ports).map_or(0, |p| p.len());
            seen_patch = labels.get("v").map(String::as_str) == Some("2") && ports == 2;
        }
    }
}

/// The status subresource through kube-rs: a write of the Deployment leaves its status alone,
/// a status patch changes only the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_writes_status_apart_from_spec() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &["--no-proxy", "--no-runtime", "--api-listen", "127.0.0.1:0"],
    );
    let client = client(&daemon).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}},
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let counted = loop {
        let d = deployments.get_status("web").await.unwrap();
        if let Some(status) = d.status.filter(|s| s.replicas == Some(2)) {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status from the controller"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counted.observed_generation, Some(1));

    let spec_write = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"team": "a"}}, "status": {"replicas": 99}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(spec_write.metadata.labels.unwrap()["team"], "a");
    assert_ne!(
        spec_write.status.unwrap().replicas,
        Some(99),
        "status is not written through the object"
    );

    let status_write = deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"replicas": 99}, "metadata": {"labels": {"team": "b"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status_write.status.unwrap().replicas, Some(99));
    assert_eq!(
        status_write.metadata.labels.unwrap()["team"],
        "a",
        "only the status changed"
    );
}

/// kube-rs's event Recorder writes `events.k8s.io/v1` Events (a create, then a merge patch
/// for a repeat); they read back as `v1` Events about the object, as kubectl describe reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_records_events_that_describe_reads() {
    use kube::runtime::events::{Event as Report, EventType, Recorder, Reporter};
    use kube::Resource;

    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &["--no-proxy", "--api-listen", "127.0.0.1:0"]);
    let client = client(&daemon).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services
        .create(&PostParams::default(), &service("web", "front"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "pier-test".into(),
            instance: None,
        },
    );
    let report = Report {
        type_: EventType::Warning,
        reason: "Checked".into(),
        note: Some("looked at it".into()),
        action: "Checking".into(),
        secondary: None,
    };
    let reference = web.object_ref(&());
    recorder.publish(&report, &reference).await.unwrap();
    recorder.publish(&report, &reference).await.unwrap();

    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let about_web = events
        .list(&ListParams::default().fields("involvedObject.kind=Service,involvedObject.name=web"))
        .await
        .unwrap();
    assert_eq!(about_web.items.len(), 1, "{:?}", about_web.items);
    let event = &about_web.items[0];
    assert_eq!(event.reason.as_deref(), Some("Checked"));
    assert_eq!(event.message.as_deref(), Some("looked at it"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reporting_component.as_deref(), Some("pier-test"));
}
