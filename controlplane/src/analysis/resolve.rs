//! Making an AnalysisRun's spec as Argo does: the templates' metrics and arguments merged,
//! the rollout's arguments (values, template hashes, fields of the Rollout) laid over them,
//! and every `{{args.NAME}}` in the metrics replaced.

use std::collections::BTreeMap;

use pier_model::analysis::{AnalysisSpec, AnalysisTemplate, Metric};
use pier_model::rollout::AnalysisArgument;
use pier_model::Rollout;
use serde_json::Value;

/// The template hashes `podTemplateHashValue` reads.
pub struct Hashes<'a> {
    /// The stable pods' hash (`Stable`).
    pub stable: &'a str,
    /// The newest template's hash (`Latest`).
    pub latest: &'a str,
}

/// The spec of a run of `templates` with `args` from `ro`.
pub fn run_spec(
    templates: &[&AnalysisTemplate],
    args: &[AnalysisArgument],
    ro: &Rollout,
    hashes: &Hashes,
) -> Result<AnalysisSpec, String> {
    let mut merged: Vec<AnalysisArgument> = Vec::new();
    let mut metrics: Vec<Metric> = Vec::new();
    for t in templates {
        for arg in &t.spec.args {
            match merged.iter_mut().find(|a| a.name == arg.name) {
                Some(have) if have.value.is_none() => *have = arg.clone(),
                Some(have) if arg.value.is_some() && have.value != arg.value => {
                    return Err(format!(
                        "templates give argument {:?} two values ({:?} and {:?})",
                        arg.name, have.value, arg.value
                    ));
                }
                Some(_) => {}
                None => merged.push(arg.clone()),
            }
        }
        for m in &t.spec.metrics {
            if metrics.iter().any(|have| have.name == m.name) {
                return Err(format!(
                    "two templates define metric {:?}; names must be unique in a run",
                    m.name
                ));
            }
            metrics.push(m.clone());
        }
    }
    for arg in args {
        let value = argument_value(arg, ro, hashes)?;
        match merged.iter_mut().find(|a| a.name == arg.name) {
            Some(have) => {
                have.value = Some(value);
                have.value_from = None;
            }
            None => merged.push(AnalysisArgument {
                name: arg.name.clone(),
                value: Some(value),
                value_from: None,
            }),
        }
    }
    let mut values = BTreeMap::new();
    for arg in &merged {
        match (&arg.value, &arg.value_from) {
            (Some(v), _) => {
                values.insert(arg.name.clone(), v.clone());
            }
            (None, Some(from)) => {
                return Err(format!(
                    "argument {:?}: valueFrom {from} is not served by pier; give a value",
                    arg.name
                ));
            }
            (None, None) => return Err(format!("argument {:?} has no value", arg.name)),
        }
    }
    let metrics = substitute(metrics, &values)?;
    Ok(AnalysisSpec {
        args: merged,
        metrics,
        terminate: None,
    })
}

/// `metric` with the run's own arguments filled in (a run made by hand may still hold
/// `{{args.NAME}}`, as Argo allows).
pub fn with_args(metric: &Metric, args: &[AnalysisArgument]) -> Result<Metric, String> {
    let values: BTreeMap<String, String> = args
        .iter()
        .filter_map(|a| Some((a.name.clone(), a.value.clone()?)))
        .collect();
    substitute(vec![metric.clone()], &values)?
        .pop()
        .ok_or_else(|| format!("metric {:?} vanished", metric.name))
}

/// A rollout argument's value: as given, a template hash, or a field of the Rollout.
fn argument_value(arg: &AnalysisArgument, ro: &Rollout, hashes: &Hashes) -> Result<String, String> {
    if let Some(v) = &arg.value {
        return Ok(v.clone());
    }
    let from = arg.value_from.as_ref();
    if let Some(which) = from
        .and_then(|f| f.get("podTemplateHashValue"))
        .and_then(Value::as_str)
    {
        return match which {
            "Stable" => Ok(hashes.stable.to_string()),
            "Latest" => Ok(hashes.latest.to_string()),
            other => Err(format!(
                "argument {:?}: podTemplateHashValue {other:?} is not Stable or Latest",
                arg.name
            )),
        };
    }
    if let Some(path) = from
        .and_then(|f| f.pointer("/fieldRef/fieldPath"))
        .and_then(Value::as_str)
    {
        return field(ro, path)
            .ok_or_else(|| format!("argument {:?}: the Rollout has no {path}", arg.name));
    }
    Err(format!("argument {:?} has no value", arg.name))
}

