//! TLS with rustls: the edge listeners' (`accept`, `certs`, `config`) and toward upstreams
//! (`upstream`).

pub mod accept;
pub mod certs;
pub mod config;
pub mod upstream;

#[cfg(test)]
mod test_ca;
