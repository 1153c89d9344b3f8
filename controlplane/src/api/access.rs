//! The control socket's endpoints for access to the TCP listener: `/v1/tokens` lists and
//! creates bearer tokens, `/v1/tokens/<name>` revokes them.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::server::{blocking, full, json_body, ApiContext, Body};
use super::tokens::Tokens;
use crate::error::Error;

fn token_store(ctx: &ApiContext) -> Result<Arc<Tokens>, Error> {
    ctx.tokens
        .clone()
        .ok_or_else(|| Error::BadRequest("this daemon keeps no API tokens".into()))
}

/// `GET /v1/tokens` lists the tokens (names and times only); `POST {"name": N}` makes one.
pub(crate) async fn tokens(
    ctx: &ApiContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let tokens = token_store(ctx)?;
    if req.method() == Method::GET {
        return Ok(full(StatusCode::OK, json!({"tokens": tokens.list()})));
    }
    let body = json_body(req, 64 << 10).await?;
    let name = body["name"]
        .as_str()
        .ok_or_else(|| Error::BadRequest("body must be {\"name\": NAME}".into()))?
        .to_string();
    let token = blocking(move || tokens.create(&name)).await?;
    Ok(full(StatusCode::CREATED, json!({"token": token})))
}

/// `DELETE /v1/tokens/<name>`: revokes every token of that name.
pub(crate) async fn revoke(ctx: &ApiContext, name: &str) -> Result<Response<Body>, Error> {
    let tokens = token_store(ctx)?;
    let name = name.to_string();
    let revoked = blocking(move || tokens.revoke(&name)).await?;
    Ok(full(StatusCode::OK, json!({ "revoked": revoked })))
}
