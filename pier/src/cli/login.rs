//! `pier login` and `pier logout`, as the Docker CLI does them: the credentials are checked
//! against the registry (by the daemon, which reaches registries as pulls do), then kept
//! where `docker login` keeps them, so `pier pull`, `pier push` and Docker itself find them:
//! the credential helper Docker's `config.json` names for the registry (`credHelpers`, else
//! `credsStore`), else its `auths` entry, the file written whole and mode 0600.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;
use hyper::Method;
use pier_controlplane::api::{encode, Client};
use serde_json::{json, Value};

use super::credentials::{config_dir, run_helper, server_of};

/// What `pier login` was given.
pub(crate) struct LoginArgs {
    /// The registry (`host[:port]`; Docker Hub when empty).
    pub(crate) registry: String,
    /// The user name, asked for on a terminal when missing.
    pub(crate) username: Option<String>,
    /// The password (`--password`; visible to other users in the process list).
    pub(crate) password: Option<String>,
    /// Read the password from standard input.
    pub(crate) password_stdin: bool,
}

/// `pier login REGISTRY`.
pub(crate) async fn login(client: &Client, args: LoginArgs) -> Result<()> {
    let registry = registry_name(&args.registry);
    let username = match args.username {
        Some(u) => u,
        None => ask("Username: ", false)?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => ask("Password: ", true)?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("a login needs a user name and a password");
    }
    let path = format!("/v1/images/login?registry={}", encode(&registry));
    let body = json!({"username": username, "password": password});
    client.call(Method::POST, &path, Some(&body)).await?;
    store(&registry, &username, &password)?;
    println!("Login Succeeded");
    Ok(())
}

/// `pier logout REGISTRY`: forgets its credentials.
pub(crate) fn logout(registry: &str) -> Result<()> {
    let registry = registry_name(registry);
    let server = server_of(&registry);
    let Some(dir) = config_dir() else {
        bail!("no HOME or DOCKER_CONFIG to find Docker's config.json in");
    };
    let file = dir.join("config.json");
    let mut config = read(&file)?;
    if let Some(helper) = helper_for(&config, &registry) {
        helper_do(&helper, "erase", &server)?;
        println!("Removing login credentials for {server}");
        return Ok(());
    }
    let removed = config["auths"]
        .as_object_mut()
        .and_then(|auths| auths.remove(&server));
    if removed.is_none() {
        println!("Not logged in to {server}");
        return Ok(());
    }
    write(&dir, &file, &config)?;
    println!("Removing login credentials for {server}");
    Ok(())
}

/// `host[:port]` of what the user typed (a URL's scheme and path dropped; Docker Hub's
/// aliases as `docker.io`).
fn registry_name(given: &str) -> String {
    let trimmed = given
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = trimmed.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// Keeps the credentials as Docker would: with the registry's helper, else in `auths`.
fn store(registry: &str, username: &str, password: &str) -> Result<()> {
    let Some(dir) = config_dir() else {
        bail!("no HOME or DOCKER_CONFIG to keep the credentials in");
    };
    let file = dir.join("config.json");
    let mut config = read(&file)?;
    let server = server_of(registry);
    if let Some(helper) = helper_for(&config, registry) {
        let entry = json!({"ServerURL": server, "Username": username, "Secret": password});
        return helper_do(&helper, "store", &entry.to_string());
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    if !config["auths"].is_object() {
        config["auths"] = json!({});
    }
    config["auths"][&server] = json!({"auth": auth});
    write(&dir, &file, &config)
}

/// Docker's `config.json` as JSON (an empty object when there is none).
fn read(file: &Path) -> Result<Value> {
    match std::fs::read(file) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not JSON", file.display()))?;
            if !v.is_object() {
                bail!("{}: not a JSON object", file.display());
            }
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Writes `config` to `file` whole: a 0600 sibling renamed over it, in a 0700 directory.
fn write(dir: &Path, file: &Path, config: &Value) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(serde_json::to_string_pretty(config)?.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = written {
        if let Err(cleanup) = std::fs::remove_file(&tmp) {
            if cleanup.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: removing {}: {cleanup}", tmp.display());
            }
        }
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    Ok(())
}

/// The credential helper `config` names for `registry`: its `credHelpers` entry, else the
/// `credsStore`.
fn helper_for(config: &Value, registry: &str) -> Option<String> {
    config["credHelpers"][registry]
        .as_str()
        .or_else(|| config["credHelpers"][server_of(registry)].as_str())
        .or_else(|| config["credsStore"].as_str())
        .map(str::to_string)
}

/// Runs the helper's `verb` (`store`, `erase`), which must succeed.
fn helper_do(helper: &str, verb: &str, input: &str) -> Result<()> {
    let out = run_helper(helper, verb, input)?;
    if !out.status.success() {
        bail!(
            "docker-credential-{helper} {verb}: {} {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Asks for a line on the terminal, without echo when `hidden`.
fn ask(prompt: &str, hidden: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no terminal to ask on: give --username and --password-stdin");
    }
    eprint!("{prompt}");
    std::io::stderr().flush().context("writing the prompt")?;
    let saved = if hidden {
        let saved = nix::sys::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet)
            .context("turning the terminal's echo off")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved)
            .context("turning the terminal's echo back on")?;
        eprintln!();
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_host_and_port_with_docker_hub_as_one() {
        assert_eq!(registry_name("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_name("https://r.lan:5000/v2/"), "r.lan:5000");
        assert_eq!(registry_name(""), "docker.io");
        assert_eq!(registry_name("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(server_of("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_of("r.lan:5000"), "r.lan:5000");
    }

    #[test]
    fn helpers_are_found_per_registry_then_as_the_store() {
        let config = json!({"credHelpers": {"r.lan": "pass"}, "credsStore": "secretservice"});
        assert_eq!(helper_for(&config, "r.lan").as_deref(), Some("pass"));
        assert_eq!(
            helper_for(&config, "other:5000").as_deref(),
            Some("secretservice")
        );
        assert_eq!(helper_for(&json!({}), "r.lan"), None);
    }
}
