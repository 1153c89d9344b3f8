//! The control plane's error type.

use pier_model::report::FieldError;

/// Everything that can go wrong in the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded database failed: what the store was doing, and the error that says why.
    #[error("store: {context}")]
    Store {
        /// What the store was doing.
        context: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
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

impl Error {
    /// A store failure with no underlying error.
    pub fn store(context: impl Into<String>) -> Self {
        Error::Store {
            context: context.into(),
            source: None,
        }
    }

    /// A store failure caused by `source`.
    pub fn store_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Store {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

macro_rules! store_error_from {
    ($($t:ty => $context:literal),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::store_from($context, e)
            }
        }
    )*};
}

store_error_from!(
    redb::Error => "database",
    redb::DatabaseError => "opening the database",
    redb::TransactionError => "starting a transaction",
    redb::TableError => "opening a table",
    redb::StorageError => "reading or writing",
    redb::CommitError => "committing",
    serde_json::Error => "encoding a record"
);

/// An error and its causes as one line (`outer: cause: root cause`), for messages that leave
/// the process (API responses).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// The control plane's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
