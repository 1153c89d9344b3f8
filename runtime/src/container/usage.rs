//! A container's resource use, read from the cgroup the engine made for it (`/pier/<id>`):
//! CPU time from cgroup v1's `cpuacct.usage` or cgroup v2's `cpu.stat`, and the working set
//! (usage less inactive page cache, as the kubelet counts it) from the memory controller.

use std::fs;
use std::path::Path;

use pier_controlplane::autoscaling::{ContainerUsage, UsageSource};

use super::cgroup::{dir, stat};
use super::Engine;

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// CPU seconds: v1 `cpuacct.usage` (ns), else v2 `cpu.stat` `usage_usec` (at the mount point,
/// or the hybrid layout's `unified`).
fn cpu_seconds(id: &str) -> Option<f64> {
    if let Some(ns) =
        read(&dir("cpuacct", id).join("cpuacct.usage")).and_then(|t| t.trim().parse::<f64>().ok())
    {
        return Some(ns / 1e9);
    }
    ["", "unified"].iter().find_map(|base| {
        let text = read(&dir(base, id).join("cpu.stat"))?;
        Some(stat(&text, "usage_usec")? / 1e6)
    })
}

/// Working-set bytes: v1 `memory.usage_in_bytes` less `total_inactive_file`, else v2
/// `memory.current` less `inactive_file`.
fn memory_bytes(id: &str) -> Option<f64> {
    let v1 = dir("memory", id);
    if let Some(usage) =
        read(&v1.join("memory.usage_in_bytes")).and_then(|t| t.trim().parse::<f64>().ok())
    {
        let inactive = read(&v1.join("memory.stat"))
            .and_then(|t| stat(&t, "total_inactive_file"))
            .unwrap_or(0.0);
        return Some((usage - inactive).max(0.0));
    }
    ["", "unified"].iter().find_map(|base| {
        let d = dir(base, id);
        let usage: f64 = read(&d.join("memory.current"))?.trim().parse().ok()?;
        let inactive = read(&d.join("memory.stat"))
            .and_then(|t| stat(&t, "inactive_file"))
            .unwrap_or(0.0);
        Some((usage - inactive).max(0.0))
    })
}

impl UsageSource for Engine {
    fn usage(&self, id: &str) -> Option<ContainerUsage> {
        // Only containers this engine runs; an ID is 64 hex digits, never a path.
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) || !self.get(id).is_ok_and(|r| r.id == id) {
            return None;
        }
        Some(ContainerUsage {
            cpu_seconds: cpu_seconds(id)?,
            memory_bytes: memory_bytes(id).unwrap_or(0.0),
        })
    }
}
