//! The committed BPF objects are what their sources compile to (the bpf2go convention: the
//! build needs no clang, and this test catches a source changed without its object).
//!
//! Sections are compared one by one, all but the DWARF `.debug_*` ones: those record line
//! numbers of the kernel's uapi headers, which move with every linux-libc-dev update, while
//! the programs, maps, BTF and our own line info (`.BTF.ext`) must match exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use object::{Object, ObjectSection};

/// Every section of an ELF object but the DWARF ones, by name.
fn loadable_sections(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let file = object::File::parse(bytes).unwrap();
    file.sections()
        .filter_map(|s| {
            let name = s.name().ok()?.to_string();
            (!name.starts_with(".debug_") && !name.starts_with(".rel.debug_"))
                .then(|| (name, s.data().unwrap_or_default().to_vec()))
        })
        .collect()
}

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
        let fresh = loadable_sections(&std::fs::read(&out).unwrap());
        let committed = loadable_sections(&std::fs::read(dir.join(obj)).unwrap());
        assert!(!committed.is_empty(), "{obj} has no sections");
        let differing: Vec<&String> = fresh
            .keys()
            .chain(committed.keys())
            .filter(|name| fresh.get(*name) != committed.get(*name))
            .collect();
        assert!(
            differing.is_empty(),
            "ebpf/bpf/{obj} is stale (sections {differing:?} differ): rebuild it (cargo build -p pier-ebpf with clang installed) and commit it"
        );
    }
}
