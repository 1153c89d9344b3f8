//! HTTPRoute matching with Gateway API precedence: exact path, longest prefix, method,
//! most header matches, most query matches, then route and rule order.

use std::sync::Arc;
use std::time::Duration;

use hyper::http::request::Parts;
use hyper::Method;
use pier_snapshot::route::{HttpRouteMatch, HttpValueMatch};
use pier_snapshot::HttpRuleView;
use regex::Regex;

use crate::balance::Cluster;
use crate::frontend::Groups;
use crate::route_filters::Filters;

/// A request path condition, as Gateway API and Ingress both have it.
pub(crate) enum PathMatch {
    /// The whole path.
    Exact(String),
    /// Whole leading path elements (no trailing `/`; empty matches every path).
    Prefix(String),
    /// A regular expression (anchored as the caller needs).
    Regex(Regex),
}

impl PathMatch {
    /// Whether `path` meets the condition.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            // Prefixes match whole path elements: /foo matches /foo and /foo/bar, not /foobar.
            PathMatch::Prefix(p) => {
                p.is_empty()
                    || path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => v == e,
            ValueMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// Anchored, so a pattern must match the whole value, as Gateway API implementations do.
fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("bad regular expression: {e}"))
}

fn value_match(m: &HttpValueMatch) -> Result<ValueMatch, String> {
    match m.match_type.as_deref() {
        Some("RegularExpression") => anchored(&m.value).map(ValueMatch::Regex),
        _ => Ok(ValueMatch::Exact(m.value.clone())),
    }
}

struct Match {
    path: PathMatch,
    headers: Vec<(hyper::header::HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
    method: Option<Method>,
}

impl Match {
    fn compile(m: &HttpRouteMatch) -> Result<Self, String> {
        let path = match &m.path {
            None => PathMatch::Prefix(String::new()),
            Some(p) => {
                let value = p.value.clone().unwrap_or_else(|| "/".into());
                match p.match_type.as_deref() {
                    Some("Exact") => PathMatch::Exact(value),
                    Some("RegularExpression") => PathMatch::Regex(anchored(&value)?),
                    _ => PathMatch::Prefix(value.trim_end_matches('/').to_string()),
                }
            }
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = hyper::header::HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| format!("bad header name {:?}", h.name))?;
                Ok((name, value_match(h)?))
            })
            .collect::<Result<_, String>>()?;
        let query = m
            .query_params
            .iter()
            .map(|q| Ok((q.name.clone(), value_match(q)?)))
            .collect::<Result<_, String>>()?;
        let method = m
            .method
            .as_deref()
            .map(|s| Method::from_bytes(s.as_bytes()).map_err(|_| format!("bad method {s:?}")))
            .transpose()?;
        Ok(Self {
            path,
            headers,
            query,
            method,
        })
    }

    /// Sort key: larger sorts first.
    fn precedence(&self) -> (u8, usize, bool, usize, usize) {
        let (exact, len) = match &self.path {
            PathMatch::Exact(p) => (2, p.len()),
            PathMatch::Regex(r) => (1, r.as_str().len()),
            PathMatch::Prefix(p) => (0, p.len()),
        };
        (
            exact,
            len,
            self.method.is_some(),
            self.headers.len(),
            self.query.len(),
        )
    }

    fn matches(&self, req: &Parts) -> bool {
        if self.method.as_ref().is_some_and(|m| *m != req.method) {
            return false;
        }
        if !self.path.matches(req.uri.path()) {
            return false;
        }
        for (name, want) in &self.headers {
            let ok = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| want.matches(v)));
            if !ok {
                return false;
            }
        }
        if !self.query.is_empty() {
            let q = req.uri.query().unwrap_or("");
            for (name, want) in &self.query {
                let ok = q.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    k == name && want.matches(v)
                });
                if !ok {
                    return false;
                }
            }
        }
        true
    }
}

/// A compiled HTTPRoute rule.
pub(crate) struct Rule {
    matches: Vec<Match>,
    /// Weighted backend groups.
    pub groups: Groups,
    /// Whole-request timeout.
    pub request_timeout: Option<Duration>,
    /// Per-attempt timeout.
    pub backend_timeout: Option<Duration>,
    /// Header changes, redirect, rewrite.
    pub filters: Filters,
}

impl Rule {
    /// Compiles a rule's matches (no matches = every request).
    pub(crate) fn compile(rule: &HttpRuleView, groups: Groups) -> Result<Self, String> {
        let mut matches = rule
            .matches
            .iter()
            .map(Match::compile)
            .collect::<Result<Vec<_>, _>>()?;
        if matches.is_empty() {
            matches.push(Match::compile(&HttpRouteMatch::default())?);
        }
        Ok(Self {
            matches,
            groups,
            filters: Filters::compile(&rule.filters)?,
            request_timeout: rule.request_timeout.filter(|d| !d.is_zero()),
            backend_timeout: rule.backend_timeout.filter(|d| !d.is_zero()),
        })
    }
}

/// Routes requests of one L7 frontend.
pub(crate) struct HttpRouter {
    /// (rule, match index), in precedence order.
    order: Vec<(Arc<Rule>, usize)>,
    rules: Vec<Arc<Rule>>,
    default: Option<Box<Rule>>,
}

