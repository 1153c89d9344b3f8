//! `pier image save`: images as one tar that OCI tools and docker-archive readers both take,
//! as Docker 25+ writes it: an OCI image layout (`oci-layout`, `index.json` naming each image,
//! `blobs/sha256/…` holding the stored manifests, configs and layers unchanged) with a
//! `manifest.json` listing each image's config, tags and layers for `docker load`. The tar is
//! written beside its destination and renamed into place, so a failure leaves nothing.
//! Also `pier image inspect`: an image as `docker image inspect` shows it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::oci::{Descriptor, Index, Manifest};
use super::{ImageRecord, ImageStore};
use crate::error::{Error, IoContext, Result};

/// Media type of an OCI image index.
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a manifest that names none.
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Writes the images `names` to the tar `dest`; returns what was saved.
pub fn save(store: &ImageStore, names: &[String], dest: &Path) -> Result<Vec<ImageRecord>> {
    if names.is_empty() {
        return Err(Error::Invalid("name at least one image to save".into()));
    }
    let images = names
        .iter()
        .map(|n| store.resolve(n))
        .collect::<Result<Vec<_>>>()?;
    let tmp = sibling_temp(dest);
    let written = write_archive(store, &images, &tmp);
    let placed = written.and_then(|()| fs::rename(&tmp, dest).at(dest));
    if placed.is_err() {
        crate::metrics::cleanup(fs::remove_file(&tmp), "remove-temp-file", &tmp);
    }
    placed.map(|()| images)
}

/// `dest` with a hidden temporary name in the same directory (so the rename is atomic).
fn sibling_temp(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map_or_else(|| "image.tar".into(), |n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// One image's entry in `manifest.json` and `index.json`, with the blobs it needs.
struct Saved {
    manifest: Descriptor,
    config: String,
    layers: Vec<String>,
}

fn write_archive(store: &ImageStore, images: &[ImageRecord], path: &Path) -> Result<()> {
    let file = File::create(path).at(path)?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let mut blobs: BTreeSet<String> = BTreeSet::new();
    let mut saved = Vec::new();
    for image in images {
        let entry = describe(store, image)?;
        blobs.insert(entry.manifest.digest.clone());
        blobs.insert(entry.config.clone());
        blobs.extend(entry.layers.iter().cloned());
        saved.push(entry);
    }
    for digest in &blobs {
        let src = store.blob_path(digest)?;
        tar.append_path_with_name(&src, blob_name(digest)?)
            .at(&src)?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(INDEX_MEDIA_TYPE.into()),
        manifests: saved.iter().map(|s| s.manifest.clone()).collect(),
    };
    let docker: Vec<Value> = images
        .iter()
        .zip(&saved)
        .map(|(image, s)| {
            Ok(json!({
                "Config": blob_name(&s.config)?,
                "RepoTags": [image.reference],
                "Layers": s.layers.iter().map(|l| blob_name(l)).collect::<Result<Vec<_>>>()?,
            }))
        })
        .collect::<Result<_>>()?;
    append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append(&mut tar, "index.json", &to_json(&index)?)?;
    append(&mut tar, "manifest.json", &to_json(&docker)?)?;
    let mut out = tar.into_inner().at(path)?;
    out.flush().at(path)?;
    out.get_ref().sync_all().at(path)?;
    Ok(())
}

/// `image`'s manifest descriptor (named as containerd and OCI layouts name it), config and
/// layers.
fn describe(store: &ImageStore, image: &ImageRecord) -> Result<Saved> {
    let bytes = store.read_blob(&image.manifest_digest)?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("manifest of {}: {e}", image.reference)))?;
    let tag = image
        .reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or("latest", |(_, t)| t);
    let descriptor = Descriptor {
        media_type: Some(
            manifest
                .media_type
                .clone()
                .unwrap_or_else(|| MANIFEST_MEDIA_TYPE.into()),
        ),
        digest: image.manifest_digest.clone(),
        size: bytes.len() as u64,
        platform: None,
        annotations: [
            (
                "io.containerd.image.name".to_string(),
                image.reference.clone(),
            ),
            (
                "org.opencontainers.image.ref.name".to_string(),
                tag.to_string(),
            ),
        ]
        .into(),
    };
    Ok(Saved {
        manifest: descriptor,
        config: manifest.config.digest,
        layers: manifest.layers.into_iter().map(|l| l.digest).collect(),
    })
}

/// Where blob `digest` sits in the archive.
fn blob_name(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::Invalid(format!("unsupported digest {digest}")))?;
    Ok(format!("blobs/sha256/{hex}"))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .map_err(|e| Error::Runtime(format!("writing {name} into the archive: {e}")))
}

/// `value` as JSON bytes.
fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Runtime(format!("encoding JSON: {e}")))
}

/// `image` as `docker image inspect` shows it: ID, every name it goes by, digests, when it
/// was made, how it runs, its platform, size and layers.
pub fn inspect(store: &ImageStore, name: &str) -> Result<Value> {
    let image = store.resolve(name)?;
    let config: Value = serde_json::from_slice(&store.read_blob(&image.id)?)
        .map_err(|e| Error::Invalid(format!("config of {}: {e}", image.reference)))?;
    let names: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|i| i.id == image.id)
        .map(|i| i.reference)
        .collect();
    let digests: Vec<String> = names
        .iter()
        .map(|n| {
            let repository = n
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(n.as_str(), |(r, _)| r);
            format!("{repository}@{}", image.manifest_digest)
        })
        .collect();
    Ok(json!({
        "Id": image.id,
        "RepoTags": names,
        "RepoDigests": digests,
        "Created": config.get("created").cloned().unwrap_or(Value::Null),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Config": config.get("config").cloned().unwrap_or(json!({})),
        "Architecture": config.get("architecture").cloned().unwrap_or(json!("")),
        "Os": config.get("os").cloned().unwrap_or(json!("")),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
    }))
}
