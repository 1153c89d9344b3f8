//! Argo Rollouts' analysis run by pier on real containers under continuous load: a good
//! canary passes its analysis steps (pier's own success rate, read in process) and promotes
//! itself with no failed request; a bad one (`pier echo --fail-percent 30`) fails its
//! analysis and is aborted, all traffic back on stable. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::canary::{front_addr, front_url, services_and_route};
use common::clients::Clients;
use common::runtime::*;
use serde_json::Value;

/// Analysis interval of the test's template.
const INTERVAL: Duration = Duration::from_secs(2);

/// An AnalysisTemplate on pier's own metrics, and a Rollout that analyses each step (its echo
/// fails FAIL% of requests), behind `services_and_route("shop")`.
const MANIFESTS: &str = "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args:
  - name: service-name
  metrics:
  - name: success-rate
    interval: 2s
    count: 2
    successCondition: isNaN(result) || result >= 0.95
    failureLimit: 0
    provider:
      plugin:
        pier.dev/metrics:
          service: '{{args.service-name}}'
          measure: successRate
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      abortScaleDownDelaySeconds: 2
      scaleDownDelaySeconds: 2
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: shop-route, namespace: default}
      steps:
      - setWeight: 20
      - analysis:
          templates: [{templateName: success-rate}]
          args: [{name: service-name, value: shop-canary}]
      - setWeight: 50
      - analysis:
          templates: [{templateName: success-rate}]
          args: [{name: service-name, value: shop-canary}]
  template:
    metadata: {labels: {app: shop}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: shop
        image: pier/echo:VERSION
        args: [echo, --http, '0.0.0.0:8080', --name, VERSION, --version, VERSION, --fail-percent, 'FAIL']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, failureThreshold: 1}
";

fn rollout(node: &Node) -> Value {
    node.d().get_json(&["rollout", "shop"])
}

#[test]
fn analysis_promotes_a_good_canary_and_aborts_a_bad_one() {
    if !privileged("analysis_promotes_a_good_canary_and_aborts_a_bad_one") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 9);
    for v in ["v1", "v2", "v3"] {
        node.build_echo(v);
    }
    let apply = |v: &str, fail: u8| {
        let yaml = (services_and_route("shop") + "---\n" + MANIFESTS)
            .replace("VERSION", v)
            .replace("FAIL", &fail.to_string());
        let out = node.d().pier_stdin(&["apply", "-f", "-"], &yaml);
        assert!(out.status.success(), "{}", out_text(&out));
    };
    apply("v1", 0);
    let first = node.ok(&["rollout", "status", "ro/shop", "--timeout", "90s"]);
    assert!(first.contains("Healthy"), "{first}");
    let url = front_url(&node, "shop");
    let mut clients = Clients::new(url);
    assert_eq!(clients.share("v1", 50), 100.0);

    // A good canary: each analysis passes and the rollout promotes itself, no request lost.
    clients.start();
    apply("v2", 0);
    let done = node.ok(&["rollout", "status", "ro/shop", "--timeout", "120s"]);
    assert!(done.contains("Healthy"), "{done}");
    let status = &rollout(&node)["status"];
    assert_eq!(status["stableRS"], status["currentPodHash"]);
    let runs = node.ok(&["get", "analysisruns"]);
    println!("{runs}");
    assert_eq!(runs.matches("Successful").count(), 2, "{runs}");
    clients.stop();
    println!(
        "good release v1 -> v2 through two analyses: {} requests, {} failed",
        clients.total,
        clients.failures.len()
    );
    assert!(clients.total > 500, "the load ran: {}", clients.total);
    assert!(
        clients.failures.is_empty(),
        "{:?}",
        &clients.failures[..clients.failures.len().min(5)]
    );

    // A bad canary: 30% of its answers are 500s; its first analysis fails and the rollout
    // is aborted, every request back on stable.
    let (before_total, before_failed) = (clients.total, clients.failures.len());
    clients.start();
    let started = Instant::now();
    apply("v3", 30);
    wait_for("the canary to take 20% of the traffic", 90, || {
        rollout(&node)["status"]["canary"]["weights"]["canary"]["weight"] == 20
    });
    let shifted = Instant::now();
    wait_for("the analysis to abort the rollout", 30, || {
        rollout(&node)["status"]["phase"] == "Degraded"
    });
    let detected = shifted.elapsed();
    clients.stop();
    let requests = clients.total - before_total;
    let failed = clients.failures.len() - before_failed;
    let rate = requests as f64 / started.elapsed().as_secs_f64();
    let bound = 0.2 * rate * INTERVAL.as_secs_f64();
    println!(
        "bad release v3 (30% 500s): aborted {:.2}s after it took 20% of traffic (interval {}s); \
         {failed} failed client requests of {requests} ({rate:.0}/s); \
         weight x rate x interval = {bound:.0}",
        detected.as_secs_f64(),
        INTERVAL.as_secs()
    );
    let message = rollout(&node)["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("RolloutAborted"), "{message}");
    assert!(
        message.contains("Metric \"success-rate\" assessed Failed"),
        "{message}"
    );
    assert!(
        detected <= INTERVAL + Duration::from_millis(1500),
        "the first failing window ends an interval after the shift: {detected:?}"
    );
    assert!(
        (failed as f64) <= bound,
        "{failed} failed requests, more than the canary's share of one interval ({bound:.0})"
    );
    assert_eq!(
        clients.share("v2", 200),
        100.0,
        "all traffic back on stable"
    );
    let runs = node.ok(&["get", "ar"]);
    assert!(runs.contains("Failed"), "{runs}");
    let events = node.ok(&["get", "events"]);
    assert!(events.contains("AnalysisRunFailed"), "{events}");
}

