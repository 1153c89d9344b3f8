//! Images: a content-addressed blob store, unpacked layers shared by digest, and named images.

pub mod build;
pub mod docker_config;
pub mod import;
mod layer;
pub mod oci;
pub mod pull;
pub mod push;
pub mod reference;
pub mod save;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use oci::{ImageConfig, Manifest, RunConfig};
pub use reference::Reference;

/// One named image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// `name:tag` (or `name@digest`).
    pub reference: String,
    /// Image ID: the digest of its config blob.
    pub id: String,
    /// Digest of its manifest.
    pub manifest_digest: String,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed digests of the layers, bottom first.
    pub diff_ids: Vec<String>,
    /// How containers of the image run by default.
    pub run: RunConfig,
    /// Sum of the layer blob sizes.
    pub size: u64,
    /// When the image was created.
    #[serde(default)]
    pub created: Option<String>,
}

/// The image store under `<root>/images`.
pub struct ImageStore {
    root: PathBuf,
    index_lock: Mutex<()>,
    unpack_lock: Mutex<()>,
}

/// Writes `data` to `path` through a temporary file, so readers see the old or the new file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)
}

fn digest_hex(digest: &str) -> Result<&str> {
    if reference::valid_digest(digest) {
        Ok(&digest[7..])
    } else {
        Err(Error::Invalid(format!("invalid digest {digest:?}")))
    }
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(root.join(d)).at(root.join(d))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            index_lock: Mutex::new(()),
            unpack_lock: Mutex::new(()),
        })
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// A fresh path for a download or a build, inside the store's filesystem.
    pub(crate) fn temp_path(&self, what: &str) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Where the blob with `digest` is kept.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.exists())
    }

    /// Moves a downloaded file into the blob store after checking it hashes to `expected`.
    pub(crate) fn commit_blob(&self, tmp: &Path, expected: &str, what: &str) -> Result<PathBuf> {
        let dest = self.blob_path(expected)?;
        let mut f = File::open(tmp).at(tmp)?;
        let mut h = layer::HashingReader::new(&mut f);
        io::copy(&mut h, &mut io::sink()).at(tmp)?;
        let actual = h.digest();
        if actual != expected {
            crate::metrics::cleanup(fs::remove_file(tmp), "remove-temp-file", tmp);
            return Err(Error::Digest {
                what: what.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        fs::rename(tmp, &dest).at(&dest)?;
        Ok(dest)
    }

    /// Stores bytes as a blob; returns their digest.
    pub(crate) fn put_bytes(&self, data: &[u8]) -> Result<String> {
        let digest = format!("sha256:{}", sha256_hex(data));
        let dest = self.blob_path(&digest)?;
        if !dest.exists() {
            write_atomic(&dest, data)?;
        }
        Ok(digest)
    }

    /// Reads a blob whole (manifests, configs).
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        fs::read(&p).at(p)
    }

    /// Every named image.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).at(path),
        }
    }

    /// Finds an image by reference (`pier/echo:v1`, `pier/echo` for `:latest`) or ID prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        let images = self.list()?;
        let parsed = Reference::parse(name);
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let hex_like = hex.bytes().all(|b| b.is_ascii_hexdigit());
        if let (Err(e), false) = (&parsed, hex_like) {
            return Err(Error::Invalid(e.to_string()));
        }
        let wanted = parsed.ok().map(|r| r.to_string());
        if let Some(found) = images
            .iter()
            .find(|i| Some(&i.reference) == wanted.as_ref() || i.reference == name)
        {
            return Ok(found.clone());
        }
        if hex_like && hex.len() >= 6 {
            if let Some(found) = images.iter().find(|i| i.id[7..].starts_with(hex)) {
                return Ok(found.clone());
            }
        }
        Err(Error::NotFound(format!(
            "image {name:?} (pull it with `pier pull {name}` or build it with `pier image build`)"
        )))
    }

    /// Records a manifest whose config and layer blobs are already stored, under `reference`.
    pub(crate) fn register(
        &self,
        reference: &Reference,
        manifest_bytes: &[u8],
    ) -> Result<ImageRecord> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| Error::Invalid(format!("manifest of {reference}: {e}")))?;
        let manifest_digest = self.put_bytes(manifest_bytes)?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::Invalid(format!("config of {reference}: {e}")))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::Invalid(format!(
                "{reference}: manifest has {} layers but config lists {} diff IDs",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        for l in &manifest.layers {
            if !self.has_blob(&l.digest) {
                return Err(Error::NotFound(format!(
                    "layer {} of {reference}",
                    l.digest
                )));
            }
        }
        let record = ImageRecord {
            reference: reference.to_string(),
            id: manifest.config.digest.clone(),
            manifest_digest,
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            diff_ids: config.rootfs.diff_ids.clone(),
            run: config.config.clone(),
            size: manifest.layers.iter().map(|l| l.size).sum(),
            created: config.created.clone(),
        };
        let _guard = self
            .index_lock
            .lock()
            .map_err(|_| Error::Runtime("image index lock poisoned".into()))?;
        let mut images = self.list()?;
        images.retain(|i| i.reference != record.reference);
        images.push(record.clone());
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        let data = serde_json::to_vec_pretty(&images).map_err(|e| Error::Runtime(e.to_string()))?;
        write_atomic(&self.index_path(), &data)?;
        Ok(record)
    }

    /// Gives an existing image another name (`docker tag`).
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageRecord> {
        let image = self.resolve(source)?;
        let manifest = self.read_blob(&image.manifest_digest)?;
        self.register(&Reference::parse(target)?, &manifest)
    }

    /// Removes a name; blobs and layers no other image uses are deleted. `in_use` says whether
    /// a container still runs on an image ID.
    pub fn remove(&self, name: &str, in_use: &dyn Fn(&str) -> bool) -> Result<ImageRecord> {
        let _guard = self
            .index_lock
            .lock()
            .map_err(|_| Error::Runtime("image index lock poisoned".into()))?;
        let target = self.resolve(name)?;
        if in_use(&target.id) {
            return Err(Error::Invalid(format!(
                "image {} is used by a container; remove the container first",
                target.reference
            )));
        }
        let mut images = self.list()?;
        images.retain(|i| i.reference != target.reference);
        let data = serde_json::to_vec_pretty(&images).map_err(|e| Error::Runtime(e.to_string()))?;
        write_atomic(&self.index_path(), &data)?;
        let still: std::collections::HashSet<&str> = images
            .iter()
            .flat_map(|i| {
                i.layers
                    .iter()
                    .chain([&i.id, &i.manifest_digest])
                    .map(String::as_str)
            })
            .collect();
        for d in target
            .layers
            .iter()
            .chain([&target.id, &target.manifest_digest])
        {
            if !still.contains(d.as_str()) {
                if let Ok(p) = self.blob_path(d) {
                    crate::metrics::cleanup(fs::remove_file(&p), "remove-blob", &p);
                }
                if let Ok(hex) = digest_hex(d) {
                    let layer = self.root.join("layers").join(hex);
                    crate::metrics::cleanup(fs::remove_dir_all(&layer), "remove-layer", &layer);
                }
            }
        }
        Ok(target)
    }

    /// The unpacked layer directories of an image, bottom first; unpacks what is missing and
    /// checks each layer against its diff ID.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::with_capacity(image.layers.len());
        for (digest, diff_id) in image.layers.iter().zip(&image.diff_ids) {
            let dir = self.root.join("layers").join(digest_hex(digest)?);
            if !dir.join(".pier-complete").exists() {
                let _guard = self
                    .unpack_lock
                    .lock()
                    .map_err(|_| Error::Runtime("unpack lock poisoned".into()))?;
                if !dir.join(".pier-complete").exists() {
                    self.unpack_layer(digest, diff_id, &dir)?;
                }
            }
            dirs.push(dir.join("fs"));
        }
        Ok(dirs)
    }

    fn unpack_layer(&self, digest: &str, diff_id: &str, dir: &Path) -> Result<()> {
        let tmp = self.temp_path("layer");
        let blob = self.blob_path(digest)?;
        let result = layer::unpack(&blob, &tmp.join("fs"));
        let actual = match result {
            Ok(d) => d,
            Err(e) => {
                crate::metrics::cleanup(fs::remove_dir_all(&tmp), "remove-temp-dir", &tmp);
                return Err(e);
            }
        };
        if actual != diff_id {
            crate::metrics::cleanup(fs::remove_dir_all(&tmp), "remove-temp-dir", &tmp);
            return Err(Error::Digest {
                what: format!("uncompressed layer {digest}"),
                expected: diff_id.to_string(),
                actual,
            });
        }
        File::create(tmp.join(".pier-complete")).at(tmp.join(".pier-complete"))?;
        // A half-unpacked layer of an earlier crash.
        crate::metrics::cleanup(fs::remove_dir_all(dir), "remove-layer", dir);
        fs::rename(&tmp, dir).at(dir)
    }
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
