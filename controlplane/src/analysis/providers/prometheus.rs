//! Argo's `prometheus` provider: an instant PromQL query; a scalar gives a number, a vector
//! one number per series (`result[0]`).

use std::time::Duration;

use pier_model::analysis::PrometheusMetric;
use pier_model::condition::Measured;
use serde_json::Value;

/// Default query timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `p.query` against `p.address`.
pub(super) async fn query(
    http: &reqwest::Client,
    p: &PrometheusMetric,
) -> Result<Measured, String> {
    let url = format!("{}/api/v1/query", p.address.trim_end_matches('/'));
    let timeout = p
        .timeout
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(TIMEOUT, Duration::from_secs);
    let mut request = http
        .get(&url)
        .query(&[("query", p.query.as_str())])
        .timeout(timeout);
    for h in &p.headers {
        request = request.header(&h.key, &h.value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("querying {url}: {}", crate::error::chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading {url}: {}", crate::error::chain(&e)))?;
    let doc: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{url} answered {status} with no JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if doc.get("status").and_then(Value::as_str) != Some("success") {
        let error = doc
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(format!("{url} answered {status}: {error}"));
    }
    parse(doc.get("data").unwrap_or(&Value::Null))
}

/// The query's `data`: `{resultType, result}`.
fn parse(data: &Value) -> Result<Measured, String> {
    let result = data.get("result").unwrap_or(&Value::Null);
    match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => sample(result).map(Measured::Number),
        Some("vector") => {
            let series = result.as_array().map(Vec::as_slice).unwrap_or_default();
            series
                .iter()
                .map(|s| sample(s.get("value").unwrap_or(&Value::Null)))
                .collect::<Result<Vec<f64>, String>>()
                .map(Measured::Numbers)
        }
        other => Err(format!(
            "the query gave a {} result; pier reads scalars and vectors",
            other.unwrap_or("missing")
        )),
    }
}

/// `[timestamp, "value"]` (Prometheus writes values as text: `"0.97"`, `"NaN"`, `"+Inf"`).
fn sample(v: &Value) -> Result<f64, String> {
    let text = v
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a sample is not [time, \"value\"]: {v}"))?;
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("sample value {text:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_scalars_and_special_values_parse() {
        let vector = json!({"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1.5, "0.97"]},
            {"metric": {"a": "2"}, "value": [1.5, "NaN"]}
        ]});
        match parse(&vector) {
            Ok(Measured::Numbers(v)) => {
                assert_eq!(v[0], 0.97);
                assert!(v[1].is_nan());
            }
            other => panic!("{other:?}"),
        }
        let scalar = json!({"resultType": "scalar", "result": [1.5, "+Inf"]});
        assert_eq!(parse(&scalar), Ok(Measured::Number(f64::INFINITY)));
        let matrix = json!({"resultType": "matrix", "result": []});
        assert!(parse(&matrix).unwrap_err().contains("matrix"));
    }
}
