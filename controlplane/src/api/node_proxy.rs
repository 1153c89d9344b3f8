//! A node's metrics where the Kubernetes API serves a kubelet's, through the node proxy:
//! `/api/v1/nodes/NODE/proxy/metrics` (pier's own registry, in Prometheus' text format or, when
//! `Accept` asks for it, the delimited protobuf one) and `/api/v1/nodes/NODE/proxy/metrics/resource`
//! (its pods' CPU and memory, named as the kubelet's resource metrics). Asked of another node,
//! the request is relayed to that node's API (`pod_relay.rs`), so `kubectl get --raw` works
//! against any node, and the leader gathers every node's this way (`cluster/node_metrics.rs`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, ProtobufEncoder, TextEncoder};

use super::pod_relay::Routed;
use super::server::{status_response, ApiContext, Body};
use crate::kube::failure;

/// What a node proxy path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMetricsPath {
    /// pier's own metrics (`/metrics`).
    Metrics,
    /// Its pods' resource use (`/metrics/resource`).
    Resource,
}

impl NodeMetricsPath {
    /// The node proxy path of `node` for this.
    pub(crate) fn path(self, node: &str) -> String {
        match self {
            NodeMetricsPath::Metrics => format!("/api/v1/nodes/{node}/proxy/metrics"),
            NodeMetricsPath::Resource => format!("/api/v1/nodes/{node}/proxy/metrics/resource"),
        }
    }
}

/// The node and what is asked of it, when `path` is a node's metrics.
pub(crate) fn parse(path: &str) -> Option<(&str, NodeMetricsPath)> {
    let rest = path.strip_prefix("/api/v1/nodes/")?;
    let (node, rest) = rest.split_once('/')?;
    if node.is_empty() {
        return None;
    }
    let which = match rest.trim_end_matches('/') {
        "proxy/metrics" => NodeMetricsPath::Metrics,
        "proxy/metrics/resource" => NodeMetricsPath::Resource,
        _ => return None,
    };
    Some((node, which))
}

/// Answers a request for `node`'s metrics: this node's served here, another's relayed.
pub(crate) async fn serve(
    ctx: &ApiContext,
    mut req: Request<Incoming>,
    node: &str,
    which: NodeMetricsPath,
) -> Response<Body> {
    if req.method() != Method::GET {
        return status_response(failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{} is not supported on a node's metrics, only GET",
                req.method()
            ),
            None,
        ));
    }
    let Some(metrics) = &ctx.node_metrics else {
        return not_here(node, None);
    };
    if node != metrics.node_name() {
        let Some(relay) = &ctx.relay else {
            return not_here(node, Some(metrics.node_name()));
        };
        match relay.route_to_node(ctx, req, node).await {
            Routed::Answered(resp) => return resp,
            Routed::Local(local) => req = local,
        }
        if node != metrics.node_name() {
            return not_here(node, Some(metrics.node_name()));
        }
    }
    let families = match which {
        NodeMetricsPath::Metrics => metrics.own(),
        NodeMetricsPath::Resource => match metrics.own_resource().await {
            Ok(families) => families,
            Err(e) => {
                return status_response(failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("reading node {node}'s resource metrics: {e}"),
                    None,
                ))
            }
        },
    };
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    encoded(&families, accept)
}

/// `families` in the format `accept` asks for: delimited protobuf or text.
fn encoded(families: &[MetricFamily], accept: &str) -> Response<Body> {
    let protobuf = accept.contains("application/vnd.google.protobuf");
    let mut out = Vec::new();
    let (written, content_type) = if protobuf {
        (
            ProtobufEncoder::new().encode(families, &mut out),
            prometheus::PROTOBUF_FORMAT,
        )
    } else {
        (
            TextEncoder::new().encode(families, &mut out),
            prometheus::TEXT_FORMAT,
        )
    };
    if let Err(e) = written {
        return status_response(failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("encoding metrics: {e}"),
            None,
        ));
    }
    let mut resp = Response::new(Full::new(Bytes::from(out)).boxed());
    if let Ok(value) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, value);
    }
    resp
}

/// `404`: this API serves no metrics of `node`.
fn not_here(node: &str, own: Option<&str>) -> Response<Body> {
    let why = match own {
        Some(own) => format!("nodes {node:?} not found: this API serves node {own:?}'s metrics and relays to no other"),
        None => format!("nodes {node:?} not found: this API serves no node's metrics"),
    };
    status_response(failure(StatusCode::NOT_FOUND, "NotFound", why, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_paths_are_the_kubelets() {
        assert_eq!(
            parse("/api/v1/nodes/n3/proxy/metrics"),
            Some(("n3", NodeMetricsPath::Metrics))
        );
        assert_eq!(
            parse("/api/v1/nodes/n3/proxy/metrics/resource"),
            Some(("n3", NodeMetricsPath::Resource))
        );
        assert_eq!(parse("/api/v1/nodes/n3/proxy/pods"), None);
        assert_eq!(parse("/api/v1/nodes/n3"), None);
        assert_eq!(parse("/api/v1/nodes//proxy/metrics"), None);
        assert_eq!(parse("/api/v1/nodes/n3/status"), None);
        for which in [NodeMetricsPath::Metrics, NodeMetricsPath::Resource] {
            assert_eq!(parse(&which.path("n1")), Some(("n1", which)));
        }
    }
}
