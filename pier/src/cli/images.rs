//! Image commands, docker-style: `images`, `pull`, `push`, `image build|import|save|load|inspect|tag|rm`.

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
    let body = super::credentials::for_image(name, creds)?;
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
    /// Write images to a tar archive (an OCI layout with docker save's manifest.json), as
    /// `docker save` does: to FILE, or to standard output when it is not a terminal.
    Save {
        /// Where to write the archive.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Image references or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Load images from a tar archive (`docker save`'s or an OCI layout's), as `docker load`
    /// does: from FILE, or from standard input.
    Load {
        /// The archive.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Name the image (required when the archive does not).
        #[arg(short, long)]
        tag: Option<String>,
    },
    /// Show images as `docker image inspect` does (a JSON array).
    Inspect {
        /// Image references or IDs.
        #[arg(required = true)]
        names: Vec<String>,
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
            for i in import(client, &path, tag.as_deref()).await? {
                println!(
                    "{} {}",
                    i["reference"].as_str().unwrap_or(""),
                    i["id"].as_str().unwrap_or("")
                );
            }
        }
        ImageCommand::Save { output, names } => save(client, output, names).await?,
        ImageCommand::Load { input, tag } => load(client, input, tag).await?,
        ImageCommand::Inspect { names } => {
            let mut shown = Vec::new();
            for n in names {
                let path = format!("/v1/images/inspect?name={}", encode(&n));
                shown.push(client.call(Method::GET, &path, None).await?);
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
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

/// `pier image save`: the daemon writes the archive to `output` (an absolute path), or to a
/// private temporary file that is copied to standard output.
async fn save(client: &Client, output: Option<PathBuf>, names: Vec<String>) -> Result<()> {
    let write = |path: &std::path::Path| json!({"names": names, "path": path});
    match output {
        Some(file) => {
            let path = absolute(&file)?;
            client
                .call(Method::POST, "/v1/images/save", Some(&write(&path)))
                .await?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an image archive to a terminal: give -o FILE or redirect standard output");
            }
            let dir = tempfile::tempdir().context("making a temporary directory")?;
            let path = dir.path().join("images.tar");
            client
                .call(Method::POST, "/v1/images/save", Some(&write(&path)))
                .await?;
            let mut archive =
                std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
            std::io::copy(&mut archive, &mut std::io::stdout().lock())
                .context("writing the archive to standard output")?;
        }
    }
    Ok(())
}

/// `pier image load`: imports `input`, or standard input copied to a private temporary file.
async fn load(client: &Client, input: Option<PathBuf>, tag: Option<String>) -> Result<()> {
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let path = match input {
        Some(file) => {
            std::fs::canonicalize(&file).with_context(|| format!("{}", file.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("give -i FILE or an archive on standard input");
            }
            let path = dir.path().join("images.tar");
            let mut file =
                std::fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut file)
                .context("reading the archive from standard input")?;
            path
        }
    };
    for i in import(client, &path, tag.as_deref()).await? {
        println!("Loaded image: {}", i["reference"].as_str().unwrap_or(""));
    }
    Ok(())
}

/// Has the daemon import the layout or archive at `path` (absolute); the images it named.
async fn import(client: &Client, path: &std::path::Path, tag: Option<&str>) -> Result<Vec<Value>> {
    let r = client
        .call(
            Method::POST,
            "/v1/images/import",
            Some(&json!({"path": path, "tag": tag})),
        )
        .await?;
    Ok(r["items"].as_array().cloned().unwrap_or_default())
}

/// `path` made absolute against the working directory (the file need not exist yet).
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}", path.display()))
}

/// `pier push`: each blob as it is sent or found already there, then the manifest's digest.
pub(crate) async fn push(client: &Client, name: &str, creds: Option<&str>) -> Result<()> {
    let path = format!("/v1/images/push?name={}", encode(name));
    let body = super::credentials::for_image(name, creds)?;
    let mut failed: Option<String> = None;
    let mut digest: Option<String> = None;
    client
        .stream_lines(Method::POST, &path, body.as_ref(), |line| {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                return;
            };
            let blob = v["digest"].as_str().unwrap_or("");
            let d12: String = blob
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            match v["event"].as_str() {
                Some("exists") => eprintln!("{d12}: layer already exists"),
                Some("pushed") => eprintln!(
                    "{d12}: pushed {:.1} MB",
                    v["size"].as_u64().unwrap_or(0) as f64 / 1e6
                ),
                Some("error") => failed = v["error"].as_str().map(str::to_string),
                Some("done") => digest = Some(blob.to_string()),
                _ => {}
            }
        })
        .await?;
    if let Some(e) = failed {
        bail!("{e}");
    }
    match digest {
        Some(d) => {
            println!("{name}: digest: {d}");
            Ok(())
        }
        None => bail!("push of {name} ended without a result"),
    }
}
