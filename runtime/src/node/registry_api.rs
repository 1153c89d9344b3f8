//! The engine's registry routes: `POST /v1/images/pull|push?name=REF` stream progress as
//! newline-delimited JSON and end with a `done` or `error` line; the body, when there is one,
//! holds the credentials to use (`{"username", "password"}`).

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::api::parse;
use super::Node;
use crate::error::Error;
use crate::image::docker_config::Credentials;

/// A transfer's optional body: the registry credentials to use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials in `body`; `None` for an empty body or one without a user name.
pub(super) fn credentials(body: &Bytes) -> Result<Option<Credentials>, Error> {
    if body.is_empty() {
        return Ok(None);
    }
    let given = parse::<CredentialsBody>(body)?;
    Ok(given.username.map(|username| Credentials {
        username,
        password: given.password.unwrap_or_default(),
    }))
}

/// Pulls (or pushes) `name` in the background, streaming its progress and then its result.
pub(super) fn transfer(
    node: Arc<Node>,
    push: bool,
    name: String,
    credentials: Option<Credentials>,
) -> pier_controlplane::api::ExtensionResponse {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let report = move |line: serde_json::Result<String>| {
            if let Ok(line) = line {
                // A client reading slower than the transfer skips progress lines, not the result.
                if progress_tx.try_send(Bytes::from(line + "\n")).is_err() {
                    tracing::trace!("transfer progress line dropped");
                }
            }
        };
        let registries = &node.config.registries;
        let images = node.engine.images();
        let creds = credentials.as_ref();
        let result = if push {
            let report = |p| report(serde_json::to_string(&p));
            crate::image::push::push(images, &name, registries, creds, &report)
                .await
                .map(|digest| json!({"event": "done", "digest": digest}))
        } else {
            let report = |p| report(serde_json::to_string(&p));
            crate::image::pull::pull(images, &name, registries, creds, &report)
                .await
                .map(|image| json!({"event": "done", "image": image}))
        };
        let last = result.unwrap_or_else(
            |e| json!({"event": "error", "error": pier_controlplane::error::chain(&e)}),
        );
        if tx.send(Bytes::from(last.to_string() + "\n")).await.is_err() {
            tracing::debug!(push, "image transfer finished after its client left");
        }
    });
    pier_controlplane::api::ExtensionResponse::Stream(rx)
}
