//! What a container is asked to be (`ContainerConfig`, shared by the CLI and the engine) and
//! the engine's own settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Publish;
use crate::error::{Error, Result};

/// A bind mount from the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Host path.
    pub host: String,
    /// Path in the container.
    pub container: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// When a container that exits is started again.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (`--restart no`, the default).
    #[default]
    No,
    /// When it exits with a non-zero code.
    OnFailure,
    /// Whenever it exits.
    Always,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "no" | "Never" => Ok(Self::No),
            "on-failure" | "OnFailure" => Ok(Self::OnFailure),
            "always" | "Always" | "unless-stopped" => Ok(Self::Always),
            other => Err(Error::Invalid(format!(
                "restart policy {other:?}: use no, on-failure or always"
            ))),
        }
    }
}

impl RestartPolicy {
    /// Whether an exit with `code` is followed by a restart.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            Self::No => false,
            Self::OnFailure => code != 0,
            Self::Always => true,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerConfig {
    /// Unique name.
    pub name: String,
    /// Image reference or ID.
    pub image: String,
    /// Replaces the image entrypoint.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Replaces the image `Cmd`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Extra environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `user[:group]`, names (from the image's passwd and group files) or numeric ids.
    #[serde(default)]
    pub user: Option<String>,
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory: Option<u64>,
    /// CPU limit in cores.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Process limit.
    #[serde(default)]
    pub pids: Option<i64>,
    /// Read-only root filesystem.
    #[serde(default)]
    pub read_only: bool,
    /// Bind mounts.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Published ports.
    #[serde(default)]
    pub publish: Vec<Publish>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hostname (default: the first 12 characters of the ID).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    #[serde(default)]
    pub stop_grace_seconds: Option<u64>,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// State directory (`/var/lib/pier/runtime`).
    pub root: PathBuf,
    /// The program run as `<shim_exe> shim-launcher` and `<shim_exe> exec-helper` (the pier binary).
    pub shim_exe: PathBuf,
    /// `/etc/resolv.conf` content for containers; `None` copies the host's non-loopback servers.
    pub resolv_conf: Option<String>,
}
