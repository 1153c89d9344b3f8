//! The live dashboard (`/ui` on the admin listener) in a real browser: headless Chromium,
//! driven over the DevTools protocol, shows the services, the route's weights and the traffic
//! per backend group, and redraws them when the weights change, without a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::*;
use common::*;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// A headless Chromium with its DevTools endpoint; killed on drop.
struct Browser {
    child: Child,
    socket: WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Opens `url` in a browser whose profile lives under `dir`.
    fn open(dir: &Path, url: &str) -> Browser {
        let profile = dir.join("chromium");
        // Its own process group: Debian's `chromium` is a script that does not exec the
        // browser, so the whole group is what has to be killed.
        let child = Command::new("chromium")
            .process_group(0)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Chromium names the port it took in its profile directory.
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort")) {
                if let Some(port) = text.lines().next().and_then(|l| l.parse::<u16>().ok()) {
                    break port;
                }
            }
            assert!(Instant::now() < deadline, "chromium did not start");
            std::thread::sleep(Duration::from_millis(100));
        };
        let pages: Value = loop {
            let (code, body) = http_get(&format!("127.0.0.1:{port}"), "/json/list");
            let pages: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let found = pages
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["type"] == "page"));
            if code == 200 && found {
                break pages;
            }
            assert!(Instant::now() < deadline, "no page in {body}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let page = pages
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "page")
            .unwrap();
        let (socket, _) =
            tungstenite::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        }
        Browser {
            child,
            socket,
            next_id: 0,
        }
    }

    /// Sends one DevTools command and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(request.to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is a string containing `want`; the string.
    fn until_text(&mut self, expression: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.eval(expression).as_str().unwrap_or("").to_string();
            if text.contains(want) {
                return text;
            }
            assert!(Instant::now() < deadline, "{want:?} never in {text:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        match Command::new("kill").args(["-KILL", "--", &group]).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("killing chromium's process group {group}: {other:?}"),
        }
        if let Err(e) = self.child.wait() {
            eprintln!("reaping chromium: {e}");
        }
    }
}

