//! A container's `state.json`, and adopting containers whose shims still run after a restart
//! of the engine.
use std::fs;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::{lock, now, process_start, ContainerRecord, Engine, ExitStatus, State};
use crate::error::{Error, IoContext, Result};
use crate::image::write_atomic;
use crate::metrics::{self, Report};

impl Engine {
    pub(super) fn save(&self, record: &ContainerRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(record).map_err(|e| Error::Runtime(e.to_string()))?;
        write_atomic(&self.dir(&record.id).join("state.json"), &data)
    }

    pub(super) fn load(self: &Arc<Self>) -> Result<()> {
        let dir = self.config.root.join("containers");
        for entry in fs::read_dir(&dir).at(&dir)?.flatten() {
            let state = entry.path().join("state.json");
            let Ok(data) = fs::read(&state) else { continue };
            let mut record: ContainerRecord = match serde_json::from_slice(&data) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %state.display(), error = %e, "unreadable container state; skipped");
                    continue;
                }
            };
            if record.state == State::Running {
                let alive = record
                    .shim
                    .is_some_and(|(pid, start)| process_start(pid) == Some(start));
                if alive {
                    tracing::info!(id = %&record.id[..12], name = %record.config.name, "re-adopted running container");
                    let (tx, rx) = watch::channel(None);
                    lock(&self.running).insert(record.id.clone(), rx);
                    let shim_pid = record.shim.map(|(p, _)| p).unwrap_or(0);
                    self.spawn_adopted_waiter(record.id.clone(), shim_pid, tx);
                    if let Some(ip) = record.ip {
                        self.start_forwarders(&record.id, ip, &record.config.publish);
                    }
                } else {
                    self.finish(&mut record);
                }
            }
            lock(&self.records).insert(record.id.clone(), record);
        }
        Ok(())
    }

    /// Marks a container whose shim is gone as exited, with the shim's record if it left one.
    pub(super) fn finish(&self, record: &mut ContainerRecord) {
        let status = self.read_exit(&record.id).unwrap_or_else(|| {
            // The shim died without recording: its init (if any) is orphaned; end it.
            if let Some(pid) = record.pid {
                signal_gone_ok(Pid::from_raw(pid), Signal::SIGKILL, &record.id);
            }
            ExitStatus {
                code: 255,
                signal: None,
                oom_killed: false,
                finished_at: now(),
            }
        });
        record.state = State::Exited;
        record.pid = None;
        record.shim = None;
        if status.oom_killed {
            if let Some(m) = metrics::get() {
                m.oom_kills.inc();
            }
        }
        record.exit = Some(status);
        self.save(record).report("save-state", &record.id);
    }

    pub(super) fn read_exit(&self, id: &str) -> Option<ExitStatus> {
        let data = fs::read(self.dir(id).join("exit.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub(super) fn spawn_adopted_waiter(
        self: &Arc<Self>,
        id: String,
        shim_pid: i32,
        tx: watch::Sender<Option<ExitStatus>>,
    ) {
        let engine = Arc::clone(self);
        let start = process_start(shim_pid);
        tokio::spawn(async move {
            while process_start(shim_pid).is_some() && process_start(shim_pid) == start {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            engine.on_exit(&id, &tx);
        });
    }
}

/// Sends `signal` to `pid`; a process already gone is fine, any other failure is reported.
pub(super) fn signal_gone_ok(pid: Pid, signal: Signal, id: &str) {
    match kill(pid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => metrics::failed("signal-container", id, &format!("{signal}: {e}")),
    }
}