/// The L4 release: a TCPRoute split per connection, analysed on the share of connections
/// the canary's endpoints reset.
const TCP_MANIFESTS: &str = "apiVersion: v1
kind: Service
metadata: {name: tshop}
spec:
  selector: {app: tshop}
  ports: [{name: tcp, port: 9000, targetPort: tcp}]
---
apiVersion: v1
kind: Service
metadata: {name: tshop-stable}
spec:
  selector: {app: tshop}
  ports: [{name: tcp, port: 9000, targetPort: tcp}]
---
apiVersion: v1
kind: Service
metadata: {name: tshop-canary}
spec:
  selector: {app: tshop}
  ports: [{name: tcp, port: 9000, targetPort: tcp}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tshop-route}
spec:
  parentRefs: [{group: core, kind: Service, name: tshop, port: 9000}]
  rules:
  - backendRefs:
    - {name: tshop-stable, port: 9000}
    - {name: tshop-canary, port: 9000}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: resets}
spec:
  args: [{name: service-name}]
  metrics:
  - name: reset-rate
    interval: 2s
    count: 2
    successCondition: isNaN(result) || result <= 0.05
    provider:
      plugin:
        pier.dev/metrics: {service: '{{args.service-name}}', measure: resetRate}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: tshop}
spec:
  replicas: 2
  selector: {matchLabels: {app: tshop}}
  strategy:
    canary:
      canaryService: tshop-canary
      stableService: tshop-stable
      abortScaleDownDelaySeconds: 2
      scaleDownDelaySeconds: 2
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {tcpRoute: tshop-route, namespace: default}
      steps:
      - setWeight: 30
      - analysis:
          templates: [{templateName: resets}]
          args: [{name: service-name, value: tshop-canary}]
  template:
    metadata: {labels: {app: tshop}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: tshop
        image: pier/echo:VERSION
        args: [echo, --tcp, '0.0.0.0:9000', --tcp-banner, --name, VERSION, --reset-percent, 'RESET']
        ports: [{name: tcp, containerPort: 9000}]
        readinessProbe: {tcpSocket: {port: tcp}, periodSeconds: 1, failureThreshold: 1}
";

#[test]
fn analysis_rolls_back_an_l4_canary_that_resets_connections() {
    if !privileged("analysis_rolls_back_an_l4_canary_that_resets_connections") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 10);
    for v in ["v1", "v2"] {
        node.build_echo(v);
    }
    let apply = |v: &str, reset: u8| {
        let yaml = TCP_MANIFESTS
            .replace("VERSION", v)
            .replace("RESET", &reset.to_string());
        let out = node.d().pier_stdin(&["apply", "-f", "-"], &yaml);
        assert!(out.status.success(), "{}", out_text(&out));
    };
    apply("v1", 0);
    let first = node.ok(&["rollout", "status", "ro/tshop", "--timeout", "90s"]);
    assert!(first.contains("Healthy"), "{first}");
    let addr = front_addr(&node, "tshop", 9000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = || std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let warm = rt.block_on(common::proxy::tcp_load(addr, 2, 50, stop()));
    assert_eq!(warm.share("v1"), 1.0, "{:?}", warm.failures);

    // v2 resets 30% of its connections: at 30% of the connections, its analysis fails and
    // every new connection goes to stable again.
    let flag = stop();
    let load = rt.spawn(common::proxy::tcp_load(addr, 2, 1_000_000, flag.clone()));
    apply("v2", 30);
    wait_for("the canary to take 30% of the connections", 90, || {
        node.d().get_json(&["rollout", "tshop"])["status"]["canary"]["weights"]["canary"]["weight"]
            == 30
    });
    let shifted = Instant::now();
    wait_for("the analysis to abort the rollout", 30, || {
        node.d().get_json(&["rollout", "tshop"])["status"]["phase"] == "Degraded"
    });
    let detected = shifted.elapsed();
    flag.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = rt.block_on(load).unwrap();
    let message = node.d().get_json(&["rollout", "tshop"])["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!(
        "L4 canary resetting 30% of connections: aborted {:.2}s after it took 30% (interval {}s); \
         {} of {} client connections failed",
        detected.as_secs_f64(),
        INTERVAL.as_secs(),
        during.failures.len(),
        during.total()
    );
    assert!(
        message.contains("Metric \"reset-rate\" assessed Failed"),
        "{message}"
    );
    assert!(
        detected <= INTERVAL + Duration::from_millis(1500),
        "{detected:?}"
    );
    let after = rt.block_on(common::proxy::tcp_load(addr, 2, 200, stop()));
    assert_eq!(
        after.share("v1"),
        1.0,
        "all connections on stable: {:?}",
        after.by_name
    );
}

/// A release whose process crashes a few seconds after it starts: analysed in the background
/// on the restarts of the canary's pods.
const CRASH_MANIFESTS: &str = "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: restarts}
spec:
  args: [{name: service-name}]
  metrics:
  - name: restarts
    interval: 2s
    count: 15
    successCondition: result == 0
    provider:
      plugin:
        pier.dev/metrics: {service: '{{args.service-name}}', measure: restarts}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      abortScaleDownDelaySeconds: 2
      scaleDownDelaySeconds: 2
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: shop-route, namespace: default}
      # In the background from the first step: a crashing canary may never stay ready
      # long enough for its weight to move, and its restarts are counted all the same.
      analysis:
        templates: [{templateName: restarts}]
        args: [{name: service-name, value: shop-canary}]
      steps:
      - setWeight: 50
      - pause: {}
  template:
    metadata: {labels: {app: shop}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: shop
        image: pier/echo:VERSION
        args: [echo, --http, '0.0.0.0:8080', --name, VERSION, CRASH]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, failureThreshold: 1}
