//! kubectl's rollout verbs on Deployments: `rollout status` waits on the status the controller
//! keeps, `rollout restart` replaces the pods, and `rollout history` and `undo` read and
//! restore the revisions the controller keeps as ReplicaSets, and `delete --cascade` decides
//! what happens to the pods. No engine runs: pods are made ready by hand, as a node agent
//! would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::kubectl::*;
use common::*;

/// A Deployment `name` of 2 replicas of `example.invalid/app:1` (labelled `app: name`), with
/// `spec_extra` as one more spec line and `container_extra` added to its container.
fn deployment(name: &str, spec_extra: &str, container_extra: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n  {spec_extra}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: example.invalid/app:1{container_extra}}}]}}\n")
}

/// `kubectl rollout status` waits on the Deployment's status, which the controller keeps from
/// its pods; here the pods are made ready by hand (no engine runs), as a node agent would.
#[test]
fn kubectl_rollout_status_returns_once_the_pods_are_ready() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    apply_yaml(&daemon.socket(), &deployment("web", "", ""));
    let mut waiting = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubectl.kubeconfig)
        .args(["rollout", "status", "deploy/web", "--timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "rollout status returned before the pods were ready"
    );
    let table = kubectl.ok(&["get", "deploy", "web"]);
    assert!(table.contains("0/2"), "{table}");
    let ready = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pods: Value =
            serde_json::from_str(&kubectl.ok(&["get", "pods", "-o", "json"])).unwrap();
        let names: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        if names.len() == 2 {
            for name in &names {
                kubectl.ok(&["patch", "pod", name, "--type=merge", "-p", ready]);
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pods}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = waiting.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("successfully rolled out"), "{stdout}");
    let table = kubectl.ok(&["get", "deploy", "web"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(table.contains("2/2"), "{table}");
    let status: Value =
        serde_json::from_str(&kubectl.ok(&["get", "deploy", "web", "-o", "jsonpath={.status}"]))
            .unwrap();
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["availableReplicas"], 2);

    // rollout restart patches the template: a new generation, and pods of a new template.
    let restarted = kubectl.ok(&["rollout", "restart", "deploy/web"]);
    assert!(
        restarted.contains("deployment.apps/web restarted"),
        "{restarted}"
    );
    let annotation = kubectl.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ]);
    assert!(
        annotation.contains("kubectl.kubernetes.io/restartedAt"),
        "{annotation}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let hashes = kubectl.ok(&[
            "get",
            "pods",
            "-o",
            "jsonpath={.items[*].metadata.labels.pod-template-hash}",
        ]);
        let distinct: std::collections::BTreeSet<&str> = hashes.split_whitespace().collect();
        if distinct.len() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{hashes}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let generation = kubectl.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(generation, "2");
}

