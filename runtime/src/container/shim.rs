//! The per-container shim: a process (forked by the [launcher](super::launcher)) that
//! creates the container with libcontainer, stays its parent, writes its output to a rotated
//! log, and records its exit status. It outlives daemon restarts, as containerd's shims do.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Largest log file before it is rotated.
pub const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated log files kept (`container.log.1` …).
pub const LOG_KEEP: usize = 2;

/// What the engine tells a shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimArgs {
    /// Container ID.
    pub id: String,
    /// OCI bundle (holds `config.json`).
    pub bundle: PathBuf,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    /// Log file.
    pub log: PathBuf,
    /// Where the exit status is written.
    pub exit_file: PathBuf,
}

/// How a container ended, as the shim records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExitStatus {
    /// Exit code (128 + signal when killed by a signal, as shells report it).
    pub code: i32,
    /// Signal name when killed by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Whether the kernel's OOM killer ended it.
    #[serde(default)]
    pub oom_killed: bool,
    /// When (RFC 3339).
    pub finished_at: String,
}

/// The log writer: CRI format (`<time> <stream> F <line>`), rotated by size.
struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
}

impl LogWriter {
    fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for i in (1..LOG_KEEP).rev() {
            let from = self.path.with_extension(format!("log.{i}"));
            if from.exists() {
                fs::rename(&from, self.path.with_extension(format!("log.{}", i + 1)))?;
            }
        }
        fs::rename(&self.path, self.path.with_extension("log.1"))?;
        *self = Self::open(&self.path)?;
        Ok(())
    }

    fn line(&mut self, stream: &str, partial: bool, text: &[u8]) {
        let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
        let tag = if partial { "P" } else { "F" };
        let mut out = Vec::with_capacity(text.len() + 48);
        // Writing to a Vec cannot fail.
        out.extend_from_slice(format!("{now} {stream} {tag} ").as_bytes());
        out.extend_from_slice(text);
        out.push(b'\n');
        if self.size + out.len() as u64 > LOG_MAX_BYTES && self.size > 0 {
            if let Err(e) = self.rotate() {
                eprintln!("log rotation of {} failed: {e}", self.path.display());
            }
        }
        if self.file.write_all(&out).is_ok() {
            self.size += out.len() as u64;
        }
    }
}

/// Splits a stream into lines for the log; long lines are written as partial records.
struct LineBuffer {
    stream: &'static str,
    buf: Vec<u8>,
}

impl LineBuffer {
    const MAX_LINE: usize = 16 * 1024;

    fn feed(&mut self, data: &[u8], log: &mut LogWriter) {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            log.line(self.stream, false, &line[..line.len() - 1]);
        }
        while self.buf.len() >= Self::MAX_LINE {
            let chunk: Vec<u8> = self.buf.drain(..Self::MAX_LINE).collect();
            log.line(self.stream, true, &chunk);
        }
    }

    fn flush(&mut self, log: &mut LogWriter) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            log.line(self.stream, false, &rest);
        }
    }
}

fn oom_killed(id: &str) -> bool {
    // cgroup v1 memory controller: under_oom / oom_kill counter; v2: memory.events.
    let v1 = super::cgroup::dir("memory", id).join("memory.oom_control");
    let v2 = super::cgroup::dir("", id).join("memory.events");
    [v1, v2].iter().any(|p| {
        fs::read_to_string(p)
            .is_ok_and(|s| super::cgroup::stat(&s, "oom_kill").is_some_and(|n| n > 0.0))
    })
}

/// Creates and starts the container; returns its init PID and the read ends of its output.
fn create(args: &ShimArgs) -> Result<(Pid, OwnedFd, OwnedFd), String> {
    let (out_r, out_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let devnull = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let mut container = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.state_root)
        .map_err(|e| e.to_string())?
        .with_stdin(OwnedFd::from(devnull))
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("create: {e}"))?;
    container.start().map_err(|e| format!("start: {e}"))?;
    let pid = container.pid().ok_or("container has no pid after start")?;
    Ok((Pid::from_raw(pid.as_raw()), out_r, err_r))
}

