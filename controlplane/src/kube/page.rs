//! `limit` and `continue` on lists (what `kubectl get --chunk-size` and client-go's pager
//! send): a page of at most `limit` objects in key order, and a `continue` token that picks up
//! after the last one. A later page is cut from the objects as they are then, under the first
//! page's `resourceVersion`, so a watch from that version brings whatever changed between
//! pages (an informer converges; the API's stricter one-snapshot lists would need reads at
//! an old revision, which the redb store does not keep).

use base64::Engine;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::status::{self, Failure};

/// What a list request asks of paging.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Page {
    limit: Option<usize>,
    /// The list's resourceVersion and the last (namespace, name) of the previous page.
    after: Option<(String, (String, String))>,
}

impl Page {
    /// Reads `limit` and `continue`; a malformed one is a `400`.
    pub(crate) fn parse(
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Page, Failure> {
        let bad = |m: String| status::failure(StatusCode::BAD_REQUEST, "BadRequest", m, None);
        let limit = match query.get("limit").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(n) => Some(
                n.parse::<usize>()
                    .map_err(|_| bad(format!("limit {n:?} is not a number")))?,
            ),
        };
        let after = match query.get("continue").filter(|c| !c.is_empty()) {
            None => None,
            Some(token) => Some(decode(token).ok_or_else(|| {
                bad(format!(
                    "continue {token:?} is not a continue token this server gave out"
                ))
            })?),
        };
        Ok(Page { limit, after })
    }

    /// Cuts `list` (all items, in key order) to this page, with `continue` and
    /// `remainingItemCount` when more follow.
    pub(crate) fn cut(&self, list: &mut Value) {
        if self.limit.is_none() && self.after.is_none() {
            return;
        }
        let revision = match &self.after {
            Some((revision, _)) => revision.clone(),
            None => list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        };
        let Some(items) = list["items"].as_array_mut() else {
            return;
        };
        // Pages cut by (namespace, name), whatever order the store lists in.
        items.sort_by_key(key);
        if let Some((_, last)) = &self.after {
            items.retain(|item| key(item) > *last);
        }
        let mut metadata = json!({ "resourceVersion": revision });
        if let Some(limit) = self.limit.filter(|l| items.len() > *l) {
            let remaining = items.len() - limit;
            items.truncate(limit);
            if let Some(last) = items.last() {
                metadata["continue"] = json!(encode(&revision, &key(last)));
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        list["metadata"] = metadata;
    }
}

/// Where an item sits in page order.
fn key(item: &Value) -> (String, String) {
    let meta = &item["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

fn encode(revision: &str, (namespace, name): &(String, String)) -> String {
    let token = json!({"rv": revision, "ns": namespace, "name": name});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode(token: &str) -> Option<(String, (String, String))> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let text = |k: &str| value[k].as_str().map(str::to_string);
    Some((text("rv")?, (text("ns")?, text("name")?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn list(names: &[&str]) -> Value {
        let items: Vec<Value> = names
            .iter()
            .map(|n| json!({"metadata": {"namespace": "default", "name": n}}))
            .collect();
        json!({"metadata": {"resourceVersion": "42"}, "items": items})
    }

    fn names(list: &Value) -> Vec<&str> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pages_follow_one_another_under_the_first_pages_version() {
        let query = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        let mut first = list(&["a", "b", "c"]);
        Page::parse(&query(&[("limit", "2")]))
            .unwrap()
            .cut(&mut first);
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 1);
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        // Meanwhile the store moved on and gained an object after the cut.
        let mut second = list(&["a", "b", "c", "d"]);
        second["metadata"]["resourceVersion"] = json!("50");
        Page::parse(&query(&[("limit", "2"), ("continue", &token)]))
            .unwrap()
            .cut(&mut second);
        assert_eq!(names(&second), ["c", "d"]);
        assert_eq!(second["metadata"]["resourceVersion"], "42");
        assert!(second["metadata"].get("continue").is_none());
        assert!(Page::parse(&query(&[("continue", "garbage!")])).is_err());
        assert!(Page::parse(&query(&[("limit", "x")])).is_err());
    }
}
