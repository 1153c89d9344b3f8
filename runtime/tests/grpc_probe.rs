//! gRPC probes against a real gRPC health server (tonic-health, the Rust implementation of
//! `grpc.health.v1`): SERVING passes; NOT_SERVING, an unknown service and a closed port fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pier_runtime::node::probe::{run, Check, ProbeSpec, Target};
use tonic_health::ServingStatus;

fn spec(port: u16, service: &str) -> ProbeSpec {
    ProbeSpec {
        check: Check::Grpc {
            port,
            service: service.into(),
        },
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        success_threshold: 1,
        failure_threshold: 1,
    }
}

#[tokio::test]
async fn grpc_health_checks_follow_the_serving_status() {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Cart", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("shop.Payments", ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let target = Target {
        ip: "127.0.0.1".parse().unwrap(),
        id: String::new(),
        exec_helper: "/bin/false".into(),
        state_root: "/".into(),
    };
    // The server as a whole ("") is SERVING by default in tonic-health.
    assert!(
        run(&spec(port, ""), &target, "readiness").await,
        "whole server"
    );
    assert!(
        run(&spec(port, "shop.Cart"), &target, "readiness").await,
        "SERVING"
    );
    assert!(
        !run(&spec(port, "shop.Payments"), &target, "readiness").await,
        "NOT_SERVING"
    );
    assert!(
        !run(&spec(port, "shop.Unknown"), &target, "readiness").await,
        "NOT_FOUND"
    );
    // Status changes are seen on the next check.
    reporter
        .set_service_status("shop.Payments", ServingStatus::Serving)
        .await;
    assert!(
        run(&spec(port, "shop.Payments"), &target, "readiness").await,
        "now SERVING"
    );
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(
        !run(&spec(closed, ""), &target, "readiness").await,
        "closed port"
    );
}
