//! Horizontal pod autoscaling (`autoscaling/v2` `HorizontalPodAutoscaler`): what each pod uses
//! (`measure`), what one metric asks for (`replicas`, `evaluate`), how fast replicas may move
//! (`behavior`), the controller that scales Deployments and Rollouts (`controller`), and the
//! `pier_hpa_*` gauges (`metrics`).

pub mod behavior;
mod controller;
mod evaluate;
mod measure;
mod metrics;
pub mod replicas;

pub use controller::HpaController;
pub use measure::{ContainerUsage, UsageSource};
pub use metrics::HpaMetrics;
