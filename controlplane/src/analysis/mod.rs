//! Argo Rollouts' analysis, run by pier: `resolve.rs` makes a run's spec from templates and
//! arguments, `run_controller.rs` measures each metric when due through `providers/`
//! (Prometheus, web, and pier's own in-process metrics), and `assess.rs` turns measurements
//! into verdicts as Argo does; `metrics.rs` keeps `pier_analysis_run_info` on every node. The
//! Rollout controller creates the runs and acts on them.

pub mod assess;
mod metrics;
mod providers;
pub mod resolve;
mod run_controller;

pub use metrics::AnalysisMetrics;
pub use providers::Providers;
pub use run_controller::AnalysisController;
