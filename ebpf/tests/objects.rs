//! The committed BPF objects are what their sources compile to (the bpf2go convention: the
//! build needs no clang, and this test catches a source changed without its object).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

include!("../bpf/clang.rs");

#[test]
fn committed_objects_match_their_sources() {
    if Command::new("clang").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("PIER_REQUIRE_PRIVILEGED").is_none(),
            "clang is required (PIER_REQUIRE_PRIVILEGED is set); .ci/run installs it"
        );
        println!("skipped: clang is not installed");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let tmp = tempfile::tempdir().unwrap();
    for (src, obj) in SOURCES {
        let out = tmp.path().join(obj);
        let status = Command::new("clang")
            .current_dir(&dir)
            .args(clang_args(&dir, src, &out))
            .status()
            .unwrap();
        assert!(status.success(), "clang {src}");
        let fresh = std::fs::read(&out).unwrap();
        let committed = std::fs::read(dir.join(obj)).unwrap();
        assert!(
            fresh == committed,
            "ebpf/bpf/{obj} is stale: rebuild it (cargo build -p pier-ebpf with clang installed) and commit it"
        );
    }
}
