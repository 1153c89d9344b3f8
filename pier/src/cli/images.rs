//! Image commands, docker-style: `images`, `pull`, `image build|import|rm`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hyper::Method;
use pier_controlplane::api::encode;
use pier_controlplane::api::Client;
use serde_json::{json, Value};

use super::output::{age, items, print_value, table, Format};

/// `pier images`.
pub(crate) async fn images(client: &Client, format: Format) -> Result<()> {
    let list = client.call(Method::GET, "/v1/images", None).await?;
    if matches!(format, Format::Json | Format::Yaml) {
        return print_value(&list, format);
    }
    let rows: Vec<Vec<String>> = items(&list)
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
pub(crate) async fn pull(client: &Client, name: &str, creds: Option<&str>) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut failed: Option<String> = None;
    let mut done_image: Option<Value> = None;
    let path = format!("/v1/images/pull?name={}", encode(name));
    let body = super::credentials::for_pull(name, creds)?;
    client
        .stream_lines(Method::POST, &path, body.as_ref(), |line| {
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
