//! Subcommands: the clap types are in `args`, each command in its own module.

mod args;
mod bootstrap;
mod chart;
mod demo;
mod doctor;
mod gitea;
pub(crate) mod hooks;
mod namespaces;
mod render;
mod serve;
mod status;
mod validate;
mod worktree;

pub use args::{Cli, Command, HooksAction, LogFormat, RegistryArgs, RenderArgs, StatusArgs};
pub use render::{plan_diff, render_repo, summary, Outcome};

use crate::charts;
use crate::claims::Diagnostic;
use crate::render::Settings;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

/// An error and its causes on one line, each said once: a typed error that quotes its
/// source in its message (`cannot read x: <why>`) does not get `<why>` twice.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate {
            paths,
            charts,
            charts_repository,
            registry,
        } => {
            let source = charts::Source::parse(&charts, &registry.settings()?)?;
            let settings = Settings {
                charts_repository,
                ..Settings::default()
            };
            validate::run(&paths, &source, &settings)
        }
        Command::Render(args) => render::run(&args, false),
        Command::Plan(args) => render::run(&args, true),
        Command::Demo { dir } => demo::run(dir),
        Command::Serve {
            config,
            listen,
            metrics_listen,
        } => serve::run(&config, listen, metrics_listen),
        Command::Doctor { config, output } => doctor::run(&config, output),
        Command::Status(args) => status::run(&args),
        Command::Namespaces {
            repo,
            config,
            preview_domain,
        } => namespaces::run(&repo, config.as_deref(), &preview_domain),
        Command::Reconcile {
            repo,
            branch,
            push_url,
        } => hooks::reconcile_cmd(&repo, branch, push_url),
        Command::Hooks {
            action:
                HooksAction::Install {
                    repo,
                    gitea,
                    binary,
                    daemon,
                },
        } => hooks::install(&repo, binary, gitea, daemon.as_deref()),
        Command::Hooks {
            action: HooksAction::Uninstall { repo },
        } => hooks::uninstall(&repo),
        Command::Hook { file } => match file.hook {
            "pre-receive" => hooks::pre_receive(&file),
            _ => hooks::post_receive(&file),
        },
        Command::Gitea { action } => gitea::run(action),
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::Chart { action } => chart::run(action),
        Command::Image { action } => chart::image(action),
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_text_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let typed = crate::charts::Error::Io {
            path: "x/Chart.yaml".into(),
            source: io,
        };
        let e = anyhow::Error::from(typed).context("packaging x");
        assert_eq!(
            super::error_text(&e),
            "packaging x: cannot read x/Chart.yaml: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_text(&plain), "outer: inner");
    }
}
