//! The loops that follow the store: the snapshot publisher (every node), this node's
//! membership (its Node and heartbeat Lease) and its routes to other nodes' pods (host-gw),
//! the leader election, and the controllers, which run only while this node leads (always, on
//! the embedded store).

use std::future::Future;
use std::sync::Arc;

use pier_controlplane::analysis::{AnalysisController, AnalysisMetrics, Providers};
use pier_controlplane::autoscaling::{HpaController, HpaMetrics};
use pier_controlplane::cluster::{self, ClusterConfig, Leadership, NodeFacts, NodeMetrics};
use pier_controlplane::controllers::{self, runner::Reconciler};
use pier_controlplane::events::{self, Recorder};
use pier_controlplane::{snapshot, Error};

use super::Parts;
use crate::daemon::supervise;

/// Registers this node's Node (before anything else writes, so a new store's first revisions
/// are the same on every start: the built-in namespaces, then the Node); returns its pod range.
pub(crate) async fn register(
    parts: &Parts,
    cluster: &ClusterConfig,
) -> Result<Option<ipnet::Ipv4Net>, Error> {
    let (config, facts) = (cluster.clone(), NodeFacts::of_this_machine());
    let node = parts
        .store
        .blocking("registering the node", move |s| {
            cluster::register(s, &config, &facts)
        })
        .await?;
    Ok(node.spec.pod_cidr.and_then(|c| c.parse().ok()))
}

/// Starts every control loop; `routes` when this node's engine runs pods (and so owns pod
/// networking, routes to other nodes' pods included); without `controllers` (a follower of a
/// Kubernetes API server) only the snapshot publisher. Returns the leadership the controllers
/// follow (`None` without them).
pub(crate) fn start(
    parts: &mut Parts,
    cluster: &ClusterConfig,
    routes: bool,
    controllers: bool,
) -> Option<Leadership> {
    let (store, handle, observer) = (
        Arc::clone(&parts.store),
        Arc::clone(&parts.snapshot),
        Arc::clone(&parts.metrics),
    );
    parts
        .tasks
        .push(supervise("snapshot", parts.shutdown.clone(), move || {
            snapshot::run(Arc::clone(&store), Arc::clone(&handle), observer.clone())
        }));
    match controllers::RolloutMetrics::register(&parts.registry) {
        Ok(metrics) => {
            let store = Arc::clone(&parts.store);
            parts.tasks.push(supervise(
                "rollout-metrics",
                parts.shutdown.clone(),
                move || controllers::runner::run(Arc::clone(&store), metrics.clone()),
            ));
        }
        Err(e) => tracing::error!(error = %e, "registering the rollout metrics"),
    }
    match AnalysisMetrics::register(&parts.registry) {
        Ok(metrics) => {
            let store = Arc::clone(&parts.store);
            parts.tasks.push(supervise(
                "analysis-metrics",
                parts.shutdown.clone(),
                move || controllers::runner::run(Arc::clone(&store), metrics.clone()),
            ));
        }
        Err(e) => tracing::error!(error = %e, "registering the analysis metrics"),
    }
    match HpaMetrics::register(&parts.registry) {
        Ok(metrics) => {
            let store = Arc::clone(&parts.store);
            parts.tasks.push(supervise(
                "hpa-metrics",
                parts.shutdown.clone(),
                move || controllers::runner::run(Arc::clone(&store), metrics.clone()),
            ));
        }
        Err(e) => tracing::error!(error = %e, "registering the autoscaler metrics"),
    }
    if !controllers {
        return None;
    }
    if !cluster.sole && routes {
        let (store, me, cluster_ip) = (
            Arc::clone(&parts.store),
            cluster.node_name.clone(),
            cluster.node_ip,
        );
        parts
            .tasks
            .push(supervise("pod-routes", parts.shutdown.clone(), move || {
                let routes = pier_runtime::routes::PodRoutes::new(&me, cluster_ip);
                controllers::runner::run(Arc::clone(&store), routes)
            }));
    }
    if !cluster.sole {
        let (store, config) = (Arc::clone(&parts.store), cluster.clone());
        let facts = NodeFacts::of_this_machine();
        parts
            .tasks
            .push(supervise("membership", parts.shutdown.clone(), move || {
                cluster::run_membership(Arc::clone(&store), config.clone(), facts.clone())
            }));
    }
    let leadership = if cluster.sole {
        Leadership::always()
    } else {
        let (leadership, election) = cluster::elect(
            Arc::clone(&parts.store),
            cluster.node_name.clone(),
            cluster.leader_lease,
        );
        parts.spawn_until_shutdown(election);
        leadership
    };
    let store = Arc::clone(&parts.store);
    lead(parts, "endpoints-controller", &leadership, move || {
        controllers::EndpointsController::new(Arc::clone(&store))
    });
    let store = Arc::clone(&parts.store);
    lead(parts, "foreground-deletion", &leadership, move || {
        controllers::ForegroundDeletion::new(Arc::clone(&store))
    });
    let store = Arc::clone(&parts.store);
    lead(parts, "ingress-status", &leadership, move || {
        controllers::IngressStatusController::new(Arc::clone(&store))
    });
    let store = Arc::clone(&parts.store);
    lead(parts, "gateway-status", &leadership, move || {
        controllers::GatewayStatusController::new(Arc::clone(&store))
    });
    let store = Arc::clone(&parts.store);
    let events = Recorder::start(
        Arc::clone(&store),
        "deployment-controller",
        &cluster.node_name,
        events::DEFAULT_TTL,
    );
    lead(parts, "deployment-controller", &leadership, move || {
        controllers::DeploymentController::new(Arc::clone(&store), events.clone())
    });
    let store = Arc::clone(&parts.store);
    let events = Recorder::start(
        Arc::clone(&store),
        "job-controller",
        &cluster.node_name,
        events::DEFAULT_TTL,
    );
    lead(parts, "job-controller", &leadership, move || {
        controllers::JobController::new(Arc::clone(&store), events.clone())
    });
    let store = Arc::clone(&parts.store);
    let events = Recorder::start(
        Arc::clone(&store),
        "cronjob-controller",
        &cluster.node_name,
        events::DEFAULT_TTL,
    );
    lead(parts, "cronjob-controller", &leadership, move || {
        controllers::CronJobController::new(Arc::clone(&store), events.clone())
    });
    let store = Arc::clone(&parts.store);
    let events = Recorder::start(
        Arc::clone(&store),
        "daemonset-controller",
        &cluster.node_name,
        events::DEFAULT_TTL,
    );
    lead(parts, "daemonset-controller", &leadership, move || {
        controllers::DaemonSetController::new(Arc::clone(&store), events.clone())
    });
    let store = Arc::clone(&parts.store);
    let events = Recorder::start(
        Arc::clone(&store),
        "rollouts-controller",
        &cluster.node_name,
        events::DEFAULT_TTL,
    );
    lead(parts, "rollout-controller", &leadership, move || {
        controllers::RolloutController::new(Arc::clone(&store), events.clone())
    });
    if !cluster.sole {
        let (store, grace, eviction) = (
            Arc::clone(&parts.store),
            cluster.node_grace,
            cluster.pod_eviction_timeout,
        );
        lead(parts, "node-lifecycle-controller", &leadership, move || {
            cluster::NodeLifecycle::new(Arc::clone(&store), grace, eviction)
        });
        let store = Arc::clone(&parts.store);
        let events = Recorder::start(
            Arc::clone(&store),
            "default-scheduler",
            &cluster.node_name,
            events::DEFAULT_TTL,
        );
        lead(parts, "scheduler", &leadership, move || {
            controllers::Scheduler::new(Arc::clone(&store), events.clone())
        });
    }
    Some(leadership)
}

