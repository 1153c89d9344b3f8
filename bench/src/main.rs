//! `pier-bench`: pier measured side by side with its peers, on pinned CPUs, bounded in time.

mod harness;
mod scenarios;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pier-bench", about = "Benchmarks pier against its peers")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Control plane at scale: apply N services x M endpoints, time snapshot rebuilds after single changes.
    ControlplaneScale {
        /// Services.
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Endpoints per service.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Single-endpoint changes to time.
        #[arg(long, default_value_t = 1000)]
        changes: usize,
        /// Upper bound for the run, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// DNS: pier vs knot and unbound with dnsperf, 1k and 10k services, 0% and 10% NXDOMAIN.
    Dns {
        /// Service counts.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        services: Vec<usize>,
        /// NXDOMAIN fractions.
        #[arg(long, value_delimiter = ',', default_value = "0,0.1")]
        nxdomain: Vec<f64>,
        /// Seconds per saturation run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Queries per second of the latency run.
        #[arg(long, default_value_t = 20000)]
        latency_qps: u32,
    },
    /// Socket-LB: direct vs pier's eBPF socket-LB vs pier's userspace L4 proxy vs HAProxy (tcp).
    SocketLb {
        /// Seconds per measured run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent wrk connections.
        #[arg(long, default_value_t = 32)]
        connections: u32,
        /// Rounds; figures are medians, ratios are medians of per-round ratios.
        #[arg(long, default_value_t = 8)]
        rounds: usize,
    },
    /// Container engine: create->running and stop->removed, pier vs runc vs crun, same bundle;
    /// then pod start to first ready endpoint through a daemon.
    Runtime {
        /// Containers per runtime; figures are medians.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        /// Pods per variant (with and without a readiness probe); 0 skips them.
        #[arg(long, default_value_t = 10)]
        pods: usize,
    },
    /// Cluster: 3 nodes in network namespaces on etcd: one endpoint change until every node's
    /// socket-LB, proxy and DNS serve it; a 4th node joining N services x M endpoints; RSS.
    Cluster {
        /// Endpoint changes timed.
        #[arg(long, default_value_t = 1000)]
        changes: usize,
        /// Services loaded before the 4th node joins.
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Endpoints per loaded service.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Upper bound for the run, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Rollback: from a canary's failed analysis to every new request (HTTPRoute) and
    /// connection (TCPRoute) on stable, against a 1 s target; no root needed.
    Rollout {
        /// Rounds (fail, measure, retry); figures are medians.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// TLS: pier's Ingress listener vs HAProxy (OpenSSL 3) terminating TLS 1.3 in front of
    /// nginx: full and resumed handshakes per second, HTTPS keep-alive requests per second.
    Tls {
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Loads.
        #[arg(long, value_delimiter = ',', default_value = "full,resumed,keepalive")]
        modes: Vec<String>,
        /// Rounds per load; figures are medians, ratios are medians of per-round ratios.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Proxy: pier vs HAProxy in front of nginx, wrk and h2load, HTTP/1.1, h2c and TCP mode.
    Proxy {
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Client connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Modes.
        #[arg(long, value_delimiter = ',', default_value = "http1,h2c,tcp")]
        modes: Vec<String>,
        /// Rounds per mode; figures are medians, ratios are medians of per-round ratios.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The cluster's three daemons and etcd members share the machine's CPUs: nothing pinned.
    if !matches!(cli.scenario, Scenario::Cluster { .. }) {
        harness::pin_self(harness::LOAD_CPU)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.scenario {
        Scenario::ControlplaneScale {
            services,
            endpoints,
            changes,
            timeout,
        } => runtime.block_on(scenarios::controlplane::run(
            scenarios::controlplane::Params {
                services,
                endpoints,
                changes,
                timeout: Duration::from_secs(timeout),
            },
        )),
        Scenario::Dns {
            services,
            nxdomain,
            seconds,
            latency_qps,
        } => runtime.block_on(scenarios::dns::run(scenarios::dns::Params {
            services,
            nxdomain,
            seconds,
            latency_qps,
        })),
        Scenario::SocketLb {
            seconds,
            connections,
            rounds,
        } => {
            // It dials ClusterIPs: only from a network namespace of its own, entered once its
            // tools are installed.
            scenarios::socketlb::install()?;
            harness::private_netns()?;
            runtime.block_on(scenarios::socketlb::run(scenarios::socketlb::Params {
                seconds,
                connections,
                rounds,
            }))
        }
        Scenario::Runtime { rounds, pods } => {
            scenarios::runtime::run_all(scenarios::runtime::Params { rounds, pods })
        }
        Scenario::Cluster {
            changes,
            services,
            endpoints,
            timeout,
        } => {
            // It dials ClusterIPs: only from a network namespace of its own (the LAN).
            scenarios::cluster::install()?;
            harness::private_netns()?;
            runtime.block_on(scenarios::cluster::run(scenarios::cluster::Params {
                changes,
                services,
                endpoints,
                timeout: Duration::from_secs(timeout),
            }))
        }
        Scenario::Rollout { rounds } => {
            runtime.block_on(scenarios::rollout::run(scenarios::rollout::Params {
                rounds,
            }))
        }
        Scenario::Tls {
            seconds,
            clients,
            modes,
            rounds,
        } => runtime.block_on(scenarios::tls::run(scenarios::tls::Params {
            seconds,
            clients,
            modes,
            rounds,
        })),
        Scenario::Proxy {
            seconds,
            connections,
            modes,
            rounds,
        } => runtime.block_on(scenarios::proxy::run(scenarios::proxy::Params {
            seconds,
            connections,
            modes,
            rounds,
        })),
    }
}
