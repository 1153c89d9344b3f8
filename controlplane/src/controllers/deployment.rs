//! Planning a Deployment's next step as Kubernetes does: keep `replicas` pods of the current
//! template, replacing old ones by rolling update (`maxSurge` / `maxUnavailable`) or
//! recreate. Pure functions; `deployment_controller.rs` applies them.

use pier_model::deployment::{Deployment, PodTemplateSpec};
use pier_model::meta::IntOrString;
use pier_model::Pod;

/// Label naming a pod's Deployment.
pub const DEPLOYMENT_LABEL: &str = "pier.dev/deployment";
/// Label with the hash of the template a pod was made from (Kubernetes' name).
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Hash of a pod template (FNV-1a of its JSON, as 10 hex digits): pods with another hash are
/// from an older version. Empty objects are left out first, so a template that went through
/// a Go client (`resources: {}` where none was written, as `kubectl rollout undo` sends it)
/// hashes as it did before.
pub fn template_hash(d: &Deployment) -> String {
    hash_template(&d.spec.template)
}

/// The hash `template_hash` gives a pod template, whoever owns it.
pub fn hash_template(template: &PodTemplateSpec) -> String {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    drop_empty_objects(&mut template);
    let json = serde_json::to_vec(&template).unwrap_or_default();
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")[..10].to_string()
}

/// Removes, depth first, every object member whose value is (or becomes) `{}`.
fn drop_empty_objects(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for member in map.values_mut() {
                drop_empty_objects(member);
            }
            map.retain(|_, m| !m.as_object().is_some_and(serde_json::Map::is_empty));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_empty_objects),
        _ => {}
    }
}

/// Resolves `25%` or `1` against `replicas`, rounding up or down.
pub(super) fn scaled(v: Option<&IntOrString>, replicas: i64, round_up: bool) -> i64 {
    let pct = match v {
        Some(IntOrString::Int(n)) => return (*n).max(0),
        Some(IntOrString::String(s)) => s.trim_end_matches('%').parse().unwrap_or(25),
        None => 25,
    };
    let q = replicas * pct;
    if round_up {
        (q + 99) / 100
    } else {
        q / 100
    }
}

/// One pod as the controller sees it.
#[derive(Debug, Clone)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Its template hash.
    pub hash: String,
    /// Ready condition.
    pub ready: bool,
}

/// What one reconcile pass does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New pods to create.
    pub create: usize,
    /// Pods to terminate.
    pub terminate: Vec<String>,
}

/// Decides the next step for a Deployment from its live (not terminating) pods.
pub fn plan(d: &Deployment, pods: &[PodView]) -> Plan {
    let replicas = d.spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(d);
    let (new, old): (Vec<&PodView>, Vec<&PodView>) = pods.iter().partition(|p| p.hash == hash);
    let new_count = new.len() as i64;
    let mut out = Plan::default();
    let recreate = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.strategy_type.as_deref())
        == Some("Recreate");
    if recreate && !old.is_empty() {
        out.terminate = old.iter().map(|p| p.name.clone()).collect();
        return out;
    }
    let rolling = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true);
    let mut unavailable = scaled(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let total = pods.len() as i64;
    if new_count < replicas {
        let room = replicas + surge - total;
        out.create = (replicas - new_count).min(room).max(0) as usize;
    }
    let min_available = replicas - unavailable;
    let mut available = pods.iter().filter(|p| p.ready).count() as i64;
    // Unready old pods serve nothing: they can go at once. Then ready ones, while enough stay.
    let mut old_sorted = old.clone();
    old_sorted.sort_by_key(|p| p.ready);
    for p in old_sorted {
        if !p.ready {
            out.terminate.push(p.name.clone());
        } else if available > min_available && (surge == 0 || new.iter().any(|n| n.ready)) {
            out.terminate.push(p.name.clone());
            available -= 1;
        }
    }
    if old.is_empty() && new_count > replicas {
        let mut extra = new.clone();
        extra.sort_by_key(|p| p.ready);
        out.terminate.extend(
            extra
                .iter()
                .take((new_count - replicas) as usize)
                .map(|p| p.name.clone()),
        );
    }
    out
}

/// A new pod of `d`'s current template (named `<deployment>-<hash>-<5 random>`), for the
/// node agent to run.
pub fn new_pod(d: &Deployment, hash: &str) -> Pod {
    pod_of_template(
        &d.metadata.name,
        d.metadata.namespace(),
        &d.spec.template,
        [
            (DEPLOYMENT_LABEL, &d.metadata.name),
            (TEMPLATE_HASH_LABEL, hash),
        ],
        hash,
    )
}

