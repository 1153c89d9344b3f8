//! Rules for Argo Rollouts: the canary strategy, its steps and the Gateway API plugin's
//! routes, as Argo's own validation checks them.

use crate::report::{FieldPath, Report};
use crate::rollout::{
    CanaryStep, CanaryStrategy, RolloutAnalysis, TrafficRouting, GATEWAY_API_PLUGIN,
};
use crate::syntax::dns1123_subdomain;
use crate::Rollout;

use super::label_selector;
use super::metadata;
use super::workload::{count_or_percent, pod_template};

pub(crate) fn rollout(ro: &Rollout, r: &mut Report) {
    metadata(&ro.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    for (field, value) in [
        ("replicas", ro.spec.replicas),
        ("revisionHistoryLimit", ro.spec.revision_history_limit),
        ("minReadySeconds", ro.spec.min_ready_seconds),
    ] {
        if let Some(n) = value.filter(|n| *n < 0) {
            r.error(
                &spec.field(field),
                format!("invalid value {n}: must be at least 0"),
            );
        }
    }
    if let Some(at) = &ro.spec.restart_at {
        if crate::time::parse_rfc3339(at).is_none() {
            r.error(
                &spec.field("restartAt"),
                format!("invalid value {at:?}: must be an RFC 3339 time"),
            );
        }
    }
    match &ro.spec.workload_ref {
        Some(w) => {
            let p = spec.field("workloadRef");
            if w.kind != "Deployment" {
                r.error(
                    &p.field("kind"),
                    format!("{:?}: pier follows a Deployment's template only", w.kind),
                );
            }
            r.check(&p.field("name"), dns1123_subdomain(&w.name));
            if let Some(policy) = &w.scale_down {
                r.one_of(
                    &p.field("scaleDown"),
                    policy,
                    &["never", "onsuccess", "progressively"],
                );
            }
            if !ro.spec.template.spec.containers.is_empty() {
                r.error(
                    &spec.field("template"),
                    "template and workloadRef are mutually exclusive",
                );
            }
            label_selector(&spec.field("selector"), &ro.spec.selector, r);
        }
        None => pod_template(&spec, &ro.spec.selector, &ro.spec.template, r),
    }
    let strategy = spec.field("strategy");
    if ro.spec.strategy.blue_green.is_some() {
        r.error(
            &strategy.field("blueGreen"),
            "pier runs the canary strategy; blue-green is a canary with one `setWeight: 100` step",
        );
    }
    match &ro.spec.strategy.canary {
        Some(c) => canary(&strategy.field("canary"), c, r),
        None if ro.spec.strategy.blue_green.is_none() => {
            r.error(&strategy.field("canary"), "required value")
        }
        None => {}
    }
}

fn canary(path: &FieldPath, c: &CanaryStrategy, r: &mut Report) {
    for (name, v) in [
        ("maxSurge", &c.max_surge),
        ("maxUnavailable", &c.max_unavailable),
    ] {
        count_or_percent(&path.field(name), v.as_ref(), r);
    }
    for (name, v) in [
        (
            "abortScaleDownDelaySeconds",
            c.abort_scale_down_delay_seconds,
        ),
        ("scaleDownDelaySeconds", c.scale_down_delay_seconds),
    ] {
        if let Some(n) = v.filter(|n| *n < 0) {
            r.error(
                &path.field(name),
                format!("invalid value {n}: must be at least 0"),
            );
        }
    }
    match (&c.stable_service, &c.canary_service) {
        (Some(s), Some(k)) if s == k => r.error(
            &path.field("canaryService"),
            "must differ from stableService: each is pinned to its own pods",
        ),
        (Some(_), None) | (None, Some(_)) => r.error(
            path,
            "canaryService and stableService go together: each is pinned to its own pods",
        ),
        _ => {}
    }
    if let Some(t) = &c.traffic_routing {
        traffic_routing(&path.field("trafficRouting"), t, r);
        if c.stable_service.is_none() {
            r.error(
                &path.field("stableService"),
                "required with trafficRouting: the route's weights are between the stable and canary Services",
            );
        }
    }
    let managed: Vec<&str> = c
        .traffic_routing
        .iter()
        .flat_map(|t| &t.managed_routes)
        .map(|m| m.name.as_str())
        .collect();
    for (i, s) in c.steps.iter().enumerate() {
        step(&path.field("steps").index(i), s, &managed, r);
    }
    if let Some(a) = &c.analysis {
        analysis(&path.field("analysis"), a, r);
    }
}

fn traffic_routing(path: &FieldPath, t: &TrafficRouting, r: &mut Report) {
    let plugins = path.field("plugins");
    for name in t.plugins.keys().filter(|n| *n != GATEWAY_API_PLUGIN) {
        r.ignored.push(plugins.key(name).to_string());
    }
    let Some(config) = t.plugins.get(GATEWAY_API_PLUGIN) else {
        return;
    };
    let p = plugins.key(GATEWAY_API_PLUGIN);
    match serde_json::from_value::<crate::rollout::GatewayApiConfig>(config.clone()) {
        Err(e) => r.error(&p, e.to_string()),
        Ok(g) => {
            let named = g.http_route.is_some()
                || !g.http_routes.is_empty()
                || g.tcp_route.is_some()
                || !g.tcp_routes.is_empty()
                || g.udp_route.is_some();
            if !named {
                r.error(
                    &p,
                    "names no route: set httpRoute, httpRoutes, tcpRoute, tcpRoutes or udpRoute",
                );
            }
        }
    }
}

fn step(path: &FieldPath, s: &CanaryStep, managed: &[&str], r: &mut Report) {
    let set = [
        s.set_weight.is_some(),
        s.pause.is_some(),
        s.analysis.is_some(),
        s.set_header_route.is_some(),
        s.set_canary_scale.is_some(),
    ];
    if set.iter().filter(|x| **x).count() != 1 {
        r.error(
            path,
            "exactly one of setWeight, pause, analysis, setHeaderRoute or setCanaryScale must be set",
        );
    }
    if let Some(w) = s.set_weight.filter(|w| !(0..=100).contains(w)) {
        r.error(
            &path.field("setWeight"),
            format!("invalid value {w}: must be between 0 and 100"),
        );
    }
    if let Some(p) = &s.pause {
        if let Err(e) = p.duration() {
            r.error(&path.field("pause").field("duration"), e);
        }
    }
    if let Some(a) = &s.analysis {
        analysis(&path.field("analysis"), a, r);
    }
    if let Some(h) = &s.set_header_route {
        let p = path.field("setHeaderRoute");
        if !managed.contains(&h.name.as_str()) {
            r.error(
                &p.field("name"),
                format!("{:?} is not listed in trafficRouting.managedRoutes", h.name),
            );
        }
        for (i, m) in h.matches.iter().enumerate() {
            let mp = p.field("match").index(i);
            r.required(&mp.field("headerName"), !m.header_name.is_empty());
            let v = &m.header_value;
            let kinds = [v.exact.is_some(), v.prefix.is_some(), v.regex.is_some()];
            if kinds.iter().filter(|x| **x).count() != 1 {
                r.error(
                    &mp.field("headerValue"),
                    "exactly one of exact, prefix or regex must be set",
                );
            }
            if let Some(re) = &v.regex {
                if let Err(e) = regex::Regex::new(re) {
                    r.error(&mp.field("headerValue").field("regex"), e.to_string());
                }
            }
        }
    }
    if let Some(c) = &s.set_canary_scale {
        let p = path.field("setCanaryScale");
        let kinds = [
            c.replicas.is_some(),
            c.weight.is_some(),
            c.match_traffic_weight == Some(true),
        ];
        if kinds.iter().filter(|x| **x).count() != 1 {
            r.error(
                &p,
                "exactly one of replicas, weight or matchTrafficWeight: true must be set",
            );
        }
        if let Some(n) = c.replicas.filter(|n| *n < 0) {
            r.error(
                &p.field("replicas"),
                format!("invalid value {n}: must be at least 0"),
            );
        }
        if let Some(w) = c.weight.filter(|w| !(0..=100).contains(w)) {
            r.error(
                &p.field("weight"),
                format!("invalid value {w}: must be between 0 and 100"),
            );
        }
    }
}

fn analysis(path: &FieldPath, a: &RolloutAnalysis, r: &mut Report) {
    if a.templates.is_empty() {
        r.error(&path.field("templates"), "required value");
    }
    for (i, t) in a.templates.iter().enumerate() {
        r.required(
            &path.field("templates").index(i).field("templateName"),
            !t.template_name.is_empty(),
        );
    }
    for (i, arg) in a.args.iter().enumerate() {
        r.required(
            &path.field("args").index(i).field("name"),
            !arg.name.is_empty(),
        );
    }
    if let Some(n) = a.starting_step.filter(|n| *n < 0) {
        r.error(
            &path.field("startingStep"),
            format!("invalid value {n}: must be at least 0"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{objects, parse};

    const BASE: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: x}]}\n  strategy:\n";

    /// The errors (joined) of a Rollout with `strategy` under `spec.strategy`.
    fn errors(strategy: &str) -> String {
        match objects("t", &format!("{BASE}{strategy}")) {
            Ok(_) => String::new(),
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn a_good_canary_passes_and_unacted_fields_are_warned() {
        let ok = "    canary:\n      stableService: s\n      canaryService: c\n      canaryMetadata: {labels: {role: canary}}\n      trafficRouting:\n        plugins:\n          argoproj-labs/gatewayAPI: {httpRoute: r}\n          acme/mesh: {x: 1}\n      steps: [{setWeight: 20}, {pause: {duration: 1h}}, {setCanaryScale: {replicas: 1}}]\n";
        assert_eq!(errors(ok), "");
        let parsed = parse("t", &format!("{BASE}{ok}")).unwrap();
        let ignored = &parsed[0].parsed.ignored;
        assert!(
            ignored
                .iter()
                .any(|i| i == "spec.strategy.canary.canaryMetadata"),
            "{ignored:?}"
        );
        assert!(
            ignored.iter().any(|i| i.contains("acme/mesh")),
            "{ignored:?}"
        );
    }

    #[test]
    fn bad_steps_and_routing_name_their_field() {
        for (strategy, want) in [
            ("    blueGreen: {activeService: a}\n", "spec.strategy.blueGreen"),
            ("    canary:\n      steps: [{setWeight: 120}]\n", "spec.strategy.canary.steps[0].setWeight"),
            ("    canary:\n      steps: [{setWeight: 10, pause: {}}]\n", "exactly one of setWeight"),
            ("    canary:\n      steps: [{pause: {duration: 2d}}]\n", "steps[0].pause.duration"),
            ("    canary:\n      steps: [{setHeaderRoute: {name: h}}]\n", "not listed in trafficRouting.managedRoutes"),
            ("    canary:\n      steps: [{analysis: {templates: []}}]\n", "steps[0].analysis.templates"),
            ("    canary:\n      stableService: s\n", "canaryService and stableService go together"),
            ("    canary:\n      stableService: s\n      canaryService: s\n", "must differ"),
            ("    canary:\n      stableService: s\n      canaryService: c\n      trafficRouting: {plugins: {argoproj-labs/gatewayAPI: {namespace: x}}}\n", "names no route"),
            ("    canary:\n      trafficRouting: {plugins: {argoproj-labs/gatewayAPI: {httpRoute: r}}}\n", "required with trafficRouting"),
        ] {
            let e = errors(strategy);
            assert!(e.contains(want), "{strategy}: want {want:?} in {e:?}");
        }
    }
}
