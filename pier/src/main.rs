//! `pier`: per-node load balancer and service-discovery dataplane.

mod admin;
mod cli;
mod config;
mod daemon;
mod daemon_args;
mod echo;
mod parts;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pier_controlplane::api::{default_socket_path, Client};
use pier_model::Kind;

use cli::output::Format;
use daemon_args::{daemon_config, DaemonArgs};

/// mimalloc: the proxy allocates small, short-lived buffers per request, where it is measurably
/// cheaper than glibc's allocator (see bench/results/proxy-*.txt).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it (it is shown only this once).
    Create {
        /// Its name, for `list` and `revoke`.
        name: String,
    },
    /// List token names and when they were made.
    List,
    /// Revoke every token of a name.
    Revoke {
        /// The name.
        name: String,
    },
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
    /// Watch, list, undo or restart a Deployment's rollouts.
    Rollout {
        #[command(subcommand)]
        command: cli::rollout::RolloutCommand,
    },
    /// Mark a node unschedulable: no new pods go there.
    Cordon {
        /// Node name.
        node: String,
    },
    /// Mark a node schedulable again.
    Uncordon {
        /// Node name.
        node: String,
    },
    /// Cordon a node and delete its pods gracefully, waiting until they are gone.
    Drain {
        /// Node name.
        node: String,
        /// Also delete pods no controller would replace.
        #[arg(long)]
        force: bool,
        /// How long to wait for the pods to go.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
        timeout: std::time::Duration,
    },
    /// Run the daemon: store, controllers, snapshot, control API, admin listener.
    Daemon(DaemonArgs),
    /// Print a kubeconfig for the daemon's TCP API (`--api-listen`), with a new token.
    Kubeconfig {
        /// Name of the token (and kubeconfig user) it makes.
        #[arg(long, default_value = "kubeconfig")]
        name: String,
        /// Server URL to write instead of the listener's address (e.g. a name clients resolve).
        #[arg(long)]
        server: Option<String>,
    },
    /// Manage the bearer tokens of the daemon's TCP API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
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
        /// USER:PASSWORD for the registry; without it, the entry for the registry in Docker's
        /// config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), if any.
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
    /// Push an image to its registry.
    Push {
        /// Image reference, e.g. 127.0.0.1:5000/team/app:v1.
        image: String,
        /// USER:PASSWORD for the registry; without it, what `pier login` (or `docker login`)
        /// stored for the registry, if anything.
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
    /// Log in to a registry: check the credentials and keep them in Docker's config.json.
    Login {
        /// The registry (host[:port]); Docker Hub when omitted.
        #[arg(default_value = "")]
        registry: String,
        /// User name (asked for on a terminal when omitted).
        #[arg(short, long)]
        username: Option<String>,
        /// Password (visible to other users; prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log out of a registry: forget its credentials.
    Logout {
        /// The registry (host[:port]); Docker Hub when omitted.
        #[arg(default_value = "")]
        registry: String,
    },
    /// Build, import, list and remove images.
    Image {
        #[command(subcommand)]
        command: cli::images::ImageCommand,
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
        /// Keep `metadata.managedFields` in JSON and YAML output (left out by default, as kubectl does).
        #[arg(long)]
        show_managed_fields: bool,
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

/// One socket per service port and per connection: lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the file descriptor limit"),
    }
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
        Command::Kubeconfig { name, server } => {
            cli::access::kubeconfig(&client(), &name, server.as_deref()).await
        }
        Command::Token { command } => match command {
            TokenCommand::Create { name } => cli::access::create(&client(), &name).await,
            TokenCommand::List => cli::access::list(&client()).await,
            TokenCommand::Revoke { name } => cli::access::revoke(&client(), &name).await,
        },
        Command::Rollout { command } => cli::rollout::run(&client(), command).await,
        Command::Cordon { node } => cli::nodes::cordon(&client(), &node, true).await,
        Command::Uncordon { node } => cli::nodes::cordon(&client(), &node, false).await,
        Command::Drain {
            node,
            force,
            timeout,
        } => cli::nodes::drain(&client(), &node, force, timeout).await,
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
            show_managed_fields,
        } => {
            let opts = cli::GetOptions {
                namespace: &namespace,
                all_namespaces,
                selector: selector.as_deref(),
                format: output,
                show_managed_fields,
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
        Command::Images { output } => cli::images::images(&client(), output).await,
        Command::Pull { image, creds } => {
            cli::images::pull(&client(), &image, creds.as_deref()).await
        }
        Command::Push { image, creds } => {
            cli::images::push(&client(), &image, creds.as_deref()).await
        }
        Command::Login {
            registry,
            username,
            password,
            password_stdin,
        } => {
            let args = cli::login::LoginArgs {
                registry,
                username,
                password,
                password_stdin,
            };
            cli::login::login(&client(), args).await
        }
        Command::Logout { registry } => cli::login::logout(&registry),
        Command::Image { command } => cli::images::image(&client(), command).await,
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
            parts::memory::give_containers_huge_pages_back();
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
            parts::memory::give_containers_huge_pages_back();
            let result = pier_runtime::container::exec::run(
                std::path::Path::new(&args[2]),
                &args[3],
                args[4..].to_vec(),
                Default::default(),
            );
            Some(code(result.unwrap_or_else(|e| {
                eprintln!("pier exec: {e}");
                126
            })))
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    if let Some(code) = single_threaded_entry() {
        return code;
    }
    parts::memory::purge_freed_pages_at_once();
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    if matches!(cli.command, Command::Daemon(_) | Command::Up { .. }) {
        parts::memory::keep_huge_pages_off();
    }
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
