//! Benchmark scenarios.

pub mod controlplane;
pub mod dns;
