//! Reading manifests from files, directories and stdin, validated before anything is sent.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pier_model::manifest::{self, ManifestObject};

/// One manifest file's parsed objects.
pub(crate) struct ManifestFile {
    /// Display name (`-` for stdin).
    pub source: String,
    /// Its objects.
    pub objects: Vec<ManifestObject>,
}

fn expand(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading directory {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and validates every file; fails with every error found, naming file, document and field.
pub(crate) fn read(paths: &[PathBuf], namespace: Option<&str>) -> Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = if path.as_os_str() == "-" {
            vec![path.clone()]
        } else {
            expand(path)?
        };
        for file in files {
            let (source, text) = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading stdin")?;
                ("-".to_string(), text)
            } else {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                (file.display().to_string(), text)
            };
            match manifest::parse_in(&source, &text, namespace) {
                Ok(objects) => {
                    out.push(ManifestFile { source, objects });
                }
                Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(out)
}
