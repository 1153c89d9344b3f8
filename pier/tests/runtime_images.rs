//! Images: pulled from a real registry (docker-registry, skopeo) with digests checked,
//! imported from OCI layouts (umoci). Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::runtime::*;
use common::*;
use serde_json::Value;

#[test]
fn pull_from_a_registry_verifies_digests_and_import_reads_layouts() {
    if !privileged("pull_from_a_registry_verifies_digests_and_import_reads_layouts") {
        return;
    }
    for tool in ["docker-registry", "skopeo", "umoci"] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            skip(&format!("pull test: {tool} is not installed"));
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = start_registry(tmp.path(), None);
    let layout = umoci_layout(tmp.path(), &[]);
    let image = format!("{}/test/echo:v1", registry.addr);
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{image}")),
    );
    let node = Node::start(&tmp.path().join("node"), 4);

    // A corrupted layer in the registry: the pull fails on its digest and registers nothing.
    let blobs = registry.storage.join("docker/registry/v2/blobs/sha256");
    let mut biggest: Option<(u64, PathBuf)> = None;
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            let len = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, data));
            }
        }
    }
    let layer = biggest.unwrap().1;
    let good = std::fs::read(&layer).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&layer, &bad).unwrap();
    let e = node.fails(&["pull", &image]);
    let l = e.to_lowercase();
    assert!(l.contains("digest") && l.contains("expected"), "{e}");
    assert!(!node.ok(&["images"]).contains("test/echo"));
    std::fs::write(&layer, &good).unwrap();

    // The real thing: pulled, run, reached.
    let out = node.ok(&["pull", &image]);
    assert!(out.contains("test/echo:v1"), "{out}");
    node.ok(&["run", "-d", "--name", "pulled", &image]);
    let ip = node.container("pulled")["ip"].as_str().unwrap().to_string();
    let mut body = Value::Null;
    wait_for("the pulled image's server", 10, || {
        body = curl(&format!("http://{ip}:8080/")).unwrap_or(Value::Null);
        !body.is_null()
    });
    assert_eq!(body["name"], "echo");
    // A second pull finds every blob cached.
    let o = node.pier(&["pull", &image]);
    assert!(out_text(&o).contains("already present"), "{}", out_text(&o));

    // Registry down, and an OCI layout imported from disk.
    let e = node.fails(&["pull", "127.0.0.1:1/test/echo:v1"]);
    assert!(e.contains("registry"), "{e}");
    node.ok(&[
        "image",
        "import",
        layout.to_str().unwrap(),
        "--tag",
        "imported/echo:v1",
    ]);
    assert!(node.ok(&["images"]).contains("imported/echo"));
    let e = node.fails(&["image", "rm", &image]);
    assert!(e.contains("used by a container"), "{e}");
}
