//! What the engine records of a container (`state.json`) and tells of its exits.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{ContainerConfig, ExitStatus};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Set up, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

/// A container as the engine records it (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// What it runs.
    pub config: ContainerConfig,
    /// Image reference it was created from.
    pub image: String,
    /// Image ID.
    pub image_id: String,
    /// Address on the bridge.
    pub ip: Option<Ipv4Addr>,
    /// State.
    pub state: State,
    /// Init process, while running.
    pub pid: Option<i32>,
    /// Shim process and its start time (to tell it from a reused PID).
    pub shim: Option<(i32, u64)>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last start (RFC 3339).
    pub started_at: Option<String>,
    /// How the last run ended.
    pub exit: Option<ExitStatus>,
    /// Starts after the first.
    pub restart_count: u32,
    /// Set by a user's stop: the restart policy does not apply.
    #[serde(default)]
    pub stopped_by_user: bool,
}

/// Something the engine observed about a container.
#[derive(Debug, Clone)]
pub struct ExitEvent {
    /// Which container.
    pub id: String,
    /// How it ended.
    pub status: ExitStatus,
}
