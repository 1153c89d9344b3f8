//! Whether a test can run here, and skipping it with the reason when it cannot.

use std::process::Command;

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `command` can be run.
pub fn have(command: &str) -> bool {
    Command::new(command).arg("--version").output().is_ok()
}

/// Whether every one of `tools` can be run; skips (naming the first missing one) otherwise.
pub fn have_all(tools: &[&str]) -> bool {
    match tools.iter().find(|t| !have(t)) {
        Some(missing) => {
            skip(&format!(
                "{missing} is not installed (scripts/deps test installs it)"
            ));
            false
        }
        None => true,
    }
}

/// Skips a test that cannot run here, printing why, unless `PIER_REQUIRE_PRIVILEGED` is set
/// (as in CI), which makes it a failure.
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("PIER_REQUIRE_PRIVILEGED").is_none(),
        "PIER_REQUIRE_PRIVILEGED is set but the test cannot run: {why}"
    );
    println!("skipped: {why}");
}
