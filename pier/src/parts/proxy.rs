//! The userspace proxy part.

use anyhow::{Context, Result};

use super::Parts;

/// Starts the userspace proxy and its snapshot consumer, and the Ingress listeners beside it.
pub(crate) fn start(
    parts: &mut Parts,
    config: &pier_proxy::ProxyConfig,
    ingress: Option<&pier_proxy::EdgeConfig>,
) -> Result<()> {
    let proxy = pier_proxy::Proxy::new(config.clone(), &parts.registry)
        .context("starting the proxy (use --proxy-vips loopback or --no-proxy)")?;
    if let Some(ingress) = ingress {
        let edge = proxy
            .edge(ingress.clone(), &parts.registry)
            .context("starting the Ingress listeners")?;
        parts.follow(pier_proxy::EdgeConsumer(edge));
        tracing::info!(http = ?ingress.http, https = ?ingress.https, "Ingresses served once one exists");
    }
    parts.follow(pier_proxy::ProxyConsumer(proxy));
    tracing::info!(vips = ?config.vip_mode, node_address = %config.node_address, "proxy serving");
    Ok(())
}
