//! Preparing an object for a put: validation, the conditional-write check, allocations and the
//! server-owned metadata.

use super::alloc::Allocator;
use super::now_rfc3339;
use crate::error::{Error, Result};
use pier_model::report::Report;
use pier_model::Object;

/// Validates `object`, fills server-owned metadata and allocations; `None` when nothing changes.
pub(super) fn prepare_put(
    mut object: Object,
    existing: Option<&Object>,
    alloc: &mut Allocator<'_>,
    revision: u64,
) -> Result<Option<Object>> {
    object.set_defaults();
    let mut report = Report::default();
    object.validate(&mut report);
    if !report.errors.is_empty() {
        return Err(Error::Invalid {
            object: object.describe(),
            errors: report.errors,
        });
    }
    immutable_contents(&object, existing)?;
    let requested_rv = std::mem::take(&mut object.meta_mut().resource_version);
    if !requested_rv.is_empty() {
        let current = existing
            .map(|e| e.meta().resource_version.as_str())
            .unwrap_or("");
        if requested_rv != current {
            return Err(Error::Conflict(format!(
                "{}: resourceVersion {requested_rv} does not match the stored {}",
                object.describe(),
                if current.is_empty() {
                    "(none: object does not exist)"
                } else {
                    current
                }
            )));
        }
    }
    alloc.assign_object(&mut object, existing)?;
    let uid = existing.map_or_else(
        || uuid::Uuid::new_v4().to_string(),
        |e| e.meta().uid.clone(),
    );
    if let Object::Job(job) = &mut object {
        job.generate_selector(&uid);
    }
    let spec_changed = existing.is_none_or(|e| e.spec_value() != object.spec_value());
    let namespaced = object.kind().namespaced();
    let meta = object.meta_mut();
    meta.namespace = if namespaced {
        meta.namespace().to_string()
    } else {
        String::new()
    };
    match existing {
        Some(e) => {
            let em = e.meta();
            meta.uid.clone_from(&em.uid);
            meta.creation_timestamp.clone_from(&em.creation_timestamp);
            // A delete, once begun, is not taken back by a later write.
            if em.deletion_timestamp.is_some() {
                meta.deletion_timestamp.clone_from(&em.deletion_timestamp);
            }
            // A grace period may be shortened, never lengthened or taken away.
            if let Some(given) = em.deletion_grace_period_seconds {
                meta.deletion_grace_period_seconds = Some(
                    meta.deletion_grace_period_seconds
                        .map_or(given, |asked| asked.min(given)),
                );
            }
            meta.generation = em.generation + u64::from(spec_changed);
            meta.resource_version.clone_from(&em.resource_version);
            // Field ownership is the Kubernetes API's to change; other writers keep it.
            if meta.managed_fields.is_empty() {
                meta.managed_fields.clone_from(&em.managed_fields);
            }
            if *e == object {
                return Ok(None);
            }
        }
        None => {
            meta.uid = uid;
            meta.creation_timestamp = Some(now_rfc3339());
            meta.generation = 1;
        }
    }
    object.meta_mut().resource_version = revision.to_string();
    Ok(Some(object))
}

/// An immutable ConfigMap's contents, and its immutability, stay as they are.
fn immutable_contents(object: &Object, existing: Option<&Object>) -> Result<()> {
    let (Object::ConfigMap(new), Some(Object::ConfigMap(old))) = (object, existing) else {
        return Ok(());
    };
    if !old.is_immutable() {
        return Ok(());
    }
    let field = if !new.is_immutable() {
        "immutable"
    } else if new.data != old.data {
        "data"
    } else if new.binary_data != old.binary_data {
        "binaryData"
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        object.describe(),
        field,
        "field is immutable when `immutable` is set",
    ))
}
