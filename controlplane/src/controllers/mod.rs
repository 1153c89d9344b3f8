//! Controllers: loops over store events that write derived objects back to the store, all run
//! by `runner.rs`. `endpoints_controller.rs` turns Services and Pods into EndpointSlices
//! (planned by `endpoints.rs`); `deployment_controller.rs` keeps a Deployment's Pods
//! (planned by `deployment.rs`), its status (`deployment_status.rs`) and its revisions as
//! ReplicaSets (`workload_revisions.rs`); `rollout_controller.rs` runs Argo Rollouts' canaries
//! (planned by `rollout.rs` with `rollout_steps.rs` and `rollout_analysis.rs`, moving traffic as
//! `rollout_traffic.rs` and `rollout_managed_route.rs` edit it, making the AnalysisRuns
//! `rollout_runs.rs` lists; its writes in `rollout_controller/ops.rs`), and
//! `rollout_metrics.rs` keeps their `pier_rollout_*` gauges on every node;
//! `job_controller.rs` runs Jobs' pods to completion (planned by `job.rs`) and
//! `cron_job_controller.rs` makes CronJobs' Jobs on schedule (planned by `cron_job.rs`);
//! `daemon_set_controller.rs` keeps a DaemonSet's pod on every node (planned by
//! `daemon_set.rs`);
//! `scheduler_controller.rs` binds pods to nodes (placed by `scheduling.rs`);
//! `foreground.rs` finishes foreground cascading deletes once an owner's dependents are gone;
//! `ingress_status.rs` writes the nodes' addresses into served Ingresses' status;
//! `gateway_status_controller.rs` writes Gateway API statuses (computed by `gateway_status.rs`).

pub mod cron_job;
mod cron_job_controller;
#[cfg(test)]
mod cron_job_tests;
pub mod daemon_set;
mod daemon_set_controller;
pub mod deployment;
mod deployment_controller;
mod deployment_status;
pub mod endpoints;
mod endpoints_controller;
mod foreground;
mod gateway_status;
mod gateway_status_controller;
#[cfg(test)]
mod gateway_status_tests;
mod ingress_status;
pub mod job;
mod job_controller;
#[cfg(test)]
mod job_tests;
mod owned_pods;
pub mod rollout;
pub mod rollout_analysis;
mod rollout_controller;
mod rollout_managed_route;
mod rollout_metrics;
mod rollout_runs;
mod rollout_steps;
#[cfg(test)]
mod rollout_tests;
pub mod rollout_traffic;
pub mod runner;
mod scheduler_controller;
pub mod scheduling;
mod workload_revisions;

pub use cron_job_controller::CronJobController;
pub use daemon_set_controller::DaemonSetController;
pub use deployment_controller::DeploymentController;
pub use endpoints_controller::EndpointsController;
pub use foreground::ForegroundDeletion;
pub use gateway_status_controller::GatewayStatusController;
pub use ingress_status::IngressStatusController;
pub use job_controller::JobController;
pub use rollout_controller::{RolloutController, ROLLOUT_LABEL};
pub use rollout_metrics::RolloutMetrics;
pub use scheduler_controller::Scheduler;
