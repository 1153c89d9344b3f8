//! TLS for the proxy's edge listeners, with rustls.

pub mod accept;
pub mod certs;
pub mod config;

#[cfg(test)]
mod test_ca;
