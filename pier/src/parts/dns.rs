//! The cluster DNS part: bind its listeners, build the zone, and serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Parts;
use crate::config::DnsConfig;

/// Binds the DNS listeners and starts the server and its snapshot consumer.
pub(crate) async fn start(parts: &mut Parts, config: &DnsConfig) -> Result<Vec<SocketAddr>> {
    let sockets = pier_dns::server::bind(&config.listen)
        .await
        .with_context(|| {
            format!(
                "binding DNS listeners {:?} (use --dns-listen or --no-dns)",
                config.listen
            )
        })?;
    let addrs: Vec<SocketAddr> = sockets
        .iter()
        .filter_map(|(u, _)| u.local_addr().ok())
        .collect();
    let zone = pier_dns::zone::Zone::new(pier_dns::zone::ZoneConfig {
        domain: config.cluster_domain.clone(),
        ttl: config.ttl,
        negative_ttl: config.ttl,
        nameserver_addresses: addrs
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect(),
    })
    .map_err(|e| anyhow::anyhow!("cluster domain {:?}: {e}", config.cluster_domain))?;
    let forwarder =
        pier_dns::forward::Forwarder::new(config.upstreams.clone(), &addrs, Duration::from_secs(2));
    if forwarder.upstreams().is_empty() {
        tracing::warn!("no DNS upstream: names outside the cluster domain will get SERVFAIL");
    }
    let dns_metrics = pier_dns::metrics::DnsMetrics::register(&parts.registry)
        .context("registering DNS metrics")?;
    let resolver = Arc::new(pier_dns::Resolver::new(
        zone,
        pier_dns::cache::Cache::new(pier_dns::cache::CacheConfig {
            max_ttl: config.max_ttl,
            ..pier_dns::cache::CacheConfig::default()
        }),
        forwarder,
        config.allow.clone(),
        dns_metrics,
    ));
    parts.follow(pier_dns::DnsConsumer(Arc::clone(&resolver)));
    let limiter = config.rate_limit.map(|qps| {
        Arc::new(pier_dns::ratelimit::RateLimiter::new(
            qps,
            qps.saturating_mul(2),
        ))
    });
    parts.tasks.push(tokio::spawn(pier_dns::server::serve(
        resolver,
        sockets,
        limiter,
        parts.shutdown.clone(),
    )));
    tracing::info!(listen = ?addrs, domain = %config.cluster_domain, "DNS serving");
    Ok(addrs)
}
