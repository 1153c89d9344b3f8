//! L4 TCP: pick a group and an endpoint per connection, connect (retrying others), then relay
//! both ways with half-close and an idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::balance::{Cluster, InFlight};
use crate::frontend::{Frontend, Mode};
use crate::io::{Activity, Tracked};
use crate::l4::affinity_hash;
use crate::l4::resets::ResetCounted;

/// Connects to an endpoint of `cluster`, trying up to `1 + retries` endpoints.
pub(crate) async fn connect(
    frontend: &Frontend,
    cluster: &Cluster,
    hash: u64,
) -> Option<(TcpStream, InFlight, prometheus::IntCounter)> {
    let mut tried: Vec<SocketAddr> = Vec::new();
    for attempt in 0..=frontend.policy.retries {
        let member = match cluster.pick(hash, &tried) {
            Ok(m) => m,
            Err(_) => break,
        };
        if attempt > 0 {
            frontend.metrics.retries.inc();
        }
        let started = Instant::now();
        let guard = InFlight::new(Arc::clone(&member));
        match tokio::time::timeout(
            frontend.policy.connect_timeout,
            TcpStream::connect(member.addr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                cluster.success(&member);
                cluster
                    .metrics
                    .upstream_duration
                    .observe(started.elapsed().as_secs_f64());
                let metrics = cluster.metrics_of(&member);
                metrics.connections.inc();
                return Some((stream, guard, metrics.resets.clone()));
            }
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %member.addr, error = %e, "connect failed");
                cluster.metrics_of(&member).connect_failures.inc();
                cluster.failure(&member);
            }
            Err(_) => {
                tracing::debug!(endpoint = %member.addr, "connect timed out");
                cluster.metrics_of(&member).connect_failures.inc();
                cluster.failure(&member);
            }
        }
        tried.push(member.addr);
    }
    None
}

/// Relays one client connection.
pub(crate) async fn serve(client: TcpStream, peer: SocketAddr, frontend: Arc<Frontend>) {
    relay(client, peer, frontend, &[]).await;
}

/// Relays one client connection whose first bytes, `read`, were already read from it (a TLS
/// ClientHello read for its SNI name): the upstream gets them first.
pub(crate) async fn relay(
    client: TcpStream,
    peer: SocketAddr,
    frontend: Arc<Frontend>,
    read: &[u8],
) {
    let Mode::L4(groups) = &frontend.mode else {
        return;
    };
    let hash = affinity_hash(&frontend, peer);
    let upstream = match groups.pick(hash) {
        Some(cluster) => connect(&frontend, cluster, hash.unwrap_or_else(rand::random)).await,
        None => None,
    };
    let Some((mut upstream, _in_flight, resets)) = upstream else {
        frontend.metrics.no_endpoint.inc();
        // Reset rather than close, as kube-proxy's REJECT does: the client fails fast.
        if let Err(e) = socket2::SockRef::from(&client).set_linger(Some(std::time::Duration::ZERO))
        {
            tracing::debug!(error = %e, "client closed without a reset");
        }
        return;
    };
    for conn in [&client, &upstream] {
        if let Err(e) = conn.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    }
    if !read.is_empty() {
        if let Err(e) = upstream.write_all(read).await {
            tracing::debug!(%peer, error = %e, "upstream closed before the first bytes");
            return;
        }
        frontend.metrics.bytes_in.inc_by(read.len() as u64);
    }
    let upstream = ResetCounted::new(upstream, resets);
    let activity = Activity::new();
    let mut a = Tracked::new(
        client,
        activity.clone(),
        frontend.metrics.bytes_in.clone(),
        frontend.metrics.bytes_out.clone(),
    );
    let mut b = upstream;
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "relay ended");
            }
        }
        () = activity.idle(frontend.idle_timeout()) => {
            tracing::debug!(%peer, "idle timeout");
        }
    }
}
