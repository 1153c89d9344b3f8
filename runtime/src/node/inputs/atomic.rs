//! Writes a set of files into a volume directory all at once, as the kubelet's atomic writer
//! does: the files go to a new hidden `..<time>` directory, the `..data` symlink is swapped to
//! it with one rename, and each visible name is a symlink through `..data`. A reader sees the
//! old set or the new one, never a mix.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// A file to write: its bytes and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Files by their path relative to the volume.
pub(crate) type Payload = BTreeMap<PathBuf, File>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether `path` stays inside the volume: relative, no `..`.
fn contained(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
        && path.components().next().is_some()
}

/// The payload the volume shows now (`None` before the first write, or when unreadable).
fn current(dir: &Path) -> Option<Payload> {
    let target = fs::read_link(dir.join(DATA)).ok()?;
    let root = dir.join(&target);
    let mut payload = Payload::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ok()?.flatten() {
            let path = entry.path();
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&root).ok()?.to_path_buf();
                let data = fs::read(&path).ok()?;
                payload.insert(
                    rel,
                    File {
                        data,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Some(payload)
}

fn top_level(path: &Path) -> Option<PathBuf> {
    path.components()
        .next()
        .map(|c| PathBuf::from(c.as_os_str()))
}

/// Makes `dir` show exactly `payload`; true when anything changed.
pub(crate) fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    if let Some(bad) = payload.keys().find(|p| !contained(p)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} leaves the volume", bad.display()),
        ));
    }
    fs::create_dir_all(dir)?;
    if current(dir).is_some_and(|p| &p == payload) {
        return Ok(false);
    }
    // 1. The new set, in full, under a name nobody reads yet.
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-', 'T'], "_")
        .replace('Z', "");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let name = PathBuf::from(format!("..{stamp}.{}", &unique[..12]));
    let new = dir.join(&name);
    fs::create_dir(&new)?;
    fs::set_permissions(&new, fs::Permissions::from_mode(0o755))?;
    for (rel, file) in payload {
        let path = new.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &file.data)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))?;
    }
    // 2. One rename makes it the volume's contents.
    let tmp = dir.join(DATA_TMP);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    symlink(&name, &tmp)?;
    fs::rename(&tmp, dir.join(DATA))?;
    // 3. Visible names through `..data`; names no longer in the set go.
    let visible: std::collections::BTreeSet<PathBuf> =
        payload.keys().filter_map(|p| top_level(p)).collect();
    for top in &visible {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(top), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let file_name = PathBuf::from(entry.file_name());
        let hidden = file_name.to_string_lossy().starts_with("..");
        if !hidden && !visible.contains(&file_name) {
            fs::remove_file(entry.path())?;
        }
    }
    // 4. Older sets, which nothing points at any more.
    for entry in fs::read_dir(dir)?.flatten() {
        let file_name = PathBuf::from(entry.file_name());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && file_name != name && file_name.to_string_lossy().starts_with("..") {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str)]) -> Payload {
        files
            .iter()
            .map(|(p, d)| {
                (
                    PathBuf::from(p),
                    File {
                        data: d.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn swaps_the_whole_set_and_removes_what_left() {
        let dir = std::env::temp_dir().join(format!("pier-atomic-{}", uuid::Uuid::new_v4()));
        assert!(write(&dir, &payload(&[("a", "1"), ("conf/b", "2")])).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("conf/b")).unwrap(), "2");
        assert!(fs::symlink_metadata(dir.join("a")).unwrap().is_symlink());
        assert!(!write(&dir, &payload(&[("a", "1"), ("conf/b", "2")])).unwrap());
        let first = fs::read_link(dir.join(DATA)).unwrap();
        assert!(write(&dir, &payload(&[("a", "3")])).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(fs::symlink_metadata(dir.join("conf")).is_err());
        assert!(!dir.join(first).exists(), "the old set is removed");
        let hidden: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        assert!(write(&dir, &payload(&[("../x", "no")])).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
