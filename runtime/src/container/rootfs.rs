//! A container's root filesystem: the image's layers under an overlay with the container's own
//! upper directory.

use std::fs;
use std::path::{Path, PathBuf};

use super::Engine;
use crate::error::{Result, SysContext};

pub(crate) fn is_mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&p)))
}

impl Engine {
    pub(super) fn mount_rootfs(&self, dir: &Path, layers: &[PathBuf]) -> Result<()> {
        let target = dir.join("rootfs");
        if is_mounted(&target) {
            return Ok(());
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .doing(|| format!("mounting the overlay rootfs at {}", target.display()))
    }
}
