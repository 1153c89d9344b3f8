//! Idle keep-alive HTTP/1.1 connections to one endpoint, kept with the endpoint's state so
//! they live exactly as long as the endpoint does.

use std::sync::Mutex;

use bytes::BytesMut;

use crate::l7::conn::UpstreamConn;

/// Most idle connections kept per endpoint.
const MAX_IDLE: usize = 512;

/// Idle keep-alive connections to one endpoint, each with its read buffer.
#[derive(Default)]
pub(crate) struct IdlePool {
    conns: Mutex<Vec<(UpstreamConn, BytesMut)>>,
}

impl IdlePool {
    /// The most recently returned idle connection, if any.
    pub(crate) fn take(&self) -> Option<(UpstreamConn, BytesMut)> {
        self.conns.lock().ok()?.pop()
    }

    /// Closes every idle connection (the way to reach the endpoint changed: TLS or not).
    pub(crate) fn clear(&self) {
        if let Ok(mut c) = self.conns.lock() {
            c.clear();
        }
    }

    /// Keeps `conn` for the next request, unless the pool is full (then it is closed).
    pub(crate) fn put(&self, conn: UpstreamConn, buf: BytesMut) {
        if let Ok(mut c) = self.conns.lock() {
            if c.len() < MAX_IDLE {
                c.push((conn, buf));
            }
        }
    }
}
