//! Builds the node snapshot's views from objects, incrementally from object events.

mod builder;
mod views;

pub use builder::SnapshotBuilder;

#[cfg(test)]
mod tests;
