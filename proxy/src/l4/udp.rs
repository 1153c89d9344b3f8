//! L4 UDP: a flow per client address, each with its own connected upstream socket; replies are
//! sent from the listening (VIP) socket, so clients see the VIP as the source.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;

use crate::balance::{Cluster, InFlight};
use crate::frontend::{Frontend, Mode};
use crate::io::Activity;
use crate::l4::affinity_hash;
use crate::metrics::ProxyMetrics;

type Flows = Arc<Mutex<HashMap<SocketAddr, (Arc<UdpSocket>, Activity)>>>;

/// Serves datagrams arriving on `socket` until the task is aborted.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    frontend: Arc<ArcSwap<Frontend>>,
    metrics: Arc<ProxyMetrics>,
    max_flows: usize,
    idle: std::time::Duration,
) {
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let existing = flows.lock().ok().and_then(|f| f.get(&peer).cloned());
        if let Some((upstream, activity)) = existing {
            activity.touch();
            let fe = frontend.load();
            fe.metrics.bytes_in.inc_by(n as u64);
            if let Err(e) = upstream.send(&buf[..n]).await {
                tracing::trace!(error = %e, "datagram to the endpoint dropped");
            }
            continue;
        }
        if flows.lock().map(|f| f.len()).unwrap_or(0) >= max_flows {
            metrics.udp_flows_dropped.inc();
            continue;
        }
        let fe = frontend.load_full();
        let Mode::L4(groups) = &fe.mode else {
            continue;
        };
        let hash = affinity_hash(&fe, peer);
        let Some(cluster) = groups.pick(hash) else {
            fe.metrics.no_endpoint.inc();
            continue;
        };
        let Ok(member) = cluster.pick(hash.unwrap_or_else(rand::random), &[]) else {
            fe.metrics.no_endpoint.inc();
            continue;
        };
        let bind: IpAddr = match member.addr {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let upstream = match UdpSocket::bind((bind, 0)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "udp upstream socket");
                continue;
            }
        };
        if upstream.connect(member.addr).await.is_err() {
            cluster.failure(&member);
            continue;
        }
        let upstream = Arc::new(upstream);
        fe.metrics.bytes_in.inc_by(n as u64);
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::trace!(error = %e, "datagram to the endpoint dropped");
        }
        cluster.metrics_of(&member).connections.inc();
        let activity = Activity::new();
        if let Ok(mut f) = flows.lock() {
            f.insert(peer, (Arc::clone(&upstream), activity.clone()));
        }
        let flow = Flow {
            client: peer,
            socket: Arc::clone(&socket),
            upstream,
            flows: Arc::clone(&flows),
            cluster: Arc::clone(cluster),
            in_flight: InFlight::new(member),
            frontend: Arc::clone(&fe),
            activity,
        };
        tokio::spawn(flow.run(idle));
    }
}

struct Flow {
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    flows: Flows,
    cluster: Arc<Cluster>,
    in_flight: InFlight,
    frontend: Arc<Frontend>,
    activity: Activity,
}

impl Flow {
    /// Relays replies to the client until the flow idles out or the endpoint refuses.
    async fn run(self, idle: std::time::Duration) {
        let activity = self.activity.clone();
        let mut buf = vec![0u8; 65_535];
        loop {
            tokio::select! {
                r = self.upstream.recv(&mut buf) => match r {
                    Ok(n) => {
                        activity.touch();
                        self.frontend.metrics.bytes_out.inc_by(n as u64);
                        if let Err(e) = self.socket.send_to(&buf[..n], self.client).await {
                            tracing::trace!(error = %e, "reply datagram to the client dropped");
                        }
                        self.cluster.success(self.in_flight.member());
                    }
                    Err(e) => {
                        // ECONNREFUSED from an ICMP port unreachable: the endpoint is gone.
                        tracing::debug!(client = %self.client, error = %e, "udp flow upstream error");
                        self.cluster.failure(self.in_flight.member());
                        break;
                    }
                },
                () = activity.idle(idle) => break,
            }
        }
        if let Ok(mut f) = self.flows.lock() {
            if f.get(&self.client)
                .is_some_and(|(u, _)| Arc::ptr_eq(u, &self.upstream))
            {
                f.remove(&self.client);
            }
        }
    }
}
