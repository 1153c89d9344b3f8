//! `pier`: per-node load balancer and service-discovery dataplane.

mod admin;
mod cli;
mod config;
mod daemon;
mod echo;
mod socket_lb;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;
use pier_controlplane::api::{default_socket_path, Client};
use pier_controlplane::model::Kind;

use cli::output::Format;

/// mimalloc: the proxy allocates small, short-lived buffers per request, where it is measurably
/// cheaper than glibc's allocator (see bench/results/proxy-*.txt).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use config::{default_state_dir, parse_port_range, DaemonConfig};

#[derive(Parser)]
#[command(
    name = "pier",
    version,
    about = "Per-node load balancer and service-discovery dataplane"
)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, env = "PIER_SOCKET")]
    socket: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_parser = ["human", "json"], default_value = "human")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DaemonArgs {
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the store file.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Admin listener (metrics, health, snapshot).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// ClusterIP range: one IPv4 and/or one IPv6 CIDR, repeated or comma-separated (the
    /// first is the default family); an IPv6 range enables dual-stack Services.
    #[arg(long)]
    service_cidr: Vec<String>,
    /// NodePort range, e.g. 30000-32767.
    #[arg(long)]
    node_port_range: Option<String>,
    /// DNS listen address, UDP and TCP (repeatable). Default 127.0.0.1:53 as root, else 127.0.0.1:5353.
    #[arg(long)]
    dns_listen: Vec<SocketAddr>,
    /// Upstream resolver for names outside the cluster domain (repeatable). Default: /etc/resolv.conf.
    #[arg(long)]
    dns_upstream: Vec<SocketAddr>,
    /// Cluster domain.
    #[arg(long)]
    cluster_domain: Option<String>,
    /// Network allowed to use forwarding (repeatable). Default: loopback and 10.88.0.0/16.
    #[arg(long)]
    dns_allow: Vec<ipnet::IpNet>,
    /// TTL of cluster DNS records, seconds.
    #[arg(long)]
    dns_ttl: Option<u32>,
    /// Limit UDP DNS queries per client to this many per second (burst twice that); off by default.
    #[arg(long)]
    dns_rate_limit: Option<u32>,
    /// Longest TTL of a forwarded DNS answer, seconds: cached no longer, told to clients no
    /// higher (default 3600).
    #[arg(long)]
    dns_max_ttl: Option<u32>,
    /// Do not run the DNS server.
    #[arg(long)]
    no_dns: bool,
    /// Where service VIPs are served: `interface` (real ClusterIPs on a dummy interface; root) or
    /// `loopback` (ClusterIP a.b.c.d served on 127.b.c.d, port + --proxy-port-offset). Default: interface as root.
    #[arg(long, value_parser = ["interface", "loopback"])]
    proxy_vips: Option<String>,
    /// Name of the VIP interface.
    #[arg(long)]
    proxy_interface: Option<String>,
    /// Added to every service port in loopback mode (default 0 as root, else 10000).
    #[arg(long)]
    proxy_port_offset: Option<u16>,
    /// Address NodePorts listen on (default all addresses with real VIPs, else 127.0.0.1).
    #[arg(long)]
    node_address: Option<std::net::IpAddr>,
    /// Longest time an HTTP client may take to send request headers (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    proxy_header_timeout: Option<std::time::Duration>,
    /// Do not run the userspace proxy.
    #[arg(long)]
    no_proxy: bool,
    /// Serve every port with the userspace proxy, never the eBPF socket-LB.
    #[arg(long)]
    no_ebpf: bool,
    /// cgroup v2 directory the socket-LB hooks attach to (default: the cgroup2 root).
    #[arg(long)]
    ebpf_cgroup: Option<PathBuf>,
    /// Where socket-LB maps and links are pinned (default /sys/fs/bpf/pier).
    #[arg(long)]
    ebpf_pin_dir: Option<PathBuf>,
    /// Do not run the container engine (it runs by default as root).
    #[arg(long)]
    no_runtime: bool,
    /// Where images, containers and logs are kept (default <state-dir>/runtime).
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// Pod network.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: Ipv4Net,
    /// Bridge the pods are attached to.
    #[arg(long, default_value = "pier-br0")]
    bridge: String,
    /// Registry reached over plain HTTP (repeatable; loopback registries always are).
    #[arg(long)]
    insecure_registry: Vec<String>,
}