/// `metadata.name`, `metadata.namespace`, `metadata.labels['k']`, `metadata.annotations['k']`.
fn field(ro: &Rollout, path: &str) -> Option<String> {
    let m = &ro.metadata;
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    match path {
        "metadata.name" => Some(m.name.clone()),
        "metadata.namespace" => Some(m.namespace().to_string()),
        _ => {
            if let Some(k) = keyed("metadata.labels['") {
                m.labels.get(&k).cloned()
            } else {
                keyed("metadata.annotations['").and_then(|k| m.annotations.get(&k).cloned())
            }
        }
    }
}

/// Replaces `{{args.NAME}}` (spaces allowed inside the braces) in every string of `metrics`.
fn substitute(
    metrics: Vec<Metric>,
    values: &BTreeMap<String, String>,
) -> Result<Vec<Metric>, String> {
    let mut json = serde_json::to_value(&metrics).map_err(|e| e.to_string())?;
    replace_in(&mut json, values)?;
    serde_json::from_value(json).map_err(|e| format!("metrics after arguments: {e}"))
}

fn replace_in(v: &mut Value, values: &BTreeMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => *s = replace(s, values)?,
        Value::Array(items) => items.iter_mut().try_for_each(|i| replace_in(i, values))?,
        Value::Object(map) => map.values_mut().try_for_each(|i| replace_in(i, values))?,
        _ => {}
    }
    Ok(())
}

fn replace(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let tag = rest[open + 2..open + close].trim();
        out.push_str(&rest[..open]);
        match tag.strip_prefix("args.") {
            Some(name) => match values.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(format!("{{{{args.{name}}}}} names no argument")),
            },
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_model::Object;

    fn template(yaml: &str) -> AnalysisTemplate {
        let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        match Object::from_value(value).unwrap().object {
            Object::AnalysisTemplate(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_fill_the_metrics() {
        let t = template(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args:
  - name: service-name
  - name: threshold
    value: "0.95"
  metrics:
  - name: success-rate
    interval: 5s
    successCondition: "result[0] >= {{ args.threshold }}"
    provider:
      prometheus:
        address: http://127.0.0.1:9090
        query: sum(rate(pier_proxy_requests_total{backend="{{args.service-name}}",code!="5xx"}[1m]))
"#,
        );
        let mut ro = Rollout::default();
        ro.metadata.name = "web".into();
        let args = vec![
            AnalysisArgument {
                name: "service-name".into(),
                value: None,
                value_from: Some(serde_json::json!({"fieldRef": {"fieldPath": "metadata.name"}})),
            },
            AnalysisArgument {
                name: "hash".into(),
                value: None,
                value_from: Some(serde_json::json!({"podTemplateHashValue": "Latest"})),
            },
        ];
        let hashes = Hashes {
            stable: "aaa",
            latest: "bbb",
        };
        let spec = run_spec(&[&t], &args, &ro, &hashes).unwrap();
        let m = &spec.metrics[0];
        assert_eq!(m.success_condition.as_deref(), Some("result[0] >= 0.95"));
        let query = &m.provider.prometheus.as_ref().unwrap().query;
        assert!(query.contains(r#"backend="web""#), "{query}");
        assert!(spec
            .args
            .iter()
            .any(|a| a.name == "hash" && a.value.as_deref() == Some("bbb")));
    }

    #[test]
    fn a_missing_argument_is_named() {
        let t = template(
            "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec:\n  args: [{name: svc}]\n  metrics:\n  - name: m\n    provider: {web: {url: 'http://{{args.svc}}/'}}\n",
        );
        let hashes = Hashes {
            stable: "a",
            latest: "b",
        };
        let e = run_spec(&[&t], &[], &Rollout::default(), &hashes).unwrap_err();
        assert!(e.contains("\"svc\" has no value"), "{e}");
    }
}
