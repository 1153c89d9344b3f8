//! Rules for Argo Rollouts' analysis objects: each metric's timing, limits, conditions and its
//! one provider, named by field.

use std::collections::HashSet;

use crate::analysis::{
    parse_count, parse_duration, AnalysisRun, AnalysisSpec, AnalysisTemplate, Metric, PierMetric,
    PIER_METRICS_PLUGIN,
};
use crate::condition;
use crate::report::{FieldPath, Report};
use crate::syntax::dns1123_subdomain;

use super::metadata;

/// Whether a value still holds an argument placeholder, checked once the run resolves it.
fn templated(text: &str) -> bool {
    text.contains("{{")
}

pub(crate) fn analysis_template(t: &AnalysisTemplate, r: &mut Report) {
    metadata(&t.metadata, dns1123_subdomain, r);
    spec(&FieldPath::root().field("spec"), &t.spec, r);
}

pub(crate) fn analysis_run(run: &AnalysisRun, r: &mut Report) {
    metadata(&run.metadata, dns1123_subdomain, r);
    spec(&FieldPath::root().field("spec"), &run.spec, r);
}

fn spec(path: &FieldPath, spec: &AnalysisSpec, r: &mut Report) {
    let mut args = HashSet::new();
    for (i, arg) in spec.args.iter().enumerate() {
        let p = path.field("args").index(i).field("name");
        if arg.name.is_empty() {
            r.error(&p, "required value");
        } else if !args.insert(arg.name.as_str()) {
            r.error(&p, format!("duplicate argument {:?}", arg.name));
        }
    }
    if spec.metrics.is_empty() {
        r.error(&path.field("metrics"), "at least one metric is required");
    }
    let mut names = HashSet::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        let p = path.field("metrics").index(i);
        if m.name.is_empty() {
            r.error(&p.field("name"), "required value");
        } else if !names.insert(m.name.as_str()) {
            r.error(&p.field("name"), format!("duplicate metric {:?}", m.name));
        }
        metric(&p, m, r);
    }
}

fn metric(path: &FieldPath, m: &Metric, r: &mut Report) {
    for (field, value) in [
        ("interval", &m.interval),
        ("initialDelay", &m.initial_delay),
    ] {
        if let Some(text) = value.as_deref().filter(|t| !templated(t)) {
            r.check(&path.field(field), parse_duration(text).map(|_| ()));
        }
    }
    for (field, value) in [
        ("count", &m.count),
        ("failureLimit", &m.failure_limit),
        ("inconclusiveLimit", &m.inconclusive_limit),
        ("consecutiveErrorLimit", &m.consecutive_error_limit),
    ] {
        if let Some(v) = value {
            if !matches!(v, crate::IntOrString::String(s) if templated(s)) {
                r.check(&path.field(field), parse_count(v).map(|_| ()));
            }
        }
    }
    for (field, value) in [
        ("successCondition", &m.success_condition),
        ("failureCondition", &m.failure_condition),
    ] {
        if let Some(text) = value.as_deref().filter(|t| !templated(t)) {
            r.check(&path.field(field), condition::compile(text));
        }
    }
    provider(&path.field("provider"), m, r);
}

/// At most one of the providers pier runs; others (job, datadog, ...) are accepted with a
/// warning and their measurements report that pier does not run them.
fn provider(path: &FieldPath, m: &Metric, r: &mut Report) {
    let p = &m.provider;
    let named: Vec<&str> = [
        p.prometheus.as_ref().map(|_| "prometheus"),
        p.web.as_ref().map(|_| "web"),
        (!p.plugin.is_empty()).then_some("plugin"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if named.len() > 1 {
        r.error(
            path,
            format!(
                "exactly one provider may be set, not {}",
                named.join(" and ")
            ),
        );
    }
    if let Some(prom) = &p.prometheus {
        let pp = path.field("prometheus");
        r.required(&pp.field("address"), !prom.address.is_empty());
        r.required(&pp.field("query"), !prom.query.is_empty());
    }
    if let Some(web) = &p.web {
        let wp = path.field("web");
        r.required(&wp.field("url"), !web.url.is_empty());
        if let Some(method) = &web.method {
            r.one_of(&wp.field("method"), method, &["GET", "POST", "PUT"]);
        }
        if web.body.is_some() && web.json_body.is_some() {
            r.error(
                &wp.field("jsonBody"),
                "body and jsonBody are mutually exclusive",
            );
        }
    }
    if p.plugin.len() > 1 {
        r.error(&path.field("plugin"), "exactly one plugin may be named");
    }
    if let Some(config) = p.plugin.get(PIER_METRICS_PLUGIN) {
        let pp = path.field("plugin").key(PIER_METRICS_PLUGIN);
        match PierMetric::from_value(config) {
            Ok(pm) => {
                r.required(&pp.field("service"), !pm.service.is_empty());
                if let Some(q) = pm.quantile.filter(|q| !(*q > 0.0 && *q <= 1.0)) {
                    r.error(&pp.field("quantile"), format!("{q} is not in (0, 1]"));
                }
                if let Some(w) = pm.window.as_deref().filter(|w| !templated(w)) {
                    r.check(&pp.field("window"), parse_duration(w).map(|_| ()));
                }
            }
            Err(e) => r.error(&pp, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Object;

    fn errors(yaml: &str) -> String {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        match Object::from_value(value) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn template(metric: &str) -> String {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: t}}\nspec:\n  args: [{{name: svc}}]\n  metrics:\n{metric}"
        )
    }

    #[test]
    fn a_good_template_applies() {
        let ok = template(
            "  - name: success\n    interval: 10s\n    count: 3\n    failureLimit: 1\n    successCondition: result >= 0.95\n    provider:\n      plugin:\n        pier.dev/metrics: {service: '{{args.svc}}', measure: successRate}\n",
        );
        assert_eq!(errors(&ok), "");
        let prom = template(
            "  - name: p\n    successCondition: result[0] >= 0.95\n    provider:\n      prometheus: {address: 'http://127.0.0.1:9090', query: 'sum(up)'}\n",
        );
        assert_eq!(errors(&prom), "");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("interval: 10x", "spec.metrics[0].interval"),
            ("count: -1", "spec.metrics[0].count"),
            ("successCondition: 'result >='", "spec.metrics[0].successCondition"),
            (
                "provider: {web: {url: 'http://x'}, prometheus: {address: a, query: q}}",
                "spec.metrics[0].provider",
            ),
            (
                "provider: {plugin: {pier.dev/metrics: {service: s, measure: speed}}}",
                "spec.metrics[0].provider.plugin[pier.dev/metrics]",
            ),
            (
                "provider: {plugin: {pier.dev/metrics: {service: s, measure: latency, quantile: 2}}}",
                "spec.metrics[0].provider.plugin[pier.dev/metrics].quantile",
            ),
            ("provider: {web: {url: ''}}", "spec.metrics[0].provider.web.url"),
        ];
        for (field, path) in cases {
            let yaml = template(&format!("  - name: m\n    {field}\n"));
            let e = errors(&yaml);
            assert!(e.contains(path), "{field}: {e}");
        }
    }
}
