//! Pod subresources (`log`, `exec`, `attach`, `portforward`) of a pod that runs on another
//! node of the cluster, relayed to that node's API, as the Kubernetes API server relays them
//! to the pod's kubelet. Each node with a TCP listener publishes on its Node where it listens,
//! the CA its serving certificate chains to, and the SHA-256 of a token it makes at start;
//! a node relays with its own token, trusting only the CA the pod's node published, and a node
//! takes a published token for these subresources and for reading a node's metrics
//! (`node_proxy.rs`, which it relays the same way) only. An upgraded request (exec,
//! port-forward) is passed on whole, and once the pod's node has switched protocols the two
//! connections are spliced; a relayed request is never relayed again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pier_model::{Kind, Object};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::server::{status_response, ApiContext, Body};
use super::tokens;
use crate::kube::{failure, Failure};
use crate::store::Store;

/// Annotation on a Node: where its API listens (`IP:PORT`).
pub(crate) const ENDPOINT_ANNOTATION: &str = "pier.dev/api-endpoint";
/// Annotation on a Node: the PEM CA its API's serving certificate chains to.
pub(crate) const CA_ANNOTATION: &str = "pier.dev/api-ca";
/// Annotation on a Node: hex SHA-256 of the token it relays pod requests with.
pub(crate) const TOKEN_ANNOTATION: &str = "pier.dev/api-relay-token-sha256";
/// Header a relayed request carries: the node that relayed it.
pub(crate) const RELAYED_BY: &str = "x-pier-relayed-by";
/// Longest the pod's node may take to accept the connection and finish TLS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Response headers that belong to one connection, not passed on (hyper frames the body).
const HOP_BY_HOP: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "connection",
];

/// This node's part in relaying: its name and the token it shows other nodes.
pub struct PodRelay {
    node_name: String,
    token: String,
}

/// Where a pod subresource request goes.
pub(crate) enum Routed {
    /// The pod is this node's (or the request was relayed here): serve it.
    Local(Request<Incoming>),
    /// Relayed, or refused.
    Answered(Response<Body>),
}

impl PodRelay {
    /// Relaying for node `node_name`, with a token made now.
    pub fn new(node_name: &str) -> crate::Result<PodRelay> {
        Ok(PodRelay {
            node_name: node_name.to_string(),
            token: tokens::generate()?,
        })
    }

    /// What this node publishes on its Node: its token's digest, so others take what it
    /// relays, and where its API listens with the CA it chains to (`listener`, when other
    /// nodes can reach it), so others relay to it.
    pub fn annotations(&self, listener: Option<(SocketAddr, &str)>) -> BTreeMap<String, String> {
        let mut published =
            BTreeMap::from([(TOKEN_ANNOTATION.to_string(), tokens::digest(&self.token))]);
        if let Some((endpoint, ca_pem)) = listener {
            published.insert(ENDPOINT_ANNOTATION.to_string(), endpoint.to_string());
            published.insert(CA_ANNOTATION.to_string(), ca_pem.to_string());
        }
        published
    }

    /// Relays `req` for the pod `namespace`/`name` when another node runs it.
    pub(crate) async fn route(
        &self,
        ctx: &ApiContext,
        req: Request<Incoming>,
        namespace: &str,
        name: &str,
        subresource: &str,
    ) -> Routed {
        if req.headers().contains_key(RELAYED_BY) {
            return Routed::Local(req);
        }
        let node = match pod_node(ctx, namespace, name).await {
            Ok(Some(node)) if node != self.node_name => node,
            Ok(_) => return Routed::Local(req),
            Err(f) => return Routed::Answered(status_response(f)),
        };
        let answered = match peer(&ctx.store, &node).await {
            Ok(peer) => self.forward(req, &peer).await,
            Err(f) => Err(f),
        };
        let code = answered.as_ref().map_or(0, |r| r.status().as_u16());
        ctx.metrics
            .pod_relays
            .with_label_values(&[subresource, &code.to_string()])
            .inc();
        Routed::Answered(answered.unwrap_or_else(|f| {
            tracing::warn!(pod = %format!("{namespace}/{name}"), %node, subresource, message = %f.body["message"], "relaying a pod request failed");
            status_response(f)
        }))
    }

