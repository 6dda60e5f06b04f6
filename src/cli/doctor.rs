//! `claimd doctor`: runs the checks of [`crate::doctor`] and prints them.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// How `claimd doctor` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One line per check: `✔ git: git 2.39.5`, `✗ hooks: … — run: …`.
    Text,
    /// `{"config", "ok", "checks": [{"check", "level", "message", "fix"}]}`.
    Json,
}

/// Exit 0 when no check failed (warnings do not fail), 1 otherwise.
pub fn run(config: &Path, output: Output) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(crate::doctor::run(config));
    let mut out = std::io::stdout().lock();
    match output {
        Output::Text => out.write_all(crate::doctor::text(&report).as_bytes())?,
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    out.flush()?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
