//! `claimd render` and `claimd plan`: a work tree (or, for `plan`, a bare repository's
//! branch) through the pipeline; render writes the plan into the work tree.

use super::args::RenderArgs;
use super::{hooks, print_diagnostics, worktree};
use crate::charts;
use crate::claims::Diagnostic;
use crate::pipeline::{self, snapshot, Previews, Request};
use crate::render::{ChangeKind, Plan, Settings};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// What one render run produced.
pub struct Outcome {
    pub plan: Plan,
    pub diagnostics: Vec<Diagnostic>,
    pub files: usize,
    /// New files written as they were rendered (not in `plan`).
    pub streamed: usize,
}

/// Reads the claims of `repo`, renders with charts from `source`, and plans the changes
/// against the generated files currently in `out`. With `write`, new application and
/// service files are written into `out` as they are rendered (only the rest is in the
/// plan, for [`worktree::apply`]).
pub fn render_repo(
    repo: &Path,
    out: &Path,
    source: &charts::Source,
    settings: &Settings,
    write: bool,
) -> Result<Outcome> {
    let t = std::time::Instant::now();
    let (snap, objects) = snapshot::of_work_tree(&[repo.join("claims")], Some(repo), Some(out))?;
    tracing::debug!(elapsed = ?t.elapsed(), claim_files = snap.claim_files.len(), generated = snap.entries.len(), "read the work tree");
    // A render that writes takes its new files out as it goes (see worktree::Stream).
    let stream = if write {
        Some(worktree::Stream::new(out)?)
    } else {
        None
    };
    let mut memo = pipeline::core::Memo::once();
    // New files go to a writer thread while the next batch renders: creating 200,000
    // files waits on the kernel's folder locks, and the render's cores would idle
    // meanwhile. One batch may wait in the channel (memory stays a few batches').
    let planned = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(String, String)>>(1);
        let writer = stream.as_ref().map(|stream| {
            scope.spawn(move || -> Result<()> {
                for files in rx {
                    let files: Vec<(&str, &str)> = files
                        .iter()
                        .map(|(p, c)| (p.as_str(), c.as_str()))
                        .collect();
                    stream.write(&files)?;
                }
                Ok(())
            })
        });
        let sink = move |files: Vec<(String, String)>| -> Result<(), pipeline::core::ReadError> {
            tx.send(files)
                .map_err(|_| "the rendered files' writer stopped (its error follows)".into())
        };
        let request = Request {
            settings,
            charts: source,
            previews: &Previews::All,
            branch: None,
            sink: writer.is_some().then_some(&sink as &pipeline::core::Sink),
        };
        let planned = pipeline::run(&snap, &objects, &request, &mut memo);
        // The writer's channel ends: it finishes what it was given. Its own error comes
        // first: a refused send only says that it stopped.
        drop(sink);
        if let Some(writer) = writer {
            writer.join().expect("the writer thread panicked")?;
        }
        anyhow::Ok(planned)
    })?;
    // One process, one render: the system takes the memory back at exit, faster than
    // freeing a hundred thousand parsed applications one by one (0.2 s at the end).
    std::mem::forget(memo);
    let planned = planned?;
    if let Some(stream) = stream {
        stream.finish()?;
    }
    Ok(Outcome {
        files: planned.rendered,
        streamed: planned.streamed,
        plan: planned.plan,
        diagnostics: planned.diagnostics,
    })
}

pub fn run(args: &RenderArgs, dry_run: bool) -> Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| args.repo.clone());
    let outcome = if dry_run && is_bare(&args.repo) {
        plan_bare(args)?
    } else {
        render_repo(
            &args.repo,
            &out,
            &args.chart_source()?,
            &args.settings(),
            !dry_run,
        )?
    };
    print_diagnostics(&outcome.diagnostics);
    let mut stdout = std::io::stdout().lock();
    if dry_run {
        write!(stdout, "{}", plan_diff(&outcome.plan))?;
    } else {
        let t = std::time::Instant::now();
        worktree::apply(&out, &outcome.plan)
            .with_context(|| format!("writing into {}", out.display()))?;
        tracing::debug!(elapsed = ?t.elapsed(), "written");
    }
    writeln!(stdout, "{}", summary(&outcome, dry_run))?;
    let failed = outcome.diagnostics.iter().any(Diagnostic::is_error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A bare git repository (no work tree to read claims from).
fn is_bare(path: &Path) -> bool {
    !path.join("claims").exists() && path.join("objects").is_dir() && path.join("HEAD").is_file()
}

/// `claimd plan` of a bare repository: what a reconcile would commit on its branch
/// (the HEAD branch, or `CLAIMD_BRANCH`), read from git; nothing is written.
fn plan_bare(args: &RenderArgs) -> Result<Outcome> {
    let repo = crate::git::Repo::open(&args.repo)?;
    let mut opts = hooks::options_from_env();
    opts.charts = args.chart_source()?;
    opts.settings = args.settings();
    let branch = crate::reconcile::branch_of(&repo, &opts);
    let tip = repo
        .branch_tip(&branch)?
        .with_context(|| format!("{}: no branch {branch}", args.repo.display()))?;
    let request = crate::reconcile::request(&opts, &branch);
    let planned = pipeline::at_commit(&repo, tip, &request, &mut Default::default())?;
    Ok(Outcome {
        files: planned.rendered,
        streamed: planned.streamed,
        plan: planned.plan,
        diagnostics: planned.diagnostics,
    })
}

pub fn summary(outcome: &Outcome, dry_run: bool) -> String {
    let count = |k: ChangeKind| outcome.plan.changes.iter().filter(|c| c.kind == k).count();
    let verb = if dry_run { "would change" } else { "changed" };
    let mut s = format!(
        "{} generated file(s); {verb}: {} added, {} modified, {} removed",
        outcome.files,
        count(ChangeKind::Add) + outcome.streamed,
        count(ChangeKind::Modify),
        count(ChangeKind::Delete)
    );
    if !outcome.plan.kept.is_empty() {
        s.push_str(&format!(
            "; {} file(s) of failed claims left untouched",
            outcome.plan.kept.len()
        ));
    }
    s
}

/// Unified diff of a plan.
pub fn plan_diff(plan: &Plan) -> String {
    crate::render::unified_diff(plan)
}