/// A new pod of `template` named `<owner>-<hash>-<5 random>` in `namespace`, with the
/// template's labels plus `labels`.
pub fn pod_of_template(
    owner: &str,
    namespace: &str,
    template: &PodTemplateSpec,
    labels: [(&str, &str); 2],
    hash: &str,
) -> Pod {
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
    let mut pod = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        ..Default::default()
    };
    pod.metadata.name = format!("{owner}-{hash}-{suffix}");
    pod.metadata.namespace = namespace.to_string();
    pod.metadata.labels = template.metadata.labels.clone();
    for (k, v) in labels {
        pod.metadata.labels.insert(k.into(), v.into());
    }
    pod.metadata.annotations = template.metadata.annotations.clone();
    pod.spec = template.spec.clone();
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(replicas: i64, image: &str) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.spec.replicas = Some(replicas);
        d.spec.template.spec.containers = vec![pier_model::pod::Container {
            name: "c".into(),
            image: image.into(),
            ..Default::default()
        }];
        d
    }

    #[test]
    fn empty_objects_do_not_change_the_hash() {
        let plain = dep(1, "v1");
        let mut from_go = plain.clone();
        from_go.spec.template.spec.containers[0].resources = serde_json::from_str("{}").unwrap();
        assert_ne!(
            serde_json::to_string(&plain.spec.template).unwrap(),
            serde_json::to_string(&from_go.spec.template).unwrap()
        );
        assert_eq!(template_hash(&plain), template_hash(&from_go));
        assert_ne!(template_hash(&plain), template_hash(&dep(1, "v2")));
    }

    fn pods(hash: &str, n: usize, ready: bool, prefix: &str) -> Vec<PodView> {
        (0..n)
            .map(|i| PodView {
                name: format!("{prefix}{i}"),
                hash: hash.into(),
                ready,
            })
            .collect()
    }

    #[test]
    fn scales_up_from_nothing() {
        assert_eq!(plan(&dep(3, "a"), &[]).create, 3);
    }

    #[test]
    fn rolling_update_keeps_enough_ready() {
        let v1 = dep(4, "v1");
        let v2 = dep(4, "v2");
        let old = pods(&template_hash(&v1), 4, true, "old");
        // maxSurge 25% of 4 = 1: one new pod first, nothing removed until it is ready.
        let p = plan(&v2, &old);
        assert_eq!((p.create, p.terminate.len()), (1, 0));
        let mut all = old.clone();
        all.extend(pods(&template_hash(&v2), 1, false, "new"));
        assert_eq!(
            plan(&v2, &all),
            Plan {
                create: 0,
                terminate: vec![]
            }
        );
        // New one ready: 5 available, at least 4 - 1 must stay, so two old may go (as
        // Kubernetes' maxScaledDown = all - minAvailable - unavailable new).
        all.last_mut().unwrap().ready = true;
        let p = plan(&v2, &all);
        assert_eq!(p.terminate.len(), 2);
        assert_eq!(p.create, 0);
    }

    #[test]
    fn rolling_update_without_surge_makes_room_first() {
        let v1 = dep(3, "v1");
        let mut v2 = dep(3, "v2");
        v2.spec.strategy = Some(pier_model::deployment::DeploymentStrategy {
            strategy_type: None,
            rolling_update: Some(pier_model::deployment::RollingUpdate {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::Int(1)),
            }),
        });
        // No room to add a pod: one old one goes first, then its replacement comes.
        let old = pods(&template_hash(&v1), 3, true, "old");
        assert_eq!(
            plan(&v2, &old),
            Plan {
                create: 0,
                terminate: vec!["old0".into()]
            }
        );
        assert_eq!(plan(&v2, &old[1..]).create, 1);
    }

    #[test]
    fn scales_down_extras_and_replaces_unready_old() {
        let d = dep(2, "a");
        let h = template_hash(&d);
        let p = plan(&d, &pods(&h, 3, true, "p"));
        assert_eq!(p.terminate.len(), 1);
        let mut mixed = pods(&h, 2, true, "p");
        mixed.push(PodView {
            name: "stale".into(),
            hash: "x".into(),
            ready: false,
        });
        assert_eq!(plan(&d, &mixed).terminate, vec!["stale".to_string()]);
    }
}
