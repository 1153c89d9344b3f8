//! Daemon configuration: TOML file, overridden by flags.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use pier_controlplane::api::current_uid;
use serde::Deserialize;

/// `pier daemon` settings as read from a TOML file; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// State directory (the redb store file, the engine's state).
    pub state_dir: Option<PathBuf>,
    /// `redb` (default) or `etcd://HOST:PORT[,HOST:PORT...]`.
    pub store: Option<String>,
    /// etcd client settings, with `store = "etcd://..."`.
    #[serde(default)]
    pub etcd: EtcdFileConfig,
    /// This node's place in the cluster.
    #[serde(default)]
    pub cluster: ClusterFileConfig,
    /// Control socket path.
    pub socket: Option<PathBuf>,
    /// Admin listener address.
    pub admin: Option<SocketAddr>,
    /// ClusterIP ranges, e.g. `10.96.0.0/12` or `10.96.0.0/12,fd00:10:96::/112`.
    pub service_cidr: Option<String>,
    /// NodePort range, e.g. `30000-32767`.
    pub node_port_range: Option<String>,
    /// Watch history kept in the store.
    pub event_history: Option<u64>,
    /// Key file Secrets are sealed with at rest.
    pub encryption_key_file: Option<PathBuf>,
    /// DNS settings.
    #[serde(default)]
    pub dns: DnsFileConfig,
    /// Proxy settings.
    #[serde(default)]
    pub proxy: ProxyFileConfig,
    /// Socket-LB settings.
    #[serde(default)]
    pub ebpf: EbpfFileConfig,
    /// Container engine settings.
    #[serde(default)]
    pub runtime: RuntimeFileConfig,
}

/// `[cluster]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterFileConfig {
    /// This node's name.
    pub node_name: Option<String>,
    /// This node's address.
    pub node_ip: Option<std::net::IpAddr>,
    /// The cluster's pod network.
    pub pod_cidr: Option<Ipv4Net>,
    /// Heartbeat period.
    #[serde(default, deserialize_with = "duration")]
    pub heartbeat: Option<std::time::Duration>,
    /// How long a silent node stays Ready.
    #[serde(default, deserialize_with = "duration")]
    pub node_grace: Option<std::time::Duration>,
    /// The controllers' leader lease.
    #[serde(default, deserialize_with = "duration")]
    pub leader_lease: Option<std::time::Duration>,
    /// How long a node stays not Ready before its pods are replaced.
    #[serde(default, deserialize_with = "duration")]
    pub pod_eviction_timeout: Option<std::time::Duration>,
    /// How often autoscalers measure and rescale.
    #[serde(default, deserialize_with = "duration")]
    pub hpa_sync_period: Option<std::time::Duration>,
}

/// `[etcd]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EtcdFileConfig {
    /// PEM CA bundle of the members.
    pub ca: Option<PathBuf>,
    /// PEM client certificate.
    pub cert: Option<PathBuf>,
    /// PEM client key.
    pub key: Option<PathBuf>,
    /// The members' --max-txn-ops.
    pub max_txn_ops: Option<usize>,
}

/// Where the daemon's store is.
#[derive(Debug, Clone)]
pub(crate) enum StoreLocation {
    /// The embedded redb file.
    Redb(PathBuf),
    /// An etcd cluster.
    Etcd(pier_controlplane::store::EtcdConfig),
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Redb(path) => write!(f, "{}", path.display()),
            StoreLocation::Etcd(etcd) => write!(f, "etcd://{}", etcd.endpoints.join(",")),
        }
    }
}

/// `[ebpf]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EbpfFileConfig {
    /// Turn the socket-LB off (as `--no-ebpf`).
    pub disabled: Option<bool>,
    /// cgroup v2 directory the hooks attach to.
    pub cgroup: Option<PathBuf>,
    /// Where maps and links are pinned.
    pub pin_dir: Option<PathBuf>,
}

/// `[runtime]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuntimeFileConfig {
    /// Turn the container engine off (as `--no-runtime`).
    pub disabled: Option<bool>,
    /// Where images, containers and logs are kept.
    pub dir: Option<PathBuf>,
    /// Pod network.
    pub pod_cidr: Option<Ipv4Net>,
    /// Bridge the pods are attached to.
    pub bridge: Option<String>,
    /// Registries reached over plain HTTP.
    pub insecure_registries: Option<Vec<String>>,
    /// The only registries images may be pulled from.
    pub allowed_registries: Option<Vec<String>>,
}

