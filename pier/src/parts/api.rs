//! The API's listeners: the control socket always, and with `--api-listen` a TCP listener
//! with TLS and bearer tokens (tokens and a generated CA under `<state dir>/api/`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use pier_controlplane::api::{self, ApiContext, ApiTls, PodRelay, Tokens};
use pier_controlplane::cluster::ClusterConfig;
use tokio::net::TcpListener;

use super::Parts;
use crate::config::ApiListen;

/// The TCP listener bound, ready to serve once the context exists.
pub(crate) struct Tcp {
    listener: TcpListener,
    tls: ApiTls,
    /// Where it listens and the CA clients should trust, for `/v1/status`.
    pub(crate) reported: (SocketAddr, String),
}

/// Opens the token list under the state dir (made on first use, 0700).
pub(crate) fn tokens(state_dir: &Path) -> Result<Arc<Tokens>> {
    let dir = state_dir.join("api");
    make_private_dir(&dir)?;
    Ok(Arc::new(Tokens::open(&dir.join("tokens.json"))?))
}

/// Binds the TCP listener and prepares its TLS, for the names this node is reached by.
pub(crate) async fn bind_tcp(
    config: &ApiListen,
    state_dir: &Path,
    node_ip: Option<std::net::IpAddr>,
    node_name: &str,
) -> Result<Tcp> {
    let tls = match &config.cert {
        Some((cert, key)) => ApiTls::from_files(cert, key)?,
        None => {
            let mut names: Vec<String> = vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                node_name.into(),
            ];
            names.extend(node_ip.map(|ip| ip.to_string()));
            if !config.listen.ip().is_unspecified() {
                names.push(config.listen.ip().to_string());
            }
            names.sort();
            names.dedup();
            let dir = state_dir.join("api");
            make_private_dir(&dir)?;
            ApiTls::generated(&dir, &names)?
        }
    };
    let listener = api::bind_tcp(config.listen).await?;
    let bound = listener
        .local_addr()
        .context("reading the API listener's address")?;
    let ca = tls.ca_pem.clone();
    Ok(Tcp {
        listener,
        tls,
        reported: (bound, ca),
    })
}

/// In a cluster: this node's pod relay, and `cluster` with the annotations that let other
/// nodes take its relayed requests and, when its TCP listener is reachable, relay to it.
pub(crate) fn relay(
    cluster: &ClusterConfig,
    tcp: Option<&Tcp>,
) -> Result<(ClusterConfig, Option<Arc<PodRelay>>)> {
    let mut cluster = cluster.clone();
    if cluster.sole {
        return Ok((cluster, None));
    }
    let relay = PodRelay::new(&cluster.node_name).context("making the relay token")?;
    let listener = tcp.and_then(|tcp| {
        let (endpoint, ca) = &tcp.reported;
        reachable(*endpoint, cluster.node_ip).map(|endpoint| (endpoint, ca.as_str()))
    });
    cluster.annotations.extend(relay.annotations(listener));
    Ok((cluster, Some(Arc::new(relay))))
}

/// Where other nodes reach an API listening on `listen`: `None` (and why, logged) when they
/// cannot.
fn reachable(listen: SocketAddr, node_ip: Option<IpAddr>) -> Option<SocketAddr> {
    let why = if listen.ip().is_loopback() {
        "the API listens on loopback only"
    } else if !listen.ip().is_unspecified() {
        return Some(listen);
    } else if let Some(ip) = node_ip {
        return Some(SocketAddr::new(ip, listen.port()));
    } else {
        "the API listens on every address and the node has no --node-ip"
    };
    tracing::warn!(%listen, "{why}: other nodes cannot relay pod logs, exec or port-forward here");
    None
}

/// Serves the control API on its Unix socket and, if bound, on TCP.
pub(crate) fn start(
    parts: &mut Parts,
    api: ApiContext,
    socket: &Path,
    tcp: Option<Tcp>,
) -> Result<()> {
    let listener = api::bind(socket)?;
    let tokens = api.tokens.clone();
    let api = Arc::new(api);
    let (rx, path, served) = (
        parts.shutdown.clone(),
        socket.to_path_buf(),
        Arc::clone(&api),
    );
    parts.tasks.push(tokio::spawn(async move {
        if let Err(e) = api::serve(served, listener, &path, rx).await {
            tracing::error!(error = %e, "control API stopped");
        }
    }));
    if let (Some(tcp), Some(tokens)) = (tcp, tokens) {
        let rx = parts.shutdown.clone();
        tracing::info!(listen = %tcp.reported.0, "API on TCP (TLS, bearer tokens)");
        parts.tasks.push(tokio::spawn(async move {
            if let Err(e) = api::serve_tcp(api, tcp.listener, &tcp.tls, tokens, rx).await {
                tracing::error!(error = %e, "TCP API stopped");
            }
        }));
    }
    Ok(())
}

fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("making {}", dir.display()))
}
