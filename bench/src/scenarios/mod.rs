//! Benchmark scenarios.

pub mod controlplane;
