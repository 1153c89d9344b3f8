//! A pod's volumes on this node, under `<engine root>/pods/<pod uid>/volumes/<name>`:
//! `configMap` and `secret` volumes hold their keys as files written atomically (a Secret's on
//! a tmpfs, so its values never reach the disk), `emptyDir` is a plain directory (a tmpfs for
//! `medium: Memory`). Containers bind-mount them; a change of the object rewrites the files in
//! place, which the bind mount shows at once. A `hostPath` volume is the node's own path
//! (`host_path.rs`), mounted where it is and never removed with the pod.

use std::fs;
use std::path::{Path, PathBuf};

use pier_model::pod::Container;
use pier_model::volume::{KeyToPath, Volume, DEFAULT_MODE, SOURCES};
use pier_model::{quantity, Pod};

use super::atomic::{self, File, Payload};
use super::sources::{SourceKind, Sources};
use super::ConfigError;
use crate::container;

/// What a `configMap` or `secret` volume projects.
struct Projection<'a> {
    kind: SourceKind,
    name: &'a str,
    items: &'a [KeyToPath],
    default_mode: Option<i64>,
    optional: bool,
}

impl<'a> Projection<'a> {
    fn of(v: &'a Volume) -> Option<Self> {
        if let Some(c) = &v.config_map {
            return Some(Self {
                kind: SourceKind::ConfigMap,
                name: &c.name,
                items: &c.items,
                default_mode: c.default_mode,
                optional: c.optional == Some(true),
            });
        }
        v.secret.as_ref().map(|s| Self {
            kind: SourceKind::Secret,
            name: &s.secret_name,
            items: &s.items,
            default_mode: s.default_mode,
            optional: s.optional == Some(true),
        })
    }

    /// The files: every key at its own name, or the listed keys at their paths.
    fn payload(&self, namespace: &str, sources: &Sources) -> Result<Payload, ConfigError> {
        let mode = |m: Option<i64>| {
            u32::try_from(m.or(self.default_mode).unwrap_or(DEFAULT_MODE) & 0o777).unwrap_or(0o644)
        };
        let Some(keys) = sources.get(self.kind, namespace, self.name) else {
            return if self.optional {
                Ok(Payload::new())
            } else {
                Err(ConfigError::not_found(self.kind, self.name))
            };
        };
        if self.items.is_empty() {
            return Ok(keys
                .iter()
                .map(|(k, v)| {
                    let file = File {
                        data: v.clone(),
                        mode: mode(None),
                    };
                    (PathBuf::from(k), file)
                })
                .collect());
        }
        let mut payload = Payload::new();
        for item in self.items {
            match keys.get(&item.key) {
                Some(v) => {
                    let file = File {
                        data: v.clone(),
                        mode: mode(item.mode),
                    };
                    payload.insert(PathBuf::from(&item.path), file);
                }
                None if self.optional => {}
                None => {
                    return Err(ConfigError(format!(
                        "{} references non-existent {} key: {}",
                        self.kind.noun(),
                        self.kind.noun(),
                        item.key
                    )))
                }
            }
        }
        Ok(payload)
    }
}

/// The directory of one pod's volumes.
pub(crate) struct PodVolumes {
    dir: PathBuf,
}

/// Where the pods' volume directories live under the engine's root.
pub(crate) fn pods_dir(root: &Path) -> PathBuf {
    root.join("pods")
}

/// The directory name of a pod: its UID, or `namespace_name` for one without.
pub(crate) fn pod_dir_name(pod: &Pod) -> String {
    if pod.metadata.uid.is_empty() {
        format!("{}_{}", pod.metadata.namespace(), pod.metadata.name)
    } else {
        pod.metadata.uid.clone()
    }
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{what} {}: {e}", path.display()))
}

/// Mounts a tmpfs at `dir` unless one is there.
fn tmpfs(dir: &Path, size: Option<u64>) -> Result<(), ConfigError> {
    if container::is_mounted(dir) {
        return Ok(());
    }
    let mut options = "mode=0755".to_string();
    if let Some(size) = size {
        options.push_str(&format!(",size={size}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| io("mounting a tmpfs at", dir, e))
}

/// Unmounts whatever is mounted under `dir`, then removes it.
pub(crate) fn remove_dir(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounted: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| {
            p.strip_prefix(prefix.as_str())
                .is_some_and(|r| r.starts_with('/'))
        })
        .map(str::to_string)
        .collect();
    mounted.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in mounted {
        if let Err(e) = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m, error = %e, "unmounting a pod volume");
        }
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "removing a pod's volumes"),
    }
}

