//! Controllers: loops over store events that write derived objects back to the store, all run
//! by `runner.rs`. `endpoints_controller.rs` turns Services and Pods into EndpointSlices
//! (planned by `endpoints.rs`); `deployment_controller.rs` keeps a Deployment's Pods
//! (planned by `deployment.rs`).

pub mod deployment;
mod deployment_controller;
pub mod endpoints;
mod endpoints_controller;
pub mod runner;

pub use deployment_controller::DeploymentController;
pub use endpoints_controller::EndpointsController;
