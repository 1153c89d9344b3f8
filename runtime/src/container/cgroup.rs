//! Where the engine's containers' cgroups are: `/pier/<id>` under each hierarchy (cgroup v1
//! controllers, a cgroup v2 root, or the hybrid layout's `unified`), and how their
//! `key value` files read.

use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
pub(super) const ROOT: &str = "/sys/fs/cgroup";
/// The parent cgroup of every container.
const PARENT: &str = "pier";

/// The `cgroupsPath` of container `id` in its OCI spec.
pub(super) fn spec_path(id: &str) -> String {
    format!("/{PARENT}/{id}")
}

/// Container `id`'s cgroup in hierarchy `hierarchy` (`""` for a cgroup v2 root at the mount
/// point, `memory`, `cpuacct`, `unified`, ...).
pub(super) fn dir(hierarchy: impl AsRef<Path>, id: &str) -> PathBuf {
    Path::new(ROOT).join(hierarchy).join(PARENT).join(id)
}

/// The value of `key` in `key value` lines (`cpu.stat`, `memory.stat`, `memory.events`).
pub(super) fn stat(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_stat_lines() {
        assert_eq!(spec_path("ab"), "/pier/ab");
        assert_eq!(
            dir("memory", "ab"),
            Path::new("/sys/fs/cgroup/memory/pier/ab")
        );
        assert_eq!(dir("", "ab"), Path::new("/sys/fs/cgroup/pier/ab"));
        let text = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
        assert_eq!(stat(text, "usage_usec"), Some(2_500_000.0));
        assert_eq!(stat(text, "user"), None);
        assert_eq!(stat("oom_kill 1\n", "oom_kill"), Some(1.0));
    }
}
