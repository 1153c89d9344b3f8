//! `pier daemon`'s flags, and how they merge with the TOML config file (flags win) into the
//! effective [`DaemonConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ipnet::Ipv4Net;
use pier_controlplane::api::default_socket_path;

use pier_controlplane::cluster::ClusterConfig;
use pier_controlplane::store::{AllocConfig, EtcdConfig, StoreConfig};

use crate::config::{self, default_state_dir, parse_port_range, DaemonConfig};

/// The daemon's flags (shared by `pier daemon` and `pier up`).
#[derive(Args, Clone)]
pub(crate) struct DaemonArgs {
    /// TOML config file; flags override it.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Directory of the store file (and the engine's state).
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Where the cluster's objects live: `redb` (a file in the state dir; one node, the
    /// default) or `etcd://HOST:PORT[,HOST:PORT...]` (an etcd cluster many nodes share).
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// PEM CA bundle that signs the etcd members' certificates (TLS to etcd).
    #[arg(long)]
    pub(crate) etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key).
    #[arg(long, requires = "etcd_key")]
    pub(crate) etcd_cert: Option<PathBuf>,
    /// PEM private key of the etcd client certificate.
    #[arg(long, requires = "etcd_cert")]
    pub(crate) etcd_key: Option<PathBuf>,
    /// Key file Secrets are sealed with at rest (AES-256-GCM; lines of NAME:BASE64-KEY, the
    /// first seals, all open). Default: `secrets.key` in the state dir, made on first start.
    /// Every node of an etcd cluster needs the same file.
    #[arg(long)]
    pub(crate) encryption_key_file: Option<PathBuf>,
    /// The etcd members' --max-txn-ops (default 128): the most operations one apply may need.
    #[arg(long)]
    pub(crate) etcd_max_txn_ops: Option<usize>,
    /// This node's name in the cluster (default: the host name).
    #[arg(long)]
    pub(crate) node_name: Option<String>,
    /// Follow the Kubernetes API server this kubeconfig names: serve its Services and DNS as
    /// kube-proxy + CoreDNS would, and run no controllers and no containers.
    #[arg(long, conflicts_with = "in_cluster")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Follow the Kubernetes API server of the cluster this pod runs in (its service account).
    #[arg(long)]
    pub(crate) in_cluster: bool,
    /// The address other nodes reach this one at (default: the first non-loopback IPv4
    /// address of the machine).
    #[arg(long)]
    pub(crate) node_ip: Option<std::net::IpAddr>,
    /// The cluster's pod network; each Node gets a /24 of it (default 10.88.0.0/16).
    #[arg(long)]
    pub(crate) cluster_pod_cidr: Option<Ipv4Net>,
    /// How often a node renews its heartbeat lease (default 2s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) node_heartbeat: Option<std::time::Duration>,
    /// How long a node that stopped renewing stays Ready (default 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) node_grace: Option<std::time::Duration>,
    /// How long the controllers' leader holds its lease unrenewed before another node takes
    /// over (default 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) leader_lease: Option<std::time::Duration>,
    /// How long a node stays not Ready before its Deployments' pods are replaced elsewhere
    /// (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) pod_eviction_timeout: Option<std::time::Duration>,
    /// How often each HorizontalPodAutoscaler measures and rescales (default 15s, as
    /// Kubernetes' --horizontal-pod-autoscaler-sync-period).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) hpa_sync_period: Option<std::time::Duration>,
    /// Admin listener (metrics, health, snapshot).
    #[arg(long)]
    pub(crate) admin: Option<SocketAddr>,
    /// Also serve the API (pier's and the Kubernetes API) on this TCP address, with TLS and
    /// bearer tokens (`pier kubeconfig`); off unless given.
    #[arg(long)]
    pub(crate) api_listen: Option<SocketAddr>,
    /// PEM certificate chain for the TCP API (default: one signed by a CA pier makes under
    /// the state dir).
    #[arg(long, requires = "api_key")]
    pub(crate) api_cert: Option<PathBuf>,
    /// PEM private key of `--api-cert`.
    #[arg(long, requires = "api_cert")]
    pub(crate) api_key: Option<PathBuf>,
    /// ClusterIP range: one IPv4 and/or one IPv6 CIDR, repeated or comma-separated (the
    /// first is the default family); an IPv6 range enables dual-stack Services.
    #[arg(long)]
    pub(crate) service_cidr: Vec<String>,
    /// NodePort range, e.g. 30000-32767.
    #[arg(long)]
    pub(crate) node_port_range: Option<String>,
    /// DNS listen address, UDP and TCP (repeatable). Default 127.0.0.1:53 as root, else 127.0.0.1:5353.
    #[arg(long)]
    pub(crate) dns_listen: Vec<SocketAddr>,
    /// Upstream resolver for names outside the cluster domain (repeatable). Default: /etc/resolv.conf.
    #[arg(long)]
    pub(crate) dns_upstream: Vec<SocketAddr>,
    /// Cluster domain.
    #[arg(long)]
    pub(crate) cluster_domain: Option<String>,
    /// Network allowed to use forwarding (repeatable). Default: loopback and the pod network.
    #[arg(long)]
    pub(crate) dns_allow: Vec<ipnet::IpNet>,
    /// TTL of cluster DNS records, seconds.
    #[arg(long)]
    pub(crate) dns_ttl: Option<u32>,
    /// Limit UDP DNS queries per client to this many per second (burst twice that); off by default.
    #[arg(long)]
    pub(crate) dns_rate_limit: Option<u32>,
    /// Longest TTL of a forwarded DNS answer, seconds: cached no longer, told to clients no
    /// higher (default 3600).
    #[arg(long)]
    pub(crate) dns_max_ttl: Option<u32>,
    /// Do not run the DNS server.
    #[arg(long)]
    pub(crate) no_dns: bool,
    /// Where service VIPs are served: `interface` (real ClusterIPs on a dummy interface; root) or
    /// `loopback` (ClusterIP a.b.c.d served on 127.b.c.d, port + --proxy-port-offset). Default: interface as root.
    #[arg(long, value_parser = ["interface", "loopback"])]
    pub(crate) proxy_vips: Option<String>,
    /// Name of the VIP interface.
    #[arg(long)]
    pub(crate) proxy_interface: Option<String>,
    /// Added to every service port in loopback mode (default 0 as root, else 10000).
    #[arg(long)]
    pub(crate) proxy_port_offset: Option<u16>,
    /// Address NodePorts listen on (default all addresses with real VIPs, else 127.0.0.1).
    #[arg(long)]
    pub(crate) node_address: Option<std::net::IpAddr>,
    /// Longest time an HTTP client may take to send request headers (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) proxy_header_timeout: Option<std::time::Duration>,
    /// Do not run the userspace proxy.
    #[arg(long)]
    pub(crate) no_proxy: bool,
    /// Where Ingresses are served over HTTP, once one exists (default 0.0.0.0:80 as root,
    /// else 127.0.0.1:10080).
    #[arg(long)]
    pub(crate) ingress_listen: Option<std::net::SocketAddr>,
    /// Where Ingresses are served over HTTPS (default 0.0.0.0:443 as root, else 127.0.0.1:10443).
    #[arg(long)]
    pub(crate) ingress_tls_listen: Option<std::net::SocketAddr>,
    /// The address Gateway listeners bind, each on its listener port (default 0.0.0.0 as
    /// root, else 127.0.0.1).
    #[arg(long)]
    pub(crate) gateway_address: Option<std::net::IpAddr>,
    /// Serve neither Ingresses nor Gateways.
    #[arg(long)]
    pub(crate) no_ingress: bool,
    /// Serve every port with the userspace proxy, never the eBPF socket-LB.
    #[arg(long)]
    pub(crate) no_ebpf: bool,
    /// cgroup v2 directory the socket-LB hooks attach to (default: the cgroup2 root).
    #[arg(long)]
    pub(crate) ebpf_cgroup: Option<PathBuf>,
    /// Where socket-LB maps and links are pinned (default /sys/fs/bpf/pier).
    #[arg(long)]
    pub(crate) ebpf_pin_dir: Option<PathBuf>,
    /// Do not run the container engine (it runs by default as root).
    #[arg(long)]
    pub(crate) no_runtime: bool,
    /// Where images, containers and logs are kept (default <state-dir>/runtime).
    #[arg(long)]
    pub(crate) runtime_dir: Option<PathBuf>,
    /// Pod network (default 10.88.0.0/16).
    #[arg(long)]
    pub(crate) pod_cidr: Option<Ipv4Net>,
    /// Bridge the pods are attached to (default pier-br0).
    #[arg(long)]
    pub(crate) bridge: Option<String>,
    /// Registry reached over plain HTTP (repeatable; loopback registries always are).
    #[arg(long)]
    pub(crate) insecure_registry: Vec<String>,
    /// The only registry images may be pulled from (repeatable; `host` for any port, or
    /// `host:port`); unset, every registry.
    #[arg(long)]
    pub(crate) allowed_registry: Vec<String>,
}

