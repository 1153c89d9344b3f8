//! The control plane's error type.

use crate::model::validate::FieldError;

/// Everything that can go wrong in the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded database failed.
    #[error("store: {0}")]
    Store(String),
    /// An object failed validation.
    #[error("{object}: {}", join(.errors))]
    Invalid {
        /// `Kind namespace/name`.
        object: String,
        /// Field errors.
        errors: Vec<FieldError>,
    },
    /// A conditional write found a different resourceVersion, or an allocation is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object does not exist.
    #[error("{kind} {} not found", scoped(.namespace, .name))]
    NotFound {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A watch asked for history the store no longer keeps.
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        /// Requested start revision.
        requested: u64,
        /// Oldest revision still kept.
        oldest: u64,
    },
    /// No free address or port is left.
    #[error("{0}")]
    Exhausted(String),
    /// A malformed request to the API.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Talking to the daemon failed.
    #[error("{0}")]
    Transport(String),
}

/// `namespace/name`, or `name` for a cluster-scoped object.
fn scoped(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// An invalid-field error for one object and path.
    pub fn invalid(object: impl Into<String>, path: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            object: object.into(),
            errors: vec![FieldError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(e.to_string())
            }
        }
    )*};
}

store_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// The control plane's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
