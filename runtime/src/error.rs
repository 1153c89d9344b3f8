//! The engine's one error type.

use std::path::PathBuf;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from a user: a reference, a flag, a limit.
    #[error("{0}")]
    Invalid(String),
    /// No such image, container or pod.
    #[error("{0} not found")]
    NotFound(String),
    /// Something with that name already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// Downloaded or imported content does not hash to its digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest {
        /// Which blob.
        what: String,
        /// Digest it should have had.
        expected: String,
        /// Digest it had.
        actual: String,
    },
    /// A registry answered with an error or could not be reached.
    #[error("registry: {0}")]
    Registry(String),
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// The OCI runtime (libcontainer) failed.
    #[error("container runtime: {0}")]
    Runtime(String),
    /// A network setup command failed.
    #[error("network: {0}")]
    Network(String),
    /// The store refused a write (its message, and its causes as the error's sources).
    #[error(transparent)]
    Store(#[from] pier_controlplane::Error),
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Names the path an I/O error happened on.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}

/// Attaches a description to a failed system call.
pub(crate) trait SysContext<T> {
    /// Says what the failed call was doing.
    fn doing(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what(),
            source,
        })
    }
}
