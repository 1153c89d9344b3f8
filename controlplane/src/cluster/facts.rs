//! What a Node reports about its machine: capacity (CPUs, memory, pods), addresses and
//! system facts, read from `/proc` and `/etc` as the kubelet reads them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use pier_model::meta::IntOrString;
use pier_model::node::{NodeAddress, NodeSystemInfo};

/// Most pods a node runs, as the kubelet's default.
const MAX_PODS: i64 = 110;

/// The facts of the machine a node runs on.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// CPUs.
    pub cpus: usize,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// System information.
    pub info: NodeSystemInfo,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl NodeFacts {
    /// The facts of this machine.
    pub fn of_this_machine() -> NodeFacts {
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        let version = env!("CARGO_PKG_VERSION");
        NodeFacts {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: memory_kib * 1024,
            info: NodeSystemInfo {
                kubelet_version: format!("v{version}-pier"),
                kube_proxy_version: format!("v{version}-pier"),
                operating_system: std::env::consts::OS.into(),
                architecture: match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    "aarch64" => "arm64",
                    other => other,
                }
                .into(),
                kernel_version: read("/proc/sys/kernel/osrelease"),
                os_image,
                container_runtime_version: format!("pier://{version}"),
                machine_id: read("/etc/machine-id"),
                boot_id: read("/proc/sys/kernel/random/boot_id"),
                system_uuid: read("/sys/class/dmi/id/product_uuid"),
            },
        }
    }

    /// `cpu`, `memory` and `pods`, as Node capacity (and allocatable).
    pub(crate) fn capacity(&self) -> BTreeMap<String, IntOrString> {
        BTreeMap::from([
            ("cpu".into(), IntOrString::String(self.cpus.to_string())),
            (
                "memory".into(),
                IntOrString::String(format!("{}Ki", self.memory_bytes / 1024)),
            ),
            ("pods".into(), IntOrString::String(MAX_PODS.to_string())),
        ])
    }

    /// `InternalIP` (when known) and `Hostname`.
    pub(crate) fn addresses(node_name: &str, ip: Option<IpAddr>) -> Vec<NodeAddress> {
        let mut out = Vec::new();
        if let Some(ip) = ip {
            out.push(NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            });
        }
        out.push(NodeAddress {
            type_: "Hostname".into(),
            address: node_name.to_string(),
        });
        out
    }
}
