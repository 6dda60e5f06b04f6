//! `claimd demo`: the bundled example claims rendered into a fresh repository.

use super::{render_repo, summary, worktree};
use crate::charts;
use crate::claims;
use crate::render::Settings;
use crate::yaml::Limits;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const BROKEN: &str = "apiVersion: platform.infraforge.io/v1
kind: ApplicationClaim
metadata:
  name: broken
spec:
  environment: qa
  clusterType: nonprod
  applications:
    - name: Payment_Service
      chart: {name: microservice, version: 1.0}
      replicas: three
      ingres:
        host: pay.example.com
";

pub fn run(dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("claimd-demo-{}", std::process::id())),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty; pass --dir with a new folder",
            dir.display()
        );
    }
    let claims_dir = dir.join("claims");
    std::fs::create_dir_all(&claims_dir)
        .with_context(|| format!("creating {}", claims_dir.display()))?;
    for (name, text) in crate::examples::CLAIMS {
        std::fs::write(dir.join(name), text)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "claimd demo: repository {}\n", dir.display())?;
    for (name, _) in crate::examples::CLAIMS {
        writeln!(out, "  {name}")?;
    }

    let outcome = render_repo(&dir, &dir, &charts::Source::Embedded, &Settings::default())?;
    for d in &outcome.diagnostics {
        writeln!(out, "{d}")?;
    }
    worktree::apply(&dir, &outcome.plan)?;
    writeln!(
        out,
        "\n$ claimd render   # charts embedded in claimd, no registry needed"
    )?;
    writeln!(out, "{}\n", summary(&outcome, false))?;
    for change in &outcome.plan.changes {
        let lines = change.new.as_deref().map_or(0, |c| c.lines().count());
        writeln!(out, "  {:<78} {lines:>4} lines", change.path)?;
    }
    for shown in [
        "environments/prod/prod/applications/notification-service/values.yaml",
        "appsets/prod/apps/prod-appset.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(shown)).unwrap_or_default();
        writeln!(out, "\n--- {shown} ---")?;
        let lines: Vec<&str> = text.lines().collect();
        for line in lines.iter().take(40) {
            writeln!(out, "{line}")?;
        }
        if lines.len() > 40 {
            writeln!(out, "… ({} more lines)", lines.len() - 40)?;
        }
    }

    let again = render_repo(&dir, &dir, &charts::Source::Embedded, &Settings::default())?;
    writeln!(
        out,
        "\n$ claimd render   # again: identical inputs give identical files"
    )?;
    writeln!(out, "{}", summary(&again, false))?;

    writeln!(
        out,
        "\n$ claimd validate claims/broken.yaml   # what a pusher sees for a bad claim"
    )?;
    let loaded = claims::load(
        &[("claims/broken.yaml".to_string(), BROKEN.to_string())],
        &Limits::default(),
    );
    for d in &loaded.diagnostics {
        writeln!(out, "{d}")?;
    }
    writeln!(out, "\nThe generated tree is in {}", dir.display())?;
    Ok(ExitCode::SUCCESS)
}
