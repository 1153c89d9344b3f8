//! Benchmark scenarios.

pub mod controlplane;
pub mod dns;
pub mod proxy;
pub mod runtime;
pub mod socketlb;
