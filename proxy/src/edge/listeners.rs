//! The edge's listening sockets: the Ingress HTTP and HTTPS addresses (bound with the first
//! Ingress, kept after) and one per Gateway listener port on the Gateway address (bound and
//! closed as Gateways come and go). Each TLS socket resolves certificates from its own table;
//! a passthrough socket only reads the ClientHello's name.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pier_snapshot::edge::{EdgeView, ListenerMode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::serve::Role;
use crate::tls::certs::Certificates;

/// What a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    /// HTTP, HTTPS, or TLS passed through.
    pub mode: ListenerMode,
    /// The Ingresses are served on it.
    pub ingress: bool,
}

/// A bound socket.
pub(super) struct Bound {
    task: JoinHandle<()>,
    /// What it serves.
    pub wanted: Wanted,
    /// Its certificate table (TLS sockets).
    pub certs: Arc<Certificates>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sockets `view` needs: the Ingress ones while there are Ingresses (or they are bound
/// already), and each Gateway listener port on `gateway_ip`. A Gateway listener whose port is
/// taken by a socket of another mode (HTTP, HTTPS, passthrough) is left out and logged.
pub(super) fn wanted(
    view: &EdgeView,
    ingress: [(Option<SocketAddr>, ListenerMode); 2],
    gateway_ip: Option<IpAddr>,
    bound: &BTreeMap<SocketAddr, Bound>,
) -> BTreeMap<SocketAddr, Wanted> {
    let mut out = BTreeMap::new();
    for (addr, mode) in ingress {
        let Some(addr) = addr else { continue };
        let was = bound.get(&addr).is_some_and(|b| b.wanted.ingress);
        if !view.ingresses.is_empty() || was {
            out.insert(
                addr,
                Wanted {
                    mode,
                    ingress: true,
                },
            );
        }
    }
    let Some(ip) = gateway_ip else {
        return out;
    };
    for l in &view.listeners {
        let addr = SocketAddr::new(ip, l.port);
        match out.get(&addr) {
            Some(w) if w.mode != l.mode => tracing::warn!(
                gateway = %l.gateway,
                listener = %l.name,
                %addr,
                "listener left out: its port already serves another protocol (HTTP, HTTPS, TLS passthrough)"
            ),
            Some(_) => {}
            None => {
                out.insert(
                    addr,
                    Wanted {
                        mode: l.mode,
                        ingress: false,
                    },
                );
            }
        }
    }
    out
}

/// Binds `addr` without blocking.
pub(super) fn bind(addr: SocketAddr) -> crate::Result<TcpListener> {
    let err = |source| crate::Error::Bind {
        addr,
        proto: "tcp",
        service: "ingress".into(),
        source,
    };
    let std = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(err)?;
    TcpListener::from_std(std).map_err(err)
}

impl Bound {
    /// A socket served by `task`.
    pub(super) fn new(
        task: impl FnOnce(Role, Option<TlsAcceptor>) -> JoinHandle<()>,
        listener_port: u16,
        wanted: Wanted,
    ) -> crate::Result<Self> {
        let certs = Arc::new(Certificates::default());
        let acceptor = if wanted.mode.terminates_tls() {
            let config =
                crate::tls::config::server_config(Arc::clone(&certs)).map_err(crate::Error::Tls)?;
            Some(TlsAcceptor::from(config))
        } else {
            None
        };
        let role = Role {
            port: listener_port,
            ingress: wanted.ingress,
            passthrough: wanted.mode == ListenerMode::Passthrough,
        };
        Ok(Self {
            task: task(role, acceptor),
            wanted,
            certs,
        })
    }
}