impl HttpRouter {
    /// A router over `rules` (in route then rule order); `default` serves when no route is attached.
    pub(crate) fn new(rules: Vec<Arc<Rule>>, default: Option<Groups>) -> Self {
        let mut order: Vec<(Arc<Rule>, usize)> = rules
            .iter()
            .flat_map(|r| (0..r.matches.len()).map(move |i| (Arc::clone(r), i)))
            .collect();
        // Stable: ties keep route and rule order.
        order.sort_by(|(a, i), (b, j)| b.matches[*j].precedence().cmp(&a.matches[*i].precedence()));
        Self {
            order,
            rules,
            default: default.map(|groups| {
                Box::new(Rule {
                    matches: Vec::new(),
                    groups,
                    filters: Filters::default(),
                    request_timeout: None,
                    backend_timeout: None,
                })
            }),
        }
    }

    /// A router that sends every request to `groups`, each attempt limited to `backend_timeout`.
    pub(crate) fn single(groups: Groups, backend_timeout: Option<Duration>) -> Self {
        Self {
            order: Vec::new(),
            rules: Vec::new(),
            default: Some(Box::new(Rule {
                matches: Vec::new(),
                groups,
                filters: Filters::default(),
                request_timeout: None,
                backend_timeout,
            })),
        }
    }

    /// The rule serving a request and the path prefix its match took (empty unless a
    /// `PathPrefix` match), or `None` (404).
    pub(crate) fn route(&self, req: &Parts) -> Option<(&Rule, &str)> {
        if let Some(d) = &self.default {
            return Some((d, ""));
        }
        self.order
            .iter()
            .find(|(rule, i)| rule.matches[*i].matches(req))
            .map(|(rule, i)| {
                let prefix = match &rule.matches[*i].path {
                    PathMatch::Prefix(p) => p.as_str(),
                    _ => "",
                };
                (rule.as_ref(), prefix)
            })
    }

    /// Every group any rule sends to.
    pub(crate) fn clusters(&self) -> Vec<&Arc<Cluster>> {
        self.rules
            .iter()
            .flat_map(|r| r.groups.clusters())
            .chain(self.default.iter().flat_map(|d| d.groups.clusters()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_snapshot::route::HttpPathMatch;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = hyper::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn m(path: Option<(&str, &str)>, headers: &[(&str, &str)], method: Option<&str>) -> Match {
        Match::compile(&HttpRouteMatch {
            path: path.map(|(t, v)| HttpPathMatch {
                match_type: Some(t.into()),
                value: Some(v.into()),
            }),
            headers: headers
                .iter()
                .map(|(n, v)| HttpValueMatch {
                    match_type: None,
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            query_params: vec![HttpValueMatch {
                match_type: Some("RegularExpression".into()),
                name: "v".into(),
                value: "[0-9]+".into(),
            }]
            .into_iter()
            .filter(|_| method == Some("QUERY"))
            .collect(),
            method: method.filter(|m| *m != "QUERY").map(String::from),
        })
        .unwrap()
    }

    #[test]
    fn prefix_matches_path_elements() {
        let p = m(Some(("PathPrefix", "/api/")), &[], None);
        assert!(p.matches(&parts("GET", "/api", &[])));
        assert!(p.matches(&parts("GET", "/api/x?q=1", &[])));
        assert!(!p.matches(&parts("GET", "/apix", &[])));
        let root = m(Some(("PathPrefix", "/")), &[], None);
        assert!(root.matches(&parts("GET", "/anything", &[])));
    }

    #[test]
    fn exact_regex_headers_method_query() {
        assert!(m(Some(("Exact", "/a")), &[], None).matches(&parts("GET", "/a", &[])));
        assert!(!m(Some(("Exact", "/a")), &[], None).matches(&parts("GET", "/a/", &[])));
        let r = m(Some(("RegularExpression", "/v[0-9]+/.*")), &[], None);
        assert!(r.matches(&parts("GET", "/v2/x", &[])));
        assert!(!r.matches(&parts("GET", "/x/v2/x", &[])));
        let h = m(None, &[("x-canary", "yes")], Some("POST"));
        assert!(h.matches(&parts("POST", "/", &[("X-Canary", "yes")])));
        assert!(!h.matches(&parts("GET", "/", &[("X-Canary", "yes")])));
        assert!(!h.matches(&parts("POST", "/", &[("X-Canary", "no")])));
        let q = m(None, &[], Some("QUERY"));
        assert!(q.matches(&parts("GET", "/?a=b&v=12", &[])));
        assert!(!q.matches(&parts("GET", "/?v=x", &[])));
    }

    #[test]
    fn precedence_prefers_exact_then_longest_then_more_headers() {
        let mut all = [
            m(Some(("PathPrefix", "/")), &[], None),
            m(Some(("PathPrefix", "/a")), &[], None),
            m(Some(("PathPrefix", "/a")), &[("x", "1")], None),
            m(Some(("Exact", "/a")), &[], None),
        ];
        all.sort_by_key(|b| std::cmp::Reverse(b.precedence()));
        assert!(matches!(all[0].path, PathMatch::Exact(_)));
        assert_eq!(all[1].headers.len(), 1);
        assert!(matches!(&all[3].path, PathMatch::Prefix(p) if p.is_empty()));
    }
}
