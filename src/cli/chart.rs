//! `claimd chart package|push|pull` and `claimd image exists`.

use super::RegistryArgs;
use crate::charts::publish::{self, Pushed};
use crate::charts::Remote;
use crate::oci::Registry;
use crate::values::ChartRef;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ChartAction {
    /// Package a chart folder into `<name>-<version>.tgz` (reproducible bytes).
    Package {
        /// The chart folder.
        dir: PathBuf,
        /// Where to write the archive (default: the current folder).
        #[arg(long, short = 'd', default_value = ".")]
        destination: PathBuf,
    },
    /// Publish charts to an OCI repository (`oci://host/path`), each at its own version.
    /// A version already published with the same content is skipped; one published
    /// with other content is refused unless --force.
    Push {
        /// A chart folder or `.tgz` (with --all: a folder of chart folders).
        chart: PathBuf,
        /// The OCI repository, e.g. oci://ghcr.io/acme/charts.
        repository: String,
        /// Publish every chart folder under CHART.
        #[arg(long)]
        all: bool,
        /// Overwrite a published version that has different content.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a chart into claimd's cache and print its digest and values files.
    Pull {
        /// `oci://host/path/name` (the chart repository plus the chart's name).
        chart: String,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageAction {
    /// Exit 0 if the image exists in its registry, 1 if not (a manifest HEAD request).
    Exists {
        /// `host/repository:tag` or `host/repository@sha256:…`.
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

pub fn run(action: ChartAction) -> Result<ExitCode> {
    match action {
        ChartAction::Package { dir, destination } => {
            let p = publish::package(&dir)?;
            let out = destination.join(format!("{}-{}.tgz", p.name, p.version));
            std::fs::create_dir_all(&destination)?;
            std::fs::write(&out, &p.tgz).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        ChartAction::Push {
            chart,
            repository,
            all,
            force,
            registry,
        } => {
            let registry = Registry::new(registry.settings()?)?;
            let charts = if all {
                chart_dirs(&chart)?
            } else {
                vec![chart]
            };
            let mut failed = 0;
            for path in &charts {
                let result = publish::package(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|p| {
                        registry
                            .block_on(publish::push(&registry, &p, &repository, force))
                            .map_err(anyhow::Error::from)
                    });
                match result {
                    Ok(Pushed::Published { at, digest }) => println!("published {at} {digest}"),
                    Ok(Pushed::Replaced { at, digest }) => {
                        println!("replaced {at} {digest} (--force)")
                    }
                    Ok(Pushed::Unchanged { at }) => {
                        println!("unchanged {at}: already published with the same content")
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: {}", path.display(), super::error_text(&e));
                    }
                }
            }
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        ChartAction::Pull {
            chart,
            version,
            registry,
        } => {
            let (repository, name) = chart
                .trim_end_matches('/')
                .rsplit_once('/')
                .context("expected oci://host/path/name")?;
            let reference = ChartRef {
                repository: repository.to_string(),
                name: name.to_string(),
                version,
            };
            let remote = Remote::new(Registry::new(registry.settings()?)?.into());
            let chart = remote.registry().block_on(remote.pull(&reference))?;
            println!("{reference} {}", chart.digest);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn image(action: ImageAction) -> Result<ExitCode> {
    let ImageAction::Exists { image, registry } = action;
    let registry = Registry::new(registry.settings()?)?;
    if registry.block_on(registry.image_exists(&image))? {
        println!("{image}: exists");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{image}: not found");
        Ok(ExitCode::from(1))
    }
}

/// The chart folders directly under `dir` (those with a Chart.yaml), sorted.
fn chart_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.join("Chart.yaml").is_file() {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no chart folders (with a Chart.yaml) in {}", dir.display());
    }
    Ok(out)
}
