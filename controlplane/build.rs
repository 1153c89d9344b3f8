//! Compiles the vendored Kubernetes protobuf schemas (`proto/`) into one descriptor set, from
//! which the API decodes the protobuf bodies kubectl's typed clients send.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new("proto");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("cargo sets no OUT_DIR")?);
    let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!(
            "--descriptor_set_out={}",
            out.join("k8s.fds").display()
        ))
        .arg(format!("--proto_path={}", root.display()))
        .args(&files)
        .status()
        .map_err(|e| format!("running {protoc:?} (scripts/deps build installs it): {e}"))?;
    if !status.success() {
        return Err(format!("{protoc:?} failed on the Kubernetes schemas in proto/").into());
    }
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {dir:?}: {e}"))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