    /// Relays `req`, a request for node `node`'s own data, when `node` is another node.
    pub(crate) async fn route_to_node(
        &self,
        ctx: &ApiContext,
        req: Request<Incoming>,
        node: &str,
    ) -> Routed {
        if req.headers().contains_key(RELAYED_BY) || node == self.node_name {
            return Routed::Local(req);
        }
        let answered = match peer(&ctx.store, node).await {
            Ok(peer) => self.forward(req, &peer).await,
            Err(f) => Err(f),
        };
        Routed::Answered(answered.unwrap_or_else(|f| {
            if f.code.is_server_error() {
                tracing::warn!(%node, message = %f.body["message"], "relaying a node request failed");
            }
            status_response(f)
        }))
    }

    /// `GET path` of node `node`'s API with `accept`: the body of a `200`, else why not.
    pub(crate) async fn get(
        &self,
        store: &Arc<Store>,
        node: &str,
        path: &str,
        accept: &str,
    ) -> Result<Bytes, String> {
        let message = |f: Failure| f.body["message"].as_str().unwrap_or("").to_string();
        let peer = peer(store, node).await.map_err(message)?;
        let req = Request::get(path)
            .header(HOST, peer.endpoint.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::ACCEPT, accept)
            .header(RELAYED_BY, &self.node_name)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| format!("asking node {node} for {path}: {e}"))?;
        let mut sender = connect::<http_body_util::Empty<Bytes>>(&peer)
            .await
            .map_err(message)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("asking node {node} for {path}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading node {node}'s {path}: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "node {node} answered {status} for {path}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        Ok(body)
    }

    /// Sends `req` on to `peer` and answers what it answers; splices the two connections when
    /// it switches protocols.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
    ) -> Result<Response<Body>, Failure> {
        let upgrading = req.headers().contains_key(UPGRADE);
        let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(AUTHORIZATION);
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|e| unreachable_node(&peer.node, &e))?;
        parts.headers.insert(AUTHORIZATION, bearer);
        let host = HeaderValue::from_str(&peer.endpoint.to_string())
            .map_err(|e| unreachable_node(&peer.node, &e))?;
        parts.headers.insert(HOST, host);
        let by =
            HeaderValue::from_str(&self.node_name).map_err(|e| unreachable_node(&peer.node, &e))?;
        parts.headers.insert(RELAYED_BY, by);
        let mut sender = connect(peer).await?;
        let mut resp = sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| unreachable_node(&peer.node, &e))?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(unreachable_node(
                    &peer.node,
                    &"it switched protocols unasked",
                ));
            };
            let peer_upgrade = hyper::upgrade::on(&mut resp);
            let node = peer.node.clone();
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, peer_upgrade) {
                    Ok((client, peer)) => {
                        let (mut client, mut peer) = (TokioIo::new(client), TokioIo::new(peer));
                        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut peer).await
                        {
                            tracing::debug!(%node, error = %e, "relayed pod stream ended");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%node, error = %e, "relayed upgrade did not complete")
                    }
                }
            });
            let mut answer = Response::new(http_body_util::Empty::new().boxed());
            *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *answer.headers_mut() = resp.headers().clone();
            answer
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            return Ok(answer);
        }
        Ok(streamed(resp))
    }
}

/// A node to relay to: its name, where its API listens and the CA it chains to.
struct Peer {
    node: String,
    endpoint: SocketAddr,
    ca: Vec<CertificateDer<'static>>,
}

/// The node pod `namespace`/`name` is bound to; `None` for a pod missing or not yet bound
/// (served here, which says so).
async fn pod_node(
    ctx: &ApiContext,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, Failure> {
    let (ns, n) = (namespace.to_string(), name.to_string());
    let pod = ctx
        .store
        .blocking("reading a pod to relay to", move |s| {
            s.get(Kind::Pod, &ns, &n)
        })
        .await
        .map_err(|e| crate::kube::from_error(&e))?;
    Ok(match pod {
        Some(Object::Pod(pod)) => pod.spec.node_name,
        _ => None,
    })
}

/// What node `node` published for relaying to it.
async fn peer(store: &Arc<Store>, node: &str) -> Result<Peer, Failure> {
    let name = node.to_string();
    let found = store
        .blocking("reading the pod's Node", move |s| {
            s.get(Kind::Node, "", &name)
        })
        .await
        .map_err(|e| crate::kube::from_error(&e))?;
    let annotations = match found {
        Some(Object::Node(n)) => n.metadata.annotations,
        _ => {
            return Err(failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("nodes {node:?} not found"),
                None,
            ))
        }
    };
    let (Some(endpoint), Some(ca)) = (
        annotations.get(ENDPOINT_ANNOTATION),
        annotations.get(CA_ANNOTATION),
    ) else {
        return Err(failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("the pod runs on node {node}, which serves no API to relay to (start its daemon with --api-listen)"),
            None,
        ));
    };
    let endpoint = endpoint.parse().map_err(|e| {
        unreachable_node(
            node,
            &format!("its {ENDPOINT_ANNOTATION} {endpoint:?}: {e}"),
        )
    })?;
    let ca = CertificateDer::pem_slice_iter(ca.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreachable_node(node, &format!("its {CA_ANNOTATION}: {e}")))?;
    Ok(Peer {
        node: node.to_string(),
        endpoint,
        ca,
    })
}

