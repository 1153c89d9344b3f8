//! Idle keep-alive HTTP/1.1 connections to one endpoint, kept with the endpoint's state so
//! they live exactly as long as the endpoint does.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Most idle connections kept per endpoint.
const MAX_IDLE: usize = 512;

/// Idle keep-alive connections to one endpoint, each with its read buffer.
#[derive(Default)]
pub(crate) struct IdlePool {
    conns: Mutex<Vec<(TcpStream, BytesMut)>>,
}

impl IdlePool {
    /// The most recently returned idle connection, if any.
    pub(crate) fn take(&self) -> Option<(TcpStream, BytesMut)> {
        self.conns.lock().ok()?.pop()
    }

    /// Keeps `conn` for the next request, unless the pool is full (then it is closed).
    pub(crate) fn put(&self, conn: TcpStream, buf: BytesMut) {
        if let Ok(mut c) = self.conns.lock() {
            if c.len() < MAX_IDLE {
                c.push((conn, buf));
            }
        }
    }
}
