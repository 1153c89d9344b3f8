//! The API on TCP (`--api-listen`): TLS only, and every request must carry a bearer token
//! pier made (`pier token create`); anything else gets `401` as a `metav1.Status`. Off unless
//! asked for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::server::{handle_request, status_response, ApiContext, Body};
use super::tls::ApiTls;
use super::tokens::Tokens;
use crate::error::Error;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on `listener` with `tls`, accepting `tokens`, until `shutdown` turns true.
pub async fn serve_tcp(
    ctx: Arc<ApiContext>,
    listener: TcpListener,
    tls: &ApiTls,
    tokens: Arc<Tokens>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let acceptor = TlsAcceptor::from(Arc::clone(&tls.config));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let (ctx, acceptor, tokens, shutdown) = (
            Arc::clone(&ctx),
            acceptor.clone(),
            Arc::clone(&tokens),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "API TLS handshake timed out");
                        return;
                    }
                };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (ctx, tokens, shutdown) =
                    (Arc::clone(&ctx), Arc::clone(&tokens), shutdown.clone());
                async move { Ok::<_, Infallible>(authorized(ctx, &tokens, req, shutdown, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}

/// Answers a request that carries a known bearer token; `401` otherwise.
async fn authorized(
    ctx: Arc<ApiContext>,
    tokens: &Tokens,
    req: Request<Incoming>,
    shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
) -> Response<Body> {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let known = match token {
        Some(t) => match tokens.check(t) {
            Some(name) => Some(name),
            // Another node relaying a pod request: its token opens those paths only.
            None if ctx.relay.is_some() => {
                super::pod_relay::peer_token(&ctx, t, req.uri().path()).await
            }
            None => None,
        },
        None => None,
    };
    match known {
        Some(_) => handle_request(ctx, req, shutdown).await,
        None => {
            tracing::info!(%peer, path = req.uri().path(), had_token = token.is_some(), "API request refused: no valid bearer token");
            let failure = crate::kube::unauthorized();
            status_response(failure)
        }
    }
}

/// Binds the API's TCP listener.
pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Transport(format!("binding the API listener on {addr}: {e}")))
}
