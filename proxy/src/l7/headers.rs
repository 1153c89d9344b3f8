//! The proxy's HTTP header policy, for HTTP/1.1 and h2c upstreams alike: which headers are
//! hop-by-hop, how Connection tokens are read, which forwarding headers a request gets, and
//! the sticky key of a canary. The one file that decides which headers are hop-by-hop.

use std::net::SocketAddr;

use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, FORWARDED, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use hyper::Uri;
use pier_snapshot::policy::Sticky;

use crate::route_filters::Arrival;

/// `x-forwarded-for`.
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
/// Keep-Alive and Proxy-Connection headers older clients send.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Whether `name` describes one connection rather than the message.
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// The tokens of one Connection (or Transfer-Encoding) header value, trimmed, empty ones skipped.
pub(super) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a Connection token is an option (`close`, `keep-alive`) rather than a header name.
pub(super) fn is_connection_option(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive")
}

/// Headers the Connection headers of `headers` name, which are dropped with the hop-by-hop ones.
pub(super) fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .filter(|t| !is_connection_option(t))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect()
}

/// Removes hop-by-hop headers, including those the Connection header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Forwarding header values of one client, computed once per connection.
pub(crate) struct ClientHeaders {
    ip: String,
    xff: HeaderValue,
    forwarded: HeaderValue,
    /// At the edge, the scheme the client used; earlier forwarding headers are the client's
    /// own claims there, so they are replaced rather than kept.
    edge_scheme: Option<HeaderValue>,
    /// The scheme and port the client came in on, for redirects.
    pub arrival: Arrival,
}

impl ClientHeaders {
    /// Values for a client at `peer`, inside the cluster (earlier proxies' headers are kept).
    pub(crate) fn new(peer: SocketAddr) -> Self {
        let arrival = Arrival {
            https: false,
            port: None,
        };
        Self::with_scheme(peer, arrival, None)
    }

    /// Values for a client of an edge listener on `port`, which reached it over `http` or
    /// `https`.
    pub(crate) fn edge(peer: SocketAddr, https: bool, port: u16) -> Self {
        let scheme = if https { "https" } else { "http" };
        let arrival = Arrival {
            https,
            port: Some(port),
        };
        Self::with_scheme(peer, arrival, Some(HeaderValue::from_static(scheme)))
    }

    fn with_scheme(peer: SocketAddr, arrival: Arrival, edge_scheme: Option<HeaderValue>) -> Self {
        let scheme = if arrival.https { "https" } else { "http" };
        let ip = peer.ip().to_string();
        let forwarded = if peer.is_ipv6() {
            format!("for=\"[{ip}]\";proto={scheme}")
        } else {
            format!("for={ip};proto={scheme}")
        };
        Self {
            xff: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded: HeaderValue::from_str(&forwarded)
                .unwrap_or(HeaderValue::from_static("for=unknown")),
            ip,
            edge_scheme,
            arrival,
        }
    }

    /// `x-forwarded-for`: the client appended to what earlier proxies wrote, as one line (at
    /// the edge, the client alone).
    fn forwarded_for(&self, headers: &HeaderMap) -> HeaderValue {
        let mut prior = headers.get_all(X_FORWARDED_FOR).iter().peekable();
        if prior.peek().is_none() || self.edge_scheme.is_some() {
            return self.xff.clone();
        }
        let mut joined = Vec::with_capacity(64);
        for v in prior {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(self.ip.as_bytes());
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| self.xff.clone())
    }
}

/// The request headers an upstream gets, whatever its protocol, passed to `emit` in order:
///
/// - the client's end-to-end headers, without hop-by-hop ones, those Connection names,
///   Content-Length (each upstream writer frames the body it sends) and X-Forwarded-For;
/// - Host, from the request target when the client sent none (HTTP/2 clients send
///   `:authority`);
/// - for a proxied `client` (none for pier's own probes): X-Forwarded-For with the client
///   appended to any earlier value, X-Forwarded-Proto unless set, and this hop's Forwarded
///   element after any earlier ones.
pub(super) fn upstream_request(
    headers: &HeaderMap,
    uri: &Uri,
    client: Option<&ClientHeaders>,
    mut emit: impl FnMut(&HeaderName, &HeaderValue),
) {
    let named = if headers.contains_key(CONNECTION) {
        connection_named(headers)
    } else {
        Vec::new()
    };
    let mut has_proto = false;
    let edge = client.is_some_and(|c| c.edge_scheme.is_some());
    for (name, value) in headers {
        if name == CONTENT_LENGTH
            || name == X_FORWARDED_FOR
            || is_hop_by_hop(name)
            || named.contains(name)
            || (edge && (name == X_FORWARDED_PROTO || name == FORWARDED))
        {
            continue;
        }
        has_proto |= name == X_FORWARDED_PROTO;
        emit(name, value);
    }
    if !headers.contains_key(HOST) {
        if let Some(v) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            emit(&HOST, &v);
        }
    }
    if let Some(client) = client {
        emit(&X_FORWARDED_FOR, &client.forwarded_for(headers));
        match &client.edge_scheme {
            Some(scheme) => emit(&X_FORWARDED_PROTO, scheme),
            None if !has_proto => emit(&X_FORWARDED_PROTO, &HeaderValue::from_static("http")),
            None => {}
        }
        emit(&FORWARDED, &client.forwarded);
    }
}

