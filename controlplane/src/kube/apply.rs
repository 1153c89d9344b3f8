//! Server-side apply: `PATCH` with `application/apply-patch+yaml` (what `kubectl apply
//! --server-side` sends). The configuration is merged into the object, or creates it, under
//! the rules of `managed.rs`; a change to a field another manager owns is a `409 Conflict`
//! naming each field, unless `?force=true`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::fields;
use super::managed::{self, Conflict, Refused};
use super::status::{self, Failure};
use super::write::{self, Target, Written};
use crate::store::{Op, Store};

/// The media type of an apply.
const APPLY: &str = "application/apply-patch+yaml";

/// Whether a `PATCH` with this `Content-Type` is an apply.
pub(crate) fn is_apply(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| c.split(';').next().unwrap_or("").trim() == APPLY)
}

/// Applies the configuration in `body` to the object `name`, creating it if it does not
/// exist; tried again, as the API server does, when the object changes meanwhile.
pub(crate) async fn server_side(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    body: &[u8],
    force: bool,
) -> Result<Written, Failure> {
    let applied = configuration(t, body)?;
    for _ in 0..5 {
        let namespace = t.namespace.unwrap_or("");
        let live = super::read::find(store, t.resource, namespace, name).await?;
        let base = live.clone().unwrap_or_else(|| json!({}));
        let entries = write::managed_fields(&base);
        let (merged, owners) = managed::apply(&base, &applied, &entries, &t.writer(), force)
            .map_err(|refused| refusal(refused, t, name))?;
        let mut parsed = write::parse(t, merged, Some(name))?;
        parsed.object.meta_mut().managed_fields = owners;
        let code = if live.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        if t.dry_run {
            return Ok(write::answer(code, t, &parsed.object, parsed.ignored));
        }
        let op = if live.is_some() {
            Op::Put(parsed.object)
        } else {
            Op::Create(parsed.object)
        };
        match write::write(store, op).await {
            Ok(object) => return Ok(write::answer(code, t, &object, parsed.ignored)),
            Err(crate::Error::Conflict(_)) => continue,
            Err(e) => return Err(status::from_error(&e)),
        }
    }
    Err(write::conflict_or(
        &crate::Error::Conflict(String::new()),
        t.resource.plural,
        name,
    ))
}

/// The applied configuration, refused as the API server refuses it: a field manager is
/// required, and `managedFields` may not be set.
fn configuration(t: &Target<'_>, body: &[u8]) -> Result<Value, Failure> {
    let bad = |m: &str| status::failure(StatusCode::BAD_REQUEST, "BadRequest", m, None);
    if t.manager.is_empty() || t.manager == "unknown" {
        return Err(bad(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        ));
    }
    let applied = write::json(body)?;
    if !applied.is_object() {
        return Err(bad("an applied configuration must be an object"));
    }
    if applied.pointer("/metadata/managedFields").is_some() {
        return Err(bad("metadata.managedFields must be nil"));
    }
    Ok(applied)
}

/// A refused apply as a `Status`: `409 Conflict` with one cause per field, worded as
/// kubectl expects (it tells the user about `--force-conflicts`).
fn refusal(refused: Refused, t: &Target<'_>, name: &str) -> Failure {
    let conflicts = match refused {
        Refused::Invalid(failure) => return failure,
        Refused::Conflicts(conflicts) => conflicts,
    };
    let described: Vec<String> = conflicts.iter().map(describe).collect();
    let message = format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        described.join("\n")
    );
    let mut failure = status::failure(
        StatusCode::CONFLICT,
        "Conflict",
        message,
        Some((t.resource.plural, name)),
    );
    failure.body["details"]["causes"] = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", owner(c)),
                "field": fields::display(&c.path),
            })
        })
        .collect();
    failure
}

fn describe(c: &Conflict) -> String {
    format!("conflict with {}: {}", owner(c), fields::display(&c.path))
}

/// The owner of a conflicting field: `"kubectl" with subresource "scale" using apps/v1`.
fn owner(c: &Conflict) -> String {
    let subresource = if c.subresource.is_empty() {
        String::new()
    } else {
        format!(" with subresource {:?}", c.subresource)
    };
    format!("{:?}{subresource} using {}", c.manager, c.api_version)
}
