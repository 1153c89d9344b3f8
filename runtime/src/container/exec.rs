//! `pier exec`: a process inside a running container, with its namespaces, cgroup, capabilities
//! and seccomp profile (libcontainer's tenant builder).

use std::collections::HashMap;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::error::{Error, Result};

/// Runs `argv` in container `id` with the caller's stdio; returns its exit code.
pub fn run(
    state_root: &Path,
    id: &str,
    argv: Vec<String>,
    env: HashMap<String, String>,
) -> Result<i32> {
    if argv.is_empty() {
        return Err(Error::Invalid("exec: give a command".into()));
    }
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state_root)
        .map_err(|e| Error::Runtime(e.to_string()))?
        .as_tenant()
        .with_container_args(argv)
        .with_env(env)
        .with_detach(false)
        .build()
        .map_err(|e| Error::Runtime(format!("exec: {e}")))?;
    let pid = nix::unistd::Pid::from_raw(pid.as_raw());
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::Runtime(format!("exec: waiting: {e}"))),
        }
    }
}
