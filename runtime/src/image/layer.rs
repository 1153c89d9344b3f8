//! Layer tarballs: unpacking with overlayfs whiteouts, and writing new ones.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result, SysContext};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Wraps a reader and hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes read so far.
    pub(crate) count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of everything read.
    pub(crate) fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Wraps a writer and hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    pub(crate) count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` and the inner writer.
    pub(crate) fn finish(self) -> (String, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a layer blob, gunzipping it when it starts with the gzip magic.
fn open_tar(blob: &Path) -> Result<Box<dyn Read>> {
    let mut f = BufReader::new(File::open(blob).at(blob)?);
    let mut magic = [0u8; 4];
    let n = {
        let buf = io::BufRead::fill_buf(&mut f).at(blob)?;
        let n = buf.len().min(4);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok(Box::new(GzDecoder::new(f)))
    } else if n >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Err(Error::Invalid(format!(
            "{}: zstd-compressed layers are not supported; push the image with gzip layers",
            blob.display()
        )))
    } else {
        Ok(Box::new(f))
    }
}

/// The path of an entry inside the layer, refusing anything that climbs out.
fn clean_entry_path(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Unpacks a layer blob into `dest`, turning OCI whiteouts into overlayfs ones; returns the
/// `sha256` of the uncompressed tar (the layer's diff ID).
pub(crate) fn unpack(blob: &Path, dest: &Path) -> Result<String> {
    fs::create_dir_all(dest).at(dest)?;
    let mut hashed = HashingReader::new(open_tar(blob)?);
    {
        let mut archive = tar::Archive::new(&mut hashed);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        let entries = archive
            .entries()
            .map_err(|e| Error::Invalid(format!("{}: not a tar archive: {e}", blob.display())))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                Error::Invalid(format!("{}: corrupt tar entry: {e}", blob.display()))
            })?;
            let raw = entry.path().at(blob)?.into_owned();
            let Some(rel) = clean_entry_path(&raw) else {
                return Err(Error::Invalid(format!(
                    "{}: entry {} escapes the layer",
                    blob.display(),
                    raw.display()
                )));
            };
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            if name == OPAQUE_MARKER {
                fs::create_dir_all(&parent).at(&parent)?;
                xattr::set(&parent, "trusted.overlay.opaque", b"y").at(&parent)?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                fs::create_dir_all(&parent).at(&parent)?;
                let target = parent.join(hidden);
                remove_any(&target)?;
                nix::sys::stat::mknod(
                    &target,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    nix::sys::stat::makedev(0, 0),
                )
                .doing(|| format!("whiteout {}", target.display()))?;
                continue;
            }
            entry.unpack_in(dest).map_err(|e| {
                let cause = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Error::Invalid(format!(
                    "{}: unpacking {}: {e}: {cause}",
                    blob.display(),
                    raw.display()
                ))
            })?;
        }
    }
    // Reads to the end so the digest covers trailing padding.
    io::copy(&mut hashed, &mut io::sink()).at(blob)?;
    Ok(hashed.digest())
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

/// A gzip layer written to `out`: its blob digest, diff ID and blob size.
pub(crate) struct WrittenLayer {
    pub(crate) digest: String,
    pub(crate) diff_id: String,
    pub(crate) size: u64,
}

/// A header owned by root with a zero mtime, so built layers are reproducible.
fn root_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes files (host path → path in the image) and empty directories as a gzip layer.
pub(crate) fn write(
    out: &Path,
    files: &[(PathBuf, PathBuf)],
    dirs: &[(&str, u32)],
    inline: &[(&str, &[u8], u32)],
) -> Result<WrittenLayer> {
    let file = File::create(out).at(out)?;
    let blob = HashingWriter::new(io::BufWriter::new(file));
    let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
    let mut tar = tar::Builder::new(HashingWriter::new(gz));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(true);
    let mut seen_dirs = std::collections::BTreeSet::new();
    // Adds `path` and every directory above it once (an empty path adds nothing).
    let mut add_dir = |tar: &mut tar::Builder<_>, path: &Path, mode: u32| -> Result<()> {
        let mut acc = PathBuf::new();
        for c in path.components() {
            acc.push(c);
            if seen_dirs.insert(acc.clone()) {
                let mut h = root_header(tar::EntryType::Directory, mode, 0);
                tar.append_data(&mut h, &acc, io::empty()).at(out)?;
            }
        }
        Ok(())
    };
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    for (path, mode) in dirs {
        add_dir(&mut tar, Path::new(path), *mode)?;
    }
    for (host, inside) in files {
        let inside = clean_entry_path(inside).unwrap_or_default();
        add_dir(&mut tar, &parent(&inside), 0o755)?;
        let mut f = File::open(host).at(host)?;
        tar.append_file(&inside, &mut f).at(host)?;
    }
    for (inside, data, mode) in inline {
        let inside = Path::new(inside);
        add_dir(&mut tar, &parent(inside), 0o755)?;
        let mut h = root_header(tar::EntryType::Regular, *mode, data.len() as u64);
        tar.append_data(&mut h, inside, *data).at(out)?;
    }
    let tar_hash = tar.into_inner().at(out)?;
    let (diff_id, gz) = tar_hash.finish();
    let blob = gz.finish().at(out)?;
    let size = blob.count;
    let (digest, mut w) = blob.finish();
    w.flush().at(out)?;
    Ok(WrittenLayer {
        digest,
        diff_id,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if nix::unistd::geteuid().as_raw() != 0 {
            eprintln!("skipping: whiteouts need root (mknod, trusted xattrs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("layer.tar");
        fs::write(
            &blob,
            tar_of(&[
                ("etc/keep", b"k"),
                ("etc/.wh.gone", b""),
                ("var/.wh..wh..opq", b""),
            ]),
        )
        .unwrap();
        let dest = dir.path().join("out");
        unpack(&blob, &dest).unwrap();
        assert_eq!(fs::read(dest.join("etc/keep")).unwrap(), b"k");
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(dest.join("etc/gone"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(
            xattr::get(dest.join("var"), "trusted.overlay.opaque")
                .unwrap()
                .unwrap(),
            b"y"
        );
    }

    #[test]
    fn rejects_garbage_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("bad");
        fs::write(&blob, vec![0x1f, 0x8b, 1, 2, 3, 4]).unwrap();
        assert!(unpack(&blob, &dir.path().join("o")).is_err());
        assert_eq!(clean_entry_path(Path::new("../../etc/passwd")), None);
        assert_eq!(
            clean_entry_path(Path::new("/a/./b")),
            Some(PathBuf::from("a/b"))
        );
    }

    #[test]
    fn written_layers_unpack_with_matching_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello");
        fs::write(&src, b"hi").unwrap();
        let blob = dir.path().join("blob");
        let w = write(
            &blob,
            &[(src, PathBuf::from("/bin/hello"))],
            &[("tmp", 0o1777)],
            &[("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644)],
        )
        .unwrap();
        let dest = dir.path().join("out");
        assert_eq!(unpack(&blob, &dest).unwrap(), w.diff_id);
        assert_eq!(fs::read(dest.join("bin/hello")).unwrap(), b"hi");
        let mut f = File::open(&blob).unwrap();
        let mut h = HashingReader::new(&mut f);
        io::copy(&mut h, &mut io::sink()).unwrap();
        assert_eq!(h.digest(), w.digest);
    }
}
