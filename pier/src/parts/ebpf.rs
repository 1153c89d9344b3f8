//! The daemon's eBPF socket-LB part: attach it (or, with it off, detach what an earlier daemon
//! left), feed it snapshots, and keep its NodePort addresses current.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::Parts;

/// With the socket-LB off, detaches one an earlier daemon left pinned under `pin_dir`: its
/// hooks would translate ClusterIPs this daemon may give to other services. A daemon that
/// cannot remove it does not start.
pub(crate) fn detach_leftover(pin_dir: &std::path::Path) -> Result<()> {
    if pier_ebpf::pinned_owner(pin_dir).is_none() {
        return Ok(());
    }
    tracing::warn!(
        pins = %pin_dir.display(),
        "--no-ebpf: detaching the socket-LB an earlier daemon left attached, so it cannot \
         translate this daemon's ClusterIPs"
    );
    pier_ebpf::SocketLb::detach(pin_dir).with_context(|| {
        format!(
            "a socket-LB is pinned under {} and could not be detached; run `pier ebpf detach \
             --ebpf-pin-dir {}` as root, or start without --no-ebpf",
            pin_dir.display(),
            pin_dir.display()
        )
    })
}

/// Loads and attaches the socket-LB and starts its snapshot consumer; on any failure the
/// userspace proxy keeps serving every port, and the log says why.
pub(crate) fn start(
    parts: &mut Parts,
    config: &crate::config::EbpfConfig,
    proxy: Option<&pier_proxy::ProxyConfig>,
    node_name: &str,
) {
    let owner = parts.store.id();
    let loaded = (|| -> Result<(pier_ebpf::SocketLb, Vec<std::net::IpAddr>)> {
        if pier_controlplane::api::current_uid() != 0 {
            anyhow::bail!("not running as root");
        }
        pier_ebpf::ensure_pin_fs(&config.pin_dir)?;
        let mut lb = pier_ebpf::SocketLb::load(&config.pin_dir, owner.as_bytes())?;
        lb.attach(&config.cgroup)?;
        let node_ips = pier_ebpf::node_ips();
        pier_ebpf::set_node_ips(&config.pin_dir, &node_ips)?;
        Ok((lb, node_ips))
    })();
    let (lb, node_ips) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::warn!(
                reason = %format!("{e:#}"),
                "eBPF socket-LB unavailable; the userspace proxy serves every port"
            );
            if pier_ebpf::pinned_owner(&config.pin_dir).is_some() {
                tracing::error!(
                    pins = %config.pin_dir.display(),
                    "a socket-LB an earlier daemon pinned is still attached and may translate \
                     this daemon's ClusterIPs to other backends: run `pier ebpf detach --ebpf-pin-dir {}` as root",
                    config.pin_dir.display()
                );
            }
            return;
        }
    };
    // In loopback mode the proxy is not on the VIP, so L7 VIPs are steered to its listener.
    let steer: Option<pier_ebpf::sync::Steer> = proxy
        .filter(|p| matches!(p.vip_mode, pier_proxy::VipMode::Loopback { .. }))
        .map(|p| {
            let p = p.clone();
            Arc::new(move |ip, port| p.vip_listen_addr(ip, port)) as pier_ebpf::sync::Steer
        });
    if let Err(e) =
        pier_ebpf::metrics::EbpfMetrics::register(&parts.registry, &config.pin_dir, lb.inventory())
    {
        tracing::warn!(error = %e, "eBPF metrics not registered");
    }
    let local = pier_ebpf::sync::Local {
        steer,
        node: Some(node_name.to_string()),
    };
    parts.follow(pier_ebpf::sync::EbpfConsumer::new(lb, local));
    parts.tasks.push(tokio::spawn(follow_node_ips(
        config.pin_dir.clone(),
        node_ips,
        parts.shutdown.clone(),
    )));
    tracing::info!(
        cgroup = %config.cgroup.display(),
        pins = %config.pin_dir.display(),
        "eBPF socket-LB attached (stays attached across restarts; `pier ebpf detach` removes it)"
    );
}

/// Keeps the socket-LB's node addresses (where NodePorts answer) current as interfaces and
/// addresses come and go.
/// `written` is what the map holds; it is only opened again when the addresses change.
async fn follow_node_ips(
    pin_dir: std::path::PathBuf,
    mut written: Vec<std::net::IpAddr>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let ips = pier_ebpf::node_ips();
        if ips == written {
            continue;
        }
        match pier_ebpf::set_node_ips(&pin_dir, &ips) {
            Ok(()) => {
                tracing::info!(addresses = ?ips, "NodePort addresses changed");
                written = ips;
            }
            Err(e) => tracing::warn!(error = %e, "updating NodePort addresses"),
        }
    }
}