/// The value a sticky canary hashes: a cookie's or a header's.
pub(super) fn sticky_value<'a>(sticky: &Sticky, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    match sticky {
        Sticky::Header(name) => headers.get(name.as_str()).map(HeaderValue::as_bytes),
        Sticky::Cookie(name) => headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v.as_bytes())
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values `upstream_request` emitted for header `name`.
    fn values<'a>(out: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        out.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn forwarding_headers_and_hop_by_hop() {
        let req = hyper::Request::builder()
            .uri("http://web.default/x")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("x-forwarded-for", "192.0.2.1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut h = HeaderMap::new();
        upstream_request(
            &parts.headers,
            &parts.uri,
            Some(&ClientHeaders::new("10.0.0.9:5555".parse().unwrap())),
            |n, v| {
                h.append(n, v.clone());
            },
        );
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.9");
        assert_eq!(h["forwarded"], "for=10.0.0.9;proto=http");
        assert_eq!(h["host"], "web.default");
    }

    #[test]
    fn forwarding_headers_join_every_earlier_line_and_keep_the_proto() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("content-length", HeaderValue::from_static("3"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        let uri: Uri = "/x".parse().unwrap();
        let mut out: Vec<(String, String)> = Vec::new();
        upstream_request(
            &headers,
            &uri,
            Some(&ClientHeaders::new("[2001:db8::1]:80".parse().unwrap())),
            |n, v| out.push((n.to_string(), v.to_str().unwrap().to_string())),
        );
        let get = |n: &str| values(&out, n);
        assert_eq!(
            get("x-forwarded-for"),
            ["192.0.2.1, 192.0.2.2, 2001:db8::1"]
        );
        assert_eq!(get("x-forwarded-proto"), ["https"]);
        assert_eq!(get("forwarded"), ["for=\"[2001:db8::1]\";proto=http"]);
        assert!(get("content-length").is_empty() && get("te").is_empty());
        assert!(get("host").is_empty(), "no authority, no host");

        let mut without = Vec::new();
        upstream_request(&headers, &uri, None, |n, _| without.push(n.clone()));
        assert!(
            !without
                .iter()
                .any(|n| n.as_str().starts_with("x-forwarded-for") || n == "forwarded"),
            "pier's own requests carry no forwarding headers"
        );
    }

    #[test]
    fn the_edge_replaces_what_clients_claim() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(
            "forwarded",
            HeaderValue::from_static("for=192.0.2.1;proto=https"),
        );
        let uri: Uri = "/x".parse().unwrap();
        let mut out: Vec<(String, String)> = Vec::new();
        upstream_request(
            &headers,
            &uri,
            Some(&ClientHeaders::edge(
                "10.0.0.9:5000".parse().unwrap(),
                false,
                80,
            )),
            |n, v| out.push((n.to_string(), v.to_str().unwrap().to_string())),
        );
        let get = |n: &str| values(&out, n);
        assert_eq!(get("x-forwarded-for"), ["10.0.0.9"]);
        assert_eq!(get("x-forwarded-proto"), ["http"]);
        assert_eq!(get("forwarded"), ["for=10.0.0.9;proto=http"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_leave_responses() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Internal"));
        h.insert("x-internal", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn sticky_cookie_and_header() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; user=alice; b=2"));
        h.insert("x-user", HeaderValue::from_static("bob"));
        assert_eq!(
            sticky_value(&Sticky::Cookie("user".into()), &h),
            Some(&b"alice"[..])
        );
        assert_eq!(
            sticky_value(&Sticky::Header("x-user".into()), &h),
            Some(&b"bob"[..])
        );
        assert_eq!(sticky_value(&Sticky::Cookie("none".into()), &h), None);
    }
}