/// Where the store is: flags, then the file's `store` and `[etcd]`, then redb in the state dir.
fn store_location(
    args: &DaemonArgs,
    file: &config::FileConfig,
    state_dir: &std::path::Path,
) -> Result<config::StoreLocation> {
    let url = args.store.clone().or_else(|| file.store.clone());
    let url = match url.as_deref() {
        None | Some("redb") => return Ok(config::StoreLocation::Redb(state_dir.join("pier.redb"))),
        Some(url) => url,
    };
    let mut etcd = EtcdConfig::from_url(url).context("--store")?;
    etcd.ca = args.etcd_ca.clone().or_else(|| file.etcd.ca.clone());
    let cert = args.etcd_cert.clone().or_else(|| file.etcd.cert.clone());
    let key = args.etcd_key.clone().or_else(|| file.etcd.key.clone());
    etcd.client_cert = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => anyhow::bail!("[etcd] cert and key go together: give both or neither"),
    };
    if let Some(ops) = args.etcd_max_txn_ops.or(file.etcd.max_txn_ops) {
        etcd.max_txn_ops = ops;
    }
    Ok(config::StoreLocation::Etcd(etcd))
}

/// The effective settings: flags, then the config file, then the defaults.
pub(crate) fn daemon_config(args: &DaemonArgs, socket: Option<PathBuf>) -> Result<DaemonConfig> {
    let file = match &args.config {
        Some(path) => config::read_file(path)?,
        None => config::FileConfig::default(),
    };
    let node_ports = match args
        .node_port_range
        .as_ref()
        .or(file.node_port_range.as_ref())
    {
        Some(r) => parse_port_range(r)?,
        None => AllocConfig::default().node_ports,
    };
    let service_cidrs = if args.service_cidr.is_empty() {
        config::ServiceCidrs::parse(file.service_cidr.as_slice())
    } else {
        config::ServiceCidrs::parse(&args.service_cidr)
    }
    .context("--service-cidr")?;
    let state_dir = args
        .state_dir
        .clone()
        .or(file.state_dir.clone())
        .unwrap_or_else(default_state_dir);
    let store = store_location(args, &file, &state_dir)?;
    let cluster = cluster_config(args, &file.cluster, &store);
    let cluster_pod_cidr = args
        .cluster_pod_cidr
        .or(file.cluster.pod_cidr)
        .unwrap_or_else(config::default_cluster_pod_cidr);
    let network = pod_network(args, &file.runtime);
    let zone = pier_dns::zone::ZoneConfig::default();
    let follow = match (&args.kubeconfig, args.in_cluster) {
        (Some(path), _) => Some(pier_controlplane::follower::KubeSource::File(path.clone())),
        (None, true) => Some(pier_controlplane::follower::KubeSource::InCluster),
        (None, false) => None,
    };
    Ok(DaemonConfig {
        follow: follow.clone(),
        store,
        cluster: cluster.clone(),
        cluster_pod_cidr,
        state_dir: state_dir.clone(),
        socket: socket.or(file.socket).unwrap_or_else(default_socket_path),
        admin: args.admin.or(file.admin).unwrap_or(config::DEFAULT_ADMIN),
        api: args.api_listen.map(|listen| config::ApiListen {
            listen,
            cert: args.api_cert.clone().zip(args.api_key.clone()),
        }),
        service_cidrs,
        node_ports,
        event_history: file
            .event_history
            .unwrap_or(StoreConfig::default().event_history),
        encryption_key_file: args
            .encryption_key_file
            .clone()
            .or(file.encryption_key_file.clone()),
        dns: (!args.no_dns && file.dns.disabled != Some(true)).then(|| config::DnsConfig {
            listen: non_empty(args.dns_listen.clone())
                .or(file.dns.listen)
                .unwrap_or_else(|| vec![config::default_dns_listen()]),
            upstreams: non_empty(args.dns_upstream.clone())
                .or(file.dns.upstreams)
                .unwrap_or_else(config::system_upstreams),
            cluster_domain: args
                .cluster_domain
                .clone()
                .or(file.dns.cluster_domain)
                .unwrap_or(zone.domain),
            allow: non_empty(args.dns_allow.clone())
                .or(file.dns.allow)
                .unwrap_or_else(|| config::default_dns_allow(network.subnet)),
            ttl: args.dns_ttl.or(file.dns.ttl).unwrap_or(zone.ttl),
            rate_limit: args.dns_rate_limit.or(file.dns.rate_limit),
            max_ttl: args
                .dns_max_ttl
                .or(file.dns.max_ttl)
                .unwrap_or(pier_dns::cache::CacheConfig::default().max_ttl),
        }),
        proxy: if args.no_proxy || file.proxy.disabled == Some(true) {
            None
        } else {
            let mut proxy = config::proxy_config(
                args.proxy_vips.as_deref().or(file.proxy.vips.as_deref()),
                args.proxy_interface.clone().or(file.proxy.interface),
                args.proxy_port_offset.or(file.proxy.port_offset),
                args.node_address.or(file.proxy.node_address),
            )?;
            if let Some(t) = args.proxy_header_timeout.or(file.proxy.header_timeout) {
                proxy.header_read_timeout = t;
            }
            proxy.node_name = Some(cluster.node_name.clone());
            Some(proxy)
        },
        ingress: (!args.no_ingress && !args.no_proxy && file.proxy.disabled != Some(true)).then(
            || {
                config::ingress_config(
                    args.ingress_listen,
                    args.ingress_tls_listen,
                    args.gateway_address,
                )
            },
        ),
        ebpf: config::EbpfConfig {
            enabled: !args.no_ebpf && file.ebpf.disabled != Some(true),
            cgroup: args
                .ebpf_cgroup
                .clone()
                .or(file.ebpf.cgroup)
                .unwrap_or_else(config::default_cgroup2),
            pin_dir: args
                .ebpf_pin_dir
                .clone()
                .or(file.ebpf.pin_dir)
                .unwrap_or_else(config::default_ebpf_pin_dir),
        },
        // A follower runs the dataplane only: the cluster it follows runs the pods.
        runtime: (follow.is_none() && !args.no_runtime && file.runtime.disabled != Some(true))
            .then(|| config::RuntimeConfig {
                root: args
                    .runtime_dir
                    .clone()
                    .or(file.runtime.dir)
                    .unwrap_or_else(|| state_dir.join("runtime")),
                node_name: cluster.node_name.clone(),
                run_unbound: cluster.sole,
                network,
                insecure_registries: non_empty(args.insecure_registry.clone())
                    .or(file.runtime.insecure_registries)
                    .unwrap_or_default(),
                allowed_registries: non_empty(args.allowed_registry.clone())
                    .or(file.runtime.allowed_registries)
                    .unwrap_or_default(),
            }),
    })
}

