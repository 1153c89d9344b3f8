//! `pier image import`: an OCI image layout (directory or tar) or a `docker save` tar.

use std::fs::{self, File};
use std::path::Path;

use serde::Deserialize;

use super::oci::{self, Descriptor, Index, Manifest};
use super::{ImageRecord, ImageStore, Reference};
use crate::error::{Error, IoContext, Result};

/// `manifest.json` entry of a `docker save` archive.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports every image in `path`; `tag` names the image when the archive does not, or renames
/// a single image.
pub fn import(store: &ImageStore, path: &Path, tag: Option<&str>) -> Result<Vec<ImageRecord>> {
    let meta = fs::metadata(path).at(path)?;
    if meta.is_dir() {
        return import_dir(store, path, tag);
    }
    let tmp = store.temp_path("import");
    fs::create_dir_all(&tmp).at(&tmp)?;
    let result = (|| {
        let file = File::open(path).at(path)?;
        let mut archive = tar::Archive::new(file);
        archive.unpack(&tmp).map_err(|e| {
            Error::Invalid(format!(
                "{}: not a readable tar archive: {e}",
                path.display()
            ))
        })?;
        import_dir(store, &tmp, tag)
    })();
    crate::metrics::cleanup(fs::remove_dir_all(&tmp), "remove-temp-dir", &tmp);
    result
}

fn import_dir(store: &ImageStore, dir: &Path, tag: Option<&str>) -> Result<Vec<ImageRecord>> {
    if dir.join("index.json").exists() {
        import_layout(store, dir, tag)
    } else if dir.join("manifest.json").exists() {
        import_docker_save(store, dir, tag)
    } else {
        Err(Error::Invalid(format!(
            "{}: neither an OCI layout (index.json) nor a docker save archive (manifest.json)",
            dir.display()
        )))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let data = fs::read(path).at(path)?;
    serde_json::from_slice(&data).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Copies a layout blob into the store, checking its digest.
fn copy_blob(store: &ImageStore, dir: &Path, digest: &str) -> Result<()> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::Invalid(format!("unsupported digest {digest}")))?;
    let src = dir.join("blobs/sha256").join(hex);
    let tmp = store.temp_path("blob");
    fs::copy(&src, &tmp).at(&src)?;
    store.commit_blob(&tmp, digest, &format!("blob {digest}"))?;
    Ok(())
}

fn import_manifest(
    store: &ImageStore,
    dir: &Path,
    desc: &Descriptor,
    name: &str,
) -> Result<ImageRecord> {
    let reference = Reference::parse(name)?;
    copy_blob(store, dir, &desc.digest)?;
    let bytes = store.read_blob(&desc.digest)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("manifest {}: {e}", desc.digest)))?;
    if value.get("manifests").is_some() {
        let index: Index = serde_json::from_value(value)
            .map_err(|e| Error::Invalid(format!("index {}: {e}", desc.digest)))?;
        let chosen = oci::pick_platform(&index)
            .or_else(|| (index.manifests.len() == 1).then(|| &index.manifests[0]))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{name}: no manifest for linux/{}",
                    oci::host_arch()
                ))
            })?
            .clone();
        return import_manifest(store, dir, &chosen, name);
    }
    let manifest: Manifest = serde_json::from_value(value)
        .map_err(|e| Error::Invalid(format!("manifest {}: {e}", desc.digest)))?;
    copy_blob(store, dir, &manifest.config.digest)?;
    for l in &manifest.layers {
        copy_blob(store, dir, &l.digest)?;
    }
    store.register(&reference, &bytes)
}

fn import_layout(store: &ImageStore, dir: &Path, tag: Option<&str>) -> Result<Vec<ImageRecord>> {
    let index: Index = read_json(&dir.join("index.json"))?;
    if index.manifests.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: index.json lists no image",
            dir.display()
        )));
    }
    let single = index.manifests.len() == 1;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let annotated = desc
            .annotations
            .get("io.containerd.image.name")
            .cloned()
            .or_else(|| {
                desc.annotations
                    .get("org.opencontainers.image.ref.name")
                    .map(|r| {
                        if r.contains(':') || r.contains('/') {
                            r.clone()
                        } else {
                            format!("imported:{r}")
                        }
                    })
            });
        let name = match (tag, annotated) {
            (Some(t), _) if single => t.to_string(),
            (_, Some(n)) => n,
            (Some(t), None) => t.to_string(),
            (None, None) => {
                return Err(Error::Invalid(format!(
                    "{}: image {} has no name; give one with --tag",
                    dir.display(),
                    desc.digest
                )))
            }
        };
        out.push(import_manifest(store, dir, desc, &name)?);
    }
    Ok(out)
}

fn import_docker_save(
    store: &ImageStore,
    dir: &Path,
    tag: Option<&str>,
) -> Result<Vec<ImageRecord>> {
    let saved: Vec<SavedImage> = read_json(&dir.join("manifest.json"))?;
    let mut out = Vec::new();
    for image in &saved {
        let config_path = dir.join(&image.config);
        let config_bytes = fs::read(&config_path).at(&config_path)?;
        let config_digest = store.put_bytes(&config_bytes)?;
        let mut layers = Vec::new();
        for l in &image.layers {
            let src = dir.join(l);
            let mut f = File::open(&src).at(&src)?;
            let mut h = super::layer::HashingReader::new(&mut f);
            std::io::copy(&mut h, &mut std::io::sink()).at(&src)?;
            let size = h.count;
            let digest = h.digest();
            if !store.has_blob(&digest) {
                let tmp = store.temp_path("blob");
                fs::copy(&src, &tmp).at(&src)?;
                store.commit_blob(&tmp, &digest, l)?;
            }
            layers.push(Descriptor {
                media_type: Some("application/vnd.docker.image.rootfs.diff.tar".into()),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::DOCKER_MANIFEST.into()),
            config: Descriptor {
                media_type: Some("application/vnd.docker.container.image.v1+json".into()),
                digest: config_digest,
                size: config_bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Runtime(e.to_string()))?;
        let names: Vec<String> = match (tag, &image.repo_tags) {
            (Some(t), _) => vec![t.to_string()],
            (None, Some(tags)) if !tags.is_empty() => tags.clone(),
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: image {} has no tag; give one with --tag",
                    dir.display(),
                    image.config
                )))
            }
        };
        for n in names {
            out.push(store.register(&Reference::parse(&n)?, &bytes)?);
        }
    }
    Ok(out)
}
