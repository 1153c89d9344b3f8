//! `pier_ebpf_*` metrics: the kernel's per-CPU counters, summed on every scrape from the
//! pinned maps, plus the sizes of the maps pier writes (from its [`Inventory`], without walking
//! them) and, with `kernel.bpf_stats_enabled=1`, program run time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use aya::maps::{Map, MapData, PerCpuHashMap};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::maps::{Backend, BackendFails, SvcKey, SvcStats, PROTO_TCP};
use crate::Inventory;

/// The socket-LB's metrics, read from its pinned maps when scraped.
pub struct EbpfMetrics {
    pin_dir: PathBuf,
    inventory: Arc<Inventory>,
    connects: IntCounterVec,
    refused: IntCounterVec,
    backend_connects: IntCounterVec,
    connect_failures: IntCounterVec,
    resets: IntCounterVec,
    entries: IntGaugeVec,
    run_ns: IntCounterVec,
    runs: IntCounterVec,
    /// Last totals seen per series, so counters advance by the kernel's deltas.
    last: Mutex<HashMap<(u8, String), u64>>,
}

fn vip_label(k: &SvcKey) -> String {
    let addr = std::net::SocketAddr::new(k.vip.to_ip_addr(), u16::from_be(k.port));
    let proto = if k.proto == PROTO_TCP { "TCP" } else { "UDP" };
    format!("{addr}/{proto}")
}

fn open(pin_dir: &Path, name: &str) -> Option<MapData> {
    MapData::from_pin(pin_dir.join(name)).ok()
}

impl EbpfMetrics {
    /// Creates and registers the metrics for maps pinned under `pin_dir`.
    pub fn register(
        registry: &Registry,
        pin_dir: &Path,
        inventory: Arc<Inventory>,
    ) -> prometheus::Result<()> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Self {
            pin_dir: pin_dir.to_path_buf(),
            inventory,
            connects: counter(
                "pier_ebpf_connections_total",
                "Connects and datagrams the socket-LB translated, by service and VIP port",
                &["service", "vip"],
            )?,
            refused: counter(
                "pier_ebpf_no_backend_total",
                "Connects refused because the service had no backend, by service and VIP port",
                &["service", "vip"],
            )?,
            backend_connects: counter(
                "pier_ebpf_backend_connections_total",
                "Connects and datagrams the socket-LB sent to each backend",
                &["backend"],
            )?,
            connect_failures: counter(
                "pier_ebpf_backend_connect_failures_total",
                "Translated TCP connects to each backend that never established (refused or \
                 timed out)",
                &["backend"],
            )?,
            resets: counter(
                "pier_ebpf_backend_resets_total",
                "Translated TCP connections to each backend that were reset once established",
                &["backend"],
            )?,
            entries: IntGaugeVec::new(
                Opts::new(
                    "pier_ebpf_map_entries",
                    "Entries pier keeps in each socket-LB map it writes",
                ),
                &["map"],
            )?,
            run_ns: counter(
                "pier_ebpf_program_run_nanoseconds_total",
                "Time the socket-LB programs ran (needs sysctl kernel.bpf_stats_enabled=1)",
                &["program"],
            )?,
            runs: counter(
                "pier_ebpf_program_runs_total",
                "Runs of the socket-LB programs (needs sysctl kernel.bpf_stats_enabled=1)",
                &["program"],
            )?,
            last: Mutex::new(HashMap::new()),
        };
        registry.register(Box::new(m))
    }

    /// Advances `vec{labels}` to `total` (counters only go up; a lower total means the
    /// kernel counter was reset, and counting starts over from it).
    fn advance(&self, which: u8, vec: &IntCounterVec, labels: &[&str], total: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let seen = last.entry((which, labels.join("\u{1f}"))).or_insert(0);
        let delta = total.checked_sub(*seen).unwrap_or(total);
        *seen = total;
        if delta > 0 {
            vec.with_label_values(labels).inc_by(delta);
        }
    }

    fn refresh(&self) {
        if let Some(data) = open(&self.pin_dir, "pier_svc_stats") {
            if let Ok(stats) =
                PerCpuHashMap::<_, SvcKey, SvcStats>::try_from(Map::PerCpuHashMap(data))
            {
                let names = self
                    .inventory
                    .names
                    .read()
                    .map(|n| n.clone())
                    .unwrap_or_default();
                for (key, per_cpu) in stats.iter().filter_map(|r| r.ok()) {
                    let (connects, refused) = per_cpu
                        .iter()
                        .fold((0, 0), |(c, r), s| (c + s.connects, r + s.refused));
                    let service = names.get(&key).cloned().unwrap_or_default();
                    let vip = vip_label(&key);
                    self.advance(0, &self.connects, &[&service, &vip], connects);
                    self.advance(1, &self.refused, &[&service, &vip], refused);
                }
            }
        }
        let backends: HashMap<u32, String> = self
            .inventory
            .backends
            .read()
            .map(|b| b.iter().map(|(id, a)| (*id, a.to_string())).collect())
            .unwrap_or_default();
        let size = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (map, n) in [
            (
                "pier_services",
                self.inventory.services.load(Ordering::Relaxed),
            ),
            ("pier_slots", self.inventory.slots.load(Ordering::Relaxed)),
            ("pier_backends", backends.len()),
        ] {
            self.entries.with_label_values(&[map]).set(size(n));
        }
        if let Some(data) = open(&self.pin_dir, "pier_backend_stats") {
            if let Ok(stats) = PerCpuHashMap::<_, u32, u64>::try_from(Map::PerCpuHashMap(data)) {
                for (id, per_cpu) in stats.iter().filter_map(|r| r.ok()) {
                    if let Some(addr) = backends.get(&id) {
                        self.advance(2, &self.backend_connects, &[addr], per_cpu.iter().sum());
                    }
                }
            }
        }
        self.refresh_fails();
        for info in aya::programs::loaded_programs().filter_map(|r| r.ok()) {
            let Some(name) = info.name_as_str() else {
                continue;
            };
            if !crate::PROGRAMS
                .iter()
                .any(|p| p.starts_with(name) || name.starts_with(p))
            {
                continue;
            }
            let ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
            self.advance(3, &self.run_ns, &[name], ns);
            self.advance(4, &self.runs, &[name], info.run_count());
        }
    }
}

impl EbpfMetrics {
    /// How backends' translated connections ended badly, by backend address.
    fn refresh_fails(&self) {
        let Some(data) = open(&self.pin_dir, "pier_backend_fails") else {
            return;
        };
        let Ok(fails) =
            PerCpuHashMap::<_, Backend, BackendFails>::try_from(Map::PerCpuHashMap(data))
        else {
            return;
        };
        for (backend, per_cpu) in fails.iter().filter_map(|r| r.ok()) {
            let (failed, reset) = per_cpu
                .iter()
                .fold((0, 0), |(f, r), s| (f + s.connect_failures, r + s.resets));
            let label = backend.socket_addr().to_string();
            self.advance(5, &self.connect_failures, &[&label], failed);
            self.advance(6, &self.resets, &[&label], reset);
        }
    }

    fn parts(&self) -> [&dyn Collector; 8] {
        [
            &self.connects,
            &self.refused,
            &self.backend_connects,
            &self.connect_failures,
            &self.resets,
            &self.entries,
            &self.run_ns,
            &self.runs,
        ]
    }
}

impl Collector for EbpfMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.parts().into_iter().flat_map(|c| c.collect()).collect()
    }
}
