//! The shim launcher: one long-lived, single-threaded process (`pier shim-launcher`) that forks a
//! shim per container, so starting a container costs a fork of a small process instead of an
//! exec of the whole pier binary (dynamic relocation, allocator and runtime start-up).
//!
//! The engine sends one request per container over a `SOCK_SEQPACKET` socket: the JSON
//! [`ShimArgs`] plus two descriptors, the write end of a report pipe and the shim's log file.
//! The forked shim writes `ok <init pid> <shim pid>` or `error <message>` to the report pipe and
//! keeps it open until it exits, so the engine learns of the exit from the pipe's end of file.

use std::fs::File;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::shim::{self, ShimArgs};
use crate::error::{Error, IoContext, Result};

/// The argument that runs the pier binary as a launcher.
pub const LAUNCHER_ARG: &str = "shim-launcher";
/// Largest request (JSON arguments) the launcher accepts.
const MAX_REQUEST: usize = 64 * 1024;

/// What a shim reported once its container was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The container's init process.
    pub pid: i32,
    /// The shim process.
    pub shim_pid: i32,
}

/// Parses a shim's report line.
pub fn parse_report(line: &str) -> Result<Started> {
    match line.trim().split_once(' ') {
        Some(("ok", pids)) => {
            let mut it = pids.split(' ').map(str::parse::<i32>);
            match (it.next(), it.next()) {
                (Some(Ok(pid)), Some(Ok(shim_pid))) => Ok(Started { pid, shim_pid }),
                _ => Err(Error::Runtime(format!("shim reported {line:?}"))),
            }
        }
        Some(("error", msg)) => Err(Error::Runtime(msg.to_string())),
        _ => Err(Error::Runtime(
            "the shim failed before reporting (see shim.log)".into(),
        )),
    }
}

/// The engine's handle on its launcher process; restarted when it is found dead.
pub struct Launcher {
    exe: PathBuf,
    process: Mutex<Option<(Child, OwnedFd)>>,
}

impl Launcher {
    /// A launcher run as `<exe> shim-launcher`; the process starts on first use.
    pub fn new(exe: &Path) -> Self {
        Self {
            exe: exe.to_path_buf(),
            process: Mutex::new(None),
        }
    }

    fn spawn_process(&self) -> Result<(Child, OwnedFd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::Runtime(format!("launcher socket: {e}")))?;
        let child = Command::new(&self.exe)
            .arg(LAUNCHER_ARG)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            // Huge pages only cost a short-lived shim the time to zero them.
            .env("MIMALLOC_ALLOW_THP", "0")
            .spawn()
            .at(&self.exe)?;
        Ok((child, ours))
    }

    /// Forks a shim for `args`, its stderr going to `log`; returns the report pipe's read end.
    pub fn launch(&self, args: &ShimArgs, log: &File) -> Result<File> {
        let json = serde_json::to_vec(args).map_err(|e| Error::Runtime(e.to_string()))?;
        let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Runtime(format!("pipe: {e}")))?;
        let fds = [report_w.as_raw_fd(), log.as_raw_fd()];
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if process.is_none() {
                *process = Some(self.spawn_process()?);
            }
            let Some((child, socket)) = process.as_mut() else {
                continue;
            };
            let sent = sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(&json)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(_) => return Ok(File::from(report_r)),
                Err(e) if attempt == 0 && matches!(e, Errno::EPIPE | Errno::ECONNRESET) => {
                    tracing::warn!("the shim launcher exited; starting it again");
                    // It exited already; kill and reap whatever is left of it.
                    if let Err(e) = child.kill().and_then(|()| child.wait().map(drop)) {
                        tracing::debug!(error = %e, "reaping the old shim launcher");
                    }
                    *process = None;
                }
                Err(e) => return Err(Error::Runtime(format!("sending to the shim launcher: {e}"))),
            }
        }
        Err(Error::Runtime("the shim launcher keeps exiting".into()))
    }

    /// Launches a shim and waits for its report (for callers without an async runtime).
    pub fn launch_blocking(&self, args: &ShimArgs, log: &File) -> Result<(Started, File)> {
        let report = self.launch(args, log)?;
        let mut reader = BufReader::new(report);
        let mut line = String::new();
        reader.read_line(&mut line).at(&args.bundle)?;
        Ok((parse_report(&line)?, reader.into_inner()))
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // Closing the socket ends the launcher; shims it forked keep running.
        if let Some((mut child, socket)) = self.process.get_mut().ok().and_then(Option::take) {
            drop(socket);
            if let Err(e) = child.wait() {
                tracing::warn!(error = %e, "the shim launcher was not reaped");
            }
        }
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// A received request: the arguments and the two descriptors.
fn receive(socket: BorrowedFd<'_>) -> std::result::Result<Option<(ShimArgs, File, File)>, String> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving: {e}"))?;
    let bytes = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| format!("receiving: {e}"))? {
        if let ControlMessageOwned::ScmRights(received) = c {
            fds.extend(received.into_iter().map(owned));
        }
    }
    if bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    let [report, log]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|_| "a request without its two descriptors".to_string())?;
    let args: ShimArgs =
        serde_json::from_slice(&buf[..bytes]).map_err(|e| format!("request: {e}"))?;
    Ok(Some((args, File::from(report), File::from(log))))
}

