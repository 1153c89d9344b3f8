//! TLS for the proxy's listeners, with rustls.

pub mod certs;
