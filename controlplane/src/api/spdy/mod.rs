//! SPDY/3.1, server side, as far as Kubernetes' streaming subresources use it: the frames
//! (`frame.rs`), their compressed header blocks (`headers.rs`) and a session that hands the
//! streams a client opens to its caller (`session.rs`).

mod frame;
mod headers;
mod session;

pub(crate) use session::{serve, Stream};

/// Why a SPDY session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpdyError {
    /// The peer sent something SPDY/3 does not allow.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// A header block could not be read or written.
    #[error("SPDY header block: {0}")]
    Headers(String),
    /// The connection failed.
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
}
