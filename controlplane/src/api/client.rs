//! Control API client over the Unix socket.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::error::Error;
use pier_model::Kind;

/// A client for one daemon's control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Opens a connection and sends one request; the response body is left to the caller.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            Error::Transport(format!(
                "cannot reach the pier daemon at {}: {e} (is `pier daemon` running? set PIER_SOCKET or --socket)",
                self.socket.display()
            ))
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Transport(format!("control socket handshake: {e}")))?;
        tokio::spawn(conn);
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "pier")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| Error::Transport(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| Error::Transport(format!("control request failed: {e}")))
    }

    /// Sends one request and returns the status and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), Error> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Transport(format!("reading response: {e}")))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Sends a request and calls `line` with each line of the streamed answer; an error status
    /// becomes an error with the daemon's message.
    pub async fn stream_lines(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        mut line: impl FnMut(&str),
    ) -> Result<(), Error> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| Error::Transport(format!("reading response: {e}")))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let message = value["error"].as_str().unwrap_or("request failed");
            return Err(Error::Transport(message.to_string()));
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::Transport(format!("reading response: {e}")))?;
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let l: Vec<u8> = pending.drain(..=pos).collect();
                    line(&String::from_utf8_lossy(&l[..l.len() - 1]));
                }
            }
        }
        if !pending.is_empty() {
            line(&String::from_utf8_lossy(&pending));
        }
        Ok(())
    }

    /// Sends a request; a non-success status becomes an error with the daemon's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        self.ok(method, path, body).await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let (status, value) = self.request(method, path, body).await?;
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]
            .as_str()
            .unwrap_or("request failed")
            .to_string();
        Err(match status {
            StatusCode::CONFLICT => {
                Error::Conflict(message.trim_start_matches("conflict: ").to_string())
            }
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                Error::BadRequest(message)
            }
            StatusCode::NOT_FOUND => Error::Transport(message),
            _ => Error::Transport(format!("{status}: {message}")),
        })
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Value, Error> {
        self.ok(Method::GET, "/v1/status", None).await
    }

    /// Applies raw objects in one transaction; returns per-object results and ignored fields.
    pub async fn apply(&self, objects: Vec<Value>) -> Result<Value, Error> {
        let body = serde_json::json!({ "objects": objects });
        self.ok(Method::POST, "/v1/apply", Some(&body)).await
    }

    /// Lists objects of a kind.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        let mut params = Vec::new();
        if let Some(ns) = namespace {
            params.push(format!("namespace={}", encode(ns)));
        }
        if let Some(sel) = selector {
            params.push(format!("labelSelector={}", encode(sel)));
        }
        let path = format!("/v1/{}?{}", kind.plural(), params.join("&"));
        let v = self.ok(Method::GET, &path, None).await?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// Sends `method` to one object's path; `None` when it does not exist.
    async fn object(
        &self,
        method: Method,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let path = format!(
            "/v1/{}/{}/{}",
            kind.plural(),
            encode(namespace),
            encode(name)
        );
        let (status, value) = self.request(method, &path, None).await?;
        match status {
            StatusCode::OK => Ok(Some(value)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Error::Transport(format!(
                "{s}: {}",
                value["error"].as_str().unwrap_or("")
            ))),
        }
    }

    /// Reads one object; `None` if it does not exist.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        self.object(Method::GET, kind, namespace, name).await
    }

    /// Deletes one object; `Ok(false)` if it did not exist.
    pub async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<bool, Error> {
        Ok(self
            .object(Method::DELETE, kind, namespace, name)
            .await?
            .is_some())
    }

    /// The published node snapshot.
    pub async fn snapshot(&self) -> Result<Value, Error> {
        self.ok(Method::GET, "/v1/snapshot", None).await
    }
}
