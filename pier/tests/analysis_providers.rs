//! Argo's `prometheus` and `web` analysis providers against a real Prometheus (Debian's,
//! started here, scraping pier's admin listener): AnalysisRuns applied by hand pass, fail
//! on their condition, and err when the server cannot be reached, with Argo's messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A Prometheus server scraping one target every second; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: pier\n  static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's `prometheus`, installed by scripts/deps test)");
        let p = Prometheus { child, addr };
        wait_until("Prometheus to scrape pier", 60, || {
            let (code, body) = get(&p.addr, "/api/v1/query?query=up%7Bjob%3D%22pier%22%7D");
            code == 200 && body.contains("\"value\"") && body.contains("\"1\"")
        });
        p
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("prometheus already gone: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for prometheus: {e}");
        }
    }
}

/// A loopback address nobody listens on at the moment.
fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut s)
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An AnalysisRun named `name` with `metrics` (YAML list items, indented two spaces).
fn run(name: &str, metrics: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {{name: {name}}}\nspec:\n  args: [{{name: job, value: pier}}]\n  metrics:\n{metrics}"
    )
}

/// Waits for run `name` to end; its status.
fn finished(d: &Daemon, name: &str) -> Value {
    let mut status = Value::Null;
    wait_until(&format!("AnalysisRun {name} to end"), 60, || {
        status = d.get_json(&["analysisrun", name])["status"].clone();
        matches!(
            status["phase"].as_str(),
            Some("Successful" | "Failed" | "Error" | "Inconclusive")
        )
    });
    status
}

#[test]
fn prometheus_and_web_providers_measure_against_a_real_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    let admin = d.try_status().unwrap()["adminAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let prom = Prometheus::start(tmp.path(), &admin);
    let url = format!("http://{}", prom.addr);

    let passes = run(
        "scraped",
        &format!(
            "  - name: up
    interval: 1s
    count: 2
    successCondition: result[0] == 1
    provider:
      prometheus:
        address: {url}
        query: up{{job=\"{{{{args.job}}}}\"}}
  - name: revision
    successCondition: len(result) == 1 && result[0] > 0
    provider:
      prometheus: {{address: '{url}', query: 'pier_store_revision'}}
  - name: api-status
    successCondition: result == 'success'
    provider:
      web:
        url: {url}/api/v1/query?query=up
        jsonPath: '{{$.status}}'
  - name: api-value
    successCondition: asInt(result) == 1
    provider:
      web:
        url: {url}/api/v1/query?query=up
        jsonPath: '{{$.data.result[0].value[1]}}'
"
        ),
    );
    apply_yaml(&d.socket(), &passes);
    let status = finished(&d, "scraped");
    assert_eq!(status["phase"], "Successful", "{status:#}");
    let up = &status["metricResults"][0];
    assert_eq!(
        (up["name"].as_str(), up["count"].as_i64()),
        (Some("up"), Some(2))
    );
    assert_eq!(up["measurements"][0]["value"], "[1]", "{up:#}");

    let fails = run(
        "down",
        &format!(
            "  - name: down
    successCondition: result[0] == 0
    provider:
      prometheus: {{address: '{url}', query: 'up{{job=\"pier\"}}'}}
"
        ),
    );
    apply_yaml(&d.socket(), &fails);
    let status = finished(&d, "down");
    assert_eq!(status["phase"], "Failed", "{status:#}");
    assert_eq!(
        status["message"],
        "Metric \"down\" assessed Failed due to failed (1) > failureLimit (0)"
    );

    let unreachable = run(
        "unreachable",
        &format!(
            "  - name: nobody
    interval: 1s
    consecutiveErrorLimit: 1
    successCondition: result[0] == 1
    provider:
      prometheus: {{address: 'http://{}', query: up}}
",
            free_addr()
        ),
    );
    apply_yaml(&d.socket(), &unreachable);
    let status = finished(&d, "unreachable");
    assert_eq!(status["phase"], "Error", "{status:#}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("consecutiveErrors (2) > consecutiveErrorLimit (1)"),
        "{message}"
    );

    let table = stdout(&d.pier(&["get", "ar"]));
    println!("{table}");
    for line in ["scraped", "down", "unreachable"] {
        assert!(table.contains(line), "{table}");
    }
    drop(prom);
    d.stop();
}