/// `GET path` from `addr`: status and body (read to its `Content-Length`: Chromium's
/// DevTools server keeps the connection open).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            });
            if length.is_some_and(|n| body.len() >= n) {
                return (status_code(head), body.to_string());
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                return (status_code(head), body.to_string());
            }
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The status code of a response head; 0 when it has none.
fn status_code(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn split(v1: u32, v2: u32) -> String {
    http_route(
        "web-split",
        "web",
        &format!("  - backendRefs: [{{name: web-v1, port: 80, weight: {v1}}}, {{name: web-v2, port: 80, weight: {v2}}}]"),
    )
}

/// A basic canary Rollout (no route: the split is by pods) of image tag `tag`.
fn rollout(tag: &str) -> String {
    format!("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: site}}\nspec:\n  replicas: 4\n  selector: {{matchLabels: {{app: site}}}}\n  template:\n    metadata: {{labels: {{app: site}}}}\n    spec: {{containers: [{{name: app, image: example.invalid/site:{tag}}}]}}\n  strategy:\n    canary:\n      analysis: {{templates: [{{templateName: revision}}]}}\n      steps: [{{setWeight: 25}}, {{pause: {{}}}}, {{setWeight: 75}}, {{pause: {{}}}}]\n")
}

/// A template measuring the snapshot revision the dashboard reports, every second.
fn analysis_template(admin: &str) -> String {
    format!("apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: revision}}\nspec:\n  metrics:\n  - name: revision\n    interval: 1s\n    count: 600\n    successCondition: result > 0\n    provider:\n      web: {{url: 'http://{admin}/ui/state', jsonPath: '{{$.revision}}'}}\n")
}

/// An autoscaler of Rollout `site` on CPU, between 4 and `max` replicas.
fn autoscaler(max: u32) -> String {
    format!("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: site}}\nspec:\n  scaleTargetRef: {{apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: site}}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 70}}}}\n", min = max.min(4))
}

#[test]
fn dashboard_shows_weights_and_traffic_and_follows_changes_without_a_reload() {
    if !have("chromium") {
        skip("chromium is not installed (scripts/deps test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = proxy_daemon(dir.path(), &["--no-runtime"]);
    let (v1, v2) = (Echo::spawn("v1"), Echo::spawn("v2"));
    let mut objects = service_yaml("web", 80, "TCP", "type: ClusterIP", &[]);
    for (name, echo) in [("web-v1", &v1), ("web-v2", &v2)] {
        objects += &service_yaml(
            name,
            80,
            "TCP",
            "type: ClusterIP",
            &[(echo.http.port(), true)],
        );
    }
    objects += &split(80, 20);
    apply(&daemon, &objects);
    let web = vip(&daemon, "web", 80);
    wait_listening(web);

    let admin = daemon.try_status().unwrap()["adminAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, page) = http_get(&admin, "/ui");
    assert_eq!(code, 200);
    assert!(page.contains("<title>pier</title>"));
    let mut browser = Browser::open(dir.path(), &format!("http://{admin}/ui"));
    let route = "document.querySelector('[data-route=\"default/web-split\"]')?.innerText";
    let text = browser.until_text(route, "80.0% (weight 80)");
    assert!(text.contains("default/web-v2 20.0% (weight 20)"), "{text}");
    let services = browser.until_text(
        "document.getElementById('services').innerText",
        "default/web-v1",
    );
    assert!(services.contains("127.0.0.1"), "{services}");
    let loaded = browser.eval("window.pierLoadedAt");
    assert!(loaded.is_number(), "{loaded}");

    // Traffic through the VIP shows up as a rate per backend group.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, web) = (stop.clone(), web.to_string());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                if http_get(&web, "/").0 == 200 {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            answered
        })
    };
    let row = "document.querySelector('[data-group=\"default/web|default/web-v1\"]')?.innerText";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = browser.eval(row).as_str().unwrap_or("").to_string();
        let rate: f64 = text
            .split_whitespace()
            .nth(2)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0.0);
        if rate > 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no request rate in {text:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // New weights: the page redraws them in place.
    apply(&daemon, &split(50, 50));
    let text = browser.until_text(route, "50.0% (weight 50)");
    assert!(!text.contains("80.0%"), "{text}");
    assert_eq!(
        browser.eval("window.pierLoadedAt"),
        loaded,
        "the page reloaded"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(traffic.join().unwrap() > 0);

    // A Rollout: its phase, step and canary weight, redrawn as it moves; its background
    // analysis (a web metric reading this page's own state) shows each value as it comes.
    apply(&daemon, &analysis_template(&admin));
    apply(&daemon, &rollout("1"));
    let row = "document.querySelector('[data-rollout=\"default/site\"]')?.innerText";
    browser.until_text(row, "4 of 4");
    apply(&daemon, &rollout("2"));
    browser.until_text(row, "0 of 4");
    let measured = browser.until_text(
        "document.querySelector('[data-rollout=\"default/site\"] .measured')?.innerText",
        "revision ",
    );
    assert!(
        measured
            .trim_start_matches("revision ")
            .trim()
            .parse::<f64>()
            .is_ok(),
        "{measured}"
    );
    let promoted = daemon.pier(&["rollout", "promote", "ro/site"]);
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    let text = browser.until_text(row, "1 of 4");
    assert!(text.contains("Paused"), "{text}");
    // The narrow canary side shows its share alone; the stable side is named.
    assert!(
        text.contains("stable 75%") && text.contains("25%"),
        "{text}"
    );
    assert_eq!(
        browser.eval("window.pierLoadedAt"),
        loaded,
        "the page reloaded"
    );

    // An autoscaler of the Rollout: its replicas and targets; lowering its maximum below the
    // Rollout's replicas scales the Rollout down, and the row follows.
    apply(&daemon, &autoscaler(6));
    let row = "document.querySelector('[data-hpa=\"default/site\"]')?.innerText";
    let text = browser.until_text(row, "4 – 6");
    assert!(text.contains("cpu: unknown / 70%"), "{text}");
    apply(&daemon, &autoscaler(3));
    browser.until_text(row, "→ 3");
    let replicas = daemon.get_json(&["ro", "site"])["spec"]["replicas"].clone();
    assert_eq!(replicas, 3);
    assert_eq!(
        browser.eval("window.pierLoadedAt"),
        loaded,
        "the page reloaded"
    );

    // An aborted Rollout reads Degraded, with the reason beside it.
    let aborted = daemon.pier(&["rollout", "abort", "ro/site"]);
    assert!(aborted.status.success(), "{}", stderr(&aborted));
    let row = "document.querySelector('[data-rollout=\"default/site\"]')?.innerText";
    let text = browser.until_text(row, "Degraded");
    let message = browser.until_text(
        "document.querySelector('[data-rollout=\"default/site\"] .message')?.innerText",
        "RolloutAborted",
    );
    assert!(message.contains("aborted"), "{message} in {text}");

    // A screenshot, for a person to look at when the test is run by hand.
    let shot = browser.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().unwrap(),
    )
    .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    if let Some(out) = std::env::var_os("PIER_DASHBOARD_SCREENSHOT") {
        std::fs::write(out, png).unwrap();
    }
}
