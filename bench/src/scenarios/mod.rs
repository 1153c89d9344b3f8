//! Benchmark scenarios.

pub mod controlplane;
pub mod dns;
pub mod proxy;
pub mod socketlb;
