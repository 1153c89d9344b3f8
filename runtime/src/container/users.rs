//! Docker's `--user`: `name|uid[:group|gid]`, names resolved in the image's own `/etc/passwd`
//! and `/etc/group` (as runc does), read from the image layers before the rootfs is mounted.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The file at `path` (relative, e.g. `etc/passwd`) as the overlay of `layers` (bottom first)
/// shows it: the topmost layer that has it, unless a whiteout there removed it.
fn image_file(layers: &[PathBuf], path: &str) -> Option<String> {
    for layer in layers.iter().rev() {
        let p = layer.join(path);
        match fs::symlink_metadata(&p) {
            // Whiteouts are unpacked as overlayfs's 0:0 character devices.
            Ok(m) if m.file_type().is_char_device() => return None,
            Ok(_) => return fs::read_to_string(&p).ok(),
            Err(_) => continue,
        }
    }
    None
}

/// The `name:x:id:gid:...` entries of a passwd or group file: name, id and (passwd) gid.
fn entries(file: Option<&str>) -> impl Iterator<Item = (&str, u32, Option<u32>)> {
    file.into_iter().flat_map(str::lines).filter_map(|line| {
        let mut f = line.split(':');
        let (name, _, id) = (f.next()?, f.next()?, f.next()?);
        Some((
            name,
            id.parse().ok()?,
            f.next().and_then(|g| g.parse().ok()),
        ))
    })
}

/// Resolves `spec` to (uid, gid) with the image `layers`' passwd and group files. A numeric
/// uid absent from passwd gets gid 0, as with Docker.
pub fn resolve(spec: &str, layers: &[PathBuf]) -> Result<(u32, u32)> {
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let passwd = image_file(layers, "etc/passwd");
    let unknown = |what: &str, name: &str| {
        Error::Invalid(format!(
            "user {spec:?}: no {what} {name:?} in the image's /etc/{}",
            if what == "user" { "passwd" } else { "group" }
        ))
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => {
            let gid = entries(passwd.as_deref())
                .find(|e| e.1 == uid)
                .and_then(|e| e.2);
            (uid, gid.unwrap_or(0))
        }
        Err(_) => {
            let (_, uid, gid) = entries(passwd.as_deref())
                .find(|e| e.0 == user)
                .ok_or_else(|| unknown("user", user))?;
            (uid, gid.unwrap_or(0))
        }
    };
    let gid = if group.is_empty() {
        primary
    } else if let Ok(gid) = group.parse::<u32>() {
        gid
    } else {
        let groups = image_file(layers, "etc/group");
        let found = entries(groups.as_deref())
            .find(|e| e.0 == group)
            .map(|e| e.1);
        found.ok_or_else(|| unknown("group", group))?
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn layers(dir: &Path) -> Vec<PathBuf> {
        let (lower, upper) = (dir.join("lower"), dir.join("upper"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(
            lower.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nold:x:7:7::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            upper.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/srv:/bin/sh\n",
        )
        .unwrap();
        fs::write(lower.join("etc/group"), "root:x:0:\nstaff:x:50:web\n").unwrap();
        vec![lower, upper]
    }

    #[test]
    fn names_and_ids_resolve_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let l = layers(dir.path());
        assert_eq!(resolve("web", &l).unwrap(), (1000, 1001));
        assert_eq!(resolve("web:staff", &l).unwrap(), (1000, 50));
        assert_eq!(resolve("1000", &l).unwrap(), (1000, 1001));
        assert_eq!(resolve("4242", &l).unwrap(), (4242, 0));
        assert_eq!(resolve("4242:4243", &l).unwrap(), (4242, 4243));
        // The upper layer's passwd hides the lower one's.
        let err = resolve("old", &l).unwrap_err().to_string();
        assert!(err.contains("no user \"old\""), "{err}");
        let err = resolve("web:nogroup", &l).unwrap_err().to_string();
        assert!(err.contains("/etc/group"), "{err}");
    }
}
