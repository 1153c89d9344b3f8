// How the kernel objects are compiled; included by build.rs and by the test that checks the
// committed objects match their sources, so both use the same flags.

/// clang arguments compiling `src` to `out`, run with `dir` (the bpf directory) as the current
/// directory. The debug directory and prefix map keep the object byte-identical whatever
/// directory the repository is checked out in.
fn clang_args(dir: &std::path::Path, src: &str, out: &std::path::Path) -> Vec<String> {
    vec![
        "-target".into(),
        "bpf".into(),
        "-O2".into(),
        "-g".into(),
        "-Wall".into(),
        "-Werror".into(),
        "-I/usr/include/x86_64-linux-gnu".into(),
        format!("-fdebug-prefix-map={}=.", dir.display()),
        "-fdebug-compilation-dir=.".into(),
        "-c".into(),
        src.into(),
        "-o".into(),
        out.display().to_string(),
    ]
}

/// The programs and the objects committed next to them.
const SOURCES: &[(&str, &str)] = &[("sock.bpf.c", "sock.bpf.o")];