#[derive(Subcommand)]
enum EbpfCommand {
    /// Detach the socket-LB hooks and remove their pinned maps and links (uninstall).
    Detach {
        /// Where the maps and links are pinned.
        #[arg(long)]
        ebpf_pin_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: store, controllers, snapshot, control API, admin listener.
    Daemon(DaemonArgs),
    /// Run a container (as a pod of the same name).
    Run(Box<cli::containers::RunArgs>),
    /// List containers.
    Ps {
        /// Show stopped ones too.
        #[arg(short, long)]
        all: bool,
        /// Only short container IDs, one per line.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show a container's output.
    Logs {
        /// Keep following new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Show timestamps.
        #[arg(short, long)]
        timestamps: bool,
        /// Container name or ID.
        container: String,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the grace period.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long)]
        time: Option<u64>,
        /// Container names or IDs.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Stop running ones first.
        #[arg(short, long)]
        force: bool,
        /// Container names or IDs.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec {
        /// Environment NAME=value (repeatable).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Container name or ID.
        container: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// List images.
    Images {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Pull an image from a registry.
    Pull {
        /// Image reference, e.g. 127.0.0.1:5000/team/app:v1.
        image: String,
    },
    /// Build, import, list and remove images.
    Image {
        #[command(subcommand)]
        command: cli::containers::ImageCommand,
    },
    /// Run the daemon in the foreground with manifests applied, and show what it serves.
    Up {
        /// Manifests to apply at start.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Create or update objects from files, directories or stdin (-).
    Apply {
        /// Files, directories or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace for objects that name none.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// List or show objects.
    Get {
        /// Resource type (services, svc, endpointslices, pods, deployments, httproutes, tcproutes, udproutes).
        kind: Kind,
        /// Object name.
        name: Option<String>,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector, e.g. app=web,tier!=db.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show an object in detail.
    Describe {
        /// Resource type.
        kind: Kind,
        /// Object name.
        name: String,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Run a demo/test server: HTTP answers with name, version and hostname; TCP and UDP echo.
    Echo(echo::EchoConfig),
    /// Manage the eBPF socket-LB.
    Ebpf {
        #[command(subcommand)]
        command: EbpfCommand,
    },
    /// Delete objects by name or by manifest.
    Delete {
        /// Resource type (omit with -f).
        kind: Option<Kind>,
        /// Object names.
        names: Vec<String>,
        /// Delete the objects these manifests describe.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

fn daemon_config(args: &DaemonArgs, socket: Option<PathBuf>) -> Result<DaemonConfig> {
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
        None => 30000..=32767,
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
        .or(file.state_dir)
        .unwrap_or_else(default_state_dir);
    Ok(DaemonConfig {
        state_dir: state_dir.clone(),
        socket: socket.or(file.socket).unwrap_or_else(default_socket_path),
        admin: args
            .admin
            .or(file.admin)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        service_cidrs,
        node_ports,
        event_history: file.event_history.unwrap_or(100_000),
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
                .unwrap_or_else(|| "cluster.local".into()),
            allow: non_empty(args.dns_allow.clone())
                .or(file.dns.allow)
                .unwrap_or_else(config::default_dns_allow),
            ttl: args.dns_ttl.or(file.dns.ttl).unwrap_or(5),
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
            if let Some(t) = args.proxy_header_timeout {
                proxy.header_read_timeout = t;
            }
            Some(proxy)
        },
        ebpf: config::EbpfConfig {
            enabled: !args.no_ebpf,
            cgroup: args
                .ebpf_cgroup
                .clone()
                .unwrap_or_else(config::default_cgroup2),
            pin_dir: args
                .ebpf_pin_dir
                .clone()
                .unwrap_or_else(config::default_ebpf_pin_dir),
        },
        runtime: (!args.no_runtime).then(|| config::RuntimeConfig {
            root: args
                .runtime_dir
                .clone()
                .unwrap_or_else(|| state_dir.join("runtime")),
            node_name: nix_hostname(),
            network: pier_runtime::NetworkConfig {
                subnet: args.pod_cidr,
                bridge: args.bridge.clone(),
            },
            insecure_registries: args.insecure_registry.clone(),
        }),
    })
}

/// This machine's host name, the node's name.
fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pier-node".into())
}

/// One socket per service port and per connection: lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the file descriptor limit"),
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,libcontainer=error,libcgroups=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<()> {
    let client = || Client::new(cli.socket.clone().unwrap_or_else(default_socket_path));
    match cli.command {
        Command::Daemon(args) => {
            let config = daemon_config(&args, cli.socket.clone())?;
            raise_fd_limit();
            let mut signals = daemon::Signals::install()?;
            let d = daemon::Daemon::start(&config).await?;
            let signal = signals.recv().await;
            tracing::info!(signal, "shutting down");
            d.stop().await;
            Ok(())
        }
        Command::Up { files, daemon } => {
            let config = daemon_config(&daemon, cli.socket.clone())?;
            raise_fd_limit();
            up::run(config, files).await
        }
        Command::Apply { files, namespace } => {
            cli::apply(&client(), &files, namespace.as_deref()).await
        }
        Command::Get {
            kind,
            name,
            namespace,
            all_namespaces,
            selector,
            output,
        } => {
            let opts = cli::GetOptions {
                namespace: &namespace,
                all_namespaces,
                selector: selector.as_deref(),
                format: output,
            };
            cli::get(&client(), kind, name.as_deref(), &opts).await
        }
        Command::Ebpf {
            command: EbpfCommand::Detach { ebpf_pin_dir },
        } => {
            let dir = ebpf_pin_dir.unwrap_or_else(config::default_ebpf_pin_dir);
            pier_ebpf::SocketLb::detach(&dir).with_context(|| {
                format!("detaching the socket-LB pinned under {}", dir.display())
            })?;
            println!("socket-LB detached; pins under {} removed", dir.display());
            Ok(())
        }
        Command::Echo(config) => echo::run(config).await,
        Command::Run(args) => cli::containers::run(&client(), &args).await,
        Command::Ps { all, quiet, output } => {
            cli::containers::ps(&client(), all, quiet, output).await
        }
        Command::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => cli::containers::logs(&client(), &container, follow, tail, timestamps).await,
        Command::Stop { time, containers } => {
            cli::containers::stop(&client(), &containers, time).await
        }
        Command::Rm { force, containers } => {
            cli::containers::rm(&client(), &containers, force).await
        }
        Command::Exec { .. } => bail!("exec runs before the async runtime starts"),
        Command::Images { output } => cli::containers::images(&client(), output).await,
        Command::Pull { image } => cli::containers::pull(&client(), &image).await,
        Command::Image { command } => cli::containers::image(&client(), command).await,
        Command::Describe {
            kind,
            name,
            namespace,
        } => cli::describe(&client(), kind, &name, &namespace).await,
        Command::Delete {
            kind,
            names,
            files,
            namespace,
        } => match (kind, files.is_empty()) {
            (None, false) => cli::delete_files(&client(), &files, namespace.as_deref()).await,
            (Some(kind), true) if !names.is_empty() => {
                cli::delete_named(
                    &client(),
                    kind,
                    &names,
                    namespace.as_deref().unwrap_or("default"),
                )
                .await
            }
            _ => bail!("usage: pier delete KIND NAME... | pier delete -f FILE"),
        },
    }
}

/// Entry points that must run with a single thread, before any async runtime exists: the
/// container shim and exec helpers fork through libcontainer.
fn single_threaded_entry() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let code = |c: i32| ExitCode::from(u8::try_from(c).unwrap_or(1));
    match args.get(1).map(String::as_str) {
        Some(pier_runtime::container::launcher::LAUNCHER_ARG) => {
            // libcontainer's own log lines go to each container's shim.log.
            let filter = tracing_subscriber::EnvFilter::try_from_env("PIER_SHIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libcgroups=error"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .init();
            let socket = match std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned() {
                Ok(fd) => fd,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Some(ExitCode::FAILURE);
                }
            };
            Some(code(pier_runtime::container::launcher::serve(socket)))
        }
        Some("exec-helper") if args.len() > 4 => {
            let result = pier_runtime::container::exec::run(
                std::path::Path::new(&args[2]),
                &args[3],
                args[4..].to_vec(),
                Default::default(),
            );
            Some(code(result.unwrap_or(126)))
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    if let Some(code) = single_threaded_entry() {
        return code;
    }
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    if let Command::Exec {
        env,
        container,
        command,
    } = &cli.command
    {
        let socket = cli.socket.clone().unwrap_or_else(default_socket_path);
        return match cli::containers::exec(socket, container, env, command.clone()) {
            Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(126)
            }
        };
    }
    // On one CPU (say, pinned with taskset) work stealing only adds cost.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
