//! Image archives as Docker makes them: `pier image save` writes a tar that skopeo reads both
//! as a docker-archive and as an OCI archive, to a file or to standard output; `pier image
//! load` (from standard input) brings a removed image back and it runs; `pier image inspect`
//! shows it as `docker image inspect` does. A save naming a missing image leaves no file.
//! Needs root (containers) and skopeo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::runtime::*;
use common::*;
use serde_json::Value;

#[test]
fn save_load_and_inspect_images_as_docker_does() {
    if !privileged("save_load_and_inspect_images_as_docker_does") {
        return;
    }
    if !have("skopeo") {
        skip("image archives: skopeo is not installed (scripts/deps test installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), 0);
    node.build_echo("v1");
    node.ok(&["image", "tag", "pier/echo:v1", "pier/echo:saved"]);

    // inspect: one entry per name asked, every name of the image, its layers and how it runs.
    let shown: Value =
        serde_json::from_str(&node.ok(&["image", "inspect", "pier/echo:v1"])).unwrap();
    let image = &shown[0];
    assert!(
        image["Id"].as_str().unwrap().starts_with("sha256:"),
        "{image}"
    );
    let tags: Vec<&str> = image["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tags.contains(&"pier/echo:v1") && tags.contains(&"pier/echo:saved"),
        "{image}"
    );
    assert_eq!(image["Os"], "linux", "{image}");
    assert_eq!(image["RootFS"]["Type"], "layers", "{image}");
    let layers = image["RootFS"]["Layers"].as_array().unwrap().len();
    assert!(layers > 0, "{image}");
    assert!(
        image["Config"]["Cmd"].is_array() || image["Config"]["Entrypoint"].is_array(),
        "{image}"
    );
    let e = node.fails(&["image", "inspect", "pier/none:v1"]);
    assert!(e.contains("pier/none:v1"), "{e}");

    // save to a file: skopeo reads it as docker save's archive and as an OCI one.
    let archive = tmp.path().join("echo.tar");
    node.ok(&[
        "image",
        "save",
        "-o",
        archive.to_str().unwrap(),
        "pier/echo:v1",
    ]);
    for transport in ["docker-archive", "oci-archive"] {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("{transport}:{}", archive.display())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {transport}: {}",
            out_text(&out)
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["Os"], "linux", "{transport}: {seen}");
        assert_eq!(
            seen["Layers"].as_array().map(Vec::len),
            Some(layers),
            "{transport}: {seen}"
        );
    }

    // Its layers read back whole: skopeo copies the docker-archive (checking each layer
    // against the config's diff IDs) into an OCI layout.
    let copied = tmp.path().join("copied");
    let out = Command::new("skopeo")
        .args(["copy", &format!("docker-archive:{}", archive.display())])
        .arg(format!("oci:{}:v1", copied.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", out_text(&out));

    // A missing image: an error naming it, and no archive, whole or partial.
    let missing = tmp.path().join("missing.tar");
    let e = node.fails(&[
        "image",
        "save",
        "-o",
        missing.to_str().unwrap(),
        "pier/echo:v1",
        "pier/none:v1",
    ]);
    assert!(e.contains("pier/none:v1"), "{e}");
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("missing") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // save to standard output, remove the image, load it back from standard input: it runs.
    let piped = tmp.path().join("piped.tar");
    let status = Command::new(PIER)
        .args(["--socket", node.d().socket().to_str().unwrap()])
        .args(["image", "save", "pier/echo:saved"])
        .stdout(std::fs::File::create(&piped).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    node.ok(&["image", "rm", "pier/echo:v1", "pier/echo:saved"]);
    assert!(!node.ok(&["images"]).contains("pier/echo"));
    let loaded = Command::new(PIER)
        .args(["--socket", node.d().socket().to_str().unwrap()])
        .args(["image", "load"])
        .stdin(std::fs::File::open(&piped).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", out_text(&loaded));
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout).trim(),
        "Loaded image: pier/echo:saved"
    );
    node.ok(&["run", "-d", "--name", "loaded", "pier/echo:saved"]);
    let ip = node.container("loaded")["ip"].as_str().unwrap().to_string();
    let mut body = Value::Null;
    wait_for("the loaded image's server", 10, || {
        body = curl(&format!("http://{ip}:8080/")).unwrap_or(Value::Null);
        !body.is_null()
    });
    assert_eq!(body["name"], "echo", "{body}");
}
