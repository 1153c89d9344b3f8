//! Container commands, docker-style: `run`, `ps`, `logs`, `stop`, `rm`, `exec`, `images`, `pull`,
//! `image build|import|rm`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hyper::Method;
use pier_controlplane::api::encode;
use pier_controlplane::api::Client;
use serde_json::{json, Value};

use super::output::{age, print_value, table, Format};

/// `pier run` flags.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Container name (default: derived from the image).
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable NAME=value (repeatable).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Publish a port: [ip:]hostPort:containerPort (repeatable).
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Bind mount: hostPath:containerPath[:ro] (repeatable).
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU limit in cores (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Process limit.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Restart policy: no, on-failure, always.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Label key=value (repeatable); services select the container's pod by them.
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Read-only root filesystem.
    #[arg(long)]
    pub read_only: bool,
    /// User to run as: name or uid, optionally :group or :gid (names from the image).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Namespace of the container's pod.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Image.
    pub image: String,
    /// Arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Bytes in a docker-style size: `512k`, `64m`, `1g`, or plain bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("memory {s:?}: use a size such as 64m or 1g"))?;
    if !(n.is_finite() && n > 0.0) {
        bail!("memory {s:?} must be above 0");
    }
    Ok((n * mult as f64) as u64)
}

fn key_value(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} {s:?}: use KEY=value"),
    }
}

fn default_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split([':', '@']).next().unwrap_or(base);
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{base}-{suffix}")
}

fn run_body(a: &RunArgs) -> Result<Value> {
    let env: Vec<(String, String)> = a
        .env
        .iter()
        .map(|e| key_value(e, "--env"))
        .collect::<Result<_>>()?;
    let labels: serde_json::Map<String, Value> = a
        .label
        .iter()
        .map(|l| key_value(l, "--label").map(|(k, v)| (k, Value::String(v))))
        .collect::<Result<_>>()?;
    let publish: Vec<pier_runtime::container::Publish> = a
        .publish
        .iter()
        .map(|p| p.parse().map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let volumes: Vec<Value> = a
        .volume
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            match parts.as_slice() {
                [h, c] => Ok(json!({"host": h, "container": c, "readOnly": false})),
                [h, c, "ro"] => Ok(json!({"host": h, "container": c, "readOnly": true})),
                [h, c, "rw"] => Ok(json!({"host": h, "container": c, "readOnly": false})),
                _ => bail!("--volume {v:?}: use hostPath:containerPath[:ro]"),
            }
        })
        .collect::<Result<_>>()?;
    let restart: pier_runtime::RestartPolicy = a.restart.parse()?;
    let memory = a.memory.as_deref().map(parse_size).transpose()?;
    Ok(json!({
        "name": a.name.clone().unwrap_or_else(|| default_name(&a.image)),
        "image": a.image,
        "command": a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        "args": (!a.args.is_empty()).then(|| a.args.clone()),
        "env": env,
        "workingDir": a.workdir,
        "user": a.user,
        "memory": memory,
        "cpus": a.cpus,
        "pids": a.pids_limit,
        "readOnly": a.read_only,
        "volumes": volumes,
        "publish": publish,
        "restart": restart,
        "labels": labels,
        "hostname": a.hostname,
        "namespace": a.namespace,
    }))
}

