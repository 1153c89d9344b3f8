//! Stopping, signalling and removing containers, and tearing down what a container holds.
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::rootfs::is_mounted;
use super::state::signal_gone_ok;
use super::{lock, ContainerRecord, Engine, ExitStatus, State};
use crate::error::{Error, Result, SysContext};
use crate::metrics::{self, Report};

impl Engine {
    /// Stops a container: SIGTERM, then SIGKILL after `grace`. Returns how it ended.
    pub async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<Option<ExitStatus>> {
        let record = self.get(id)?;
        let grace = grace.unwrap_or(Duration::from_secs(
            record.config.stop_grace_seconds.unwrap_or(10),
        ));
        if let Some(r) = lock(&self.records).get_mut(&record.id) {
            r.stopped_by_user = true;
            self.save(r).report("save-state", &r.id);
        }
        let (Some(pid), Some(mut rx)) = (record.pid, lock(&self.running).get(&record.id).cloned())
        else {
            return Ok(record.exit);
        };
        let pid = Pid::from_raw(pid);
        signal_gone_ok(pid, Signal::SIGTERM, &record.id);
        let exited = tokio::time::timeout(grace, rx.wait_for(Option::is_some))
            .await
            .is_ok();
        if !exited {
            signal_gone_ok(pid, Signal::SIGKILL, &record.id);
            let killed =
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(Option::is_some)).await;
            if killed.is_err() {
                metrics::failed(
                    "stop-container",
                    &record.id,
                    &"still running 10 s after SIGKILL",
                );
            }
        }
        let status = rx.borrow().clone();
        Ok(status)
    }

    /// Sends a signal to a running container's init.
    pub fn signal(&self, id: &str, signal: Signal) -> Result<()> {
        let record = self.get(id)?;
        let pid = record.pid.ok_or_else(|| {
            Error::Invalid(format!("container {} is not running", record.config.name))
        })?;
        kill(Pid::from_raw(pid), signal)
            .doing(|| format!("signal {signal} to {}", record.config.name))
    }

    /// Removes a container; a running one only with `force` (it is killed first).
    pub async fn remove(&self, id: &str, force: bool) -> Result<ContainerRecord> {
        let record = self.get(id)?;
        if record.state == State::Running {
            if !force {
                return Err(Error::Invalid(format!(
                    "container {} is running; stop it first or use --force",
                    record.config.name
                )));
            }
            self.stop(&record.id, Some(Duration::ZERO)).await?;
        }
        self.teardown(&record.id);
        lock(&self.records).remove(&record.id);
        Ok(record)
    }

    pub(super) fn delete_runtime_state(&self, id: &str) {
        delete_state(&self.config.root.join("libcontainer"), id);
    }

    /// Removes everything a container holds: runtime state, network, rootfs mount, files.
    pub(super) fn teardown(&self, id: &str) {
        if let Some(handles) = lock(&self.forwarders).remove(id) {
            handles.iter().for_each(tokio::task::JoinHandle::abort);
        }
        self.delete_runtime_state(id);
        self.network.detach(id).report("network-detach", id);
        let dir = self.dir(id);
        let rootfs = dir.join("rootfs");
        if is_mounted(&rootfs) {
            nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH)
                .report("unmount-rootfs", &rootfs.display().to_string());
        }
        metrics::cleanup(fs::remove_dir_all(&dir), "remove-container-dir", &dir);
    }
}

/// Deletes libcontainer's state and cgroups of container `id` under `state_root` (it must not
/// run any more); missing pieces are fine.
pub fn delete_state(state_root: &Path, id: &str) {
    let root = state_root.join(id);
    if root.exists() {
        match libcontainer::container::Container::load(root.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    tracing::debug!(id, error = %e, "libcontainer delete");
                }
            }
            Err(e) => tracing::debug!(id, error = %e, "libcontainer load"),
        }
        metrics::cleanup(fs::remove_dir_all(&root), "remove-runtime-state", &root);
    }
    // libcontainer removes the cgroups it made; leftovers of a crash go here.
    for base in ["", "unified"] {
        if let Ok(entries) = fs::read_dir(Path::new(super::cgroup::ROOT).join(base)) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let dir = super::cgroup::dir(Path::new(base).join(e.file_name()), id);
                metrics::cleanup(fs::remove_dir(&dir), "remove-cgroup", &dir);
            }
        }
        let dir = super::cgroup::dir(base, id);
        metrics::cleanup(fs::remove_dir(&dir), "remove-cgroup", &dir);
    }
}
