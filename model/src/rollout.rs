//! Argo Rollouts' `argoproj.io/v1alpha1` `Rollout` with the canary strategy: the fields pier
//! acts on, under Argo's names, so Argo's manifests apply unchanged; its status as Argo writes
//! it, so Argo's tools read it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::deployment::PodTemplateSpec;
use super::meta::{IntOrString, LabelSelector, ObjectMeta};

pub use super::rollout_status::{
    AnalysisRunStatusRef, CanaryStatus, PauseCondition, RolloutCondition, RolloutStatus,
    TrafficWeights, WeightDestination,
};

/// The traffic-router plugin pier plays: Argo's Gateway API plugin.
pub const GATEWAY_API_PLUGIN: &str = "argoproj-labs/gatewayAPI";
/// Label with the hash of the template a rollout's pod was made from (Argo's name).
pub const ROLLOUT_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// Annotation Argo puts on a Service whose selector a rollout pins.
pub const MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";

/// A workload released step by step behind a weighted route (`argoproj.io/v1alpha1/Rollout`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `Rollout`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: RolloutSpec,
    /// Where the release stands, as the rollout controller last wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RolloutStatus>,
}

/// `Rollout.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Pods wanted; Argo's default is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// Which pods belong to the rollout.
    #[serde(default)]
    pub selector: LabelSelector,
    /// The pod template (or `workloadRef`).
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// A Deployment whose template the rollout runs instead of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// Old revisions kept; Argo's default is 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    /// Holds the rollout at its current step while true (`pier rollout pause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Pods created before this time (RFC 3339) are replaced, one at a time
    /// (`pier rollout restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    /// How a new template is released.
    #[serde(default)]
    pub strategy: RolloutStrategy,
}

/// `spec.workloadRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Deployment`.
    #[serde(default)]
    pub kind: String,
    /// The Deployment's name, in the rollout's namespace.
    #[serde(default)]
    pub name: String,
    /// What happens to the Deployment: `never` (default), `onsuccess`, `progressively`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<String>,
}

/// `spec.strategy`: pier runs `canary`; `blueGreen` is refused with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// The canary strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// The blue-green strategy, kept only to name it in the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<serde_json::Value>,
}

/// `spec.strategy.canary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Service whose selector pier pins to the canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service whose selector pier pins to the stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// The steps a new template goes through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Analysis run in the background from a step on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// The route whose weights pier moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Extra canary pods allowed above the replica count (number or percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods allowed to be unavailable (number or percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds the canary pods are kept after an abort; Argo's default is 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i64>,
    /// Seconds the old stable pods are kept after a promotion; Argo's default is 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i64>,
    /// Whether the stable pods shrink as the canary's weight grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
}

/// One step of `spec.strategy.canary.steps`: exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic for the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i64>,
    /// Wait for a duration, or until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Run an analysis and go on only if it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Send requests with matching headers to the canary (or, without `match`, stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    /// Size the canary apart from its weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
}

/// `steps[].pause`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    /// Seconds (a number or `30s`, `5m`, `1h`); none pauses until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntOrString>,
}

impl RolloutPause {
    /// The pause's length, `None` for a pause until promoted; `Err` names a malformed one.
    pub fn duration(&self) -> Result<Option<Duration>, String> {
        let Some(d) = &self.duration else {
            return Ok(None);
        };
        let seconds = match d {
            IntOrString::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative"))?,
            IntOrString::String(s) => {
                let (digits, unit) =
                    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
                let n: u64 = digits
                    .parse()
                    .map_err(|_| format!("{s:?} is not a duration such as 30, 30s, 5m or 1h"))?;
                let scale = match unit {
                    "" | "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    _ => return Err(format!("{s:?} is not a duration such as 30, 30s, 5m or 1h")),
                };
                n * scale
            }
        };
        Ok(Some(Duration::from_secs(seconds)))
    }
}

/// `steps[].setCanaryScale`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// Exactly this many canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// Canary pods for this percent of `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Back to sizing the canary by its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// `steps[].setHeaderRoute`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// The managed route's name (from `trafficRouting.managedRoutes`).
    #[serde(default)]
    pub name: String,
    /// Header conditions, all of which must hold; none removes the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HeaderRoutingMatch>,
}

/// One header condition of a header route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    /// Header name.
    #[serde(default)]
    pub header_name: String,
    /// How its value must look.
    #[serde(default)]
    pub header_value: StringMatch,
}

/// A string condition: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// Equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Matching this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// An analysis a step or the background runs: templates and their arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// The AnalysisTemplates (or ClusterAnalysisTemplates) to run together.
    #[serde(default)]
    pub templates: Vec<AnalysisTemplateRef>,
    /// Values for the templates' arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArgument>,
    /// Step index from which a background analysis runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i64>,
}

/// A reference to an analysis template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Template name.
    #[serde(default)]
    pub template_name: String,
    /// A ClusterAnalysisTemplate rather than a namespaced AnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

/// An analysis argument: a value, or where to read one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArgument {
    /// Argument name.
    #[serde(default)]
    pub name: String,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where its value comes from (`podTemplateHashValue`, `fieldRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
}

/// `spec.strategy.canary.trafficRouting`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Traffic-router plugins by name; pier acts as `argoproj-labs/gatewayAPI`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// Routes that `setHeaderRoute` steps may add, in precedence order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_routes: Vec<ManagedRoute>,
}

/// `trafficRouting.managedRoutes[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedRoute {
    /// Route name.
    pub name: String,
}

/// The Gateway API plugin's configuration, as `argoproj-labs/gatewayAPI` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiConfig {
    /// One HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    /// Several HTTPRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<NamedRoute>,
    /// One TCPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_route: Option<String>,
    /// Several TCPRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_routes: Vec<NamedRoute>,
    /// One UDPRoute (pier's addition: the same split per flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_route: Option<String>,
    /// The routes' namespace; the rollout's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether header routes go on the HTTPRoutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_header_routes: Option<bool>,
}

/// A route named in the plugin's list form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedRoute {
    /// Route name.
    pub name: String,
    /// Whether header routes go on this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_header_routes: Option<bool>,
}

impl Rollout {
    /// The canary strategy (an empty one when none is written).
    pub fn canary(&self) -> CanaryStrategy {
        self.spec.strategy.canary.clone().unwrap_or_default()
    }

    /// The Gateway API plugin's configuration, when the rollout names routes.
    pub fn gateway_api(&self) -> Result<Option<GatewayApiConfig>, String> {
        let canary = self.canary();
        let Some(config) = canary
            .traffic_routing
            .as_ref()
            .and_then(|t| t.plugins.get(GATEWAY_API_PLUGIN))
        else {
            return Ok(None);
        };
        serde_json::from_value(config.clone())
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_durations_read_as_argo_writes_them() {
        let d = |v: IntOrString| RolloutPause { duration: Some(v) }.duration();
        assert_eq!(d(IntOrString::Int(10)), Ok(Some(Duration::from_secs(10))));
        assert_eq!(
            d(IntOrString::String("30".into())),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            d(IntOrString::String("30s".into())),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            d(IntOrString::String("5m".into())),
            Ok(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            d(IntOrString::String("1h".into())),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert!(d(IntOrString::String("1d".into())).is_err());
        assert!(d(IntOrString::String("s".into())).is_err());
        assert!(d(IntOrString::Int(-1)).is_err());
        assert_eq!(RolloutPause::default().duration(), Ok(None));
    }
}
