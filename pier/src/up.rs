//! `pier up`: the daemon in the foreground, with manifests applied and a summary of what it serves.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use hyper::Method;
use pier_controlplane::api::Client;
use pier_model::{Kind, Object};
use pier_snapshot::{BackendView, NodeSnapshot, PortMode, Protocol, ServiceView};

use crate::cli::{self, output::table};
use crate::config::DaemonConfig;
use crate::daemon::{self, Daemon};

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn endpoints(svc: &ServiceView) -> String {
    let Some(port) = svc.ports.first() else {
        return svc
            .external_name
            .clone()
            .map(|n| format!("-> {n}"))
            .unwrap_or_else(|| "<none>".into());
    };
    let eps: Vec<String> = svc
        .endpoints
        .iter()
        .map(|e| {
            let addr = match e.port_for(port) {
                Some(p) => format!("{}:{p}", e.address),
                None => e.address.to_string(),
            };
            if e.ready {
                addr
            } else {
                format!("{addr} (not ready)")
            }
        })
        .collect();
    if eps.is_empty() {
        "<none>".into()
    } else {
        eps.join(", ")
    }
}

/// `web-v1 90% / web-v2 10%`: each backend's share of the total weight.
fn split(backends: &[BackendView]) -> String {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    backends
        .iter()
        .map(|b| {
            let pct = (u64::from(b.weight) * 100).checked_div(total).unwrap_or(0);
            format!("{} {pct}%", b.service.name)
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn routes(svc: &ServiceView) -> String {
    let http = svc.http_routes.iter().flat_map(|r| &r.rules).map(|rule| {
        let cond = if rule.matches.is_empty() {
            ""
        } else {
            "[match] "
        };
        format!("{cond}{}", split(&rule.backends))
    });
    let l4 = svc.l4_routes.iter().map(|r| split(&r.backends));
    let out: Vec<String> = http.chain(l4).collect();
    if out.is_empty() {
        "-".into()
    } else {
        out.join("; ")
    }
}

/// The table `pier up` prints: every service with VIP, ports, mode, routes and endpoints.
pub(crate) fn summary(snapshot: &NodeSnapshot) -> String {
    let rows: Vec<Vec<String>> = snapshot
        .services
        .values()
        .map(|svc| {
            let ip = match (svc.cluster_ips.as_slice(), svc.headless) {
                ([], true) => "None".into(),
                ([], false) => "<none>".into(),
                (ips, _) => ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let ports: Vec<String> = svc
                .ports
                .iter()
                .map(|p| match p.node_port {
                    Some(np) => format!("{}:{np}/{}", p.port, proto(p.protocol)),
                    None => format!("{}/{}", p.port, proto(p.protocol)),
                })
                .collect();
            let mode = if svc.ports.iter().any(|p| p.mode == PortMode::L7) {
                "L7"
            } else {
                "L4"
            };
            vec![
                svc.key.to_string(),
                svc.service_type.clone(),
                ip,
                if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                },
                mode.into(),
                routes(svc),
                endpoints(svc),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "TYPE",
            "CLUSTER-IP",
            "PORT(S)",
            "MODE",
            "ROUTES",
            "ENDPOINTS",
        ],
        &rows,
    )
}

/// Waits until the store has been quiet for a moment and the snapshot reflects it.
async fn settle(daemon: &Daemon) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    while tokio::time::Instant::now() < deadline {
        let rev = daemon.store.revision();
        if rev == last && daemon.snapshot.load().revision >= rev {
            return;
        }
        last = rev;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `pier up`.
/// The repository of the images `pier up` builds from its own binary when manifests use them.
const ECHO_REPOSITORY: &str = "pier/echo";

/// `pier/echo:<tag>` images the manifests run, so they work offline without a registry.
fn echo_images(files: &[cli::manifests::ManifestFile]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for o in files.iter().flat_map(|f| &f.objects) {
        let spec = match &o.parsed.object {
            Object::Deployment(d) => &d.spec.template.spec,
            Object::Pod(p) => &p.spec,
            _ => continue,
        };
        for c in &spec.containers {
            if pier_runtime::image::Reference::parse(&c.image)
                .is_ok_and(|r| r.registry.is_none() && r.repository == ECHO_REPOSITORY)
            {
                out.insert(c.image.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// Builds the missing `pier/echo` images from this binary (the engine must be running).
async fn ensure_echo_images(client: &Client, wanted: &[String]) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let Ok(list) = client.call(Method::GET, "/v1/images", None).await else {
        tracing::warn!(
            "container engine off (not root?): the quickstart's Deployments will not run"
        );
        return Ok(());
    };
    let have: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["reference"].as_str())
        .collect();
    let binary = std::env::current_exe()?;
    // Every tag is the same binary: built once, then named again.
    let mut built: Option<String> = None;
    for image in wanted {
        let full = pier_runtime::image::Reference::parse(image)?.to_string();
        if have.contains(&full.as_str()) {
            continue;
        }
        if let Some(source) = &built {
            let body = serde_json::json!({"source": source, "target": full});
            client
                .call(Method::POST, "/v1/images/tag", Some(&body))
                .await?;
            continue;
        }
        println!("building image {full} from {}", binary.display());
        let body = serde_json::json!({
            "reference": full,
            "binary": binary,
            "pathInImage": "/usr/local/bin/pier",
            "cmd": ["echo", "--http", "0.0.0.0:8080"],
            "expose": ["8080"],
        });
        client
            .call(Method::POST, "/v1/images/build", Some(&body))
            .await?;
        built = Some(full);
    }
    Ok(())
}

/// Waits (bounded) until every Deployment's pods are ready, so the summary shows endpoints.
async fn wait_for_pods(client: &Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let (Ok(deps), Ok(pods)) = (
            client.list(Kind::Deployment, None, None).await,
            client.list(Kind::Pod, None, None).await,
        ) else {
            return;
        };
        let want: i64 = deps
            .iter()
            .map(|d| d["spec"]["replicas"].as_i64().unwrap_or(1))
            .sum();
        let ready = pods
            .iter()
            .filter(|p| {
                p["metadata"]["labels"].get("pier.dev/deployment").is_some()
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count() as i64;
        if ready >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `pier up`.
pub(crate) async fn run(config: DaemonConfig, files: Vec<PathBuf>) -> Result<()> {
    // Validate before starting anything, so a bad manifest fails fast.
    let manifests = cli::manifests::read(&files, None)?;
    let mut signals = daemon::Signals::install()?;
    let daemon = Daemon::start(&config).await?;
    let client = Client::new(&config.socket);
    if config.runtime.is_some() {
        if let Err(e) = ensure_echo_images(&client, &echo_images(&manifests)).await {
            daemon.stop().await;
            return Err(e);
        }
    }
    if let Err(e) = cli::apply(&client, &files, None).await {
        let node = daemon.node.clone();
        daemon.stop().await;
        if let Some(node) = node {
            node.remove_all().await;
        }
        return Err(e);
    }
    if config.runtime.is_some() {
        wait_for_pods(&client).await;
    }
    settle(&daemon).await;
    let admin = client
        .status()
        .await
        .ok()
        .and_then(|s| s["adminAddress"].as_str().map(str::to_string));
    println!();
    print!("{}", summary(&daemon.snapshot.load()));
    println!();
    println!(
        "pier is up: control socket {}, admin http://{}/ (metrics, snapshot). Press Ctrl-C to stop.",
        config.socket.display(),
        admin.unwrap_or_default()
    );
    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down");
    let node = daemon.node.clone();
    daemon.stop().await;
    // `pier up` is a foreground session: its containers end with it (`pier daemon` keeps them).
    if let Some(node) = node {
        node.remove_all().await;
    }
    // Its pods are gone, so the socket-LB would translate their ClusterIPs to dead addresses
    // (and a later run may reuse them): `pier up` takes it down too.
    if config.ebpf.enabled && config.ebpf.pin_dir.exists() {
        match pier_ebpf::SocketLb::detach(&config.ebpf.pin_dir) {
            Ok(()) => println!(
                "Removed the eBPF socket-LB (pins under {}).",
                config.ebpf.pin_dir.display()
            ),
            Err(e) => println!(
                "The eBPF socket-LB could not be removed ({e}); `pier ebpf detach --ebpf-pin-dir {}` removes it.",
                config.ebpf.pin_dir.display()
            ),
        }
    }
    Ok(())
}
