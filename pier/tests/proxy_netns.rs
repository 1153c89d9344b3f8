//! The proxy with real VIPs (`--proxy-vips interface`), inside a network namespace the test
//! creates, so the host's interfaces are never touched. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Netns, NetnsExt, PIER};

fn privileged() -> bool {
    let why = if !common::is_root() {
        "needs root (network namespaces, VIP interface)"
    } else if !common::have("curl") {
        "curl is not installed"
    } else {
        return true;
    };
    common::skip(why);
    false
}

#[test]
fn real_cluster_ips_on_the_vip_interface() {
    if !privileged() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::create("pier-test");

    let (echo, addrs) =
        common::spawn_echo(ns.command(&[PIER, "echo", "--name", "v1", "--http", "127.0.0.1:0"]));
    let echo_port = addrs["http"].port();
    ns.children.push(echo);

    let socket = ns.start_daemon(tmp.path(), &["--proxy-vips", "interface", "--no-dns"]);

    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{name: http, port: 80, appProtocol: http}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\nports: [{{name: http, port: {echo_port}}}]\n"
    );
    common::apply_yaml(&socket, &yaml);
    let out = common::pier_cli(&socket, &["get", "svc", "web", "-o", "json"], "");
    let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();

    let mut body = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = ns.run(&["curl", "-s", "-m", "2", &format!("http://{vip}/")]);
        body = String::from_utf8_lossy(&out.stdout).to_string();
        if body.contains("\"name\":\"v1\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        body.contains("\"name\":\"v1\""),
        "curl http://{vip}/ inside the namespace: {body:?}"
    );
    let addrs = ns.run(&["ip", "-br", "addr", "show", "pier0"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout).to_string();
    assert!(addrs.contains(&format!("{vip}/32")), "{addrs}");

    // A graceful stop removes the interface.
    let mut daemon = ns.children.remove(1);
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let stopped = daemon.wait().unwrap();
    assert!(stopped.success(), "{stopped}");
    let gone = ns.run(&["ip", "link", "show", "pier0"]);
    assert!(!gone.status.success(), "pier0 removed on shutdown");
}
