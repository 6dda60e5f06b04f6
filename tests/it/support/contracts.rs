//! The published contracts of what cannot run here (`../shared/contracts`: Argo CD's
//! CRDs, Gitea's API): read from there at test time, never copied into the project.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `$CLAIMD_CONTRACTS/<sub>` when that variable is set (and non-empty), else
/// `<CARGO_MANIFEST_DIR>/../shared/contracts/<sub>`. `None` if it does not exist.
pub fn dir(sub: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("CLAIMD_CONTRACTS") {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("shared")
            .join("contracts"),
    };
    let dir = root.join(sub);
    dir.is_dir().then_some(dir)
}

/// [`dir`], or `None` after printing a loud `SKIPPED: <test>: contracts folder not
/// found` line. The line goes straight to the process's stderr: `eprintln!` output is
/// captured by the test harness and shown only for failing tests, which would make the
/// skip silent. In CI (`CI=true`) a missing folder fails the test instead: a green CI
/// run must have checked the contracts.
pub fn dir_or_skip(sub: &str, test: &str) -> Option<PathBuf> {
    let found = dir(sub);
    if found.is_none() {
        assert!(
            !in_ci(),
            "{test}: the contracts folder {sub}/ is absent (set CLAIMD_CONTRACTS or check out \
             shared/ beside the crate); CI=true does not allow skipping this test"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: contracts folder {sub}/ not found \
             (set CLAIMD_CONTRACTS or check out shared/ beside the crate)"
        );
    }
    found
}

/// Whether the tests run in CI (`CI=true`, as CI services set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
