//! Container commands, docker-style: `run`, `ps`, `logs`, `stop`, `rm`, `exec` (images are in
//! `images.rs`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hyper::Method;
use pier_controlplane::api::Client;
use pier_runtime::container::{ContainerConfig, Publish, Volume};
use pier_runtime::node::api::RunRequest;

use super::output::{age, items, print_value, table, Format};

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

fn run_request(a: &RunArgs) -> Result<RunRequest> {
    let env: Vec<(String, String)> = a
        .env
        .iter()
        .map(|e| key_value(e, "--env"))
        .collect::<Result<_>>()?;
    let labels = a
        .label
        .iter()
        .map(|l| key_value(l, "--label"))
        .collect::<Result<_>>()?;
    let publish: Vec<Publish> = a
        .publish
        .iter()
        .map(|p| p.parse().map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let volumes: Vec<Volume> = a
        .volume
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            let (host, container, read_only) = match parts.as_slice() {
                [h, c] | [h, c, "rw"] => (h, c, false),
                [h, c, "ro"] => (h, c, true),
                _ => bail!("--volume {v:?}: use hostPath:containerPath[:ro]"),
            };
            Ok(Volume {
                host: host.to_string(),
                container: container.to_string(),
                read_only,
            })
        })
        .collect::<Result<_>>()?;
    Ok(RunRequest {
        config: ContainerConfig {
            name: a.name.clone().unwrap_or_else(|| default_name(&a.image)),
            image: a.image.clone(),
            command: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
            args: (!a.args.is_empty()).then(|| a.args.clone()),
            env,
            working_dir: a.workdir.clone(),
            user: a.user.clone(),
            memory: a.memory.as_deref().map(parse_size).transpose()?,
            cpus: a.cpus,
            pids: a.pids_limit,
            read_only: a.read_only,
            volumes,
            publish,
            restart: a.restart.parse()?,
            labels,
            hostname: a.hostname.clone(),
            stop_grace_seconds: None,
        },
        namespace: Some(a.namespace.clone()),
    })
}

/// `pier run`.
pub(crate) async fn run(client: &Client, a: &RunArgs) -> Result<()> {
    let created = client
        .call(
            Method::POST,
            "/v1/containers",
            Some(&serde_json::to_value(run_request(a)?)?),
        )
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
        for c in items(&list) {
            let id = c["id"].as_str().unwrap_or_default();
            println!("{}", id.get(..12).unwrap_or(id));
        }
        return Ok(());
    }
    if matches!(format, Format::Json | Format::Yaml) {
        return print_value(&list, format);
    }
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = items(&list)
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
