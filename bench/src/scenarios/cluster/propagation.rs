//! One endpoint change at a time, written through node 1, timed until every node's
//! socket-LB, proxy and DNS serve it: half the changes to a ClusterIP Service (the socket-LB
//! and the proxy program a new backend), half to a headless one (DNS answers a new address,
//! asked with real queries).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use pier_testkit::cluster::ClusterNode;
use serde_json::{json, Value};

use super::probe::{self, Dns};
use super::{admin_addresses, row};
use crate::harness::{self, Better, Row};

/// The two Services the changes alternate between: `prop` (ClusterIP) and `prop-h` (headless).
fn services() -> Vec<Value> {
    ["prop", "prop-h"]
        .iter()
        .map(|name| {
            let mut spec = json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
            if name.ends_with("-h") {
                spec["clusterIP"] = json!("None");
            }
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": "default"}, "spec": spec})
        })
        .collect()
}

/// Change `k`'s slice: its Service's one endpoint moves to an address no change used before.
fn slice(k: usize) -> (Value, Ipv4Addr) {
    let service = if k.is_multiple_of(2) {
        "prop"
    } else {
        "prop-h"
    };
    let address = Ipv4Addr::new(10, 201, (k / 250) as u8, (k % 250) as u8 + 1);
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    });
    (slice, address)
}

/// Times `changes` changes and returns the table's rows.
pub(crate) async fn run(
    nodes: &[ClusterNode],
    changes: usize,
    deadline: Instant,
) -> Result<Vec<Row>> {
    let client = Client::new(nodes[0].socket());
    client
        .apply(services())
        .await
        .context("applying the Services")?;
    let admins = admin_addresses(nodes)?;
    let mut dns = nodes
        .iter()
        .map(|n| Dns::new(SocketAddr::new(n.ip.parse()?, 53)))
        .collect::<Result<Vec<_>>>()?;
    let mut written = Vec::with_capacity(changes);
    let mut everywhere = Vec::with_capacity(changes);
    let mut answered = Vec::with_capacity(changes / 2);
    for k in 0..changes {
        let (object, address) = slice(k);
        let started = Instant::now();
        let result = client
            .apply(vec![object])
            .await
            .context("writing a change")?;
        written.push(ms(started.elapsed()));
        let revision = result["revision"]
            .as_u64()
            .context("the apply's answer has no revision")?;
        let mut pending: Vec<&str> = admins.iter().map(String::as_str).collect();
        let mut asking: Vec<usize> = if k % 2 == 1 {
            (0..nodes.len()).collect()
        } else {
            Vec::new()
        };
        let mut dns_done = None;
        while !pending.is_empty() || !asking.is_empty() {
            if Instant::now() > deadline {
                bail!("change {k} (revision {revision}) was not served everywhere in time");
            }
            let mut still = Vec::new();
            for admin in pending {
                if !probe::all_applied(admin, revision)? {
                    still.push(admin);
                }
            }
            pending = still;
            let mut still = Vec::new();
            for i in asking {
                if !dns[i]
                    .a("prop-h.default.svc.cluster.local")?
                    .contains(&address)
                {
                    still.push(i);
                }
            }
            asking = still;
            if asking.is_empty() && dns_done.is_none() && k % 2 == 1 {
                dns_done = Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        everywhere.push(ms(started.elapsed()));
        if let Some(d) = dns_done {
            answered.push(ms(d));
        }
    }
    let n = nodes.len();
    Ok(vec![
        row(
            "change: write acknowledged by etcd, p50".into(),
            "ms",
            harness::quantile(&mut written, 0.5),
            Better::Lower,
        ),
        row(
            format!("change -> served by all {n} nodes x (socket-LB, proxy, DNS), p50"),
            "ms",
            harness::quantile(&mut everywhere, 0.5),
            Better::Lower,
        ),
        Row {
            metric: format!("change -> served by all {n} nodes x (socket-LB, proxy, DNS), p99"),
            unit: "ms",
            pier: harness::quantile(&mut everywhere, 0.99),
            reference: Some(50.0),
            better: Better::Lower,
        },
        row(
            "change -> served everywhere, max".into(),
            "ms",
            harness::quantile(&mut everywhere, 1.0),
            Better::Lower,
        ),
        row(
            "headless change -> every node's DNS answers it (dig-like query), p50".to_string(),
            "ms",
            harness::quantile(&mut answered, 0.5),
            Better::Lower,
        ),
        row(
            "headless change -> every node's DNS answers it, p99".to_string(),
            "ms",
            harness::quantile(&mut answered, 0.99),
            Better::Lower,
        ),
    ])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
