//! Writes on the Kubernetes API: create (`POST`), update (`PUT`, a conflict when the
//! resourceVersion given is stale), patch (`PATCH`: JSON patch, merge patch and strategic
//! merge patch, see `patch.rs`) and delete, each with `dryRun=All` (validated, not stored).
//! Every object is read as `pier apply` reads it: unknown fields are errors naming the field,
//! whatever `fieldValidation` asks, and fields pier accepts but does not act on come back as
//! `Warning` headers.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;

use super::catalog::Resource;
use super::managed::{self, Writer};
use super::patch;
use super::read::wire;
use super::status::{self, Failure};
use crate::store::{Op, Store};
use pier_model::report::Report;
use pier_model::{Kind, Object};

/// What a write answers: its status, the object, and warnings for ignored fields.
pub(crate) struct Written {
    pub(crate) code: StatusCode,
    pub(crate) body: Value,
    pub(crate) warnings: Vec<String>,
}

/// Where a write goes and how.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) resource: Resource,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) dry_run: bool,
    /// The field manager the write is recorded under.
    pub(crate) manager: &'a str,
    /// The subresource written (`scale`), empty for the object itself.
    pub(crate) subresource: &'static str,
}

impl Target<'_> {
    /// Who writes, for field ownership.
    pub(crate) fn writer(&self) -> Writer<'_> {
        Writer {
            manager: self.manager,
            subresource: self.subresource,
            api_version: self.resource.api_version(),
        }
    }
}

/// `POST` to a collection.
pub(crate) async fn create(
    store: &Arc<Store>,
    t: &Target<'_>,
    body: &[u8],
) -> Result<Written, Failure> {
    let value = json(body)?;
    let mut parsed = parse(t, value, None)?;
    track(t, None, &mut parsed.object);
    let name = parsed.object.meta().name.clone();
    if t.dry_run {
        return Ok(answer(
            StatusCode::CREATED,
            t,
            &parsed.object,
            parsed.ignored,
        ));
    }
    let op = Op::Create(parsed.object);
    match write(store, op).await {
        Ok(object) => Ok(answer(StatusCode::CREATED, t, &object, parsed.ignored)),
        Err(crate::Error::Conflict(_)) => Err(status::failure(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.resource.plural),
            Some((t.resource.plural, &name)),
        )),
        Err(e) => Err(status::from_error(&e)),
    }
}

/// `PUT` to an object: replaces it; a stale `metadata.resourceVersion` is a `409`.
pub(crate) async fn update(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    body: &[u8],
) -> Result<Written, Failure> {
    let mut parsed = parse(t, json(body)?, Some(name))?;
    let live = super::read::find(store, t.resource, t.namespace.unwrap_or(""), name).await?;
    track(t, live.as_ref(), &mut parsed.object);
    if t.dry_run {
        return Ok(answer(StatusCode::OK, t, &parsed.object, parsed.ignored));
    }
    let object = write(store, Op::Put(parsed.object))
        .await
        .map_err(|e| conflict_or(&e, t.resource.plural, name))?;
    Ok(answer(StatusCode::OK, t, &object, parsed.ignored))
}

/// `PATCH` an object: the stored object with the patch applied, written back on the condition
/// that nothing changed it meanwhile (tried again, as the API server does, if something did).
pub(crate) async fn patch(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Written, Failure> {
    let patch_doc = json(body)?;
    for _ in 0..5 {
        let current = super::read::get(store, t.resource, t.namespace.unwrap_or(""), name).await?;
        let patched = patch::apply(content_type, &current, &patch_doc)?;
        let mut parsed = parse(t, patched, Some(name))?;
        track(t, Some(&current), &mut parsed.object);
        if t.dry_run {
            return Ok(answer(StatusCode::OK, t, &parsed.object, parsed.ignored));
        }
        match write(store, Op::Put(parsed.object)).await {
            Ok(object) => return Ok(answer(StatusCode::OK, t, &object, parsed.ignored)),
            Err(crate::Error::Conflict(_)) => continue,
            Err(e) => return Err(status::from_error(&e)),
        }
    }
    Err(status::failure(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "{} \"{name}\" kept changing while it was patched; try again",
            t.resource.plural
        ),
        Some((t.resource.plural, name)),
    ))
}

