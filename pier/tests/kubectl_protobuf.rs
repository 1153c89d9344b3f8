//! kubectl's imperative commands: `kubectl create deployment|service|namespace|serviceaccount`,
//! `expose`, `run` and `autoscale` go through client-go's typed clients, which send
//! `application/vnd.kubernetes.protobuf` bodies. pier reads them against Kubernetes' own
//! schemas; the objects read back as the JSON a cluster would hold, and the Go zero values
//! protobuf carries for every unset field raise no warnings. A broken protobuf body is refused
//! with a 400 that says why. Autoscalers are served at `autoscaling/v1` too, as kubectl 1.27
//! creates them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

mod common;
use common::kubectl::*;

fn jsonpath(kubectl: &Kubectl, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    kubectl.ok(&args)
}

#[test]
fn kubectls_typed_clients_create_objects_in_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    let created = kubectl.run(&[
        "create",
        "deployment",
        "web",
        "--image=example.invalid/web:1",
        "--replicas=2",
        "--port=8080",
    ]);
    let warnings = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{warnings}");
    assert!(
        !warnings.contains("Warning"),
        "zero values read as unset, not as ignored fields: {warnings}"
    );
    assert_eq!(
        jsonpath(&kubectl, &["deploy", "web"], "{.spec.replicas}"),
        "2"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["deploy", "web"],
            "{.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "8080"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["deploy", "web"],
            "{.spec.selector.matchLabels.app}"
        ),
        "web"
    );

    kubectl.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let port = jsonpath(&kubectl, &["svc", "web"], "{.spec.ports[0]}");
    let port: serde_json::Value = serde_json::from_str(&port).unwrap();
    assert_eq!(port["port"], 80, "{port}");
    assert_eq!(port["targetPort"], 8080, "an int-or-string: {port}");
    assert_eq!(port["protocol"], "TCP", "{port}");
    assert!(
        port.get("nodePort").is_none(),
        "a ClusterIP has no node port: {port}"
    );
    let ip = jsonpath(&kubectl, &["svc", "web"], "{.spec.clusterIP}");
    assert!(ip.starts_with("10.96."), "a ClusterIP is allocated: {ip}");

    kubectl.ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-named",
        "--port=81",
        "--target-port=http",
    ]);
    assert_eq!(
        jsonpath(
            &kubectl,
            &["svc", "web-named"],
            "{.spec.ports[0].targetPort}"
        ),
        "http"
    );
    kubectl.ok(&["create", "service", "nodeport", "edge", "--tcp=82:8080"]);
    let node_port = jsonpath(&kubectl, &["svc", "edge"], "{.spec.ports[0].nodePort}");
    assert!(node_port.parse::<u16>().unwrap() >= 30000, "{node_port}");

    kubectl.ok(&["create", "namespace", "team"]);
    kubectl.ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    assert_eq!(
        jsonpath(&kubectl, &["sa", "bot", "-n", "team"], "{.metadata.name}"),
        "bot"
    );
    kubectl.ok(&[
        "run",
        "one",
        "--image=example.invalid/one:1",
        "--restart=Never",
        "--",
        "sleep",
        "9",
    ]);
    assert_eq!(
        jsonpath(&kubectl, &["pod", "one"], "{.spec.containers[0].args}"),
        r#"["sleep","9"]"#
    );

    // kubectl's own log shows the body it sent was protobuf.
    let autoscaled = kubectl.run(&[
        "-v=8",
        "autoscale",
        "deployment",
        "web",
        "--min=1",
        "--max=4",
        "--cpu-percent=60",
    ]);
    let log = String::from_utf8_lossy(&autoscaled.stderr);
    assert!(autoscaled.status.success(), "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    assert!(String::from_utf8_lossy(&autoscaled.stdout).contains("autoscaled"));
    let hpa = jsonpath(&kubectl, &["hpa", "web"], "{.spec}");
    let hpa: serde_json::Value = serde_json::from_str(&hpa).unwrap();
    assert_eq!(hpa["minReplicas"], 1, "{hpa}");
    assert_eq!(hpa["maxReplicas"], 4, "{hpa}");
    assert_eq!(hpa["scaleTargetRef"]["name"], "web", "{hpa}");
    assert_eq!(
        hpa["metrics"][0]["resource"]["target"]["averageUtilization"], 60,
        "{hpa}"
    );

    // kubectl before 1.32 creates autoscalers as autoscaling/v1, which pier serves as a view of
    // the stored v2 object.
    let old_kubectl = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
    if std::path::Path::new(old_kubectl).exists() {
        let out = Command::new(old_kubectl)
            .arg("--kubeconfig")
            .arg(&kubectl.kubeconfig)
            .args([
                "autoscale",
                "deployment",
                "web",
                "--name=old",
                "--max=3",
                "--cpu-percent=50",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v2 = jsonpath(
            &kubectl,
            &["hpa", "old"],
            "{.spec.metrics[0].resource.target}",
        );
        assert_eq!(v2, r#"{"averageUtilization":50,"type":"Utilization"}"#);
    } else {
        println!("kubectl 1.27 is not installed: its autoscaling/v1 create is not tried");
    }
    let v1 = ["horizontalpodautoscalers.v1.autoscaling", "web"];
    assert_eq!(
        jsonpath(&kubectl, &v1, "{.spec.targetCPUUtilizationPercentage}"),
        "60"
    );
    // What v1 cannot say survives a write through v1.
    let rps = r#"{"spec":{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":60}}},{"type":"Pods","pods":{"metric":{"name":"requests-per-second"},"target":{"type":"AverageValue","averageValue":"10"}}}]}}"#;
    kubectl.ok(&["patch", "hpa", "web", "--type=merge", "-p", rps]);
    kubectl.ok(&[
        "patch",
        v1[0],
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":6}}"#,
    ]);
    assert_eq!(
        jsonpath(&kubectl, &["hpa", "web"], "{.spec.maxReplicas}"),
        "6"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["hpa", "web"],
            "{.spec.metrics[1].pods.metric.name}"
        ),
        "requests-per-second"
    );

    // A body that claims protobuf but is not: refused, saying why, and nothing is stored.
    let status = daemon.try_status().unwrap();
    let address = status["apiAddress"].as_str().unwrap();
    let token = std::fs::read_to_string(&kubectl.kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_string))
        .unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-m", "5", "-w", "\n%{http_code}", "-X", "POST", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .args(["-H", "Content-Type: application/vnd.kubernetes.protobuf"])
        .args(["--data-binary", "k8s\u{1}garbage"])
        .arg(format!(
            "https://{address}/api/v1/namespaces/default/services"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n400"), "{text}");
    assert!(text.contains("magic"), "{text}");
}