impl PodVolumes {
    /// The volumes of `pod` under the engine root `root`.
    pub(crate) fn of(root: &Path, pod: &Pod) -> Self {
        Self {
            dir: pods_dir(root).join(pod_dir_name(pod)),
        }
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    /// Makes every volume of the pod; an object it needs that is missing is an error.
    pub(crate) fn prepare(&self, pod: &Pod, sources: &Sources) -> Result<(), ConfigError> {
        let ns = pod.metadata.namespace();
        for v in &pod.spec.volumes {
            if let Some(other) = v.other.keys().next() {
                return Err(ConfigError(format!(
                    "volume {:?}: {other} volumes are not provided by pier (it provides {})",
                    v.name,
                    SOURCES.join(", ")
                )));
            }
            if let Some(h) = &v.host_path {
                super::host_path::prepare(h)?;
                continue;
            }
            let dir = self.volume_dir(&v.name);
            fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
            if let Some(p) = Projection::of(v) {
                // Decide first, so a missing object leaves nothing half made.
                let payload = p.payload(ns, sources)?;
                if p.kind == SourceKind::Secret {
                    tmpfs(&dir, None)?;
                }
                atomic::write(&dir, &payload).map_err(|e| io("writing", &dir, e))?;
            } else if let Some(e) = &v.empty_dir {
                if e.medium.as_deref() == Some("Memory") {
                    let size = e.size_limit.as_ref().and_then(|q| quantity::bytes(q).ok());
                    tmpfs(&dir, size)?;
                }
                set_mode(&dir, 0o777)?;
            }
        }
        Ok(())
    }

    /// The bind mounts of container `c`.
    pub(crate) fn mounts(
        &self,
        pod: &Pod,
        c: &Container,
    ) -> Result<Vec<container::Volume>, ConfigError> {
        let mut mounts = Vec::new();
        for m in &c.volume_mounts {
            let Some(v) = pod.spec.volumes.iter().find(|v| v.name == m.name) else {
                return Err(ConfigError(format!("volumeMounts: no volume {:?}", m.name)));
            };
            let projected = Projection::of(v).is_some();
            let dir = match &v.host_path {
                Some(h) => PathBuf::from(&h.path),
                None => self.volume_dir(&v.name),
            };
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                None => dir,
                Some(sub) => sub_path(&dir, sub, !projected)?,
            };
            mounts.push(container::Volume {
                host: host.to_string_lossy().into_owned(),
                container: m.mount_path.clone(),
                read_only: projected || m.read_only == Some(true),
            });
        }
        Ok(mounts)
    }

    /// Writes the `configMap` and `secret` volumes again from the objects as they are now;
    /// the names of the volumes whose files changed. An object gone keeps its last files.
    pub(crate) fn refresh(&self, pod: &Pod, sources: &Sources) -> Vec<String> {
        let ns = pod.metadata.namespace();
        let mut changed = Vec::new();
        for v in &pod.spec.volumes {
            let Some(p) = Projection::of(v) else { continue };
            let dir = self.volume_dir(&v.name);
            let written = p.payload(ns, sources).and_then(|payload| {
                atomic::write(&dir, &payload).map_err(|e| io("writing", &dir, e))
            });
            match written {
                Ok(true) => changed.push(v.name.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(pod = %pod.metadata.name, volume = %v.name, error = %e, "volume not updated; it keeps its files")
                }
            }
        }
        changed
    }

    /// Unmounts and removes the pod's volumes.
    pub(crate) fn remove(&self) {
        remove_dir(&self.dir);
    }
}

fn set_mode(dir: &Path, mode: u32) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| io("setting the mode of", dir, e))
}

/// The host path of `sub` inside the volume at `dir`, resolved through its symlinks and made
/// (as a directory) when `make` and missing; it must stay inside the volume.
fn sub_path(dir: &Path, sub: &str, make: bool) -> Result<PathBuf, ConfigError> {
    let path = dir.join(sub);
    if make && !path.exists() {
        fs::create_dir_all(&path).map_err(|e| io("creating", &path, e))?;
    }
    let real = path
        .canonicalize()
        .map_err(|e| io("resolving subPath", &path, e))?;
    let root = dir.canonicalize().map_err(|e| io("resolving", dir, e))?;
    if !real.starts_with(&root) {
        return Err(ConfigError(format!(
            "subPath {sub:?} resolves outside its volume"
        )));
    }
    Ok(real)
}
