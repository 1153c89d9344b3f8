//! Where measurements come from: Argo's `prometheus` and `web` providers, and pier's own
//! (`pier.dev/metrics`, read from every node, this one in process). One `measure` dispatches on the metric's provider.

mod pier;
mod prometheus;
mod web;

use std::sync::Arc;
use std::time::Duration;

use pier_model::analysis::{Metric, PierMetric, PIER_METRICS_PLUGIN};
use pier_model::condition::Measured;

use crate::cluster::NodeMetrics;
use crate::error::chain;
use crate::store::Store;

/// Window of a pier measurement without an interval or a window of its own.
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// What the providers need: the store, every node's metrics, HTTP clients.
#[derive(Clone)]
pub struct Providers {
    store: Arc<Store>,
    nodes: Arc<NodeMetrics>,
    http: reqwest::Client,
    insecure: reqwest::Client,
}

impl Providers {
    /// Providers reading `store` and the metrics of the nodes `nodes` reaches.
    pub fn new(store: Arc<Store>, nodes: Arc<NodeMetrics>) -> Result<Self, String> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| format!("building the analysis HTTP client: {}", chain(&e)))
        };
        Ok(Self {
            store,
            nodes,
            http: build(false)?,
            insecure: build(true)?,
        })
    }

    /// Takes one measurement of `metric` for a run in `namespace`.
    pub async fn measure(&self, namespace: &str, metric: &Metric) -> Result<Measured, String> {
        let p = &metric.provider;
        if let Some(prom) = &p.prometheus {
            return prometheus::query(&self.http, prom).await;
        }
        if let Some(w) = &p.web {
            return web::fetch(&self.http, &self.insecure, w).await;
        }
        match p.plugin.iter().next() {
            Some((name, config)) if name == PIER_METRICS_PLUGIN => {
                let cfg = PierMetric::from_value(config)?;
                let window = match cfg.window.as_deref() {
                    Some(w) => pier_model::analysis::parse_duration(w)?,
                    None => metric.interval()?.unwrap_or(DEFAULT_WINDOW),
                };
                pier::measure(&self.store, &self.nodes, namespace, &cfg, window).await
            }
            Some((name, _)) => Err(format!(
                "metric plugin {name:?} is not run by pier, which runs {PIER_METRICS_PLUGIN:?}"
            )),
            None => {
                Err("no provider pier runs: give prometheus, web or plugin pier.dev/metrics".into())
            }
        }
    }
}