/// An HTTP/1.1 connection to `peer`'s API over TLS that trusts only its published CA.
async fn connect<B>(peer: &Peer) -> Result<hyper::client::conn::http1::SendRequest<B>, Failure>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fail = |e: &dyn std::fmt::Display| unreachable_node(&peer.node, e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in &peer.ca {
        roots.add(cert.clone()).map_err(|e| fail(&e))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::IpAddress(peer.endpoint.ip().into());
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = TcpStream::connect(peer.endpoint).await?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    })
    .await
    .map_err(|_| {
        fail(&format!(
            "no connection to {} within {CONNECT_TIMEOUT:?}",
            peer.endpoint
        ))
    })?
    .map_err(|e| fail(&format!("{}: {e}", peer.endpoint)))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connected))
        .await
        .map_err(|e| fail(&e))?;
    let node = peer.node.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%node, error = %e, "relay connection ended");
        }
    });
    Ok(sender)
}

/// The peer's answer with its body passed on as it comes.
fn streamed(resp: Response<Incoming>) -> Response<Body> {
    let (parts, mut body) = resp.into_parts();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "relayed response ended early");
                    return;
                }
            }
        }
    });
    let mut answer = super::server::streamed(rx, "text/plain");
    *answer.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// `502`: the pod's node could not be reached or answered nothing usable.
fn unreachable_node(node: &str, e: &dyn std::fmt::Display) -> Failure {
    failure(
        StatusCode::BAD_GATEWAY,
        "ServiceUnavailable",
        format!("error relaying to node {node}, which runs the pod: {e}"),
        None,
    )
}

/// The node whose published relay token `token` is, when `path` is a pod subresource or a
/// node's metrics (the only things a node's token opens).
pub(crate) async fn peer_token(ctx: &ApiContext, token: &str, path: &str) -> Option<String> {
    if super::pod_container::subresource(path).is_none() && super::node_proxy::parse(path).is_none()
    {
        return None;
    }
    let digest = tokens::digest(token);
    let nodes = ctx
        .store
        .blocking("reading Nodes for a relay token", |s| {
            s.list(Kind::Node, None, None)
        })
        .await;
    let nodes = match nodes {
        Ok((nodes, _)) => nodes,
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "checking a relay token");
            return None;
        }
    };
    nodes.into_iter().find_map(|n| {
        let meta = n.meta();
        (meta.annotations.get(TOKEN_ANNOTATION) == Some(&digest)).then(|| meta.name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pod_subresources_are_relayed() {
        use super::super::pod_container::subresource;
        assert_eq!(
            subresource("/api/v1/namespaces/default/pods/web/exec"),
            Some(("default", "web", "exec"))
        );
        assert_eq!(
            subresource("/api/v1/namespaces/x/pods/web/portforward"),
            Some(("x", "web", "portforward"))
        );
        assert_eq!(subresource("/api/v1/namespaces/x/pods/web/status"), None);
        assert_eq!(subresource("/api/v1/namespaces/x/pods/web"), None);
        assert_eq!(subresource("/api/v1/namespaces/x/secrets/web/log"), None);
    }

    #[test]
    fn a_node_publishes_its_token_digest_never_the_token() {
        let relay = PodRelay::new("n1").unwrap();
        let published = relay.annotations(Some(("192.168.77.1:6443".parse().unwrap(), "PEM")));
        assert_eq!(published[ENDPOINT_ANNOTATION], "192.168.77.1:6443");
        assert_eq!(published[TOKEN_ANNOTATION], tokens::digest(&relay.token));
        assert!(!published.values().any(|v| v.contains(&relay.token)));
        let unreachable = relay.annotations(None);
        assert_eq!(
            unreachable.len(),
            1,
            "only the token's digest: {unreachable:?}"
        );
    }
}
