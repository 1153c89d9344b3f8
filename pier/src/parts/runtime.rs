//! The container engine part: the engine, and the node agent whose sync loop runs this
//! node's pods.

use std::sync::Arc;

use super::Parts;
use crate::config::{DnsConfig, RuntimeConfig};

/// Opens the container engine, re-adopts the pods it runs and starts the Deployment controller;
/// `None` (with a log line saying why) when it cannot run here.
pub(crate) async fn start(
    parts: &mut Parts,
    config: &RuntimeConfig,
    dns: Option<&DnsConfig>,
    node_ip: Option<std::net::IpAddr>,
) -> Option<Arc<pier_runtime::Node>> {
    if pier_controlplane::api::current_uid() != 0 {
        tracing::info!("container engine off: it needs root (pier run, Deployments)");
        return None;
    }
    let shim_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "container engine off: cannot find the pier binary");
            return None;
        }
    };
    // Containers reach the cluster DNS when it listens on an address they can route to.
    let resolv_conf = dns.and_then(|d| {
        d.listen
            .iter()
            .find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified())
            .map(|a| {
                format!(
                    "nameserver {}\nsearch default.svc.{dom} svc.{dom} {dom}\noptions ndots:5\n",
                    a.ip(),
                    dom = d.cluster_domain
                )
            })
    });
    let engine = match pier_runtime::Engine::open(
        pier_runtime::EngineConfig {
            root: config.root.clone(),
            shim_exe,
            resolv_conf,
        },
        pier_runtime::Network::new(config.network.clone()),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "container engine off");
            return None;
        }
    };
    if let Err(e) = pier_runtime::metrics::register(&parts.registry, Arc::downgrade(&engine)) {
        tracing::warn!(error = %e, "runtime metrics not registered");
    }
    let node = pier_runtime::Node::new(
        engine,
        Arc::clone(&parts.store),
        pier_runtime::NodeConfig {
            name: config.node_name.clone(),
            run_unbound: config.run_unbound,
            host_ip: node_ip,
            registries: pier_runtime::image::pull::Registries {
                insecure: config.insecure_registries.clone(),
                allowed: config.allowed_registries.clone(),
            },
            ..Default::default()
        },
    );
    if let Err(e) = node.start().await {
        tracing::warn!(error = %e, "re-adopting containers failed");
    }
    {
        // Restarted with backoff like the control loops: its watch may be compacted away.
        let (node, store) = (Arc::clone(&node), Arc::clone(&parts.store));
        parts.tasks.push(crate::daemon::supervise(
            "pod-sync",
            parts.shutdown.clone(),
            move || {
                let sync = pier_runtime::node::pod_sync::PodSync::new(Arc::clone(&node));
                pier_controlplane::controllers::runner::run(Arc::clone(&store), sync)
            },
        ));
    }
    tracing::info!(root = %config.root.display(), pod_cidr = %config.network.subnet, "container engine ready");
    Some(node)
}