#[allow(unsafe_code)]
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the descriptor was just received with SCM_RIGHTS; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[allow(unsafe_code)]
fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the launcher is single-threaded (checked when it starts), so the child is a
    // consistent copy of the whole process and may allocate and run any code.
    unsafe { nix::unistd::fork() }
}

/// The forked child: becomes the shim for `args`; never returns.
fn become_shim(args: &ShimArgs, report: File, log: &File) -> ! {
    // Until stderr is the shim's log, the launcher's stderr (the daemon's) takes complaints.
    let stdin = File::open("/dev/null")
        .map_err(|e| e.to_string())
        .and_then(|null| nix::unistd::dup2_stdin(null).map_err(|e| e.to_string()));
    let out = nix::unistd::dup2_stdout(log).and(nix::unistd::dup2_stderr(log));
    if let Err(e) = stdin {
        eprintln!("shim {}: stdin not redirected: {e}", args.id);
    }
    if let Err(e) = out {
        eprintln!("shim {}: output not redirected to its log: {e}", args.id);
    }
    std::process::exit(shim::main(args, report))
}

fn reap() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, WaitStatus::StillAlive) {
            break;
        }
    }
}

/// Runs the launcher on `socket` (its stdin) until the engine closes it.
pub fn serve(socket: OwnedFd) -> i32 {
    if threads() != 1 {
        eprintln!("error: the shim launcher must be single-threaded");
        return 1;
    }
    loop {
        // Exited shims are reaped at least once a second.
        let ready = {
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(n) => n > 0,
                Err(Errno::EINTR) => false,
                Err(e) => {
                    eprintln!("error: launcher poll: {e}");
                    return 1;
                }
            }
        };
        reap();
        if !ready {
            continue;
        }
        let (args, report, log) = match receive(socket.as_fd()) {
            Ok(Some(request)) => request,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("error: shim launcher: {e}");
                continue;
            }
        };
        match fork() {
            Ok(ForkResult::Child) => {
                drop(socket);
                become_shim(&args, report, &log)
            }
            Ok(ForkResult::Parent { .. }) => {}
            Err(e) => {
                use std::io::Write;
                let mut report = report;
                if writeln!(report, "error fork: {e}").is_err() {
                    eprintln!("shim launcher: fork failed ({e}) and the engine left");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(
            parse_report("ok 12 7\n").unwrap(),
            Started {
                pid: 12,
                shim_pid: 7
            }
        );
        let err = parse_report("error create: no such image\n").unwrap_err();
        assert!(err.to_string().contains("no such image"), "{err}");
        assert!(parse_report("").is_err());
        assert!(parse_report("ok x").is_err());
    }
}
