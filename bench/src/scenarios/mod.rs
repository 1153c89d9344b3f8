//! Benchmark scenarios.

pub(crate) mod cluster;
pub(crate) mod controlplane;
pub(crate) mod dns;
pub(crate) mod proxy;
pub(crate) mod rollout;
pub(crate) mod runtime;
pub(crate) mod socketlb;
pub(crate) mod tls;
mod tls_load;