/// Starts the controllers that measure the cluster (leader work): analysis runs and the
/// HorizontalPodAutoscaler, both reading every node's metrics through `nodes`.
pub(crate) fn analyse_and_autoscale(
    parts: &mut Parts,
    cluster: &ClusterConfig,
    leadership: &Leadership,
    nodes: Arc<NodeMetrics>,
) {
    match Providers::new(Arc::clone(&parts.store), Arc::clone(&nodes)) {
        Ok(providers) => {
            let store = Arc::clone(&parts.store);
            let events = Recorder::start(
                Arc::clone(&store),
                "analysis-controller",
                &cluster.node_name,
                events::DEFAULT_TTL,
            );
            lead(parts, "analysis-controller", leadership, move || {
                AnalysisController::new(Arc::clone(&store), providers.clone(), events.clone())
            });
        }
        Err(e) => tracing::error!(error = %e, "analysis cannot run"),
    }
    let (store, period) = (Arc::clone(&parts.store), cluster.hpa_sync_period);
    let events = Recorder::start(
        Arc::clone(&store),
        "horizontal-pod-autoscaler",
        &cluster.node_name,
        events::DEFAULT_TTL,
    );
    lead(parts, "hpa-controller", leadership, move || {
        HpaController::new(
            Arc::clone(&store),
            events.clone(),
            Arc::clone(&nodes),
            period,
        )
    });
}

/// Runs a controller on the runner while this node leads, restarting it with backoff when it
/// fails; it stops when leadership is lost and starts afresh (a new list) when regained.
fn lead<R: Reconciler>(
    parts: &mut Parts,
    name: &'static str,
    leadership: &Leadership,
    make: impl Fn() -> R + Send + Sync + 'static,
) {
    let (store, leadership, make) = (Arc::clone(&parts.store), leadership.clone(), Arc::new(make));
    parts
        .tasks
        .push(supervise(name, parts.shutdown.clone(), move || {
            let (store, leadership, make) =
                (Arc::clone(&store), leadership.clone(), Arc::clone(&make));
            while_leading(name, leadership, move || {
                controllers::runner::run(Arc::clone(&store), make())
            })
        }));
}

/// Runs what `run` makes whenever this node leads, until it fails.
async fn while_leading<Fut: Future<Output = Result<(), Error>>>(
    name: &'static str,
    mut leadership: Leadership,
    run: impl Fn() -> Fut,
) -> Result<(), Error> {
    loop {
        leadership.until(true).await;
        tracing::info!(controller = name, "leading: controller started");
        tokio::select! {
            result = run() => return result,
            () = leadership.until(false) => {
                tracing::info!(controller = name, "no longer leading: controller stopped");
            }
        }
    }
}