/// `[proxy]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyFileConfig {
    /// Turn the userspace proxy off.
    pub disabled: Option<bool>,
    /// `interface` (VIPs on a dummy interface; needs root) or `loopback`.
    pub vips: Option<String>,
    /// Name of the VIP interface.
    pub interface: Option<String>,
    /// Added to service ports in loopback mode.
    pub port_offset: Option<u16>,
    /// Address NodePorts listen on.
    pub node_address: Option<std::net::IpAddr>,
    /// Longest time an HTTP client may take to send request headers (e.g. `"10s"`).
    #[serde(default, deserialize_with = "duration")]
    pub header_timeout: Option<std::time::Duration>,
}

/// A duration written as `humantime` reads it (`10s`, `1m30s`).
fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

/// `[dns]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsFileConfig {
    /// Turn the DNS server off.
    pub disabled: Option<bool>,
    /// Listen addresses (UDP and TCP).
    pub listen: Option<Vec<SocketAddr>>,
    /// Upstream resolvers; default: nameservers of /etc/resolv.conf.
    pub upstreams: Option<Vec<SocketAddr>>,
    /// Cluster domain.
    pub cluster_domain: Option<String>,
    /// Networks allowed to use forwarding.
    pub allow: Option<Vec<ipnet::IpNet>>,
    /// TTL of cluster records.
    pub ttl: Option<u32>,
    /// UDP queries per second per client (burst twice that); absent: no limit.
    pub rate_limit: Option<u32>,
    /// Longest TTL of a forwarded answer, as cached and as told to clients (seconds).
    pub max_ttl: Option<u32>,
}

/// Effective daemon settings.
#[derive(Debug, Clone)]
pub(crate) struct DaemonConfig {
    /// Where the store is.
    pub store: StoreLocation,
    /// This node's place in the cluster.
    pub cluster: pier_controlplane::cluster::ClusterConfig,
    /// The cluster's pod network, from which each Node gets its range.
    pub cluster_pod_cidr: Ipv4Net,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// The API's TCP listener; `None` keeps the API on the control socket only.
    pub api: Option<ApiListen>,
    /// ClusterIP ranges.
    pub service_cidrs: ServiceCidrs,
    /// NodePort range.
    pub node_ports: RangeInclusive<u16>,
    /// Watch history kept in the store.
    pub event_history: u64,
    /// Key file Secrets are sealed with at rest (`None`: `secrets.key` in the state dir, made
    /// on first start).
    pub encryption_key_file: Option<PathBuf>,
    /// DNS server settings; `None` turns it off.
    pub dns: Option<DnsConfig>,
    /// Userspace proxy settings; `None` turns it off.
    pub proxy: Option<pier_proxy::ProxyConfig>,
    /// Ingress listeners; `None` serves no Ingress (it rides on the proxy).
    pub ingress: Option<pier_proxy::EdgeConfig>,
    /// eBPF socket-LB settings.
    pub ebpf: EbpfConfig,
    /// Container engine settings; `None` (`--no-runtime`) runs no containers.
    pub runtime: Option<RuntimeConfig>,
    /// The Kubernetes API server followed (`--kubeconfig`, `--in-cluster`); `None` runs pier's
    /// own controllers.
    pub follow: Option<pier_controlplane::follower::KubeSource>,
}

/// The API's TCP listener (`--api-listen`).
#[derive(Debug, Clone)]
pub(crate) struct ApiListen {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The certificate chain and key given, else pier's own CA signs one.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// The ClusterIP ranges: IPv4 always, IPv6 when given (dual-stack Services).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceCidrs {
    /// IPv4 range.
    pub v4: Ipv4Net,
    /// IPv6 range.
    pub v6: Option<ipnet::Ipv6Net>,
    /// IPv6 was given first: it is the default family.
    pub ipv6_primary: bool,
}

impl ServiceCidrs {
    /// Reads `--service-cidr` values (each may be comma-separated): at most one range per
    /// family; the default IPv4 range when none is given.
    pub(crate) fn parse(values: &[String]) -> anyhow::Result<Self> {
        let mut v4 = None;
        let mut v6 = None;
        let mut first_v6 = None;
        for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            match item.parse::<ipnet::IpNet>() {
                Ok(ipnet::IpNet::V4(n)) if v4.is_none() => {
                    v4 = Some(n);
                    first_v6.get_or_insert(false);
                }
                Ok(ipnet::IpNet::V6(n)) if v6.is_none() => {
                    if n.prefix_len() < 64 {
                        anyhow::bail!("{item}: an IPv6 service range must be /64 or smaller");
                    }
                    v6 = Some(n);
                    first_v6.get_or_insert(true);
                }
                Ok(_) => anyhow::bail!("{item}: at most one range per IP family"),
                Err(e) => anyhow::bail!("{item:?} is not a CIDR: {e}"),
            }
        }
        let v4 = v4.unwrap_or(pier_controlplane::store::AllocConfig::default().service_cidr);
        Ok(ServiceCidrs {
            v4,
            v6,
            ipv6_primary: first_v6.unwrap_or(false),
        })
    }
}

