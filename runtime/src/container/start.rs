//! Starting a container through the shim launcher, and watching for its exit.
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::watch;

use super::{
    launcher, lock, now, process_start, shim, ContainerRecord, Engine, ExitEvent, ExitStatus,
    Publish, State,
};
use crate::error::{Error, IoContext, Result};
use crate::metrics::{self, Report};

impl Engine {
    /// Starts a created or exited container.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<ContainerRecord> {
        let mut record = self.get(id)?;
        if record.state == State::Running {
            return Err(Error::Invalid(format!(
                "container {} is already running",
                record.config.name
            )));
        }
        let id = record.id.clone();
        let dir = self.dir(&id);
        if record.state == State::Exited {
            self.delete_runtime_state(&id);
            let exit_file = dir.join("exit.json");
            metrics::cleanup(
                fs::remove_file(&exit_file),
                "remove-exit-record",
                &exit_file,
            );
            record.restart_count += 1;
            if let Some(m) = metrics::get() {
                m.restarts.inc();
            }
        }
        let image = self
            .images
            .resolve(&record.image_id)
            .or_else(|_| self.images.resolve(&record.image))?;
        self.mount_rootfs(&dir, &self.images.layer_dirs(&image)?)?;
        if let Some(ip) = record.ip {
            if !self.network.attached(&id) {
                self.network.attach(&id, ip)?;
            }
        }
        let args = shim::ShimArgs {
            id: id.clone(),
            bundle: dir.clone(),
            state_root: self.config.root.join("libcontainer"),
            log: dir.join("container.log"),
            exit_file: dir.join("exit.json"),
        };
        let launched = Instant::now();
        let shim_log = fs::File::create(dir.join("shim.log")).at(dir.join("shim.log"))?;
        let report = self.launcher.launch(&args, &shim_log)?;
        let report = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(report))
            .map_err(|e| Error::Runtime(format!("shim report pipe: {e}")))?;
        let mut report = tokio::io::BufReader::new(report);
        let mut line = String::new();
        if let Err(e) = report.read_line(&mut line).await {
            // An empty report fails below, naming the container.
            metrics::failed("read-shim-report", &id, &e);
        }
        let started = match launcher::parse_report(&line) {
            Ok(started) => started,
            Err(e) => {
                // The shim exits right after reporting a failure; wait for that.
                report
                    .read_to_end(&mut Vec::new())
                    .await
                    .report("read-shim-report", &id);
                self.delete_runtime_state(&id);
                return Err(e);
            }
        };
        if let Some(m) = metrics::get() {
            m.starts.inc();
            m.start_seconds.observe(launched.elapsed().as_secs_f64());
        }
        let (pid, shim_pid) = (started.pid, started.shim_pid);
        record.state = State::Running;
        record.pid = Some(pid);
        record.shim = Some((shim_pid, process_start(shim_pid).unwrap_or(0)));
        record.started_at = Some(now());
        record.exit = None;
        record.stopped_by_user = false;
        self.save(&record)?;
        lock(&self.records).insert(id.clone(), record.clone());
        let (tx, rx) = watch::channel(None);
        lock(&self.running).insert(id.clone(), rx);
        let engine = Arc::clone(self);
        let waited = id.clone();
        tokio::spawn(async move {
            // The shim holds the report pipe open until the exit status is recorded; a read
            // error means the pipe is gone too, so the container has exited either way.
            report
                .read_to_end(&mut Vec::new())
                .await
                .report("read-shim-report", &waited);
            engine.on_exit(&waited, &tx);
        });
        if let Some(ip) = record.ip {
            self.start_forwarders(&id, ip, &record.config.publish);
        }
        Ok(record)
    }

    pub(super) fn on_exit(&self, id: &str, tx: &watch::Sender<Option<ExitStatus>>) {
        if let Some(handles) = lock(&self.forwarders).remove(id) {
            handles.iter().for_each(tokio::task::JoinHandle::abort);
        }
        let mut records = lock(&self.records);
        let Some(record) = records.get_mut(id) else {
            return;
        };
        self.finish(record);
        let status = record.exit.clone();
        drop(records);
        lock(&self.running).remove(id);
        if let Some(status) = status {
            tx.send_replace(Some(status.clone()));
            // With no subscriber there is no one to tell.
            let _no_subscriber = self.exits.send(ExitEvent {
                id: id.to_string(),
                status,
            });
        }
    }

    pub(super) fn start_forwarders(&self, id: &str, ip: Ipv4Addr, publish: &[Publish]) {
        let handles: Vec<_> = publish.iter().filter_map(|p| p.spawn(ip).ok()).collect();
        if !handles.is_empty() {
            lock(&self.forwarders).insert(id.to_string(), handles);
        }
    }
}