";

#[test]
fn analysis_rolls_back_a_canary_whose_pods_restart() {
    if !privileged("analysis_rolls_back_a_canary_whose_pods_restart") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), 11);
    for v in ["v1", "v2"] {
        node.build_echo(v);
    }
    let apply = |v: &str, crash: &str| {
        let yaml = (services_and_route("shop") + "---\n" + CRASH_MANIFESTS)
            .replace("VERSION", v)
            .replace("CRASH", crash);
        let out = node.d().pier_stdin(&["apply", "-f", "-"], &yaml);
        assert!(out.status.success(), "{}", out_text(&out));
    };
    apply("v1", "--tcp-banner");
    let first = node.ok(&["rollout", "status", "ro/shop", "--timeout", "90s"]);
    assert!(first.contains("Healthy"), "{first}");
    // v2 serves, then crashes 3 s after each start: its restarts fail the analysis.
    apply("v2", "--crash-after=3s");
    wait_for("the analysis to abort the rollout", 90, || {
        rollout(&node)["status"]["phase"] == "Degraded"
    });
    let message = rollout(&node)["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!("{message}");
    assert!(
        message.contains("Metric \"restarts\" assessed Failed"),
        "{message}"
    );
    let mut clients = Clients::new(front_url(&node, "shop"));
    assert_eq!(
        clients.share("v1", 100),
        100.0,
        "all traffic back on stable"
    );
}