/// Runs the shim: `report` receives `ok <init pid> <shim pid>` or `error <message>`, and is
/// closed once the container has exited and its status is recorded.
pub fn main(args: &ShimArgs, mut report: File) -> i32 {
    // Own session: a Ctrl-C at the daemon's terminal must not reach containers.
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("setsid: {e}");
    }
    let (pid, out_r, err_r) = match create(args) {
        Ok(v) => v,
        Err(e) => {
            if writeln!(report, "error {}", e.replace('\n', " ")).is_err() {
                eprintln!("creating the container failed and the engine left: {e}");
            }
            return 1;
        }
    };
    if writeln!(report, "ok {pid} {}", std::process::id()).is_err() {
        // The engine is gone before hearing of the container: nothing would ever stop it.
        if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
            eprintln!("the engine left and container init {pid} could not be killed: {e}");
        }
    }
    let mut log = match LogWriter::open(&args.log) {
        Ok(l) => l,
        Err(_) => match LogWriter::open(Path::new("/dev/null")) {
            Ok(l) => l,
            Err(_) => return 1,
        },
    };
    let mut streams = [
        (
            Some(File::from(out_r)),
            LineBuffer {
                stream: "stdout",
                buf: Vec::new(),
            },
        ),
        (
            Some(File::from(err_r)),
            LineBuffer {
                stream: "stderr",
                buf: Vec::new(),
            },
        ),
    ];
    let mut status: Option<WaitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<usize> = (0..2).filter(|&i| streams[i].0.is_some()).collect();
        if open.is_empty() && status.is_some() {
            break;
        }
        // Output still held open by a leftover process must not keep the shim forever.
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        if open.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        } else {
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd> = open
                    .iter()
                    .filter_map(|&i| {
                        streams[i]
                            .0
                            .as_ref()
                            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                    })
                    .collect();
                // An interrupted poll reads nothing ready and polls again.
                if let Err(e) = poll(&mut fds, PollTimeout::from(200u16)) {
                    if e != nix::errno::Errno::EINTR {
                        eprintln!("poll: {e}");
                    }
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            for (k, &i) in open.iter().enumerate() {
                if !ready[k] {
                    continue;
                }
                let (file, lines) = &mut streams[i];
                let n = file.as_mut().map_or(Ok(0), |f| f.read(&mut buf));
                match n {
                    Ok(0) | Err(_) => {
                        lines.flush(&mut log);
                        *file = None;
                    }
                    Ok(n) => lines.feed(&buf[..n], &mut log),
                }
            }
        }
        if status.is_none() {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(s) => {
                    status = Some(s);
                    exited_at = Some(Instant::now());
                }
                Err(_) => {
                    status = Some(WaitStatus::Exited(pid, 255));
                    exited_at = Some(Instant::now());
                }
            }
        }
    }
    for (_, lines) in &mut streams {
        lines.flush(&mut log);
    }
    let (code, signal) = match status {
        Some(WaitStatus::Exited(_, c)) => (c, None),
        Some(WaitStatus::Signaled(_, s, _)) => (128 + s as i32, Some(s.as_str().to_string())),
        _ => (255, None),
    };
    let exit = ExitStatus {
        code,
        signal,
        oom_killed: oom_killed(&args.id),
        finished_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    };
    match serde_json::to_vec(&exit) {
        Ok(data) => {
            if let Err(e) = crate::image::write_atomic(&args.exit_file, &data) {
                // The engine then records exit code 255: the status is lost, not the exit.
                eprintln!(
                    "exit status not recorded at {}: {e}",
                    args.exit_file.display()
                );
            }
        }
        Err(e) => eprintln!("exit status not encoded: {e}"),
    }
    // Closed last: its end of file tells the engine the exit status is on disk.
    drop(report);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_cri_lines_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut log = LogWriter::open(&path).unwrap();
        let mut lines = LineBuffer {
            stream: "stdout",
            buf: Vec::new(),
        };
        lines.feed(b"hello\nwor", &mut log);
        lines.feed(b"ld\n", &mut log);
        let text = fs::read_to_string(&path).unwrap();
        let got: Vec<&str> = text
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap())
            .collect();
        assert_eq!(got, ["hello", "world"]);
        assert!(text.lines().all(|l| l.split(' ').nth(1) == Some("stdout")));
        let big = vec![b'x'; 1024 * 1024];
        for _ in 0..25 {
            lines.feed(&big, &mut log);
        }
        assert!(path.with_extension("log.1").exists());
        assert!(fs::metadata(&path).unwrap().len() <= LOG_MAX_BYTES);
        assert!(!path
            .with_extension(format!("log.{}", LOG_KEEP + 1))
            .exists());
    }
}
