//! `pier_ebpf_*` metrics: the kernel's per-CPU counters, summed on every scrape from the
//! pinned maps, plus map sizes and (with `kernel.bpf_stats_enabled=1`) program run time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuHashMap};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::maps::{Backend, SvcKey, SvcStats, PROTO_TCP};

/// Service names by VIP port, kept by the snapshot consumer for metric labels.
pub type Names = Arc<RwLock<HashMap<SvcKey, String>>>;

/// The socket-LB's metrics, read from its pinned maps when scraped.
pub struct EbpfMetrics {
    pin_dir: PathBuf,
    names: Names,
    connects: IntCounterVec,
    refused: IntCounterVec,
    backend_connects: IntCounterVec,
    entries: IntGaugeVec,
    run_ns: IntCounterVec,
    runs: IntCounterVec,
    /// Last totals seen per series, so counters advance by the kernel's deltas.
    last: Mutex<HashMap<(u8, String), u64>>,
}

fn vip_label(k: &SvcKey) -> String {
    let ip = Ipv4Addr::from(k.vip.to_ne_bytes());
    let proto = if k.proto == PROTO_TCP { "TCP" } else { "UDP" };
    format!("{ip}:{}/{proto}", u16::from_be(k.port))
}

fn open(pin_dir: &Path, name: &str) -> Option<MapData> {
    MapData::from_pin(pin_dir.join(name)).ok()
}

impl EbpfMetrics {
    /// Creates and registers the metrics for maps pinned under `pin_dir`.
    pub fn register(registry: &Registry, pin_dir: &Path, names: Names) -> prometheus::Result<()> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Self {
            pin_dir: pin_dir.to_path_buf(),
            names,
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
            entries: IntGaugeVec::new(
                Opts::new("pier_ebpf_map_entries", "Entries in each socket-LB map"),
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
                let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
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
        let backends: HashMap<u32, String> = open(&self.pin_dir, "pier_backends")
            .and_then(|d| BpfHashMap::<_, u32, Backend>::try_from(Map::HashMap(d)).ok())
            .map(|m| {
                m.iter()
                    .filter_map(|r| r.ok())
                    .map(|(id, b)| {
                        let addr = SocketAddrV4::new(
                            Ipv4Addr::from(b.addr.to_ne_bytes()),
                            u16::from_be(b.port),
                        );
                        (id, addr.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.entries
            .with_label_values(&["pier_backends"])
            .set(i64::try_from(backends.len()).unwrap_or(i64::MAX));
        if let Some(data) = open(&self.pin_dir, "pier_backend_stats") {
            if let Ok(stats) = PerCpuHashMap::<_, u32, u64>::try_from(Map::PerCpuHashMap(data)) {
                for (id, per_cpu) in stats.iter().filter_map(|r| r.ok()) {
                    if let Some(addr) = backends.get(&id) {
                        self.advance(2, &self.backend_connects, &[addr], per_cpu.iter().sum());
                    }
                }
            }
        }
        for (name, map) in [
            ("pier_services", true),
            ("pier_slots", true),
            ("pier_revnat", false),
            ("pier_affinity", false),
        ] {
            let count = open(&self.pin_dir, name).map_or(0, |d| {
                let m = if map {
                    Map::HashMap(d)
                } else {
                    Map::LruHashMap(d)
                };
                count_keys(m, name)
            });
            self.entries
                .with_label_values(&[name])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
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

/// Entries in one of the socket-LB's hash maps.
fn count_keys(map: Map, name: &str) -> usize {
    use crate::maps::{Affinity, AffinityKey, Revnat, RevnatKey, SlotKey, Svc};
    fn keys<K: aya::Pod, V: aya::Pod>(map: Map) -> usize {
        BpfHashMap::<_, K, V>::try_from(map)
            .map(|m| m.keys().filter_map(|r| r.ok()).count())
            .unwrap_or(0)
    }
    match name {
        "pier_services" => keys::<SvcKey, Svc>(map),
        "pier_slots" => keys::<SlotKey, u32>(map),
        "pier_revnat" => keys::<RevnatKey, Revnat>(map),
        _ => keys::<AffinityKey, Affinity>(map),
    }
}

impl Collector for EbpfMetrics {
    fn desc(&self) -> Vec<&Desc> {
        [
            &self.connects as &dyn Collector,
            &self.refused,
            &self.backend_connects,
            &self.entries,
            &self.run_ns,
            &self.runs,
        ]
        .into_iter()
        .flat_map(|c| c.desc())
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        [
            &self.connects as &dyn Collector,
            &self.refused,
            &self.backend_connects,
            &self.entries,
            &self.run_ns,
            &self.runs,
        ]
        .into_iter()
        .flat_map(|c| c.collect())
        .collect()
    }
}
