//! `claimd namespaces`: the Kubernetes objects the claims of a repository ask for
//! (namespaces, quotas, limit ranges, network policies, preview build Jobs), as the
//! YAML stream claimd applies with server-side apply. Reads nothing from a cluster.

use crate::claims;
use crate::kube::{self, Settings};
use crate::pipeline::{self, snapshot};
use crate::yaml;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(repo: &Path, config: Option<&Path>, preview_domain: &str) -> Result<ExitCode> {
    let settings = match config {
        Some(path) => {
            crate::daemon::config::Config::load(path)
                .with_context(|| format!("reading {}", path.display()))?
                .kubernetes
        }
        None => Settings::default(),
    };
    let (snap, objects) = snapshot::of_work_tree(&[repo.join("claims")], Some(repo), None)?;
    let read = pipeline::core::load(&snap, &objects, &mut Default::default())?;
    super::print_diagnostics(&read.diagnostics);
    let loaded = &read.loaded;
    super::print_diagnostics(&loaded.diagnostics);
    let name = loaded
        .claims
        .iter()
        .find_map(|c| match &c.spec {
            claims::Spec::Bootstrap(b) => Some(format!("{}@{}", b.gitops_repo_url(), b.branch)),
            _ => None,
        })
        .unwrap_or_else(|| format!("{}@main", repo.display()));
    let d = kube::desired(
        &loaded.claims,
        &loaded.failed_files,
        &name,
        preview_domain,
        &settings,
    );
    let mut out = std::io::stdout().lock();
    let objects = d
        .namespaces
        .iter()
        .flat_map(|m| m.objects.iter())
        .chain(d.previews.iter().filter_map(|p| p.job.as_ref()));
    for obj in objects {
        write!(out, "---\n{}", yaml::emit(obj))?;
    }
    for (claim, problem) in &d.problems {
        eprintln!("{claim}: {problem}");
    }
    Ok(
        if d.problems.is_empty() && !loaded.diagnostics.iter().any(|d| d.is_error()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
