//! Argo Rollouts' analysis, run by pier: `resolve.rs` makes a run's spec from templates and
//! arguments, `run_controller.rs` measures each metric when due through `providers/`
//! (Prometheus, web, and pier's own in-process metrics), and `assess.rs` turns measurements
//! into verdicts as Argo does. The Rollout controller creates the runs and acts on them.

pub mod assess;
mod providers;
pub mod resolve;
mod run_controller;

pub use providers::Providers;
pub use run_controller::AnalysisController;
