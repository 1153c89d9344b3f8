//! Deployments on the engine: pods behind a service, healing, rolling updates without a lost
//! request, a daemon killed and restarted, and `pier rollout undo` back to the first
//! revision. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::runtime::*;
use serde_json::Value;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: pier/echo:VERSION
        args: [echo, --http, '0.0.0.0:8080', --name, web, --version, VERSION]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
";

/// Ready endpoint addresses of service `web`.
fn ready_endpoints(node: &Node) -> Vec<String> {
    let s = node
        .d()
        .get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let mut out: Vec<String> = s["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// Sends requests through the service VIP from a thread until told to stop; returns (ok, failed).
fn load(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u32, u32)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            let o = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-m",
                    "5",
                    &url,
                ])
                .stderr(Stdio::null())
                .output();
            match o {
                Ok(o) if o.stdout == b"200" => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}

#[test]
fn deployment_heals_rolls_out_without_loss_and_survives_a_daemon_crash() {
    if !privileged("deployment_heals_rolls_out_without_loss_and_survives_a_daemon_crash") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(tmp.path(), 3);
    node.build_echo("v1");
    node.build_echo("v2");
    node.d()
        .pier_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("VERSION", "v1"));
    wait_for("3 ready endpoints", 30, || {
        ready_endpoints(&node).len() == 3
    });
    let first = ready_endpoints(&node);

    // kill -9 of one container: restarted in place, out of the endpoints meanwhile, back after.
    let victim = node.containers()[0].clone();
    let pid = victim["pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the killed pod to leave the ready endpoints", 10, || {
        ready_endpoints(&node).len() == 2
    });
    wait_for("the pod to be back", 30, || ready_endpoints(&node) == first);
    assert_eq!(
        node.container(victim["id"].as_str().unwrap())["restartCount"],
        1
    );

    // A failing readiness probe takes the endpoint out; passing again brings it back.
    let ip = first[0].clone();
    Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{ip}:8080/readyz/disable"),
        ])
        .output()
        .unwrap();
    wait_for("the unready pod to leave the endpoints", 10, || {
        !ready_endpoints(&node).contains(&ip)
    });
    Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{ip}:8080/readyz/enable"),
        ])
        .output()
        .unwrap();
    wait_for("the pod to be ready again", 10, || {
        ready_endpoints(&node).contains(&ip)
    });

    // Rolling update v1 -> v2 under continuous load through the service: no request lost.
    let vip = node.d().get_json(&["svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let octets: Vec<&str> = vip.split('.').collect();
    let url = format!(
        "http://127.{}.{}.{}:21080/",
        octets[1], octets[2], octets[3]
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = load(url.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    node.d()
        .pier_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("VERSION", "v2"));
    wait_for("v2 everywhere", 90, || {
        let pods = node.d().get_json(&["pods"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3
            && items.iter().all(|p| {
                p["spec"]["containers"][0]["image"] == "pier/echo:v2"
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            && ready_endpoints(&node).len() == 3
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = loader.join().unwrap();
    println!("rolling update under load: {ok} requests ok, {failed} failed");
    assert!(ok > 50, "the load ran: {ok}");
    assert_eq!(failed, 0, "no request lost during the rollout ({ok} ok)");
    assert_eq!(curl(&url).unwrap()["version"], "v2");
    assert_eq!(
        node.containers().len(),
        3,
        "old containers removed: {:?}",
        node.containers()
    );

    // Daemon crash: containers keep running and keep their endpoints; the new daemon adopts them.
    let before: Vec<Value> = node.containers().iter().map(|c| c["id"].clone()).collect();
    let eps = ready_endpoints(&node);
    node.crash_and_restart();
    let after: Vec<Value> = node.containers().iter().map(|c| c["id"].clone()).collect();
    assert_eq!(before, after, "same containers after the restart");
    assert!(node.containers().iter().all(|c| c["state"] == "running"));
    assert_eq!(ready_endpoints(&node), eps);
    assert_eq!(curl(&url).unwrap()["version"], "v2");
    // Adopted containers are still supervised: a kill is still healed.
    let pid = node.containers()[0]["pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the adopted pod to come back", 30, || {
        node.containers()
            .iter()
            .any(|c| c["restartCount"] == 1 && c["state"] == "running")
            && ready_endpoints(&node).len() == 3
    });

    // The rollout's revisions: undo puts v1's image and args back on running pods, as
    // revision 3, and rollout status returns once they serve.
    let history = node.ok(&["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|r| r.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let undone = node.ok(&["rollout", "undo", "deploy/web"]);
    assert!(undone.contains("rolled back to revision 1"), "{undone}");
    let status = node.ok(&["rollout", "status", "deploy/web", "--timeout", "90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    wait_for("v1's image and args on every pod, serving", 60, || {
        let pods = node.d().get_json(&["pods"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3
            && items.iter().all(|p| {
                let c = &p["spec"]["containers"][0];
                c["image"] == "pier/echo:v1"
                    && c["args"].as_array().and_then(|a| a.last()) == Some(&Value::from("v1"))
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            && ready_endpoints(&node).len() == 3
            && curl(&url).is_some_and(|v| v["version"] == "v1")
    });
    let history = node.ok(&["rollout", "history", "deploy/web"]);
    assert!(history.lines().any(|l| l.starts_with('3')), "{history}");

    // Deleting the Deployment drains and removes its pods and containers.
    node.ok(&["delete", "deployment", "web"]);
    wait_for("pods gone", 30, || node.containers().is_empty());
    wait_for("pods deleted", 10, || {
        node.d().get_json(&["pods"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
}
