//! `claimd status`: the daemon's `GET /v1/status` per repository (last push, last bot
//! commit, last reconcile, each claim file's state and first error, preview
//! Environments) as a table, JSON or YAML; with `--repo`, a repository's claim files at
//! its branch tip without a daemon.

use super::args::{Output, StatusArgs};
use crate::daemon::{self, record::Record};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(args: &StatusArgs) -> Result<ExitCode> {
    let output = if args.json { Output::Json } else { args.output };
    match &args.repo {
        Some(repo) => local(args, repo, output),
        None => remote(&args.daemon, output),
    }
}

fn remote(addr: &str, output: Output) -> Result<ExitCode> {
    let (code, body) = crate::server::status(addr)
        .with_context(|| format!("asking the daemon at {addr} (is `claimd serve` running?)"))?;
    anyhow::ensure!(code == 200, "the daemon at {addr} answered {code}: {body}");
    // JSON and YAML print what the daemon said, every field of it.
    let value: serde_json::Value = serde_json::from_str(&body).context("the daemon's answer")?;
    if output != Output::Table {
        return print(&value, output);
    }
    let status: daemon::Status = serde_json::from_value(value).context("the daemon's answer")?;
    let mut out = std::io::stdout().lock();
    for r in &status.repositories {
        let w = &r.work;
        writeln!(out, "{}", r.repository.display())?;
        write_record(&mut out, &r.record)?;
        writeln!(
            out,
            "  {:<16} {} renders, {} looks that found the branch unmoved",
            "work", w.reconciles, w.unchanged
        )?;
        if r.environments.is_empty() {
            writeln!(out, "  previews         none")?;
        } else {
            writeln!(out, "  previews")?;
            for line in crate::kube::status::table(&r.environments).lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    if status.repositories.is_empty() {
        writeln!(out, "the daemon at {addr} serves no repository")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--repo`: the pipeline at the branch tip, read only.
fn local(args: &StatusArgs, repo: &std::path::Path, output: Output) -> Result<ExitCode> {
    let git =
        crate::git::Repo::open(repo).with_context(|| format!("opening {}", repo.display()))?;
    let options = crate::reconcile::Options {
        branch: args.branch.clone(),
        charts: crate::charts::Source::parse(&args.charts, &args.registry.settings()?)?,
        ..Default::default()
    };
    let record = daemon::record::at_branch_tip(&git, &options)
        .with_context(|| format!("rendering the branch tip of {}", repo.display()))?;
    if output != Output::Table {
        #[derive(serde::Serialize)]
        struct Local<'a> {
            repository: PathBuf,
            #[serde(flatten)]
            record: &'a Record,
        }
        let value = serde_json::to_value(Local {
            repository: repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf()),
            record: &record,
        })?;
        return print(&value, output);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", repo.display())?;
    write_record(&mut out, &record)?;
    Ok(ExitCode::SUCCESS)
}

fn print(value: &serde_json::Value, output: Output) -> Result<ExitCode> {
    let text = match output {
        Output::Yaml => serde_yaml::to_string(value)?,
        _ => serde_json::to_string_pretty(value)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn seen(when: &str) -> String {
    if when.is_empty() {
        String::new()
    } else {
        format!(", seen {when}")
    }
}

/// The last push, bot commit and reconcile, and a table of the claim files.
fn write_record(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    if let Some(url) = &r.gitea {
        writeln!(out, "  {:<16} {url}", "gitea")?;
    }
    match &r.last_push {
        Some(p) => writeln!(
            out,
            "  {:<16} {} on {}{}",
            "last push",
            short(&p.commit),
            p.reference,
            seen(&p.seen)
        )?,
        None => writeln!(out, "  {:<16} none seen", "last push")?,
    }
    match &r.last_bot_commit {
        Some(b) => writeln!(
            out,
            "  {:<16} {}{}",
            "last bot commit",
            short(&b.commit),
            seen(&b.seen)
        )?,
        None => writeln!(out, "  {:<16} none seen", "last bot commit")?,
    }
    match &r.last_reconcile {
        Some(l) => writeln!(
            out,
            "  {:<16} {}: {}{}",
            "last reconcile",
            if l.ok { "ok" } else { "FAILED" },
            l.result,
            if l.at.is_empty() {
                String::new()
            } else {
                format!(" (at {})", l.at)
            }
        )?,
        None => writeln!(out, "  {:<16} not yet", "last reconcile")?,
    }
    if r.claims.is_empty() {
        return writeln!(out, "  {:<16} none", "claims");
    }
    writeln!(out, "  claims")?;
    let rows: Vec<[String; 4]> = r
        .claims
        .iter()
        .map(|c| {
            let detail = match &c.error {
                Some(error) => error.clone(),
                None => match (c.generated.first(), c.generated_total) {
                    (None, _) => String::new(),
                    (Some(first), 1) => format!("{first}/"),
                    (Some(first), n) => format!(
                        "{first}/ and {} more folder{}",
                        n - 1,
                        if n == 2 { "" } else { "s" }
                    ),
                },
            };
            let state = serde_json::to_value(c.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            [state, c.file.clone(), c.applications.to_string(), detail]
        })
        .collect();
    let header = [
        "STATE".to_string(),
        "CLAIM FILE".to_string(),
        "APPS".to_string(),
        "GENERATED / FIRST ERROR".to_string(),
    ];
    let all: Vec<&[String; 4]> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..3)
        .map(|i| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in all {
        writeln!(
            out,
            "    {:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )?;
    }
    Ok(())
}
