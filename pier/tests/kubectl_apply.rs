//! kubectl's write path, client-side and server-side: `kubectl apply`, `diff`, `create`,
//! `label`, `annotate`, `delete -f`, and `kubectl apply --server-side` with field ownership
//! and conflicts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

mod common;
use common::kubectl::*;

const QUICKSTART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml");

/// kubectl's write path: apply creates, diff shows a change first, a re-apply updates in
/// place (built-in kinds by strategic merge patch, Gateway routes by merge patch), create of
/// an existing object is AlreadyExists, label and annotate patch, an unknown field is
/// refused naming it, and delete -f removes everything.
#[test]
fn kubectl_applies_diffs_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemon, kubectl)) = start(dir.path()) else {
        return;
    };
    let quickstart = QUICKSTART;
    let created = kubectl.ok(&["apply", "-f", quickstart]);
    assert!(created.contains("service/web created"), "{created}");
    assert!(
        created.contains("deployment.apps/web-v1 created"),
        "{created}"
    );
    assert!(
        created.contains("httproute.gateway.networking.k8s.io/web-canary created"),
        "{created}"
    );
    let changed = std::fs::read_to_string(quickstart)
        .unwrap()
        .replace("replicas: 2", "replicas: 3")
        .replace("name: db\n", "name: db\n  labels: {tier: data}\n");
    let changed_path = dir.path().join("changed.yaml");
    std::fs::write(&changed_path, &changed).unwrap();
    let changed_path = changed_path.to_str().unwrap();
    let diff = kubectl.run(&["diff", "-f", changed_path]);
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff exits 1 on a difference: {diff_text}"
    );
    assert!(diff_text.contains("+  replicas: 3"), "{diff_text}");
    assert!(diff_text.contains("+    tier: data"), "{diff_text}");
    let replicas = kubectl.ok(&["get", "deploy", "web-v1", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "2", "diff changed nothing");
    let applied = kubectl.ok(&["apply", "-f", changed_path]);
    assert!(
        applied.contains("deployment.apps/web-v1 configured"),
        "{applied}"
    );
    assert!(applied.contains("service/web unchanged"), "{applied}");
    let replicas = kubectl.ok(&["get", "deploy", "web-v1", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "3");
    let ip_before = kubectl.ok(&["get", "svc", "db", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(
        ip_before.starts_with("10.96."),
        "the ClusterIP survives the patch: {ip_before}"
    );

    let again = kubectl.fails(&["create", "-f", changed_path]);
    assert!(
        again.contains("AlreadyExists") || again.contains("already exists"),
        "{again}"
    );
    kubectl.ok(&["label", "svc", "web", "team=checkout"]);
    kubectl.ok(&["annotate", "svc", "web", "owner=ops"]);
    let web: Value =
        serde_json::from_str(&kubectl.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    assert_eq!(web["metadata"]["labels"]["team"], "checkout");
    assert_eq!(web["metadata"]["annotations"]["owner"], "ops");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports: [{port: 80}]\n  bogus: 1\n",
    )
    .unwrap();
    let refused = kubectl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(refused.contains("bogus"), "{refused}");

    let deleted = kubectl.ok(&["delete", "-f", changed_path]);
    assert!(deleted.contains("service \"web\" deleted"), "{deleted}");
    let left = kubectl.ok(&["get", "svc", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}

/// The managers of an object, as `manager/operation[/subresource]`.
fn managers(kubectl: &Kubectl, what: &[&str]) -> Vec<String> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    let object: Value = serde_json::from_str(&kubectl.ok(&args)).unwrap();
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut name = format!(
                "{}/{}",
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap()
            );
            if let Some(sub) = m["subresource"].as_str() {
                name.push_str(&format!("/{sub}"));
            }
            name
        })
        .collect()
}

/// `kubectl apply --server-side`: it creates (not on a dry run), `diff --server-side` shows a
/// change first, a changed file updates in place and drops what it no longer sets, a field
/// `kubectl scale` took is a conflict until `--force-conflicts`, and objects applied
/// client-side move over to server-side apply without conflicts.
#[test]
fn kubectl_applies_server_side() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemon, kubectl)) = start(dir.path()) else {
        return;
    };
    let dry = kubectl.ok(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        QUICKSTART,
    ]);
    assert!(
        dry.contains("service/web serverside-applied (server dry run)"),
        "{dry}"
    );
    assert!(kubectl.ok(&["get", "svc", "-o", "name"]).trim().is_empty());

    let created = kubectl.ok(&["apply", "--server-side", "-f", QUICKSTART]);
    assert!(
        created.contains("service/web serverside-applied"),
        "{created}"
    );
    assert!(
        created.contains("deployment.apps/web-v1 serverside-applied"),
        "{created}"
    );
    assert_eq!(managers(&kubectl, &["svc", "web"]), ["kubectl/Apply"]);

    let changed = std::fs::read_to_string(QUICKSTART)
        .unwrap()
        .replacen("replicas: 2", "replicas: 3", 1)
        .replacen("labels: {app: web}", "labels: {app: web, tier: front}", 1);
    let changed_path = dir.path().join("changed.yaml");
    std::fs::write(&changed_path, &changed).unwrap();
    let changed_path = changed_path.to_str().unwrap();
    let diff = kubectl.run(&["diff", "--server-side", "-f", changed_path]);
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "{diff_text}");
    assert!(diff_text.contains("+  replicas: 3"), "{diff_text}");
    assert!(diff_text.contains("+    tier: front"), "{diff_text}");

    kubectl.ok(&["apply", "--server-side", "-f", changed_path]);
    let labels = kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.labels}"]);
    assert_eq!(labels, r#"{"app":"web","tier":"front"}"#);
    kubectl.ok(&["apply", "--server-side", "-f", QUICKSTART]);
    let labels = kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.labels}"]);
    assert_eq!(
        labels, r#"{"app":"web"}"#,
        "a label no longer applied is removed"
    );
    let ip = kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(
        ip.starts_with("10.96."),
        "the allocated ClusterIP stays: {ip}"
    );

    kubectl.ok(&["scale", "deploy", "web-v1", "--replicas=4"]);
    let refused = kubectl.fails(&["apply", "--server-side", "-f", changed_path]);
    assert!(
        refused.contains(
            r#"conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#
        ),
        "{refused}"
    );
    assert!(refused.contains("--force-conflicts"), "{refused}");
    kubectl.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        changed_path,
    ]);
    let replicas = kubectl.ok(&["get", "deploy", "web-v1", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "3");

    let legacy = |stage: &str| {
        let path = dir.path().join(format!("legacy-{stage}.yaml"));
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: legacy, labels: {{stage: {stage}}}}}\nspec:\n  ports: [{{port: 80}}]\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    kubectl.ok(&["apply", "-f", &legacy("one")]);
    kubectl.ok(&["apply", "-f", &legacy("two")]);
    kubectl.ok(&["apply", "--server-side", "-f", &legacy("three")]);
    let stage = kubectl.ok(&[
        "get",
        "svc",
        "legacy",
        "-o",
        "jsonpath={.metadata.labels.stage}",
    ]);
    assert_eq!(
        stage, "three",
        "kubectl takes over what its client-side apply set"
    );
    let other = kubectl.fails(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &legacy("four"),
    ]);
    assert!(
        other.contains(r#"conflict with "kubectl" using v1: .metadata.labels.stage"#),
        "{other}"
    );
    kubectl.ok(&["delete", "-f", QUICKSTART, "-f", &legacy("three")]);
}
