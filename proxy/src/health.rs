//! Active health checks: per group, probe every endpoint each interval (TCP connect, or an
//! HTTP GET in the group's protocol, HTTP/1.1 or h2c) and flip its verdict after enough
//! results in a row.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use pier_snapshot::policy::{HealthCheck, HealthProbe};
use tokio::net::TcpStream;

use crate::balance::{Cluster, Member};
use crate::l7::Http;

/// Starts the checker of `cluster` unless it runs already; it stops when the group is dropped
/// or its Service no longer asks for checks.
pub(crate) fn ensure_checker(cluster: &Arc<Cluster>, http: &Arc<Http>) {
    if !cluster.wants_health_checks() {
        return;
    }
    if cluster.checker_running.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(run(Arc::downgrade(cluster), Arc::clone(http)));
}

async fn run(cluster: Weak<Cluster>, http: Arc<Http>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let members = c.members();
        let Some(check) = members.policy.health_check.clone() else {
            c.checker_running.store(false, Ordering::Release);
            for m in &members.list {
                m.state.set_healthy(true);
                c.metrics_of(m).healthy.set(1);
            }
            return;
        };
        let probes: Vec<_> = members
            .list
            .iter()
            .map(|m| {
                probe_one(
                    Arc::clone(&c),
                    Arc::clone(m),
                    check.clone(),
                    Arc::clone(&http),
                )
            })
            .collect();
        drop(members);
        drop(c);
        for p in probes {
            tokio::spawn(p);
        }
        tokio::time::sleep(check.interval).await;
    }
}

async fn probe_one(
    cluster: Arc<Cluster>,
    member: Arc<Member>,
    check: HealthCheck,
    http: Arc<Http>,
) {
    let ok = match &check.probe {
        HealthProbe::Tcp => matches!(
            tokio::time::timeout(check.timeout, TcpStream::connect(member.addr)).await,
            Ok(Ok(_))
        ),
        HealthProbe::Http { path } => http.probe(&cluster, &member, path, check.timeout).await,
    };
    let streak = &member.state.check_streak;
    let now = if ok {
        streak
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(s.max(0) + 1))
            .map_or(1, |s| s.max(0) + 1)
    } else {
        streak
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(s.min(0) - 1))
            .map_or(-1, |s| s.min(0) - 1)
    };
    let healthy_after = i32::try_from(check.healthy_threshold).unwrap_or(i32::MAX);
    let unhealthy_after = i32::try_from(check.unhealthy_threshold).unwrap_or(i32::MAX);
    if now >= healthy_after && !member.state.is_healthy() {
        tracing::info!(endpoint = %member.addr, "health check passing: endpoint back in rotation");
        member.state.set_healthy(true);
        cluster.metrics_of(&member).healthy.set(1);
    } else if -now >= unhealthy_after && member.state.is_healthy() {
        tracing::warn!(endpoint = %member.addr, "health check failing: endpoint out of rotation");
        member.state.set_healthy(false);
        cluster.metrics_of(&member).healthy.set(0);
    }
}
