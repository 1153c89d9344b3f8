//! Control API routes for containers and images (`/v1/containers`, `/v1/images`).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use pier_controlplane::api::{Extension, ExtensionFuture, ExtensionResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::registry_api as registry;
use super::Node;
use crate::container::{ContainerConfig, ContainerRecord, State};
use crate::error::Error;
use crate::image::build::BuildSpec;

/// The engine's routes on the control API.
pub struct EngineApi {
    node: Arc<Node>,
}

impl EngineApi {
    /// Routes backed by `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

fn error(e: &Error) -> ExtensionResponse {
    let status = match e {
        Error::Invalid(_) | Error::Digest { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Exists(_) => StatusCode::CONFLICT,
        Error::Registry(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ExtensionResponse::Json(
        status,
        json!({"error": pier_controlplane::error::chain(e), "code": status.as_u16()}),
    )
}

fn ok(v: Value) -> ExtensionResponse {
    ExtensionResponse::Json(StatusCode::OK, v)
}

/// A container as the API shows it.
pub fn container_json(r: &ContainerRecord, node: &Node) -> Value {
    let status = match (r.state, &r.exit) {
        (State::Running, _) => format!("Up since {}", r.started_at.as_deref().unwrap_or("?")),
        (State::Created, _) => "Created".to_string(),
        (State::Exited, Some(e)) => {
            let oom = if e.oom_killed { " (OOMKilled)" } else { "" };
            format!("Exited ({}){oom} at {}", e.code, e.finished_at)
        }
        (State::Exited, None) => "Exited".to_string(),
    };
    json!({
        "id": r.id,
        "name": r.config.name,
        "image": r.image,
        "imageId": r.image_id,
        "state": r.state,
        "status": status,
        "ip": r.ip,
        "pid": r.pid,
        "createdAt": r.created_at,
        "startedAt": r.started_at,
        "exit": r.exit,
        "restartCount": r.restart_count,
        "ports": r.config.publish,
        "labels": r.config.labels,
        "config": r.config,
        "stateRoot": node.engine.state_root(),
        "logPath": node.engine.log_path(&r.id),
    })
}

/// The body of `POST /v1/containers` (what `pier run` sends): a container and the namespace
/// of its pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// The container.
    #[serde(flatten)]
    pub config: ContainerConfig,
    /// Namespace of its pod (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuildRequest {
    binary: String,
    reference: String,
    #[serde(default)]
    path_in_image: Option<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    expose: Vec<String>,
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("request body: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Runtime(e.to_string()))?
}

impl Extension for EngineApi {
    fn handles(&self, resource: &str) -> bool {
        matches!(resource, "containers" | "images")
    }

    fn handle(
        &self,
        method: Method,
        path: Vec<String>,
        query: HashMap<String, String>,
        body: Bytes,
    ) -> ExtensionFuture {
        let node = Arc::clone(&self.node);
        Box::pin(async move {
            route(node, method, &path, &query, &body)
                .await
                .unwrap_or_else(|e| error(&e))
        })
    }

    fn exec_command(&self, id: &str, argv: &[String]) -> Result<tokio::process::Command, String> {
        let engine = self.node.engine();
        let record = engine.get(id).map_err(|e| e.to_string())?;
        if record.state != crate::container::State::Running {
            return Err(format!("container {id} is not running"));
        }
        if argv.is_empty() {
            return Err("give a command to run".into());
        }
        let mut command = tokio::process::Command::new(engine.shim_exe());
        command
            .arg("exec-helper")
            .arg(engine.state_root())
            .arg(id)
            .args(argv)
            .kill_on_drop(true);
        Ok(command)
    }

    fn connect(&self, id: &str, port: u16) -> Result<std::net::TcpStream, String> {
        let record = self.node.engine().get(id).map_err(|e| e.to_string())?;
        if record.state != crate::container::State::Running {
            return Err(format!("container {id} is not running"));
        }
        crate::container::connect_loopback(&crate::network::Network::netns_path(id), port)
            .map_err(|e| e.to_string())
    }
}

/// A boolean query parameter (`true` or `1`).
fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "true" || v == "1")
}

#[derive(Deserialize)]
struct TagRequest {
    source: String,
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveRequest {
    names: Vec<String>,
    path: String,
}

#[derive(Deserialize)]
struct ImportRequest {
    path: String,
    #[serde(default)]
    tag: Option<String>,
}

async fn route(
    node: Arc<Node>,
    method: Method,
    path: &[String],
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<ExtensionResponse, Error> {
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let engine = Arc::clone(&node.engine);
    match (method, segs.as_slice()) {
        (Method::GET, ["containers"]) => {
            let all = flag(query, "all");
            let items: Vec<Value> = engine
                .list()
                .iter()
                .filter(|r| all || r.state == State::Running)
                .map(|r| container_json(r, &node))
                .collect();
            Ok(ok(json!({"items": items})))
        }
        (Method::POST, ["containers"]) => {
            let req = parse::<RunRequest>(body)?;
            let ns = req.namespace.unwrap_or_else(|| "default".into());
            let r = node.run_container(req.config, &ns).await?;
            Ok(ExtensionResponse::Json(
                StatusCode::CREATED,
                container_json(&r, &node),
            ))
        }
        (Method::GET, ["containers", key]) => Ok(ok(container_json(&engine.get(key)?, &node))),
        (Method::POST, ["containers", key, "stop"]) => {
            let grace = query
                .get("timeout")
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs);
            engine.stop(key, grace).await?;
            Ok(ok(container_json(&engine.get(key)?, &node)))
        }
        (Method::DELETE, ["containers", key]) => remove(&node, key, flag(query, "force")).await,
        (Method::GET, ["containers", key, "logs"]) => logs(&node, key, query),
        (Method::GET, ["images"]) => Ok(ok(json!({"items": engine.images().list()?}))),
        (Method::DELETE, ["images"]) => {
            let name = query.get("name").cloned().unwrap_or_default();
            let deleted =
                blocking(move || engine.images().remove(&name, &|id| engine.image_in_use(id)))
                    .await?;
            Ok(ok(json!({"deleted": deleted})))
        }
        (Method::POST, ["images", "build"]) => {
            let req = parse::<BuildRequest>(body)?;
            let spec = BuildSpec {
                binary: req.binary.into(),
                path_in_image: req.path_in_image,
                reference: req.reference,
                cmd: req.cmd,
                env: req.env,
                expose: req.expose,
            };
            let built =
                blocking(move || crate::image::build::build(engine.images(), &spec)).await?;
            Ok(ok(json!(built)))
        }
        (Method::POST, ["images", "tag"]) => {
            let req = parse::<TagRequest>(body)?;
            let tagged = blocking(move || engine.images().tag(&req.source, &req.target)).await?;
            Ok(ok(json!(tagged)))
        }
        (Method::POST, ["images", "import"]) => {
            let req = parse::<ImportRequest>(body)?;
            let items = blocking(move || {
                crate::image::import::import(
                    engine.images(),
                    std::path::Path::new(&req.path),
                    req.tag.as_deref(),
                )
            })
            .await?;
            Ok(ok(json!({"items": items})))
        }
        (Method::POST, ["images", "save"]) => {
            let req = parse::<SaveRequest>(body)?;
            let path = std::path::PathBuf::from(&req.path);
            if !path.is_absolute() {
                return Err(Error::Invalid(format!(
                    "path: {:?} is not absolute",
                    req.path
                )));
            }
            let items =
                blocking(move || crate::image::save::save(engine.images(), &req.names, &path))
                    .await?;
            Ok(ok(json!({"items": items})))
        }
        (Method::GET, ["images", "inspect"]) => {
            let name = query.get("name").cloned().unwrap_or_default();
            let inspected =
                blocking(move || crate::image::save::inspect(engine.images(), &name)).await?;
            Ok(ok(inspected))
        }
        (Method::POST, ["images", action @ ("pull" | "push")]) => {
            let name = query.get("name").cloned().unwrap_or_default();
            let credentials = registry::credentials(body)?;
            Ok(registry::transfer(
                node,
                *action == "push",
                name,
                credentials,
            ))
        }
        (Method::POST, ["images", "login"]) => {
            let registry = query.get("registry").cloned().unwrap_or_default();
            let credentials = registry::credentials(body)?
                .ok_or_else(|| Error::Invalid("a login needs a username and a password".into()))?;
            crate::image::push::login(&registry, &node.config.registries, &credentials).await?;
            Ok(ok(
                json!({"registry": registry, "status": "Login Succeeded"}),
            ))
        }
        (m, _) => Err(Error::NotFound(format!("route {m} /v1/{}", path.join("/")))),
    }
}

async fn remove(node: &Arc<Node>, key: &str, force: bool) -> Result<ExtensionResponse, Error> {
    let record = node.engine.get(key)?;
    if record.state == State::Running && !force {
        return Err(Error::Invalid(format!(
            "container {} is running; stop it first or use --force",
            record.config.name
        )));
    }
    if node.terminate_container(&record.id)? {
        // The pod worker drains, stops and removes it.
        for _ in 0..1200 {
            if node.engine.get(&record.id).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        node.engine.remove(&record.id, force).await?;
    }
    Ok(ok(json!({"deleted": record.id})))
}

/// Streams a container's log: the last `tail` lines, then (with `follow`) new ones until it ends.
fn logs(
    node: &Arc<Node>,
    key: &str,
    query: &HashMap<String, String>,
) -> Result<ExtensionResponse, Error> {
    let record = node.engine.get(key)?;
    let path = node.engine.log_path(&record.id);
    let follow = flag(query, "follow");
    let timestamps = flag(query, "timestamps");
    let tail: Option<usize> = query.get("tail").and_then(|t| t.parse().ok());
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let node = Arc::clone(node);
    let id = record.id.clone();
    tokio::task::spawn_blocking(move || {
        let render = |line: &str| -> Option<String> {
            // `<time> <stream> <P|F> <text>`
            let mut parts = line.splitn(4, ' ');
            let (time, _stream, tag, text) = (
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next().unwrap_or(""),
            );
            let end = if tag == "P" { "" } else { "\n" };
            Some(if timestamps {
                format!("{time} {text}{end}")
            } else {
                format!("{text}{end}")
            })
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(_) if follow => loop {
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
                if node.engine.get(&id).is_err() {
                    return;
                }
            },
            Err(_) => return,
        };
        let mut text = String::new();
        if let Err(e) = file.read_to_string(&mut text) {
            crate::metrics::failed("read-container-log", &path.display().to_string(), &e);
        }
        let lines: Vec<&str> = text.lines().collect();
        let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
        let mut out = String::new();
        for l in &lines[skip..] {
            if let Some(r) = render(l) {
                out.push_str(&r);
            }
        }
        if !out.is_empty() && tx.blocking_send(Bytes::from(out)).is_err() {
            return;
        }
        if !follow {
            return;
        }
        let mut pos = file.stream_position().unwrap_or(0);
        let mut partial = String::new();
        let mut idle_after_exit = 0;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if tx.is_closed() {
                return;
            }
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len < pos {
                // Rotated: start the new file from its beginning.
                match std::fs::File::open(&path) {
                    Ok(f) => file = f,
                    Err(_) => return,
                }
                pos = 0;
            }
            let mut chunk = String::new();
            if file.seek(SeekFrom::Start(pos)).is_ok()
                && file.read_to_string(&mut chunk).is_ok()
                && !chunk.is_empty()
            {
                pos += chunk.len() as u64;
                partial.push_str(&chunk);
                let mut out = String::new();
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    if let Some(r) = render(line.trim_end_matches('\n')) {
                        out.push_str(&r);
                    }
                }
                if !out.is_empty() && tx.blocking_send(Bytes::from(out)).is_err() {
                    return;
                }
                idle_after_exit = 0;
            } else {
                let running = node
                    .engine
                    .get(&id)
                    .is_ok_and(|r| r.state == State::Running);
                if !running {
                    idle_after_exit += 1;
                    if idle_after_exit > 5 {
                        return;
                    }
                }
            }
        }
    });
    Ok(ExtensionResponse::Stream(rx))
}
