//! The attempt loop: try endpoints of a group in turn, within the Service's retries and the
//! frontend's retry budget. The one file that decides when a request is retried.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, Response, StatusCode};

use super::body::UpstreamBody;
use super::headers::ClientHeaders;
use super::{error, ClientBody, Http};
use crate::balance::{Cluster, InFlight, Member};
use crate::frontend::Frontend;

/// How one attempt against one endpoint ended.
// Answered is the common case: boxing it to shrink the rare ones would allocate per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    /// The endpoint answered (with any status).
    Answered(Response<ClientBody>),
    /// No connection could be made: nothing reached the endpoint.
    ConnectFailed(String),
    /// The exchange broke after the request was (maybe) sent, or the answer could not be
    /// relayed safely.
    Broken(String),
    /// The per-try timeout passed.
    TimedOut,
}

impl Outcome {
    /// Whether the endpoint failed this attempt (for passive ejection).
    fn endpoint_failed(&self) -> bool {
        match self {
            Outcome::Answered(r) => r.status().is_server_error(),
            _ => true,
        }
    }

    /// Whether another endpoint may be tried: always when nothing was sent; otherwise only
    /// for a method that may be repeated (RFC 9110 section 9.2.2).
    fn retryable(&self, idempotent: bool) -> bool {
        match self {
            Outcome::ConnectFailed(_) => true,
            Outcome::Answered(r) => idempotent && r.status().is_server_error(),
            Outcome::Broken(_) | Outcome::TimedOut => idempotent,
        }
    }

    /// What the client gets when no other attempt follows.
    fn into_response(self) -> Response<ClientBody> {
        match self {
            Outcome::Answered(r) => r,
            Outcome::ConnectFailed(_) | Outcome::Broken(_) => {
                error(StatusCode::BAD_GATEWAY, "upstream failed\n")
            }
            Outcome::TimedOut => error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
        }
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// One request as the attempt loop sends it.
pub(super) struct Attempts<'a> {
    pub fe: &'a Frontend,
    pub cluster: &'a Cluster,
    pub parts: &'a hyper::http::request::Parts,
    pub client: &'a ClientHeaders,
    /// Per-try timeout.
    pub backend_timeout: Option<Duration>,
}

impl Attempts<'_> {
    /// Tries endpoints until one answers, or no retry is allowed: the first endpoint by the
    /// group's picker, then others not tried yet.
    pub(super) async fn run(self, http: &Http, body: UpstreamBody) -> Response<ClientBody> {
        let idempotent = idempotent(&self.parts.method);
        let hash: u64 = rand::random();
        let mut tried: Vec<SocketAddr> = Vec::new();
        let max = 1 + self.fe.policy.retries;
        let mut held = Some(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let member = match self.cluster.pick(hash, &tried) {
                Ok(m) => m,
                Err(_) if attempt == 1 => {
                    self.fe.metrics.no_endpoint.inc();
                    return error(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n");
                }
                Err(_) => return error(StatusCode::BAD_GATEWAY, "upstream failed\n"),
            };
            let replayable = matches!(held, Some(UpstreamBody::Full(_)));
            let Some(body) = UpstreamBody::for_attempt(&mut held) else {
                return error(StatusCode::BAD_GATEWAY, "upstream failed\n");
            };
            let outcome = self.once(http, &member, body).await;
            let retry = outcome.retryable(idempotent)
                && attempt < max
                && replayable
                && self.fe.budget.withdraw();
            if !retry {
                return outcome.into_response();
            }
            self.fe.metrics.retries.inc();
            tried.push(member.addr);
        }
    }

    /// One attempt on `member`, with its per-try timeout, recorded in the group's metrics and
    /// the endpoint's failure streak.
    async fn once(&self, http: &Http, member: &Arc<Member>, body: UpstreamBody) -> Outcome {
        let in_flight = InFlight::new(Arc::clone(member));
        let started = Instant::now();
        let policy = &self.fe.policy;
        let sent = http.exchange(
            self.cluster,
            member,
            policy.connect_timeout,
            self.parts,
            self.client,
            body,
        );
        let outcome = match self.backend_timeout {
            Some(t) => tokio::time::timeout(t, sent)
                .await
                .unwrap_or(Outcome::TimedOut),
            None => sent.await,
        };
        drop(in_flight);
        match &outcome {
            Outcome::Answered(r) => {
                self.cluster
                    .metrics
                    .upstream_duration
                    .observe(started.elapsed().as_secs_f64());
                self.cluster
                    .metrics_of(member)
                    .request(Some(r.status().as_u16()));
            }
            Outcome::ConnectFailed(why) | Outcome::Broken(why) => {
                tracing::debug!(endpoint = %member.addr, error = %why, "upstream request failed");
                self.cluster.metrics_of(member).request(None);
            }
            Outcome::TimedOut => self.cluster.metrics_of(member).request(None),
        }
        if outcome.endpoint_failed() {
            self.cluster.failure(member);
        } else {
            self.cluster.success(member);
        }
        outcome
    }
}
