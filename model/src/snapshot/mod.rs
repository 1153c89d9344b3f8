//! Builds the node snapshot's views from objects, incrementally from object events.

mod builder;
mod edge;
mod gateway;
mod upstream_tls;
mod views;

pub use builder::SnapshotBuilder;
pub use edge::ingress_view;

#[cfg(test)]
mod tests;
