//! `hostPath` volumes: a path of this node checked, or made, as its `type` says before the
//! containers bind-mount it, with kubelet's words when it is not what the pod asked for.
//! Nothing here is ever removed with the pod: the path belongs to the node.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pier_model::volume::HostPathVolumeSource;

use super::ConfigError;

/// The node's path of `source`, checked (or made) as its type says.
pub(super) fn prepare(source: &HostPathVolumeSource) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(&source.path);
    let kind = source.type_.as_deref().unwrap_or("");
    let found = fs::symlink_metadata(&path).and_then(|_| fs::metadata(&path));
    match (kind, found) {
        ("", _) => {}
        ("DirectoryOrCreate", Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&path)
                .map_err(|e| failed(&path, &format!("creating it: {e}")))?;
        }
        ("FileOrCreate", Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| failed(&path, &format!("creating it: {e}")))?;
        }
        (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(failed(&path, "no such file or directory"));
        }
        (_, Err(e)) => return Err(failed(&path, &e.to_string())),
        (kind, Ok(meta)) => {
            let t = meta.file_type();
            let (ok, what) = match kind {
                "DirectoryOrCreate" | "Directory" => (t.is_dir(), "a directory"),
                "FileOrCreate" | "File" => (t.is_file(), "a file"),
                "Socket" => (t.is_socket(), "a socket file"),
                "CharDevice" => (t.is_char_device(), "a character device"),
                "BlockDevice" => (t.is_block_device(), "a block device"),
                other => return Err(failed(&path, &format!("unknown type {other:?}"))),
            };
            if !ok {
                return Err(failed(&path, &format!("is not {what}")));
            }
        }
    }
    Ok(path)
}

fn failed(path: &Path, why: &str) -> ConfigError {
    ConfigError(format!(
        "hostPath type check failed: {}: {why}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &Path, kind: &str) -> HostPathVolumeSource {
        HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: (!kind.is_empty()).then(|| kind.to_string()),
        }
    }

    #[test]
    fn types_are_checked_and_or_create_makes_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        assert_eq!(prepare(&source(&dir, "DirectoryOrCreate")).unwrap(), dir);
        assert!(dir.is_dir());
        let file = tmp.path().join("f");
        prepare(&source(&file, "FileOrCreate")).unwrap();
        assert!(file.is_file());
        prepare(&source(&dir, "Directory")).unwrap();
        prepare(&source(&file, "File")).unwrap();
        let e = prepare(&source(&file, "Directory")).unwrap_err().0;
        assert!(e.contains("is not a directory"), "{e}");
        let e = prepare(&source(&dir, "Socket")).unwrap_err().0;
        assert!(e.contains("is not a socket"), "{e}");
        let e = prepare(&source(&tmp.path().join("none"), "File"))
            .unwrap_err()
            .0;
        assert!(e.contains("no such file"), "{e}");
        prepare(&source(Path::new("/dev/null"), "CharDevice")).unwrap();
        // No type: no check, nothing made.
        prepare(&source(&tmp.path().join("later"), "")).unwrap();
        assert!(!tmp.path().join("later").exists());
    }
}
