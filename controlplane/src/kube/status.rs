//! Errors as Kubernetes clients read them: a `metav1.Status` with the HTTP code, the reason
//! kubectl and client libraries switch on (`NotFound`, `Unauthorized`, `Gone`...) and the
//! object it is about.

use hyper::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};
use serde_json::Value;

use crate::error::Error;

/// A failed request: its HTTP status and the `Status` body.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: StatusCode,
    pub(crate) body: Value,
}

/// A `Status` failure with `reason` and `message`, optionally about `kind` `name`.
pub(crate) fn failure(
    code: StatusCode,
    reason: &str,
    message: impl Into<String>,
    about: Option<(&str, &str)>,
) -> Failure {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.into()),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        details: about.map(|(kind, name)| StatusDetails {
            kind: Some(kind.into()),
            name: Some(name.into()),
            ..StatusDetails::default()
        }),
        ..Status::default()
    };
    Failure {
        code,
        body: serde_json::to_value(&status).unwrap_or(Value::Null),
    }
}

/// `404 NotFound`, worded as the API server words it.
pub(crate) fn not_found(plural: &str, name: &str) -> Failure {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{plural} \"{name}\" not found"),
        Some((plural, name)),
    )
}

/// `422 Invalid` about `kind` `name`, one cause per field.
pub(crate) fn invalid(
    kind: &str,
    name: &str,
    message: &str,
    causes: &[(String, String)],
) -> Failure {
    let mut failure = failure(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {message}"),
        Some((kind, name)),
    );
    failure.body["details"]["causes"] = causes
        .iter()
        .map(|(field, message)| serde_json::json!({"reason": "FieldValueInvalid", "field": field, "message": message}))
        .collect();
    failure
}

/// `401 Unauthorized`.
pub(crate) fn unauthorized() -> Failure {
    failure(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Unauthorized",
        None,
    )
}

/// A store or request error as a `Status`.
pub(crate) fn from_error(e: &Error) -> Failure {
    let message = crate::error::chain(e);
    match e {
        Error::NotFound { name, .. } => {
            failure(StatusCode::NOT_FOUND, "NotFound", message, Some(("", name)))
        }
        Error::Invalid { .. } => {
            failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message, None)
        }
        Error::Conflict(_) => failure(StatusCode::CONFLICT, "Conflict", message, None),
        Error::Compacted { .. } => failure(StatusCode::GONE, "Expired", message, None),
        Error::BadRequest(_) => failure(StatusCode::BAD_REQUEST, "BadRequest", message, None),
        Error::Exhausted(_) | Error::Store { .. } | Error::Transport(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            message,
            None,
        ),
    }
}
