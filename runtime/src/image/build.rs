//! `pier image build`: a minimal image from a local binary and the shared libraries it loads.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::oci::{self, Descriptor, ImageConfig, Manifest, RootFs, RunConfig};
use super::{layer, ImageRecord, ImageStore, Reference};
use crate::error::{Error, IoContext, Result};

/// What goes into a built image.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The executable to package.
    pub binary: PathBuf,
    /// Where it goes in the image (default `/usr/local/bin/<name>`).
    pub path_in_image: Option<String>,
    /// Name and tag of the image.
    pub reference: String,
    /// Arguments after the binary, as the image's `Cmd`.
    pub cmd: Vec<String>,
    /// `NAME=value` environment.
    pub env: Vec<String>,
    /// Ports the image says it listens on (`8080/tcp`).
    pub expose: Vec<String>,
}

/// The shared libraries `binary` loads, with the dynamic loader, as `ldd` resolves them.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| Error::Invalid(format!("running ldd on {}: {e}", binary.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: ldd says so and fails.
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(Error::Invalid(format!(
            "{}: ldd failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(Error::Invalid(format!(
                "{}: library missing: {line}",
                binary.display()
            )));
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.insert(PathBuf::from(path));
        }
    }
    Ok(libs.into_iter().collect())
}

/// Builds the image and stores it under `spec.reference`.
pub fn build(store: &ImageStore, spec: &BuildSpec) -> Result<ImageRecord> {
    let reference = Reference::parse(&spec.reference)?;
    let binary = fs::canonicalize(&spec.binary).at(&spec.binary)?;
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Invalid(format!("{}: no file name", binary.display())))?;
    let inside = spec
        .path_in_image
        .clone()
        .unwrap_or_else(|| format!("/usr/local/bin/{name}"));
    if !inside.starts_with('/') {
        return Err(Error::Invalid(format!(
            "path in image {inside:?} must be absolute"
        )));
    }
    let mut files = vec![(binary.clone(), PathBuf::from(&inside))];
    for lib in shared_libraries(&binary)? {
        files.push((lib.clone(), lib));
    }
    let passwd = b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n";
    let group = b"root:x:0:\nnogroup:x:65534:\n";
    let nsswitch = b"hosts: files dns\n";
    let tmp = store.temp_path("build");
    let written = layer::write(
        &tmp,
        &files,
        &[
            ("tmp", 0o1777),
            ("etc", 0o755),
            ("root", 0o700),
            ("proc", 0o755),
            ("sys", 0o755),
            ("dev", 0o755),
        ],
        &[
            ("etc/passwd", passwd, 0o644),
            ("etc/group", group, 0o644),
            ("etc/nsswitch.conf", nsswitch, 0o644),
        ],
    );
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            crate::metrics::cleanup(fs::remove_file(&tmp), "remove-temp-file", &tmp);
            return Err(e);
        }
    };
    store.commit_blob(&tmp, &written.digest, "built layer")?;
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    env.extend(spec.env.iter().cloned());
    let config = ImageConfig {
        architecture: oci::host_arch().to_string(),
        os: "linux".into(),
        created: Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
        config: RunConfig {
            entrypoint: Some(vec![inside]),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: Some(env),
            working_dir: Some("/".into()),
            user: None,
            exposed_ports: (!spec.expose.is_empty()).then(|| {
                spec.expose
                    .iter()
                    .map(|p| {
                        let p = if p.contains('/') {
                            p.clone()
                        } else {
                            format!("{p}/tcp")
                        };
                        (p, serde_json::json!({}))
                    })
                    .collect()
            }),
        },
        rootfs: RootFs {
            fs_type: "layers".into(),
            diff_ids: vec![written.diff_id],
        },
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::Runtime(e.to_string()))?;
    let config_digest = store.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: Some(oci::OCI_CONFIG.into()),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        },
        layers: vec![Descriptor {
            media_type: Some(oci::OCI_LAYER_GZIP.into()),
            digest: written.digest,
            size: written.size,
            platform: None,
            annotations: Default::default(),
        }],
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| Error::Runtime(e.to_string()))?;
    store.register(&reference, &manifest_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_and_the_loader() {
        let libs = shared_libraries(Path::new("/bin/true")).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
    }

    #[test]
    fn builds_a_runnable_layer_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let img = build(
            &store,
            &BuildSpec {
                binary: "/bin/true".into(),
                path_in_image: None,
                reference: "test/true:v1".into(),
                cmd: vec![],
                env: vec![],
                expose: vec!["8080".into()],
            },
        )
        .unwrap();
        assert_eq!(store.resolve("test/true:v1").unwrap(), img);
        assert_eq!(
            img.run.entrypoint.as_deref(),
            Some(&["/usr/local/bin/true".to_string()][..])
        );
        if nix::unistd::geteuid().as_raw() == 0 {
            let dirs = store.layer_dirs(&img).unwrap();
            assert!(dirs[0].join("usr/local/bin/true").exists());
        }
        let tagged = store.tag("test/true:v1", "test/true:v2").unwrap();
        assert_eq!(
            (tagged.id.as_str(), tagged.reference.as_str()),
            (img.id.as_str(), "test/true:v2")
        );
        store.remove("test/true:v2", &|_| false).unwrap();
        assert!(store.has_blob(&img.layers[0]), "still used by v1");
        store.remove("test/true:v1", &|_| false).unwrap();
        assert!(store.resolve("test/true:v1").is_err());
        assert!(!store.has_blob(&img.layers[0]));
    }
}
