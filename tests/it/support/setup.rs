// Test support: runs one of the project's idempotent setup scripts (tests/*/setup.sh)
// and returns the last line it prints (the path of what it provisioned).

/// Runs `bash <CARGO_MANIFEST_DIR>/<script>`; panics with its stderr and `needed` (what
/// the test requires) when it fails.
pub fn run_setup_script(script: &str, needed: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}); {needed} is required for this test:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{} printed nothing", script.display()))
        .trim()
        .to_string()
}

/// Copies a folder tree (a chart, say) into `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for e in std::fs::read_dir(from).expect("read folder") {
        let p = e.expect("entry").path();
        let dest = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, dest).expect("copy file");
        }
    }
}
