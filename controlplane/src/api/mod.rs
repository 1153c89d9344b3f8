//! The control API: HTTP/JSON over a Unix socket (mode 0600, same-uid peers only).
//!
//! Routes (all JSON):
//! - `GET /v1/status`: version, store and snapshot revisions, admin address
//! - `POST /v1/apply` `{"objects": [...]}`: validate all, then write all in one transaction
//! - `GET /v1/{resource}[?namespace=NS&labelSelector=SEL]`: list
//! - `GET|DELETE /v1/{resource}/{namespace}/{name}[?resourceVersion=RV]`: read, delete
//! - `GET /v1/watch?from=REV`: newline-delimited events from a revision on
//! - `GET /v1/snapshot`: the published node snapshot
//! - `GET|POST /v1/tokens`, `DELETE /v1/tokens/{name}`: bearer tokens for the TCP listener
//! - `/version`, `/api/...`, `/apis/...`: the Kubernetes API (`crate::kube`), with pods'
//!   `log`, `exec`, `portforward` and nodes' `proxy/metrics[/resource]` served or relayed
//!
//! With `--api-listen`, the same routes are served on TCP with TLS, to bearer tokens only.

mod access;
mod client;
mod exec_stream;
mod kubernetes;
pub(crate) mod node_proxy;
mod pod_container;
mod pod_exec;
mod pod_log;
mod pod_portforward;
pub(crate) mod pod_relay;
mod routes;
mod server;
mod spdy;
mod tcp;
mod tls;
mod tokens;

use std::path::PathBuf;

pub use client::{encode, Client};
pub use node_proxy::NodeMetricsPath;
pub use pod_relay::PodRelay;
pub use server::{bind, serve, ApiContext, Extension, ExtensionFuture, ExtensionResponse};
pub use tcp::{bind_tcp, serve_tcp};
pub use tls::ApiTls;
pub use tokens::{TokenInfo, Tokens};

/// The default control socket: `/run/pier/pier.sock` for root, else under `$XDG_RUNTIME_DIR`.
pub fn default_socket_path() -> PathBuf {
    if current_uid() == 0 {
        return PathBuf::from("/run/pier/pier.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("pier/pier.sock"),
        _ => std::env::temp_dir()
            .join(format!("pier-{}", current_uid()))
            .join("pier.sock"),
    }
}

/// The effective uid of this process (owner of `/proc/self`).
pub fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
