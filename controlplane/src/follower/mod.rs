//! Follower mode: pier as kube-proxy + CoreDNS on a node of a Kubernetes cluster. kube-rs
//! watchers follow the API server's Namespaces, Nodes, Services, EndpointSlices, Gateway
//! API routes, Ingresses with their classes and TLS Secrets into the local store (`mirror.rs`), from which the snapshot feeds the
//! socket-LB, the proxy and DNS as on any node; no controller runs. The only writes to the
//! API server are this node's own: its heartbeat Lease and its Events (`presence.rs`).

mod mirror;
mod presence;

use std::path::PathBuf;
use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};
use crate::store::Store;
use pier_model::Kind;

pub use kube::Client;
pub use mirror::ORIGIN_ANNOTATION;

/// Where the API server and the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeSource {
    /// A kubeconfig file (its current context).
    File(PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
}

/// The kinds followed; Namespaces first, as the store keeps objects only in namespaces it has.
/// Of Secrets, only `kubernetes.io/tls` ones, which Ingresses and Gateway listeners name (`mirror::selection`).
pub const KINDS: [Kind; 13] = [
    Kind::Namespace,
    Kind::Node,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::HttpRoute,
    Kind::TcpRoute,
    Kind::UdpRoute,
    Kind::TlsRoute,
    Kind::IngressClass,
    Kind::Ingress,
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::Secret,
];

/// A client for the API server `source` names, and that server's URL.
pub async fn connect(source: &KubeSource) -> Result<(kube::Client, String)> {
    let config = match source {
        KubeSource::File(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                Error::BadRequest(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::BadRequest(format!("kubeconfig {}: {e}", path.display())))?
        }
        KubeSource::InCluster => kube::Config::incluster()
            .map_err(|e| Error::BadRequest(format!("in-cluster configuration: {e}")))?,
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::BadRequest(format!("Kubernetes client for {server}: {e}")))?;
    Ok((client, server))
}

/// Follows `kind` from the API server at `origin` into `store` until the watch ends;
/// `listed` is told once the first list is in the store.
pub async fn follow(
    store: Arc<Store>,
    client: kube::Client,
    kind: Kind,
    node_name: String,
    origin: String,
    listed: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<()> {
    mirror::Mirror::new(store, kind, node_name, origin)
        .run(client, listed)
        .await
}

/// Keeps this node's Lease on the API server renewed, and reports that it follows.
pub async fn announce(client: kube::Client, node_name: String, server: String) -> Result<()> {
    presence::run(client, node_name, server).await
}