/// The pod network: flags, then the `[runtime]` section, then the engine's defaults.
fn pod_network(args: &DaemonArgs, file: &config::RuntimeFileConfig) -> pier_runtime::NetworkConfig {
    let defaults = pier_runtime::NetworkConfig::default();
    pier_runtime::NetworkConfig {
        subnet: args.pod_cidr.or(file.pod_cidr).unwrap_or(defaults.subnet),
        bridge: args
            .bridge
            .clone()
            .or_else(|| file.bridge.clone())
            .unwrap_or(defaults.bridge),
    }
}

/// This node's place in the cluster: flags, then `[cluster]`, then the defaults.
fn cluster_config(
    args: &DaemonArgs,
    file: &config::ClusterFileConfig,
    store: &config::StoreLocation,
) -> ClusterConfig {
    let defaults = ClusterConfig::default();
    ClusterConfig {
        node_name: args
            .node_name
            .clone()
            .or_else(|| file.node_name.clone())
            .unwrap_or_else(nix_hostname),
        node_ip: args.node_ip.or(file.node_ip).or_else(config::first_ipv4),
        heartbeat: args
            .node_heartbeat
            .or(file.heartbeat)
            .unwrap_or(defaults.heartbeat),
        node_grace: args
            .node_grace
            .or(file.node_grace)
            .unwrap_or(defaults.node_grace),
        leader_lease: args
            .leader_lease
            .or(file.leader_lease)
            .unwrap_or(defaults.leader_lease),
        pod_eviction_timeout: args
            .pod_eviction_timeout
            .or(file.pod_eviction_timeout)
            .unwrap_or(defaults.pod_eviction_timeout),
        hpa_sync_period: args
            .hpa_sync_period
            .or(file.hpa_sync_period)
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.hpa_sync_period),
        sole: matches!(store, config::StoreLocation::Redb(_)),
        annotations: std::collections::BTreeMap::new(),
    }
}

