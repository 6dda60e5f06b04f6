//! Subcommands: the clap types are in `args`, each command in its own module.

mod args;
mod chart;
mod demo;
mod hooks;
mod namespaces;
mod render;
mod serve;
mod validate;
mod worktree;

pub use args::{Cli, Command, HooksAction, RegistryArgs, RenderArgs};
pub use render::{plan_diff, render_repo, summary, Outcome};

use crate::charts;
use crate::claims::Diagnostic;
use crate::render::Settings;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

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
        Command::Serve { config, listen } => serve::run(&config, listen),
        Command::Status { daemon, json } => serve::status(&daemon, json),
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
                },
        } => hooks::install(&repo, binary, gitea),
        Command::Hook { name } => match name.as_str() {
            "pre-receive" => hooks::pre_receive(),
            _ => hooks::post_receive(),
        },
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
