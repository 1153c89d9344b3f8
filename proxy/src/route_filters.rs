//! HTTPRoute filters, compiled once per rule: request and response header changes, redirects
//! and URL rewrites, as Gateway API defines them.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::http::request::Parts;
use hyper::{StatusCode, Uri};
use pier_snapshot::route::{HeaderModifier, HttpRouteFilter, PathModifier};

/// Headers set, added and removed.
#[derive(Default)]
pub(crate) struct HeaderChanges {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))?;
    let v = HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name:?}"))?;
    Ok((n, v))
}

impl HeaderChanges {
    fn compile(m: &HeaderModifier) -> Result<Self, String> {
        Ok(Self {
            set: m
                .set
                .iter()
                .map(|h| header(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            add: m
                .add
                .iter()
                .map(|h| header(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| format!("bad header name {n:?}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies the changes: set replaces every value, add appends, remove drops.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n, v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n, v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

/// A path replacement.
enum PathChange {
    Full(String),
    Prefix(String),
}

impl PathChange {
    fn compile(m: &PathModifier) -> Option<Self> {
        match m.modifier_type.as_str() {
            "ReplaceFullPath" => m.replace_full_path.clone().map(PathChange::Full),
            "ReplacePrefixMatch" => m.replace_prefix_match.clone().map(PathChange::Prefix),
            _ => None,
        }
    }

    /// The new path of `path`, whose leading `matched` (whole elements) the rule matched.
    fn apply(&self, path: &str, matched: &str) -> String {
        match self {
            PathChange::Full(p) => p.clone(),
            PathChange::Prefix(p) => {
                let rest = path.get(matched.len()..).unwrap_or("");
                let base = p.trim_end_matches('/');
                match (base.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    (true, false) => rest.to_string(),
                    (false, _) => format!("{base}{rest}"),
                }
            }
        }
    }
}

/// `requestRedirect`.
struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    port: Option<u16>,
    path: Option<PathChange>,
    status: StatusCode,
}

/// `urlRewrite`.
struct Rewrite {
    hostname: Option<HeaderValue>,
    path: Option<PathChange>,
}

/// The filters of one rule.
#[derive(Default)]
pub(crate) struct Filters {
    /// `RequestHeaderModifier`.
    pub request_headers: Option<HeaderChanges>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderChanges>,
    redirect: Option<Redirect>,
    rewrite: Option<Rewrite>,
}

/// Where a request came in: its scheme and the listener's port, for redirects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    /// The client used TLS.
    pub https: bool,
    /// The port it connected to, when known.
    pub port: Option<u16>,
}

impl Filters {
    /// Compiles a rule's filters; ones pier does not apply (mirrors, extensions) are skipped.
    pub(crate) fn compile(filters: &[HttpRouteFilter]) -> Result<Self, String> {
        let mut out = Filters::default();
        for f in filters {
            match f.filter_type.as_str() {
                "RequestHeaderModifier" => {
                    if let Some(m) = &f.request_header_modifier {
                        out.request_headers = Some(HeaderChanges::compile(m)?);
                    }
                }
                "ResponseHeaderModifier" => {
                    if let Some(m) = &f.response_header_modifier {
                        out.response_headers = Some(HeaderChanges::compile(m)?);
                    }
                }
                "RequestRedirect" => {
                    if let Some(r) = &f.request_redirect {
                        let code = r.status_code.unwrap_or(302);
                        let status = u16::try_from(code)
                            .ok()
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .filter(StatusCode::is_redirection)
                            .ok_or_else(|| format!("bad redirect status {code}"))?;
                        out.redirect = Some(Redirect {
                            scheme: r.scheme.clone(),
                            hostname: r.hostname.clone(),
                            port: r.port.and_then(|p| u16::try_from(p).ok()),
                            path: r.path.as_ref().and_then(PathChange::compile),
                            status,
                        });
                    }
                }
                "URLRewrite" => {
                    if let Some(u) = &f.url_rewrite {
                        let hostname = u
                            .hostname
                            .as_deref()
                            .map(|h| {
                                HeaderValue::from_str(h).map_err(|_| format!("bad host name {h:?}"))
                            })
                            .transpose()?;
                        out.rewrite = Some(Rewrite {
                            hostname,
                            path: u.path.as_ref().and_then(PathChange::compile),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The redirect answering `parts` instead of a backend, if the rule has one; `matched` is
    /// the path prefix the rule matched.
    pub(crate) fn redirect(
        &self,
        parts: &Parts,
        matched: &str,
        arrival: Arrival,
    ) -> Option<(StatusCode, HeaderValue)> {
        let r = self.redirect.as_ref()?;
        let (req_host, req_port) = request_host(parts);
        let scheme = r
            .scheme
            .clone()
            .unwrap_or_else(|| if arrival.https { "https" } else { "http" }.to_string());
        // Gateway API: no port given means the scheme's well-known port when the redirect
        // names a scheme, else the listener's port.
        let port = r.port.or(if r.scheme.is_some() {
            None
        } else {
            arrival.port.or(req_port)
        });
        let host = r.hostname.clone().unwrap_or(req_host);
        let well_known = matches!(
            (scheme.as_str(), port),
            ("http", Some(80)) | ("https", Some(443))
        );
        let authority = match port {
            Some(p) if !well_known => format!("{host}:{p}"),
            _ => host,
        };
        let path = match &r.path {
            Some(change) => change.apply(parts.uri.path(), matched),
            None => parts.uri.path().to_string(),
        };
        let location = match parts.uri.query() {
            Some(q) => format!("{scheme}://{authority}{path}?{q}"),
            None => format!("{scheme}://{authority}{path}"),
        };
        Some((r.status, HeaderValue::from_str(&location).ok()?))
    }

    /// Applies the request header changes and the URL rewrite to `parts`.
    pub(crate) fn rewrite_request(&self, parts: &mut Parts, matched: &str) {
        if let Some(h) = &self.request_headers {
            h.apply(&mut parts.headers);
        }
        let Some(rw) = &self.rewrite else { return };
        if let Some(host) = &rw.hostname {
            parts.headers.insert(HOST, host.clone());
            if parts.uri.authority().is_some() {
                if let Some(uri) = with_authority(&parts.uri, host) {
                    parts.uri = uri;
                }
            }
        }
        if let Some(change) = &rw.path {
            let path = change.apply(parts.uri.path(), matched);
            if let Some(uri) = with_path(&parts.uri, &path) {
                parts.uri = uri;
            }
        }
    }
}

/// The request's host and port from `:authority` or `Host`.
fn request_host(parts: &Parts) -> (String, Option<u16>) {
    if let Some(a) = parts.uri.authority() {
        return (a.host().to_string(), a.port_u16());
    }
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
        .map(|a| (a.host().to_string(), a.port_u16()))
        .unwrap_or_default()
}

/// `uri` with its path replaced, the query kept.
pub(crate) fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

fn with_authority(uri: &Uri, host: &HeaderValue) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host.to_str().ok()?.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_snapshot::route::RequestRedirect;

    fn parts(uri: &str, host: &str) -> Parts {
        hyper::Request::builder()
            .uri(uri)
            .header(HOST, host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn redirect(r: RequestRedirect) -> Filters {
        Filters::compile(&[HttpRouteFilter {
            filter_type: "RequestRedirect".into(),
            request_redirect: Some(r),
            ..Default::default()
        }])
        .unwrap()
    }

    #[test]
    fn redirects_follow_gateway_api_port_rules() {
        let plain = Arrival {
            https: false,
            port: Some(8080),
        };
        let to_https = redirect(RequestRedirect {
            scheme: Some("https".into()),
            ..Default::default()
        });
        let (code, loc) = to_https
            .redirect(&parts("/a?b=1", "foo.example.com:8080"), "", plain)
            .unwrap();
        assert_eq!(code, StatusCode::FOUND);
        assert_eq!(loc, "https://foo.example.com/a?b=1");
        let with_port = redirect(RequestRedirect {
            scheme: Some("https".into()),
            port: Some(8443),
            status_code: Some(301),
            ..Default::default()
        });
        let (code, loc) = with_port
            .redirect(&parts("/", "foo.example.com"), "", plain)
            .unwrap();
        assert_eq!(
            (code, loc.to_str().unwrap()),
            (
                StatusCode::MOVED_PERMANENTLY,
                "https://foo.example.com:8443/"
            )
        );
        let host_only = redirect(RequestRedirect {
            hostname: Some("bar.example.com".into()),
            path: Some(PathModifier {
                modifier_type: "ReplacePrefixMatch".into(),
                replace_prefix_match: Some("/new".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let (_, loc) = host_only
            .redirect(&parts("/old/x", "foo.example.com"), "/old", plain)
            .unwrap();
        assert_eq!(loc, "http://bar.example.com:8080/new/x");
    }

    #[test]
    fn prefix_replacement_keeps_the_rest() {
        let p = PathChange::Prefix("/".into());
        assert_eq!(p.apply("/api/v1", "/api"), "/v1");
        assert_eq!(p.apply("/api", "/api"), "/");
        let q = PathChange::Prefix("/v2/".into());
        assert_eq!(q.apply("/api/x", "/api"), "/v2/x");
        assert_eq!(q.apply("/api", "/api"), "/v2");
        assert_eq!(PathChange::Full("/z".into()).apply("/a/b", "/a"), "/z");
    }
}
