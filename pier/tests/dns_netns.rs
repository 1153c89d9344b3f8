//! Cluster DNS through a real stub resolver: glibc's `getent` and `dig`, in a network
//! namespace of the test's own whose resolv.conf points at pier with the Kubernetes search
//! path, and unbound as pier's upstream. Needs root (network namespaces), dig and unbound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Netns, NetnsExt};

fn privileged() -> bool {
    let why = if !common::is_root() {
        "needs root (network namespaces)"
    } else if !common::have("ip") {
        "ip (iproute2) is not installed"
    } else if !common::have("dig") {
        "dig is not installed (scripts/deps test installs bind9-dnsutils)"
    } else if !common::have("unbound") {
        "unbound is not installed (scripts/deps test installs it)"
    } else if !common::have("getent") {
        "getent is not installed"
    } else {
        return true;
    };
    common::skip(why);
    false
}

const UPSTREAM_PORT: u16 = 5300;

/// unbound in the namespace, answering `example.test.` itself.
fn start_unbound(ns: &mut Netns, dir: &std::path::Path) {
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {UPSTREAM_PORT}\n  do-ip6: no\n  do-daemonize: no\n  \
             username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  \
             use-syslog: no\n  logfile: \"\"\n  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n  \
             module-config: \"iterator\"\n  local-zone: \"example.test.\" static\n  \
             local-data: \"example.test. 60 IN SOA ns.example.test. h.example.test. 1 60 60 60 30\"\n  \
             local-data: \"www.example.test. 86400 IN A 192.0.2.10\"\n\
             remote-control:\n  control-enable: no\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let child = ns
        .command(&["unbound", "-d", "-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ns.children.push(child);
}

const MANIFEST: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec: {type: ExternalName, externalName: www.example.test}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints:
- {addresses: [10.88.0.5, 10.88.1.5], hostname: db-0, conditions: {ready: true}}
ports: [{name: pg, port: 5432}]
";

/// `getent hosts NAME` in the namespace: the addresses it printed, sorted.
fn getent(ns: &Netns, db: &str, name: &str) -> Vec<String> {
    let out = ns.run(&["getent", db, name]);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn getent_and_dig_resolve_services_through_the_search_path() {
    if !privileged() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::with_resolv_conf(
        "pier-dns",
        "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 attempts:1 timeout:2\n",
    );
    start_unbound(&mut ns, tmp.path());
    let upstream = format!("127.0.0.1:{UPSTREAM_PORT}");
    let socket = ns.start_daemon(
        tmp.path(),
        &[
            "--dns-listen",
            "127.0.0.1:53",
            "--dns-upstream",
            &upstream,
            "--no-proxy",
            "--no-runtime",
        ],
    );
    common::apply_yaml(&socket, MANIFEST);
    let deadline = Instant::now() + Duration::from_secs(10);
    while getent(&ns, "hosts", "web") != ["10.96.0.10"] {
        assert!(Instant::now() < deadline, "getent hosts web never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = UPSTREAM_PORT.to_string();
    while common::stdout(&ns.run(&[
        "dig",
        "@127.0.0.1",
        "-p",
        &port,
        "www.example.test",
        "+short",
    ]))
    .trim()
        != "192.0.2.10"
    {
        assert!(Instant::now() < deadline, "unbound never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ExternalName services resolve to addresses: in-zone targets from the zone, outside
    // ones through the upstream, the whole chain in one answer.
    assert_eq!(getent(&ns, "hosts", "alias"), ["10.96.0.10"]);
    assert_eq!(
        getent(&ns, "ahosts", "outside"),
        ["192.0.2.10"],
        "{}",
        common::stdout(&ns.run(&["dig", "@127.0.0.1", "outside.default.svc.cluster.local"]))
    );
    // Every address of a headless endpoint is published.
    assert_eq!(getent(&ns, "ahosts", "db"), ["10.88.0.5", "10.88.1.5"]);
    assert_eq!(getent(&ns, "ahosts", "db-0.db"), ["10.88.0.5", "10.88.1.5"]);
    // The upstream's day-long TTL reaches clients capped (3600 by default).
    let out = ns.run(&["dig", "@127.0.0.1", "www.example.test", "+noall", "+answer"]);
    let ttl: u32 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("dig: {}", common::stdout(&out)));
    assert!(ttl <= 3600, "TTL {ttl}");
    // EDNS version 1 gets BADVERS, as dig reports it.
    let out = ns.run(&[
        "dig",
        "@127.0.0.1",
        "+edns=1",
        "+noednsnegotiation",
        "web.default.svc.cluster.local",
    ]);
    assert!(
        common::stdout(&out).contains("status: BADVERS"),
        "{}",
        common::stdout(&out)
    );
}
