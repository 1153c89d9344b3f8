//! Forwarding to upstream resolvers: UDP with an ID and question check, TCP on truncation,
//! failover across upstreams, and never to pier's own listeners.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstream is configured (or all were pier itself).
    #[error("no upstream resolver configured")]
    NoUpstream,
    /// Every upstream failed; the last error.
    #[error("all upstreams failed; last: {0}")]
    AllFailed(String),
}

/// Upstream resolvers and how long to wait for each.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

/// Observes upstream exchanges (for metrics).
pub trait UpstreamObserver: Send + Sync {
    /// One exchange with `upstream` finished (ok or not) after `elapsed`.
    fn exchange(&self, upstream: SocketAddr, elapsed: Duration, ok: bool);
}

/// Reads `nameserver` lines from a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.split('%').next())
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

fn is_self(upstream: &SocketAddr, listens: &[SocketAddr]) -> bool {
    listens.iter().any(|l| {
        l.port() == upstream.port()
            && (l.ip() == upstream.ip()
                || (l.ip().is_unspecified() && (upstream.ip().is_loopback())))
    })
}

impl Forwarder {
    /// Forwards to `upstreams`, minus any that are pier's own `listens` (which would loop).
    pub fn new(upstreams: Vec<SocketAddr>, listens: &[SocketAddr], timeout: Duration) -> Forwarder {
        let (kept, looped): (Vec<_>, Vec<_>) =
            upstreams.into_iter().partition(|u| !is_self(u, listens));
        for u in looped {
            tracing::warn!(upstream = %u, "ignoring upstream: it is pier's own DNS listener (forwarding loop)");
        }
        Forwarder {
            upstreams: kept,
            timeout,
        }
    }

    /// The upstreams in use.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` upstream and returns the first good response.
    pub async fn forward(
        &self,
        query: &Query,
        observer: &dyn UpstreamObserver,
    ) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let mut last = String::new();
        for upstream in &self.upstreams {
            let started = Instant::now();
            let result = self.exchange(*upstream, query).await;
            observer.exchange(*upstream, started.elapsed(), result.is_ok());
            match result {
                Ok(m) => return Ok(m),
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "upstream failed");
                    last = format!("{upstream}: {e}");
                }
            }
        }
        Err(ForwardError::AllFailed(last))
    }

    async fn exchange(&self, upstream: SocketAddr, query: &Query) -> Result<Message, String> {
        let id: u16 = rand::random();
        let mut request = Message::new(id, MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        request.set_edns(edns);
        let bytes = request.to_vec().map_err(|e| e.to_string())?;
        let response =
            tokio::time::timeout(self.timeout, udp_exchange(upstream, &bytes, id, query))
                .await
                .map_err(|_| format!("no UDP answer within {:?}", self.timeout))??;
        let response = if response.metadata.truncation {
            tokio::time::timeout(self.timeout, tcp_exchange(upstream, &bytes, id, query))
                .await
                .map_err(|_| format!("no TCP answer within {:?}", self.timeout))??
        } else {
            response
        };
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(response),
            other => Err(format!("upstream answered {other}")),
        }
    }
}

fn matches(response: &Message, id: u16, query: &Query) -> bool {
    response.metadata.id == id
        && response.metadata.message_type == MessageType::Response
        && response.queries.first().is_some_and(|q| {
            q.query_type() == query.query_type()
                && q.query_class() == query.query_class()
                && q.name().to_lowercase() == query.name().to_lowercase()
        })
}

async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, String> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Anything that is not the answer to this exact question (spoofing, stale replies) is ignored.
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if matches(&m, id, query) {
                return Ok(m);
            }
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, String> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(bytes.len()).map_err(|_| "query too large".to_string())?;
    stream
        .write_all(&len.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let m = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if matches(&m, id, query) {
        Ok(m)
    } else {
        Err("TCP answer does not match the question".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch default.svc.cluster.local\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\noptions ndots:5\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn never_forwards_to_itself() {
        let listens: Vec<SocketAddr> = vec![
            "127.0.0.1:53".parse().unwrap(),
            "0.0.0.0:5353".parse().unwrap(),
        ];
        let f = Forwarder::new(
            vec![
                "127.0.0.1:53".parse().unwrap(),
                "127.0.0.53:5353".parse().unwrap(),
                "127.0.0.53:53".parse().unwrap(),
            ],
            &listens,
            Duration::from_secs(1),
        );
        assert_eq!(
            f.upstreams(),
            ["127.0.0.53:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
