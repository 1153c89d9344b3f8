//! The userspace proxy part.

use anyhow::{Context, Result};

use super::Parts;

/// Starts the userspace proxy and its snapshot consumer.
pub(crate) fn start(parts: &mut Parts, config: &pier_proxy::ProxyConfig) -> Result<()> {
    let proxy = pier_proxy::Proxy::new(config.clone(), &parts.registry)
        .context("starting the proxy (use --proxy-vips loopback or --no-proxy)")?;
    parts.follow(pier_proxy::ProxyConsumer(proxy));
    tracing::info!(vips = ?config.vip_mode, node_address = %config.node_address, "proxy serving");
    Ok(())
}
