//! The `scale` subresource of Deployments (`autoscaling/v1` `Scale`), which `kubectl scale`
//! and autoscalers use: reading it gives the desired replicas, the pods the Deployment has now
//! and its selector; writing it (PUT, or any patch format) changes only `spec.replicas`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::read::{self, Selectors};
use super::status::{self, Failure};
use super::write::{self, Target, Written};
use crate::store::Store;
use pier_model::Kind;

/// Whether `kind` has a `scale` subresource.
pub(crate) fn scalable(kind: Kind) -> bool {
    kind == Kind::Deployment
}

/// `GET .../deployments/<name>/scale`.
pub(crate) async fn get(store: &Arc<Store>, t: &Target<'_>, name: &str) -> Result<Value, Failure> {
    let deployment = read::get(store, t.resource, t.namespace.unwrap_or(""), name).await?;
    scale_of(store, &deployment).await
}

/// `PUT` or `PATCH .../deployments/<name>/scale`: the new `spec.replicas`, written to the
/// Deployment on the condition that it did not change meanwhile.
pub(crate) async fn set(
    store: &Arc<Store>,
    t: &Target<'_>,
    name: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Written, Failure> {
    let request = write::json(body)?;
    let current = get(store, t, name).await?;
    let wanted = match content_type {
        Some(media) => super::patch::apply(media, &current, &request)?,
        None => request,
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            status::invalid(
                "Scale",
                name,
                "spec.replicas: must be a whole number, 0 or more",
                &[(
                    "spec.replicas".into(),
                    "must be a whole number, 0 or more".into(),
                )],
            )
        })?;
    let stale = wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str());
    if stale {
        return Err(status::failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
            Some(("deployments", name)),
        ));
    }
    let patch = json!({"spec": {"replicas": replicas}});
    let written = write::patch(
        store,
        t,
        name,
        "application/merge-patch+json",
        patch.to_string().as_bytes(),
    )
    .await?;
    let body = if t.dry_run {
        let mut scale = current;
        scale["spec"]["replicas"] = json!(replicas);
        scale
    } else {
        scale_of(store, &written.body).await?
    };
    Ok(Written {
        code: StatusCode::OK,
        body,
        warnings: written.warnings,
    })
}

/// The Scale of a Deployment (wire form): its pods are those its selector selects in its
/// namespace that are not being deleted.
async fn scale_of(store: &Arc<Store>, deployment: &Value) -> Result<Value, Failure> {
    let meta = &deployment["metadata"];
    let labels = deployment
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods_resource = super::catalog::find("", "v1", "pods").ok_or_else(|| {
        status::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "pods are not served",
            None,
        )
    })?;
    let query = std::collections::HashMap::from([("labelSelector".to_string(), labels.clone())]);
    let selectors = Selectors::parse(Kind::Pod, &query)?;
    let pods = read::list(store, pods_resource, meta["namespace"].as_str(), &selectors).await?;
    let running = pods["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .count()
    });
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {"replicas": running, "selector": labels},
    }))
}
