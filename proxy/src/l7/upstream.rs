//! One exchange with one endpoint, over HTTP/1.1 or h2c as its group speaks: for traffic (the
//! attempt loop) and for active health checks.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{HeaderMap, Request, Uri, Version};

use super::attempt::Outcome;
use super::body::UpstreamBody;
use super::headers::{self, ClientHeaders};
use super::{h1, h2, Http};
use crate::balance::{Cluster, Member};

impl Http {
    /// One attempt against `member`: inline HTTP/1.1, or the endpoint's h2c connection.
    pub(super) async fn exchange(
        &self,
        cluster: &Cluster,
        member: &Member,
        connect_timeout: Duration,
        parts: &hyper::http::request::Parts,
        client: &ClientHeaders,
        body: UpstreamBody,
    ) -> Outcome {
        let members = cluster.members();
        let tls = members.tls.as_deref();
        if !members.h2c {
            let sent = h1::send(
                &member.state,
                member.addr,
                tls,
                connect_timeout,
                parts,
                Some(client),
                body,
            );
            return match sent.await {
                Ok(resp) => Outcome::Answered(resp.map(|b| Either::Left(Either::Right(b)))),
                Err(e) if e.is_connect() => Outcome::ConnectFailed(e.to_string()),
                Err(e) => Outcome::Broken(e.to_string()),
            };
        }
        let Some(req) = h2_request(parts, Some(client), member, body) else {
            return Outcome::Broken("request target cannot be sent over HTTP/2".into());
        };
        // Boxed: h2c groups are rare, and the HTTP/2 handshake inline would make every
        // attempt's future (one per request) several kilobytes larger.
        match Box::pin(self.h2.send(member.addr, tls, connect_timeout, req)).await {
            Ok(resp) => {
                let (mut head, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut head.headers);
                Outcome::Answered(hyper::Response::from_parts(
                    head,
                    Either::Left(Either::Left(body)),
                ))
            }
            Err(h2::SendError::Connect(e)) => Outcome::ConnectFailed(e),
            Err(e) => Outcome::Broken(e.to_string()),
        }
    }

    /// Whether `GET path` on `member` answers 2xx or 3xx within `timeout`, in the group's
    /// protocol and over its connections, like traffic. The connection, if one must be made,
    /// gets the Service's connect timeout (or the check's, if shorter).
    pub(crate) async fn probe(
        self: &Arc<Self>,
        cluster: &Cluster,
        member: &Member,
        path: &str,
        timeout: Duration,
    ) -> bool {
        let Ok(req) = Request::get(path)
            .header(hyper::header::HOST, member.addr.to_string())
            .header(hyper::header::USER_AGENT, "pier-health-check")
            .body(())
        else {
            return false;
        };
        let (parts, ()) = req.into_parts();
        let members = cluster.members();
        let connect_timeout = members.policy.connect_timeout.min(timeout);
        let exchange = async {
            let empty = UpstreamBody::Full(Bytes::new());
            if members.h2c {
                let req = h2_request(&parts, None, member, empty)?;
                let tls = members.tls.as_deref();
                let resp = self
                    .h2
                    .send(member.addr, tls, connect_timeout, req)
                    .await
                    .ok()?;
                Some((resp.status(), resp.into_body().collect().await.is_ok()))
            } else {
                let sent = h1::send(
                    &member.state,
                    member.addr,
                    members.tls.as_deref(),
                    connect_timeout,
                    &parts,
                    None,
                    empty,
                );
                let resp = sent.await.ok()?;
                // Read to the end so the connection goes back to the pool.
                Some((resp.status(), resp.into_body().collect().await.is_ok()))
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some((status, read))) => read && (status.is_success() || status.is_redirection()),
            _ => false,
        }
    }
}

/// The request an h2c endpoint gets: its address as the authority, headers as
/// [`headers::upstream_request`] decides.
fn h2_request(
    parts: &hyper::http::request::Parts,
    client: Option<&ClientHeaders>,
    member: &Member,
    body: UpstreamBody,
) -> Option<Request<UpstreamBody>> {
    let mut uri = hyper::http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(Authority::try_from(member.addr.to_string()).ok()?);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 3);
    headers::upstream_request(&parts.headers, &parts.uri, client, |name, value| {
        headers.append(name, value.clone());
    });
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = Uri::from_parts(uri).ok()?;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    Some(req)
}
