//! ConfigMaps through kubectl: `kubectl create configmap` from literals and files (a binary
//! one lands in `binaryData`), kubectl's columns, `describe`, and `immutable`: once set, the
//! contents and the flag itself are refused changes with the field named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::kubectl::*;

#[test]
fn kubectl_creates_configmaps_and_immutable_ones_stay_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let Some((daemon, kubectl)) = start_with(dir.path(), &["--no-runtime"]) else {
        return;
    };
    let text = dir.path().join("greeting.txt");
    std::fs::write(&text, "hello\n").unwrap();
    let binary = dir.path().join("logo.png");
    std::fs::write(&binary, b"\x89PNG\x00\x01\xff").unwrap();
    kubectl.ok(&[
        "create",
        "configmap",
        "app",
        "--from-literal=LOG_LEVEL=debug",
        &format!("--from-file={}", text.display()),
        &format!("--from-file={}", binary.display()),
    ]);
    let table = kubectl.ok(&["get", "configmaps"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert!(
        table.lines().nth(1).unwrap().starts_with("app    3"),
        "{table}"
    );
    let get = |path: &str| kubectl.ok(&["get", "cm", "app", "-o", &format!("jsonpath={path}")]);
    assert_eq!(get("{.data.LOG_LEVEL}"), "debug");
    assert_eq!(get("{.data.greeting\\.txt}"), "hello\n");
    assert_eq!(get("{.binaryData.logo\\.png}"), "iVBORwAB/w==");
    let described = kubectl.ok(&["describe", "cm", "app"]);
    assert!(described.contains("logo.png: 7 bytes"), "{described}");

    kubectl.ok(&[
        "patch",
        "cm",
        "app",
        "--type=merge",
        "-p",
        r#"{"immutable":true}"#,
    ]);
    for (patch, field) in [
        (r#"{"data":{"LOG_LEVEL":"info"}}"#, "data"),
        (r#"{"binaryData":null}"#, "binaryData"),
        (r#"{"immutable":false}"#, "immutable"),
    ] {
        let refused = kubectl.fails(&["patch", "cm", "app", "--type=merge", "-p", patch]);
        assert!(
            refused.contains(&format!("{field}: field is immutable")),
            "{patch}: {refused}"
        );
    }
    assert_eq!(get("{.data.LOG_LEVEL}"), "debug");
    // Labels can still change; pier's own CLI reads it too.
    kubectl.ok(&["label", "cm", "app", "team=web"]);
    let listed = String::from_utf8(daemon.pier(&["get", "cm"]).stdout).unwrap();
    assert!(listed.contains("app") && listed.contains('3'), "{listed}");
    let bad = kubectl.fails(&["create", "configmap", "bad", "--from-literal=a/b=1"]);
    assert!(
        bad.contains("data[a/b]") || bad.contains("a valid config key"),
        "{bad}"
    );
}