/// `pier run`.
pub(crate) async fn run(client: &Client, a: &RunArgs) -> Result<()> {
    let created = client
        .call(Method::POST, "/v1/containers", Some(&run_body(a)?))
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    if a.detach {
        println!("{id}");
        return Ok(());
    }
    // Attached: show its output until it ends, then exit with its code.
    logs(client, &id, true, None, false).await?;
    for _ in 0..50 {
        let c = client
            .call(Method::GET, &format!("/v1/containers/{id}"), None)
            .await?;
        if c["state"] == "exited" {
            let code = c["exit"]["code"].as_i64().unwrap_or(0);
            if code != 0 {
                std::process::exit(i32::try_from(code).unwrap_or(1));
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `pier ps`.
pub(crate) async fn ps(client: &Client, all: bool, quiet: bool, format: Format) -> Result<()> {
    let list = client
        .call(Method::GET, &format!("/v1/containers?all={all}"), None)
        .await?;
    if quiet {
        for c in list["items"].as_array().into_iter().flatten() {
            let id = c["id"].as_str().unwrap_or_default();
            println!("{}", id.get(..12).unwrap_or(id));
        }
        return Ok(());
    }
    if matches!(format, Format::Json | Format::Yaml) {
        return print_value(&list, format);
    }
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = list["items"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|c| {
            let ports: Vec<String> = c["ports"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}->{}/tcp",
                        p["hostIp"].as_str().unwrap_or(""),
                        p["hostPort"],
                        p["containerPort"]
                    )
                })
                .collect();
            let status = match c["state"].as_str() {
                Some("running") => format!("Up {}", age(c["startedAt"].as_str())),
                Some("exited") => {
                    let oom = if c["exit"]["oomKilled"] == true {
                        " OOMKilled"
                    } else {
                        ""
                    };
                    format!("Exited ({}){oom}", c["exit"]["code"])
                }
                other => other.unwrap_or("?").to_string(),
            };
            vec![
                short(c["id"].as_str().unwrap_or("")),
                c["image"].as_str().unwrap_or("").to_string(),
                c["name"].as_str().unwrap_or("").to_string(),
                status,
                c["ip"].as_str().unwrap_or("-").to_string(),
                ports.join(", "),
                c["restartCount"].to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "NAME",
                "STATUS",
                "IP",
                "PORTS",
                "RESTARTS"
            ],
            &rows
        )
    );
    Ok(())
}

/// `pier logs`.
pub(crate) async fn logs(
    client: &Client,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<()> {
    let mut path = format!("/v1/containers/{name}/logs?follow={follow}&timestamps={timestamps}");
    if let Some(t) = tail {
        path.push_str(&format!("&tail={t}"));
    }
    let mut out = std::io::stdout();
    client
        .stream_lines(Method::GET, &path, None, |line| {
            // A closed stdout (`pier logs -f | head`) ends the output, not the command's result.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                tracing::debug!("stdout closed");
            }
        })
        .await?;
    Ok(())
}

/// `pier stop`.
pub(crate) async fn stop(client: &Client, names: &[String], timeout: Option<u64>) -> Result<()> {
    for n in names {
        let mut path = format!("/v1/containers/{n}/stop");
        if let Some(t) = timeout {
            path.push_str(&format!("?timeout={t}"));
        }
        client.call(Method::POST, &path, None).await?;
        println!("{n}");
    }
    Ok(())
}

/// `pier rm`.
pub(crate) async fn rm(client: &Client, names: &[String], force: bool) -> Result<()> {
    for n in names {
        client
            .call(
                Method::DELETE,
                &format!("/v1/containers/{n}?force={force}"),
                None,
            )
            .await?;
        println!("{n}");
    }
    Ok(())
}

/// `pier images`.
pub(crate) async fn images(client: &Client, format: Format) -> Result<()> {
    let list = client.call(Method::GET, "/v1/images", None).await?;
    if matches!(format, Format::Json | Format::Yaml) {
        return print_value(&list, format);
    }
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = list["items"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|i| {
            let reference = i["reference"].as_str().unwrap_or("");
            let (repo, tag) = reference
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .unwrap_or((reference, "<none>"));
            let id = i["id"].as_str().unwrap_or("").trim_start_matches("sha256:");
            let size = i["size"].as_u64().unwrap_or(0);
            vec![
                repo.to_string(),
                tag.to_string(),
                id.chars().take(12).collect(),
                age(i["created"].as_str()),
                format!("{:.1}MB", size as f64 / 1e6),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
    );
    Ok(())
}

/// `pier pull`: progress as a bar per layer on a terminal, one line per layer otherwise.
pub(crate) async fn pull(client: &Client, name: &str) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut failed: Option<String> = None;
    let mut done_image: Option<Value> = None;
    let path = format!("/v1/images/pull?name={}", encode(name));
    client
        .stream_lines(Method::POST, &path, None, |line| {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                return;
            };
            let digest = v["digest"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("sha256:");
            let d12: String = digest.chars().take(12).collect();
            match v["event"].as_str() {
                Some("resolved") => eprintln!(
                    "{name}: resolved {} ({} layers)",
                    v["digest"].as_str().unwrap_or(""),
                    v["layers"]
                ),
                Some("cached") => eprintln!("{d12}: already present"),
                Some("layer") => {
                    let (done, total) = (
                        v["done"].as_u64().unwrap_or(0),
                        v["total"].as_u64().unwrap_or(1).max(1),
                    );
                    if tty {
                        let width = 30;
                        let filled = (done * width / total) as usize;
                        eprint!(
                            "\r{d12}: [{}{}] {:.1}/{:.1} MB",
                            "=".repeat(filled),
                            " ".repeat(width as usize - filled),
                            done as f64 / 1e6,
                            total as f64 / 1e6
                        );
                        if done >= total {
                            eprintln!();
                        }
                    } else if done >= total {
                        eprintln!("{d12}: downloaded {:.1} MB", total as f64 / 1e6);
                    }
                }
                Some("error") => failed = v["error"].as_str().map(str::to_string),
                Some("done") => done_image = Some(v["image"].clone()),
                _ => {}
            }
        })
        .await?;
    if let Some(e) = failed {
        bail!("{e}");
    }
    match done_image {
        Some(i) => {
            println!(
                "{} {}",
                i["reference"].as_str().unwrap_or(name),
                i["id"].as_str().unwrap_or("")
            );
            Ok(())
        }
        None => bail!("pull of {name} ended without a result"),
    }
}

/// `pier image` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Build a minimal image from a local binary and the shared libraries it loads.
    Build {
        /// Name and tag, e.g. pier/echo:v1.
        #[arg(short, long)]
        tag: String,
        /// The executable.
        #[arg(long)]
        binary: PathBuf,
        /// Where it goes in the image (default /usr/local/bin/<name>).
        #[arg(long)]
        path_in_image: Option<String>,
        /// Port the image listens on (repeatable).
        #[arg(long)]
        expose: Vec<String>,
        /// Environment NAME=value (repeatable).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Default arguments (the image's Cmd).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Import an OCI image layout (directory or tar) or a `docker save` tar.
    Import {
        /// Path to the layout or archive.
        path: PathBuf,
        /// Name the image (required when the archive does not).
        #[arg(short, long)]
        tag: Option<String>,
    },
    /// Give an image another name.
    Tag {
        /// Existing image reference or ID.
        source: String,
        /// New name and tag.
        target: String,
    },
    /// Remove images.
    Rm {
        /// Image references or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List images.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

/// Runs a `pier image` subcommand.
pub(crate) async fn image(client: &Client, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Build {
            tag,
            binary,
            path_in_image,
            expose,
            env,
            cmd,
        } => {
            let binary =
                std::fs::canonicalize(&binary).with_context(|| format!("{}", binary.display()))?;
            let body = json!({"reference": tag, "binary": binary, "pathInImage": path_in_image, "expose": expose, "env": env, "cmd": cmd});
            let img = client
                .call(Method::POST, "/v1/images/build", Some(&body))
                .await?;
            println!(
                "{} {}",
                img["reference"].as_str().unwrap_or(""),
                img["id"].as_str().unwrap_or("")
            );
        }
        ImageCommand::Import { path, tag } => {
            let path =
                std::fs::canonicalize(&path).with_context(|| format!("{}", path.display()))?;
            let r = client
                .call(
                    Method::POST,
                    "/v1/images/import",
                    Some(&json!({"path": path, "tag": tag})),
                )
                .await?;
            for i in r["items"].as_array().into_iter().flatten() {
                println!(
                    "{} {}",
                    i["reference"].as_str().unwrap_or(""),
                    i["id"].as_str().unwrap_or("")
                );
            }
        }
        ImageCommand::Tag { source, target } => {
            let body = json!({"source": source, "target": target});
            let img = client
                .call(Method::POST, "/v1/images/tag", Some(&body))
                .await?;
            println!(
                "{} {}",
                img["reference"].as_str().unwrap_or(""),
                img["id"].as_str().unwrap_or("")
            );
        }
        ImageCommand::Rm { names } => {
            for n in names {
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/images?name={}", encode(&n)),
                        None,
                    )
                    .await?;
                println!("Untagged: {n}");
            }
        }
        ImageCommand::Ls { output } => images(client, output).await?,
    }
    Ok(())
}

/// `pier exec`: resolves the container through the daemon, then joins it from this process
/// (no runtime threads are left when this runs).
pub(crate) fn exec(socket: PathBuf, name: &str, env: &[String], argv: Vec<String>) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let c = rt.block_on(Client::new(socket).call(
        Method::GET,
        &format!("/v1/containers/{name}"),
        None,
    ))?;
    drop(rt);
    if c["state"] != "running" {
        bail!("container {name} is not running");
    }
    let id = c["id"].as_str().unwrap_or_default();
    let root = PathBuf::from(c["stateRoot"].as_str().unwrap_or_default());
    let env = env
        .iter()
        .map(|e| key_value(e, "--env"))
        .collect::<Result<_>>()?;
    Ok(pier_runtime::container::exec::run(&root, id, argv, env)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }
}
