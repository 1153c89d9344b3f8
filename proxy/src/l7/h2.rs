//! h2c upstreams: one multiplexed HTTP/2 connection per endpoint, made within the Service's
//! connect timeout, replaced when it fails, closed after it has been idle a while.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::body::UpstreamBody;
use super::conn::{self, Alpn};
use crate::tls::upstream::TlsClient;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// An unused connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request to an h2c endpoint failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: nothing was sent.
    Connect(String),
    /// The exchange failed after the request was (maybe) sent.
    Exchange(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Exchange(e) => write!(f, "exchange: {e}"),
        }
    }
}

struct Conn {
    send: http2::SendRequest<UpstreamBody>,
    used: Instant,
}

/// An endpoint's address and whether its connection is TLS (a BackendTLSPolicy).
type ConnKey = (SocketAddr, bool);

/// The HTTP/2 connections of every endpoint, by address and TLS.
#[derive(Default)]
pub(super) struct H2Upstreams {
    conns: Mutex<HashMap<ConnKey, Conn>>,
}

impl H2Upstreams {
    /// Sends `req` to `addr` over its connection, making one within `connect_timeout` if needed.
    /// A request the connection refused unsent (it was going away) goes once more on a new one.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        tls: Option<&TlsClient>,
        connect_timeout: Duration,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let key = (addr, tls.is_some());
        let (mut send, reused) = match self.cached(key) {
            Some(s) => (s, true),
            None => (self.connect(key, tls, connect_timeout).await?, false),
        };
        match send.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                Some(req) if reused => {
                    self.forget(key);
                    let mut fresh = self.connect(key, tls, connect_timeout).await?;
                    fresh.send_request(req).await.map_err(SendError::Exchange)
                }
                _ => {
                    self.forget(key);
                    Err(SendError::Exchange(e.into_error()))
                }
            },
        }
    }

    fn cached(&self, key: ConnKey) -> Option<http2::SendRequest<UpstreamBody>> {
        let mut conns = self.conns.lock().ok()?;
        let now = Instant::now();
        let conn = conns.get_mut(&key)?;
        if conn.send.is_closed() {
            conns.remove(&key);
            return None;
        }
        conn.used = now;
        Some(conn.send.clone())
    }

    fn forget(&self, key: ConnKey) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.remove(&key);
        }
    }

    async fn connect(
        &self,
        key: ConnKey,
        tls: Option<&TlsClient>,
        timeout: Duration,
    ) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
        let addr = key.0;
        let connect = async {
            let stream = conn::connect(addr, timeout, tls, Alpn::H2)
                .await
                .map_err(|e| SendError::Connect(e.to_string()))?;
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| SendError::Connect(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(endpoint = %addr, error = %e, "h2c upstream connection ended");
                }
            });
            Ok(send)
        };
        let send = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| SendError::Connect(format!("timed out after {timeout:?}")))??;
        if let Ok(mut conns) = self.conns.lock() {
            // Dropping a connection's last sender closes it once its streams are done.
            let now = Instant::now();
            conns.retain(|_, c| !c.send.is_closed() && now - c.used < IDLE_TIMEOUT);
            conns.insert(
                key,
                Conn {
                    send: send.clone(),
                    used: now,
                },
            );
        }
        Ok(send)
    }
}
