//! The rustls configuration of an edge listener: TLS 1.3 and 1.2, ALPN `h2` then
//! `http/1.1`, resumption by tickets (keys rotated every 6 hours, honoured for 12) and, for
//! TLS 1.2 clients without tickets, by session IDs in a bounded cache.

use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;

use super::certs::Certificates;

/// How many TLS 1.2 sessions the ID cache keeps (about 100 bytes each).
const SESSION_CACHE: usize = 4096;

/// A listener's configuration serving the certificates `certs` resolves.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(config))
}