/// Effective container engine settings.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeConfig {
    /// Images, containers and logs.
    pub root: PathBuf,
    /// This node's name on its pods.
    pub node_name: String,
    /// Run pods bound to no node (the only node of an embedded store).
    pub run_unbound: bool,
    /// Pod network.
    pub network: pier_runtime::NetworkConfig,
    /// Registries pulled from over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// The only registries pulled from; empty, every one.
    pub allowed_registries: Vec<String>,
}

/// Effective socket-LB settings.
#[derive(Debug, Clone)]
pub(crate) struct EbpfConfig {
    /// Whether the socket-LB runs; off (`--no-ebpf`), the proxy serves every port and pins
    /// an earlier daemon left under `pin_dir` are detached at start.
    pub enabled: bool,
    /// cgroup v2 directory the hooks attach to (the cgroup2 root by default, as Cilium).
    pub cgroup: PathBuf,
    /// Where maps and links are pinned (kept across restarts).
    pub pin_dir: PathBuf,
}

/// The cgroup2 root the socket-LB attaches to by default.
pub(crate) fn default_cgroup2() -> PathBuf {
    pier_ebpf::cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// Where socket-LB maps and links are pinned by default.
pub(crate) fn default_ebpf_pin_dir() -> PathBuf {
    PathBuf::from(pier_ebpf::BPFFS).join("pier")
}

/// Effective DNS settings.
#[derive(Debug, Clone)]
pub(crate) struct DnsConfig {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Upstream resolvers.
    pub upstreams: Vec<SocketAddr>,
    /// Cluster domain.
    pub cluster_domain: String,
    /// Networks allowed to use forwarding (cluster names are answered to everyone who can reach the socket).
    pub allow: Vec<ipnet::IpNet>,
    /// TTL of cluster records (and of negative answers).
    pub ttl: u32,
    /// UDP queries per second per client, if limited.
    pub rate_limit: Option<u32>,
    /// Longest TTL of a forwarded answer, as cached and as told to clients.
    pub max_ttl: u32,
}

/// The default DNS listener: port 53 on loopback for root, 5353 otherwise.
pub(crate) fn default_dns_listen() -> SocketAddr {
    let port = if current_uid() == 0 { 53 } else { 5353 };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The edge listeners: the Ingress ones as given, else the well-known ports as root and high
/// loopback ports otherwise; Gateway listeners on the address given, else every address as
/// root and loopback otherwise.
pub(crate) fn ingress_config(
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    gateway: Option<std::net::IpAddr>,
) -> pier_proxy::EdgeConfig {
    let root = current_uid() == 0;
    let default = |root_port: u16, user_port: u16| -> SocketAddr {
        if root {
            SocketAddr::from(([0, 0, 0, 0], root_port))
        } else {
            SocketAddr::from(([127, 0, 0, 1], user_port))
        }
    };
    pier_proxy::EdgeConfig {
        http: Some(http.unwrap_or_else(|| default(80, 10080))),
        https: Some(https.unwrap_or_else(|| default(443, 10443))),
        gateway_ip: Some(gateway.unwrap_or_else(|| default(0, 0).ip())),
    }
}

/// Builds the proxy settings: real VIPs on an interface as root, loopback stand-ins otherwise.
pub(crate) fn proxy_config(
    vips: Option<&str>,
    interface: Option<String>,
    port_offset: Option<u16>,
    node_address: Option<std::net::IpAddr>,
) -> Result<pier_proxy::ProxyConfig> {
    let root = current_uid() == 0;
    let mode = match vips.unwrap_or(if root { "interface" } else { "loopback" }) {
        "interface" => {
            if !root {
                bail!(
                    "--proxy-vips interface needs root (CAP_NET_ADMIN); use --proxy-vips loopback"
                );
            }
            pier_proxy::VipMode::Interface(interface.unwrap_or_else(|| "pier0".into()))
        }
        "loopback" => pier_proxy::VipMode::Loopback {
            port_offset: port_offset.unwrap_or(if root { 0 } else { 10000 }),
        },
        other => bail!("proxy VIP mode {other:?}: use \"interface\" or \"loopback\""),
    };
    let mut config = pier_proxy::ProxyConfig::new(mode);
    if let Some(a) = node_address {
        config.node_address = a;
    }
    Ok(config)
}

/// Nameservers from /etc/resolv.conf.
pub(crate) fn system_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| pier_dns::forward::parse_resolv_conf(&t))
        .unwrap_or_default()
}

/// Loopback plus the pod network.
pub(crate) fn default_dns_allow(pod_cidr: Ipv4Net) -> Vec<ipnet::IpNet> {
    let mut allow: Vec<ipnet::IpNet> = ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    allow.push(ipnet::IpNet::V4(pod_cidr));
    allow
}