/// Waits until kubectl's `args` print something `done` accepts; what they printed.
fn until(kubectl: &Kubectl, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = kubectl.ok(args);
        if done(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "kubectl {args:?}: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every revision a Deployment ran is a ReplicaSet numbered by its revision annotation;
/// `rollout history` lists them with their change causes, `rollout undo` puts an earlier
/// template back (a template that comes back takes the next number), and the history keeps
/// `revisionHistoryLimit` old revisions; `pier rollout history|undo` read and write the same
/// revisions. Deleting the Deployment deletes its ReplicaSets.
#[test]
fn kubectl_rollout_history_and_undo_restore_earlier_templates() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    apply_yaml(
        &daemon.socket(),
        &deployment("web", "revisionHistoryLimit: 2", ", args: [serve, --v1]"),
    );
    let revisions = |n: usize| {
        move |out: &str| {
            out.lines()
                .filter(|l| l.starts_with(char::is_numeric))
                .count()
                == n
        }
    };
    until(
        &kubectl,
        &["rollout", "history", "deploy/web"],
        revisions(1),
    );
    kubectl.ok(&[
        "annotate",
        "deploy/web",
        "kubernetes.io/change-cause=image 2, args v2",
    ]);
    kubectl.ok(&[
        "patch",
        "deploy/web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"example.invalid/app:2"},{"op":"replace","path":"/spec/template/spec/containers/0/args","value":["serve","--v2"]}]"#,
    ]);
    let history = until(
        &kubectl,
        &["rollout", "history", "deploy/web"],
        revisions(2),
    );
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["REVISION", "CHANGE-CAUSE"]
    );
    assert!(history.contains("2         image 2, args v2"), "{history}");
    let two = kubectl.ok(&["rollout", "history", "deploy/web", "--revision=2"]);
    assert!(
        two.contains("example.invalid/app:2") && two.contains("--v2"),
        "{two}"
    );

    // The ReplicaSets, as kubectl prints them: the current one has the replicas.
    let sets = until(&kubectl, &["get", "rs", "-o", "wide"], |out| {
        out.lines().count() == 3
    });
    let header: Vec<&str> = sets.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let current = sets.lines().find(|l| l.contains("app:2")).unwrap();
    assert!(current.split_whitespace().nth(1) == Some("2"), "{sets}");
    let owner = kubectl.ok(&[
        "get",
        "rs",
        "-o",
        "jsonpath={.items[0].metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(owner, "Deployment");

    // Undo: back to image 1 and its args, as revision 3.
    let undone = kubectl.ok(&["rollout", "undo", "deploy/web"]);
    assert!(undone.contains("rolled back"), "{undone}");
    let container: Value = serde_json::from_str(&kubectl.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0]}",
    ]))
    .unwrap();
    assert_eq!(container["image"], "example.invalid/app:1");
    assert_eq!(container["args"][1], "--v1");
    let history = until(&kubectl, &["rollout", "history", "deploy/web"], |out| {
        out.lines().any(|l| l.starts_with('3'))
    });
    assert!(!history.lines().any(|l| l.starts_with('1')), "{history}");
    let sets = kubectl.ok(&["get", "rs", "--no-headers"]);
    assert_eq!(
        sets.lines().count(),
        2,
        "undo reuses revision 1's ReplicaSet: {sets}"
    );
    let again = kubectl.ok(&["rollout", "undo", "deploy/web", "--to-revision=3"]);
    assert!(again.contains("skipped rollback"), "{again}");
    let missing = kubectl.fails(&["rollout", "undo", "deploy/web", "--to-revision=9"]);
    assert!(
        missing.contains("unable to find specified revision 9"),
        "{missing}"
    );

    // Three more templates: only revisionHistoryLimit (2) empty old ones stay.
    for n in 4..=6 {
        kubectl.ok(&[
            "set",
            "image",
            "deploy/web",
            &format!("app=example.invalid/app:{n}"),
        ]);
        until(&kubectl, &["rollout", "history", "deploy/web"], |out| {
            out.lines().any(|l| l.starts_with(&n.to_string()))
        });
    }
    until(&kubectl, &["get", "rs", "--no-headers"], |out| {
        out.lines().count() <= 3
    });

    // A ReplicaSet of one's own is refused with the reason.
    let file = dir.path().join("lone.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: lone}\nspec:\n  selector: {matchLabels: {app: lone}}\n  template:\n    metadata: {labels: {app: lone}}\n    spec: {containers: [{name: c, image: example.invalid/c:1}]}\n",
    )
    .unwrap();
    let lone = kubectl.fails(&["create", "-f", file.to_str().unwrap()]);
    assert!(lone.contains("ownerReferences"), "{lone}");

    // pier rollout reads and writes the same revisions.
    let pier = |args: &[&str]| {
        let out = daemon.pier(args);
        assert!(out.status.success(), "pier {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let history = pier(&["rollout", "history", "deploy/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.parse::<u32>().is_ok())
        .collect();
    assert_eq!(numbers, ["4", "5", "6"], "{history}");
    let undone = pier(&["rollout", "undo", "deploy/web", "--to-revision", "4"]);
    assert!(undone.contains("rolled back to revision 4"), "{undone}");
    let image = kubectl.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "example.invalid/app:4");
    until(&kubectl, &["rollout", "history", "deploy/web"], |out| {
        out.lines().any(|l| l.starts_with('7'))
    });
    let template = pier(&[
        "rollout",
        "history",
        "deploy/web",
        "--revision",
        "7",
        "-o",
        "json",
    ]);
    let template: Value = serde_json::from_str(template.split_once('\n').unwrap().1).unwrap();
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "example.invalid/app:4"
    );
    let wrong = daemon.pier(&["rollout", "undo", "svc/web"]);
    assert!(!wrong.status.success() && stderr(&wrong).contains("deployments"));

    kubectl.ok(&["delete", "deploy", "web"]);
    until(&kubectl, &["get", "rs", "-o", "name"], str::is_empty);
}

