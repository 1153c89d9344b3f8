//! The writes a Rollout's plan makes: its Services' pins and its routes' weights (those it
//! names, or the one pier manages), and its pods. Built from the controller's cache, and the
//! Services read for the pass.

use std::collections::BTreeMap;

use super::super::deployment::pod_of_template;
use super::super::owned_pods::terminating;
use super::super::rollout::Plan;
use super::super::rollout_managed_route::{managed_route, managed_route_name, wants_managed_route};
use super::super::rollout_traffic::{pinned, route_names, weighted_http, weighted_l4};
use super::{Key, RolloutController, ROLLOUT_LABEL};
use crate::store::Op;
use pier_model::deployment::PodTemplateSpec;
use pier_model::rollout::ROLLOUT_HASH_LABEL;
use pier_model::{Kind, Object, Pod, Rollout, Service};

impl RolloutController {
    /// The Services and routes `plan` changes, in one transaction's worth of writes.
    pub(super) fn traffic_ops(
        &self,
        ro: &Rollout,
        plan: &Plan,
        services: &BTreeMap<String, Service>,
    ) -> Vec<Op> {
        let canary = ro.canary();
        let mut ops = Vec::new();
        let (Some(stable_svc), Some(canary_svc)) = (&canary.stable_service, &canary.canary_service)
        else {
            return ops;
        };
        for (svc, hash) in [(stable_svc, &plan.stable), (canary_svc, &plan.canary)] {
            if let Some(s) = services.get(svc) {
                if let Some(s) = pinned(s, &ro.metadata.name, hash) {
                    ops.push(Op::Put(Object::Service(s)));
                }
            }
        }
        let names = route_names(ro);
        let managed: Vec<String> = if names.header_routes {
            canary
                .traffic_routing
                .iter()
                .flat_map(|t| &t.managed_routes)
                .map(|m| m.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        for id in &names.http {
            if let Some(r) = self.http_routes.get(id) {
                if let Some(r) = weighted_http(r, stable_svc, canary_svc, plan, &managed) {
                    ops.push(Op::Put(Object::HttpRoute(r)));
                }
            }
        }
        let stable = services.get(stable_svc);
        if let Some(op) = self.managed_route_op(ro, stable, canary_svc, plan.weight) {
            ops.push(op);
        }
        for (kind, ids) in [(Kind::TcpRoute, &names.tcp), (Kind::UdpRoute, &names.udp)] {
            for (rns, name) in ids {
                if let Some(r) = self.l4_routes.get(&(kind, rns.clone(), name.clone())) {
                    if let Some(r) = weighted_l4(r, stable_svc, canary_svc, plan.weight) {
                        let object = if kind == Kind::TcpRoute {
                            Object::TcpRoute(r)
                        } else {
                            Object::UdpRoute(r)
                        };
                        ops.push(Op::Put(object));
                    }
                }
            }
        }
        ops
    }

    /// The write that keeps the route pier manages for `ro` (if it has one) at `weight`.
    fn managed_route_op(
        &self,
        ro: &Rollout,
        stable: Option<&Service>,
        canary: &str,
        weight: i64,
    ) -> Option<Op> {
        if !wants_managed_route(ro) {
            return None;
        }
        let ns = ro.metadata.namespace().to_string();
        let mut want = managed_route(ro, stable?, canary, weight)?;
        let name = managed_route_name(&ro.metadata.name);
        let have: Option<Object> = match &want {
            Object::HttpRoute(_) => self
                .http_routes
                .get(&(ns.clone(), name.clone()))
                .cloned()
                .map(Object::HttpRoute),
            other => self
                .l4_routes
                .get(&(other.kind(), ns.clone(), name.clone()))
                .cloned()
                .map(|r| match other.kind() {
                    Kind::UdpRoute => Object::UdpRoute(r),
                    _ => Object::TcpRoute(r),
                }),
        };
        if let Some(have) = have {
            if have.spec_value() == want.spec_value() {
                return None;
            }
            *want.meta_mut() = have.meta().clone();
        }
        Some(Op::Put(want))
    }

    /// Pod writes: pods of each wanted hash up to their count, the rest marked for graceful
    /// deletion (unready ones first).
    pub(super) fn pod_ops(
        &self,
        key: &Key,
        ro: &Rollout,
        template: &PodTemplateSpec,
        plan: &Plan,
    ) -> Vec<Op> {
        let mut ops = Vec::new();
        let mut by_hash: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for p in self.live(key) {
            let hash = p
                .metadata
                .labels
                .get(ROLLOUT_HASH_LABEL)
                .cloned()
                .unwrap_or_default();
            let failed = p.status.phase.as_deref() == Some("Failed");
            if failed {
                ops.push(terminating(p));
            } else {
                by_hash.entry(hash).or_default().push(p);
            }
        }
        let current = plan.status.current_pod_hash.clone().unwrap_or_default();
        for (hash, want) in &plan.desired {
            let have = by_hash.get(hash).map_or(0, Vec::len) as i64;
            // Only the current template can be made; an older one is kept, not rebuilt.
            if *hash == current {
                for _ in have..*want {
                    let pod = pod_of_template(
                        &ro.metadata.name,
                        &key.0,
                        template,
                        [
                            (ROLLOUT_LABEL, &ro.metadata.name),
                            (ROLLOUT_HASH_LABEL, hash),
                        ],
                        hash,
                    );
                    tracing::info!(rollout = %key.1, pod = %pod.metadata.name, "creating pod");
                    ops.push(Op::Put(Object::Pod(pod)));
                }
            }
        }
        for (hash, mut pods) in by_hash {
            let want = plan.desired.get(&hash).copied().unwrap_or(0).max(0) as usize;
            pods.sort_by_key(|p| p.is_ready());
            let extra = pods.len().saturating_sub(want);
            for p in pods.into_iter().take(extra) {
                tracing::info!(rollout = %key.1, pod = %p.metadata.name, "terminating pod");
                ops.push(terminating(p));
            }
        }
        ops
    }
}