/// The admin listener (metrics, health, snapshot) when none is given: Prometheus' port
/// for pier on loopback.
pub(crate) const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// The default state directory: `/var/lib/pier` for root, else `$XDG_STATE_HOME/pier` or `~/.local/state/pier`.
/// The cluster's default pod network, as Kubernetes' common `10.88.0.0/16` (the engine's).
pub(crate) fn default_cluster_pod_cidr() -> Ipv4Net {
    pier_runtime::NetworkConfig::default().subnet
}

/// The first IPv4 address of an interface that is up and not loopback, if any.
pub(crate) fn first_ipv4() -> Option<std::net::IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    addrs
        .filter(|a| {
            a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                && !a
                    .flags
                    .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        })
        .find_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|v4| v4.ip())))
        .map(std::net::IpAddr::V4)
}

pub(crate) fn default_state_dir() -> PathBuf {
    if current_uid() == 0 {
        return PathBuf::from("/var/lib/pier");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("pier");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/pier"),
        None => std::env::temp_dir().join(format!("pier-state-{}", current_uid())),
    }
}

/// Parses `30000-32767`.
pub(crate) fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>> {
    let (lo, hi) = s
        .split_once('-')
        .with_context(|| format!("node port range {s:?} must look like 30000-32767"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .with_context(|| format!("node port range {s:?}: bad start"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .with_context(|| format!("node port range {s:?}: bad end"))?;
    if lo == 0 || lo > hi {
        bail!("node port range {s:?} must be a non-empty range of ports 1-65535");
    }
    Ok(lo..=hi)
}

/// Reads a config file.
pub(crate) fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(
            &path,
            "state_dir = \"/tmp/p\"\nadmin = \"127.0.0.1:9999\"\nservice_cidr = \"10.100.0.0/16\"\nnode_port_range = \"31000-31010\"\n",
        )
        .unwrap();
        let c = read_file(&path).unwrap();
        assert_eq!(c.admin, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.service_cidr.as_deref(), Some("10.100.0.0/16"));
        assert_eq!(
            parse_port_range(c.node_port_range.as_deref().unwrap()).unwrap(),
            31000..=31010
        );
        std::fs::write(
            &path,
            "[proxy]\nheader_timeout = \"3s\"\n[ebpf]\ndisabled = true\npin_dir = \"/tmp/pins\"\n[runtime]\ndir = \"/tmp/rt\"\npod_cidr = \"10.77.0.0/16\"\nbridge = \"br9\"\ninsecure_registries = [\"r:5000\"]\n",
        )
        .unwrap();
        let c = read_file(&path).unwrap();
        assert_eq!(
            c.proxy.header_timeout,
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(c.ebpf.disabled, Some(true));
        assert_eq!(c.ebpf.pin_dir.as_deref(), Some(Path::new("/tmp/pins")));
        assert_eq!(c.runtime.pod_cidr, Some("10.77.0.0/16".parse().unwrap()));
        assert_eq!(c.runtime.bridge.as_deref(), Some("br9"));
        std::fs::write(&path, "[proxy]\nheader_timeout = \"soon\"\n").unwrap();
        let err = format!("{:#}", read_file(&path).unwrap_err());
        assert!(
            err.contains("header_timeout") && err.contains("soon"),
            "{err}"
        );
        std::fs::write(&path, "admn = \"127.0.0.1:1\"\n").unwrap();
        let err = format!("{:#}", read_file(&path).unwrap_err());
        assert!(err.contains("unknown field `admn`"), "{err}");
        assert!(parse_port_range("32767-30000").is_err());
        assert!(parse_port_range("abc").is_err());
    }

    #[test]
    fn service_cidrs_one_per_family_first_is_default() {
        let parse =
            |v: &[&str]| ServiceCidrs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let plain = parse(&[]).unwrap();
        assert_eq!(
            (plain.v4.to_string(), plain.v6),
            ("10.96.0.0/12".into(), None)
        );
        let dual = parse(&["10.96.0.0/12,fd00:10:96::/112"]).unwrap();
        assert_eq!(
            dual.v6.map(|n| n.to_string()).as_deref(),
            Some("fd00:10:96::/112")
        );
        assert!(!dual.ipv6_primary);
        let v6_first = parse(&["fd00:10:96::/112", "10.100.0.0/16"]).unwrap();
        assert!(v6_first.ipv6_primary);
        assert_eq!(v6_first.v4.to_string(), "10.100.0.0/16");
        assert!(parse(&["10.96.0.0/12", "10.100.0.0/16"]).is_err());
        assert!(parse(&["fd00::/48"]).is_err());
        assert!(parse(&["nonsense"]).is_err());
    }
}
