// Test support: real Helm (v4.3.0, the helm-sdkpy wheel) installed once by
// tests/helm/setup.sh into the test cache, for the Python helpers in tests/helm/.

use super::setup::run_setup_script;

use std::process::Command;
use std::sync::OnceLock;

/// PYTHONPATH of the Helm library, installed once by tests/helm/setup.sh (cached).
pub fn helm_pythonpath() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| run_setup_script("tests/helm/setup.sh", "real Helm (helm-sdkpy)"))
}

/// Runs `python3 tests/helm/<script> <args>` with Helm on the path; returns its JSON.
pub fn run_json(script: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/tests/helm/{script}"))
        .args(args)
        .env("PYTHONPATH", helm_pythonpath())
        .output()
        .expect("run python3");
    if !out.status.success() {
        return Err(format!(
            "{script} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{script}: not JSON ({e}): {stdout}"))
}