/// This machine's host name, the node's name.
fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pier-node".into())
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        daemon: DaemonArgs,
    }

    fn effective(args: &[&str]) -> DaemonConfig {
        let cli = Cli::parse_from(std::iter::once("pier").chain(args.iter().copied()));
        daemon_config(&cli.daemon, None).unwrap()
    }

    #[test]
    fn defaults_come_from_the_crates_and_the_file_covers_every_flag() {
        let plain = effective(&["--no-proxy"]);
        assert_eq!(plain.node_ports, AllocConfig::default().node_ports);
        assert_eq!(plain.event_history, StoreConfig::default().event_history);
        let dns = plain.dns.unwrap();
        assert_eq!(
            dns.cluster_domain,
            pier_dns::zone::ZoneConfig::default().domain
        );
        let pods = pier_runtime::NetworkConfig::default().subnet;
        assert!(dns.allow.contains(&ipnet::IpNet::V4(pods)));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(
            &path,
            "[proxy]\nvips = \"loopback\"\nheader_timeout = \"3s\"\n[ebpf]\ndisabled = true\npin_dir = \"/tmp/pins\"\n[runtime]\npod_cidr = \"10.77.0.0/16\"\nbridge = \"br9\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let c = effective(&["--config", file]);
        assert!(!c.ebpf.enabled);
        assert_eq!(c.ebpf.pin_dir, PathBuf::from("/tmp/pins"));
        assert_eq!(
            c.proxy.unwrap().header_read_timeout,
            std::time::Duration::from_secs(3)
        );
        let dns = c.dns.unwrap();
        assert!(dns.allow.contains(&"10.77.0.0/16".parse().unwrap()));
        if let Some(rt) = c.runtime {
            assert_eq!(rt.network.bridge, "br9");
            assert_eq!(rt.network.subnet.to_string(), "10.77.0.0/16");
        }
        // Flags win over the file.
        let c = effective(&[
            "--config",
            file,
            "--bridge",
            "br1",
            "--proxy-header-timeout",
            "7s",
        ]);
        assert_eq!(
            c.proxy.unwrap().header_read_timeout,
            std::time::Duration::from_secs(7)
        );
        if let Some(rt) = c.runtime {
            assert_eq!(rt.network.bridge, "br1");
        }
    }
}