/// `PUT` or `PATCH` (with `content_type`) of an object's `status` subresource: only the
/// status changes; a stale resourceVersion in a PUT is a `409`, a patch is retried on one.
pub(crate) async fn status(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Written, Failure> {
    let request = json(body)?;
    for _ in 0..5 {
        let current = super::read::get(store, t.resource, t.namespace.unwrap_or(""), name).await?;
        let desired = match content_type {
            Some(media) => patch::apply(media, &current, &request)?,
            None => request.clone(),
        };
        let parsed = parse(t, desired, Some(name))?;
        if t.dry_run {
            return Ok(answer(StatusCode::OK, t, &parsed.object, parsed.ignored));
        }
        match write(store, Op::PutStatus(parsed.object)).await {
            Ok(object) => return Ok(answer(StatusCode::OK, t, &object, parsed.ignored)),
            Err(crate::Error::Conflict(_)) if content_type.is_some() => continue,
            Err(e) => return Err(conflict_or(&e, t.resource.plural, name)),
        }
    }
    Err(conflict_or(
        &crate::Error::Conflict(String::new()),
        t.resource.plural,
        name,
    ))
}

/// `DELETE` an object (conditional on `preconditions.resourceVersion` if the body has one),
/// with what its `propagationPolicy` does to dependents (`cascade.rs`); answers the object as
/// it was.
pub(crate) async fn delete(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    body: &[u8],
) -> Result<Written, Failure> {
    let options = if body.is_empty() {
        Value::Null
    } else {
        json(body)?
    };
    let resource_version = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let current = super::read::get(store, t.resource, t.namespace.unwrap_or(""), name).await?;
    if t.dry_run {
        return Ok(Written {
            code: StatusCode::OK,
            body: current,
            warnings: Vec::new(),
        });
    }
    let policy = super::cascade::policy(&options)?;
    if let Some(held) =
        super::cascade::hold(store, t, name, policy, resource_version.as_deref()).await?
    {
        return Ok(held);
    }
    let (kind, namespace, owner) = (
        t.resource.kind,
        t.namespace.unwrap_or("").to_string(),
        name.to_string(),
    );
    let store = Arc::clone(store);
    let written = tokio::task::spawn_blocking(move || {
        // Marked first (under the caller's precondition), so its controller stands still
        // while the dependents are released; then the dependents, so a controller that sees
        // the owner go has seen them leave.
        let mut resource_version = resource_version;
        if let Some(mut marked) = super::cascade::mark(&store, kind, &namespace, &owner, policy)? {
            if let Some(rv) = resource_version.take() {
                marked.meta_mut().resource_version = rv;
            }
            store.write(vec![Op::Put(marked)])?;
        }
        let mut ops = super::cascade::dependents(&store, kind, &namespace, &owner, policy)?;
        ops.push(Op::Delete {
            kind,
            namespace,
            name: owner,
            resource_version,
            must_exist: true,
        });
        store.write(ops)
    })
    .await
    .map_err(|e| crate::Error::store_from("an API worker", e))
    .and_then(|r| r)
    .and_then(|w| {
        w.into_iter()
            .last()
            .and_then(|w| w.object)
            .ok_or_else(|| crate::Error::store("the delete returned no object"))
    });
    let deleted = written.map_or_else(
        |e| Err(conflict_or(&e, t.resource.plural, name)),
        |o| Ok(wire(&t.resource, &o)),
    )?;
    Ok(Written {
        code: StatusCode::OK,
        body: deleted,
        warnings: Vec::new(),
    })
}

/// `DELETE` a collection (deletecollection): every object the selectors select, each deleted
/// on its own as the API server does; answers the list of what was deleted.
pub(crate) async fn delete_collection(
    store: &Arc<Store>,
    t: &Target<'_>,
    selectors: &super::read::Selectors,
) -> Result<Written, Failure> {
    let mut list = super::read::list(store, t.resource, t.namespace, selectors).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut deleted = Vec::with_capacity(items.len());
    for item in items {
        let (Some(name), namespace) = (
            item.pointer("/metadata/name").and_then(Value::as_str),
            item.pointer("/metadata/namespace").and_then(Value::as_str),
        ) else {
            continue;
        };
        let one = Target {
            namespace: namespace.or(t.namespace),
            ..*t
        };
        match delete(store, &one, name, &[]).await {
            Ok(w) => deleted.push(w.body),
            // Gone meanwhile: what the caller wanted.
            Err(f) if f.code == StatusCode::NOT_FOUND => {}
            Err(f) => return Err(f),
        }
    }
    list["items"] = Value::Array(deleted);
    Ok(Written {
        code: StatusCode::OK,
        body: list,
        warnings: Vec::new(),
    })
}

/// Reads a body as JSON (kubectl sends JSON; YAML bodies are JSON's superset and read too).
pub(crate) fn json(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| {
            status::failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the request body is not JSON or YAML: {e}"),
                None,
            )
        })
}

