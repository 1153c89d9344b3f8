//! Follower mode's part: the kube-rs watchers that mirror a Kubernetes API server's objects
//! into the store (Namespaces first, so the others have theirs), and this node's presence on
//! that server (its Lease and Events). Each runs supervised, restarted with backoff.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pier_controlplane::follower::{self, KubeSource, KINDS};
use pier_model::Kind;

use super::Parts;
use crate::daemon::supervise;

/// How long the daemon waits for the first list of Namespaces before it starts the rest
/// anyway (an API server down at start is followed when it comes).
const FIRST_LIST: Duration = Duration::from_secs(10);

/// Connects to the API server `source` names and starts following it.
pub(crate) async fn start(parts: &mut Parts, source: &KubeSource, node_name: &str) -> Result<()> {
    let (client, server) = follower::connect(source).await.context("follower mode")?;
    tracing::info!(%server, "following a Kubernetes API server: its Services, EndpointSlices, routes and Nodes");
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    spawn(
        parts,
        Kind::Namespace,
        (&client, &server),
        node_name,
        Some(listed_tx),
    );
    if tokio::time::timeout(FIRST_LIST, listed).await.is_err() {
        tracing::warn!(%server, "no list of Namespaces yet; following the rest meanwhile");
    }
    for kind in KINDS.into_iter().filter(|k| *k != Kind::Namespace) {
        spawn(parts, kind, (&client, &server), node_name, None);
    }
    let (client, node, shutdown) = (
        client.clone(),
        node_name.to_string(),
        parts.shutdown.clone(),
    );
    parts
        .tasks
        .push(supervise("follower-presence", shutdown, move || {
            follower::announce(client.clone(), node.clone(), server.clone())
        }));
    Ok(())
}

fn spawn(
    parts: &mut Parts,
    kind: Kind,
    (client, server): (&follower::Client, &str),
    node_name: &str,
    listed: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let (store, client, node) = (
        Arc::clone(&parts.store),
        client.clone(),
        node_name.to_string(),
    );
    let server = server.to_string();
    let mut listed = listed;
    parts
        .tasks
        .push(supervise("follower", parts.shutdown.clone(), move || {
            let (store, client) = (Arc::clone(&store), client.clone());
            follower::follow(
                store,
                client,
                kind,
                node.clone(),
                server.clone(),
                listed.take(),
            )
        }));
}
