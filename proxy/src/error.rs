//! The proxy crate's error type.

/// What can go wrong starting or reconfiguring the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({proto}) for {service}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// tcp or udp.
        proto: &'static str,
        /// The service port.
        service: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Two service ports want the same listening address.
    #[error("{addr} ({proto}) is wanted by both {first} and {second}")]
    Conflict {
        /// Address.
        addr: std::net::SocketAddr,
        /// tcp or udp.
        proto: &'static str,
        /// One service port.
        first: String,
        /// The other.
        second: String,
    },
    /// A route could not be compiled.
    #[error("{0}")]
    Route(String),
    /// The VIP interface could not be managed.
    #[error("VIP interface: {0}")]
    Vip(String),
    /// The TLS configuration could not be made.
    #[error("TLS: {0}")]
    Tls(String),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// Whether the same configuration may apply later: a port another process holds, or the
    /// VIP interface failing, may clear up; a conflict or a bad route will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Bind { .. } | Error::Vip(_))
    }
}

impl Error {
    /// The error as a snapshot consumer reports it: retried when transient.
    pub fn to_apply_error(&self) -> pier_snapshot::ApplyError {
        if self.is_transient() {
            pier_snapshot::ApplyError::Transient(self.to_string())
        } else {
            pier_snapshot::ApplyError::Invalid(self.to_string())
        }
    }
}

/// Result with the proxy's error.
pub type Result<T> = std::result::Result<T, Error>;
