//! pier's control plane: embedded store, controllers, snapshot publisher and control API, over
//! the object model in `pier-model`.

pub mod analysis;
pub mod api;
pub mod autoscaling;
pub mod cluster;
pub mod controllers;
pub mod error;
pub mod events;
pub mod follower;
mod kube;
pub mod metrics;
pub mod snapshot;
pub mod store;

pub use error::{Error, Result};
