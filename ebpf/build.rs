//! Rebuilds the committed BPF objects when clang is installed and a source is newer than its
//! object; without clang the committed objects are used as they are.

use std::path::Path;
use std::process::Command;

include!("bpf/clang.rs");

fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".c") || n.ends_with(".h")
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

fn main() {
    println!("cargo:rerun-if-changed=bpf");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let have_clang = Command::new("clang").arg("--version").output().is_ok();
    if !have_clang {
        return;
    }
    let Some(newest) = newest_source(&dir) else {
        return;
    };
    for (src, obj) in SOURCES {
        let out = dir.join(obj);
        let stale = std::fs::metadata(&out)
            .and_then(|m| m.modified())
            .map_or(true, |t| t < newest);
        if !stale {
            continue;
        }
        let status = Command::new("clang")
            .current_dir(&dir)
            .args(clang_args(&dir, src, &out))
            .status();
        match status {
            Ok(s) if s.success() => println!("cargo:warning=rebuilt {obj} from {src}"),
            other => panic!("clang failed on {src}: {other:?}"),
        }
    }
}