/// The object a write carries, checked against where it is written: kind, namespace and (for
/// an existing object) name must agree with the path; unknown fields and invalid values are
/// `422 Invalid` with each field named.
pub(crate) fn parse(
    t: &Target<'_>,
    mut value: Value,
    name: Option<&str>,
) -> Result<pier_model::Parsed, Failure> {
    let invalid =
        |message: String| status::failure(StatusCode::BAD_REQUEST, "BadRequest", message, None);
    value = super::convert::to_stored(&t.resource, value).map_err(invalid)?;
    if value.get("kind").and_then(Value::as_str) != Some(t.resource.kind.as_str()) {
        return Err(invalid(format!(
            "the object's kind is not {}",
            t.resource.kind
        )));
    }
    if let (Some(ns), Some(meta)) = (
        t.namespace,
        value.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), Value::String(ns.to_string()));
            }
            Some(given) if given != ns => {
                return Err(invalid(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(name) = name {
        if value.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(invalid(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
    }
    let mut parsed = Object::from_value(value).map_err(|e| {
        let causes: Vec<(String, String)> = e
            .errors
            .iter()
            .map(|f| (f.path.clone(), f.message.clone()))
            .collect();
        status::invalid(
            t.resource.kind.as_str(),
            e.object.as_deref().unwrap_or(""),
            &e.to_string(),
            &causes,
        )
    })?;
    // As the store will (dry runs show what would be stored).
    parsed.object.set_defaults();
    let mut report = Report::default();
    parsed.object.validate(&mut report);
    if !report.errors.is_empty() {
        let causes: Vec<(String, String)> = report
            .errors
            .iter()
            .map(|f| (f.path.clone(), f.message.clone()))
            .collect();
        let message = report
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(status::invalid(
            t.resource.kind.as_str(),
            &parsed.object.meta().name,
            &message,
            &causes,
        ));
    }
    Ok(parsed)
}

/// Records an update's field ownership on `object`, which replaces `live` (`None`: creates).
fn track(t: &Target<'_>, live: Option<&Value>, object: &mut Object) {
    let new = wire(&t.resource, object);
    let entries = live.map(managed_fields).unwrap_or_default();
    object.meta_mut().managed_fields = managed::update(live, &new, &entries, &t.writer());
}

/// The `metadata.managedFields` of an object in wire form (as the store wrote them).
pub(crate) fn managed_fields(object: &Value) -> Vec<pier_model::meta::ManagedFieldsEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default()
}

/// Writes one op, answering the object stored. An object being deleted that the write left
/// without finalizers is deleted then (the last finalizer removed lets it go); a pod only once
/// its node has stopped it (`deletionGracePeriodSeconds: 0`), else its node deletes it then.
pub(crate) async fn write(store: &Arc<Store>, op: Op) -> crate::Result<Object> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let written = one(store.write(vec![op])?)?;
        let meta = written.meta();
        let stopping = written.kind() == Kind::Pod && meta.deletion_grace_period_seconds != Some(0);
        if stopping || meta.deletion_timestamp.is_none() || !meta.finalizers.is_empty() {
            return Ok(written);
        }
        one(store.write(vec![Op::Delete {
            kind: written.kind(),
            namespace: meta.namespace().to_string(),
            name: meta.name.clone(),
            resource_version: Some(meta.resource_version.clone()),
            must_exist: false,
        }])?)
        .or(Ok(written))
    })
    .await
    .map_err(|e| crate::Error::store_from("an API worker", e))?
}

/// The object a one-op write answered.
fn one(written: Vec<crate::store::Written>) -> crate::Result<Object> {
    written
        .into_iter()
        .next()
        .and_then(|w| w.object)
        .ok_or_else(|| crate::Error::store("the write returned no object"))
}

pub(crate) fn conflict_or(e: &crate::Error, plural: &str, name: &str) -> Failure {
    match e {
        crate::Error::Conflict(_) => status::failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some((plural, name)),
        ),
        other => status::from_error(other),
    }
}

/// The answer to a write of `object`, with warnings for the fields pier ignores.
pub(crate) fn answer(
    code: StatusCode,
    t: &Target<'_>,
    object: &Object,
    ignored: Vec<String>,
) -> Written {
    let warnings = ignored
        .into_iter()
        .map(|path| {
            format!(
                "{}: {path} is accepted but pier does not act on it",
                object.describe()
            )
        })
        .collect();
    Written {
        code,
        body: wire(&t.resource, object),
        warnings,
    }
}