/// `kubectl delete --cascade`: orphan leaves the pods running without their Deployment (and
/// takes the ReplicaSets, which are its records), background (the default) has the
/// controller terminate them (foreground, which waits for them, is in `kubectl_delete.rs`).
#[test]
fn kubectl_delete_cascades_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    apply_yaml(&daemon.socket(), &deployment("kept", "", ""));
    apply_yaml(&daemon.socket(), &deployment("gone", "", ""));
    for app in ["kept", "gone"] {
        let selector = format!("app={app}");
        until(
            &kubectl,
            &["get", "pods", "-l", &selector, "-o", "name"],
            |out| out.lines().count() == 2,
        );
        until(
            &kubectl,
            &["get", "rs", "-l", &selector, "-o", "name"],
            |out| out.lines().count() == 1,
        );
    }

    kubectl.ok(&["delete", "deploy", "kept", "--cascade=orphan"]);
    let pods = |app: &str| -> Vec<Value> {
        let list: Value = serde_json::from_str(&kubectl.ok(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "json",
        ]))
        .unwrap();
        list["items"].as_array().unwrap().clone()
    };
    std::thread::sleep(Duration::from_secs(1));
    let kept = pods("kept");
    assert_eq!(kept.len(), 2);
    for pod in &kept {
        assert!(pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
        assert!(
            pod["metadata"]["labels"]["pier.dev/deployment"].is_null(),
            "{pod}"
        );
    }
    until(
        &kubectl,
        &["get", "rs", "-l", "app=kept", "-o", "name"],
        str::is_empty,
    );

    kubectl.ok(&["delete", "deploy", "gone", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pods("gone")
        .iter()
        .all(|p| !p["metadata"]["deletionTimestamp"].is_null())
    {
        assert!(Instant::now() < deadline, "{:?}", pods("gone"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pods("kept").len(), 2, "the orphans are untouched");
}

/// A paused Deployment scales but holds a new template back: `kubectl rollout pause`, a new
/// image, a scale to 3 (three pods of the old image, no new revision, `DeploymentPaused`), then
/// `pier rollout resume` rolls the held template out.
#[test]
fn a_paused_deployment_scales_but_rolls_out_only_when_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    apply_yaml(&daemon.socket(), &deployment("web", "", ""));
    let images =
        |out: &str| -> Vec<String> { out.split_whitespace().map(str::to_string).collect() };
    let pod_images = [
        "get",
        "pods",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ];
    until(&kubectl, &pod_images, |out| images(out).len() == 2);
    until(&kubectl, &["get", "rs", "-o", "name"], |out| {
        out.lines().count() == 1
    });

    let paused = kubectl.ok(&["rollout", "pause", "deploy/web"]);
    assert!(paused.contains("paused"), "{paused}");
    kubectl.ok(&["set", "image", "deploy/web", "app=example.invalid/app:2"]);
    kubectl.ok(&["scale", "deploy/web", "--replicas=3"]);
    let held = until(&kubectl, &pod_images, |out| images(out).len() == 3);
    assert!(
        images(&held).iter().all(|i| i == "example.invalid/app:1"),
        "{held}"
    );
    let condition = until(
        &kubectl,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        |out| out == "DeploymentPaused",
    );
    assert_eq!(condition, "DeploymentPaused");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(kubectl.ok(&["get", "rs", "-o", "name"]).lines().count(), 1);
    let again = daemon.pier(&["rollout", "pause", "deploy/web"]);
    assert!(
        stdout(&again).contains("already paused"),
        "{}",
        stdout(&again)
    );

    let resumed = daemon.pier(&["rollout", "resume", "deploy/web"]);
    assert!(
        stdout(&resumed).contains("deployment/web resumed"),
        "{}",
        stderr(&resumed)
    );
    until(&kubectl, &["get", "rs", "-o", "name"], |out| {
        out.lines().count() == 2
    });
    until(&kubectl, &pod_images, |out| {
        images(out).iter().any(|i| i == "example.invalid/app:2")
    });
}
