//! Dual-stack Services end to end, in a network namespace of the test's own: a
//! PreferDualStack Service gets an IPv4 and an IPv6 ClusterIP, DNS answers A, AAAA and both
//! PTRs (checked with dig), and the proxy serves the IPv6 VIP (checked with curl). Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, PIER};

fn privileged() -> bool {
    let why = if !common::is_root() {
        "needs root (a network namespace, the VIP interface)"
    } else if !common::have("ip") {
        "ip (iproute2) is not installed"
    } else if !common::have("dig") {
        "dig is not installed (scripts/deps test installs bind9-dnsutils)"
    } else if !common::have("curl") {
        "curl is not installed"
    } else {
        return true;
    };
    common::skip(why);
    false
}

fn dig(server: &str, args: &[&str]) -> String {
    let (host, port) = server.rsplit_once(':').unwrap();
    let out = Command::new("dig")
        .args([&format!("@{host}"), "-p", port, "+short"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn prefer_dual_stack_services_get_both_families() {
    if !privileged() {
        return;
    }
    common::private_netns();
    let tmp = tempfile::tempdir().unwrap();
    let mut echo = Command::new(PIER);
    echo.args(["echo", "--name", "e1", "--http", "127.0.0.1:0"]);
    let (echo, addrs) = common::spawn_echo(echo);
    let _echo = KillOnDrop(echo);
    let port = addrs["http"].port();
    let d = Daemon::start_with(
        tmp.path(),
        &[
            "--service-cidr",
            "10.100.0.0/16,fd00:10:96::/112",
            "--proxy-vips",
            "interface",
            "--no-runtime",
        ],
    );
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ipFamilyPolicy: PreferDualStack\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\nports: [{{name: http, port: {port}}}]\n"
    );
    common::apply_yaml(&d.socket(), &yaml);
    let svc = d.get_json(&["svc", "web"]);
    assert_eq!(
        svc["spec"]["ipFamilies"],
        serde_json::json!(["IPv4", "IPv6"])
    );
    let ips: Vec<String> = svc["spec"]["clusterIPs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 2, "{svc}");
    assert_eq!(svc["spec"]["clusterIP"], ips[0].as_str());
    assert!(ips[1].starts_with("fd00:10:96::"), "{ips:?}");

    let status = d.try_status().unwrap();
    let dns = status["dnsAddresses"][0].as_str().unwrap().to_string();
    let name = "web.default.svc.cluster.local";
    assert_eq!(dig(&dns, &[name, "A"]), ips[0]);
    assert_eq!(dig(&dns, &[name, "AAAA"]), ips[1]);
    assert_eq!(dig(&dns, &["-x", &ips[1]]), format!("{name}."));
    assert_eq!(dig(&dns, &["-x", &ips[0]]), format!("{name}."));

    // The proxy serves both VIPs on its interface.
    for ip in &ips {
        let url = if ip.contains(':') {
            format!("http://[{ip}]/")
        } else {
            format!("http://{ip}/")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("curl")
                .args(["-s", "-m", "2", &url])
                .output()
                .unwrap();
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            if body.contains("\"name\":\"e1\"") {
                break;
            }
            assert!(Instant::now() < deadline, "{url}: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    d.stop();
}

/// Ends the echo endpoint however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
