//! Argo's `web` provider: an HTTP request whose JSON answer (or the part `jsonPath` picks,
//! `{$.data.ok}`) is the result.

use std::time::Duration;

use pier_model::analysis::WebMetric;
use pier_model::condition::Measured;
use serde_json::Value;

/// Argo's default timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the request `w` describes.
pub(super) async fn fetch(
    http: &reqwest::Client,
    insecure: &reqwest::Client,
    w: &WebMetric,
) -> Result<Measured, String> {
    let client = if w.insecure == Some(true) {
        insecure
    } else {
        http
    };
    let method = match w.method.as_deref().unwrap_or("GET") {
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        _ => reqwest::Method::GET,
    };
    let timeout = w
        .timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(TIMEOUT, Duration::from_secs);
    let mut request = client.request(method, &w.url).timeout(timeout);
    for h in &w.headers {
        request = request.header(&h.key, &h.value);
    }
    if let Some(body) = &w.json_body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    } else if let Some(body) = &w.body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("requesting {}: {}", w.url, crate::error::chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading {}: {}", w.url, crate::error::chain(&e)))?;
    if !status.is_success() {
        return Err(format!(
            "received non 2xx response code: {}",
            status.as_u16()
        ));
    }
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(_) if w.json_path.is_none() => {
            return Ok(Measured::Json(Value::String(
                String::from_utf8_lossy(&body).trim().to_string(),
            )))
        }
        Err(e) => return Err(format!("{} answered no JSON: {e}", w.url)),
    };
    match &w.json_path {
        None => Ok(Measured::Json(doc)),
        Some(path) => pick(&doc, path).map(|v| Measured::Json(v.clone())),
    }
}

/// The part of `doc` at a JSONPath such as `{$.data.items[0].ok}` or `$.data['ok']`.
fn pick<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, String> {
    let inner = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let rest = inner
        .strip_prefix('$')
        .ok_or_else(|| format!("jsonPath {path:?} does not start at $"))?;
    let mut at = doc;
    for step in steps(rest).map_err(|e| format!("jsonPath {path:?}: {e}"))? {
        let next = match &step {
            Step::Key(k) => at.get(k.as_str()),
            Step::Index(i) => at.get(*i),
        };
        at = next.ok_or_else(|| format!("jsonPath {path:?}: nothing at {step:?}"))?;
    }
    Ok(at)
}

#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// `.a.b[0]['c']` as steps.
fn steps(mut rest: &str) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("an empty key".into());
            }
            out.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("an unclosed [")?;
            let inside = r[..end].trim();
            let quoted = inside
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            out.push(match quoted {
                Some(k) => Step::Key(k.to_string()),
                None => Step::Index(
                    inside
                        .parse()
                        .map_err(|_| format!("{inside:?} is not an index"))?,
                ),
            });
            rest = &r[end + 1..];
        } else {
            return Err(format!("unexpected {rest:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_pick_as_argo_reads_them() {
        let doc = json!({"data": {"ok": true, "items": [{"rate": 0.5}], "a.b": 1}});
        assert_eq!(pick(&doc, "{$.data.ok}"), Ok(&json!(true)));
        assert_eq!(pick(&doc, "$.data.items[0].rate"), Ok(&json!(0.5)));
        assert_eq!(pick(&doc, "{$.data['a.b']}"), Ok(&json!(1)));
        assert_eq!(pick(&doc, "{$}"), Ok(&doc));
        assert!(pick(&doc, "{$.data.missing}").is_err());
        assert!(pick(&doc, "{data}").is_err());
    }
}
