//! pier's control plane: object model, embedded store, controllers, node snapshot and control API.

pub mod api;
pub mod controllers;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod snapshot;
pub mod store;

pub use error::{Error, Result};
