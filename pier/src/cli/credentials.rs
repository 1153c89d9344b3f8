//! The registry credentials `pier pull` and `pier push` send, found as the Docker CLI finds
//! them: `--creds`,
//! else Docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`): a `credHelpers` entry for
//! the registry, then an `auths` entry (as `docker login` writes it without a store), then the
//! `credsStore`. A helper is run as Docker runs it: `docker-credential-<name> get`, the server
//! on stdin, `{"Username": ..., "Secret": ...}` on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use pier_runtime::image::docker_config::DockerConfig;
use pier_runtime::image::pull::source_of;
use serde_json::{json, Value};

/// What Docker's credential helpers call Docker Hub.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The credentials to pull or push `name` with, as the API's request body; `None`: anonymous.
pub(crate) fn for_image(name: &str, creds: Option<&str>) -> Result<Option<Value>> {
    if let Some(creds) = creds {
        let (username, password) = creds
            .split_once(':')
            .context("--creds: give USER:PASSWORD")?;
        return Ok(Some(body(username, password)));
    }
    let Some(dir) = config_dir() else {
        return Ok(None);
    };
    let file = dir.join("config.json");
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let raw: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", file.display()))?;
    let (registry, repository) = source_of(name)?;
    let server = server_of(&registry);
    if let Some(helper) = raw["credHelpers"][&registry]
        .as_str()
        .or_else(|| raw["credHelpers"][&server].as_str())
    {
        return helper_get(helper, &server);
    }
    let config = DockerConfig::parse(&bytes, false)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Some((_, c)) = config.find(&registry, &repository) {
        return Ok(Some(body(&c.username, &c.password)));
    }
    match raw["credsStore"].as_str() {
        Some(store) => helper_get(store, &server),
        None => Ok(None),
    }
}

/// How Docker's config and credential helpers name `registry` (`host[:port]`, `docker.io`).
pub(crate) fn server_of(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry.to_string()
    }
}

/// Where Docker's `config.json` is: `$DOCKER_CONFIG`, else `~/.docker`.
pub(crate) fn config_dir() -> Option<PathBuf> {
    match (std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME")) {
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Some(home)) => Some(PathBuf::from(home).join(".docker")),
        (None, None) => None,
    }
}

fn body(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

/// Runs `docker-credential-<helper> <verb>` with `input` on its standard input, as Docker
/// runs it; its output (a helper that exits without reading has closed its end: no error).
pub(crate) fn run_helper(helper: &str, verb: &str, input: &str) -> Result<std::process::Output> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("running the credential helper {program} (Docker's config.json names it)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(input.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.with_context(|| format!("{program} {verb}: writing to it"))?,
        }
    }
    child
        .wait_with_output()
        .with_context(|| format!("{program} {verb}: waiting for it"))
}

/// Asks `docker-credential-<helper>` for `server`'s credentials; `None` when it has none.
fn helper_get(helper: &str, server: &str) -> Result<Option<Value>> {
    let program = format!("docker-credential-{helper}");
    let out = run_helper(helper, "get", server)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The helpers' own words for "nothing stored for this server".
        if text.contains("credentials not found") {
            return Ok(None);
        }
        bail!(
            "{program} get {server}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let answer: Value =
        serde_json::from_str(&text).with_context(|| format!("{program} get {server}: not JSON"))?;
    match (answer["Username"].as_str(), answer["Secret"].as_str()) {
        (Some(user), Some(secret)) => Ok(Some(body(user, secret))),
        _ => bail!("{program} get {server}: no Username and Secret in its answer"),
    }
}
