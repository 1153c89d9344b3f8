//! Header handling of the HTTP proxy: hop-by-hop removal, forwarding headers, sticky keys.

use std::net::SocketAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use pier_snapshot::policy::Sticky;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

/// Forwarding header values of one client, computed once per connection.
pub struct ClientHeaders {
    ip: String,
    xff: HeaderValue,
    forwarded: HeaderValue,
}

impl ClientHeaders {
    /// Values for a client at `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_string();
        let forwarded = if peer.is_ipv6() {
            format!("for=\"[{ip}]\";proto=http")
        } else {
            format!("for={ip};proto=http")
        };
        Self {
            xff: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded: HeaderValue::from_str(&forwarded)
                .unwrap_or(HeaderValue::from_static("for=unknown")),
            ip,
        }
    }
}

/// Readies request headers for an h2c upstream: hop-by-hop headers out, Host kept,
/// forwarding headers (`x-forwarded-for`, `x-forwarded-proto`, `forwarded`) added.
/// (HTTP/1.1 upstreams get the same in [`super::h1`], while the head is written.)
pub fn prepare_request(headers: &mut HeaderMap, uri: &hyper::Uri, client: &ClientHeaders) {
    strip_hop_by_hop(headers);
    if !headers.contains_key(HOST) {
        if let Some(v) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(HOST, v);
        }
    }
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {}", client.ip)).ok(),
        None => Some(client.xff.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    headers.append(hyper::header::FORWARDED, client.forwarded.clone());
}

/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether a header describes one connection rather than the message.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    use hyper::header::{TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Headers a Connection header names (beyond `close` and `keep-alive`), to drop too.
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

/// Forwarding values for this client (for writers that serialize heads themselves).
impl ClientHeaders {
    /// The client's address, as x-forwarded-for and `forwarded` put it.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// This hop's `forwarded` element.
    pub fn forwarded(&self) -> &HeaderValue {
        &self.forwarded
    }
}

/// The value a sticky canary hashes: a cookie's or a header's.
pub fn sticky_value<'a>(sticky: &Sticky, headers: &'a HeaderMap) -> Option<&'a [u8]> {
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

    #[test]
    fn forwarding_headers_and_hop_by_hop() {
        let req = hyper::Request::builder()
            .uri("http://web.default/x")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("x-forwarded-for", "192.0.2.1")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        prepare_request(
            &mut parts.headers,
            &parts.uri,
            &ClientHeaders::new("10.0.0.9:5555".parse().unwrap()),
        );
        let h = &parts.headers;
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.9");
        assert_eq!(h["forwarded"], "for=10.0.0.9;proto=http");
        assert_eq!(h["host"], "web.default");
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
