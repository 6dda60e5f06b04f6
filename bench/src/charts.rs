//! `claimd-bench charts`: chart pulls from a real OCI registry (numbers for BENCHMARKS.md).

use anyhow::{ensure, Context, Result};
use claimd::charts::{publish, Remote};
use claimd::oci::{Registry, Settings};
use claimd::values::ChartRef;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Publishes `versions` versions of the microservice chart to `oci://<registry>/bench`,
/// then measures: a cold pull of one chart (empty cache, new client), a warm resolve of
/// `versions` references (parsed charts in memory, tags within the refresh interval:
/// no request), and the same from the disk cache in a new client (what a hook process does).
pub fn run(registry_host: &str, versions: usize, runs: usize) -> Result<ExitCode> {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("claimd-bench-charts-{}", std::process::id())));
    let settings = |cache: &Path| {
        let mut s = Settings {
            cache: Some(cache.to_path_buf()),
            refresh: Some(3600),
            ..Settings::default()
        };
        s.hosts
            .entry(registry_host.to_string())
            .or_default()
            .plain_http = true;
        s
    };
    let repository = format!("oci://{registry_host}/bench");
    let chart_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/microservice");
    ensure!(chart_dir.is_dir(), "{} not found", chart_dir.display());

    // Versions 1.0.0 … as separate charts (a copy of the chart with its version changed).
    let publisher = Registry::new(settings(&scratch.path().join("publish-cache")))?;
    let copy = scratch.path().join("microservice");
    copy_dir(&chart_dir, &copy)?;
    let chart_yaml = std::fs::read_to_string(chart_dir.join("Chart.yaml"))?;
    let t = Instant::now();
    for v in 0..versions {
        let version = format!("1.0.{v}");
        std::fs::write(
            copy.join("Chart.yaml"),
            chart_yaml.replace("version: \"1.0.0\"", &format!("version: \"{version}\"")),
        )?;
        let package = publish::package(&copy)?;
        ensure!(
            package.version == version,
            "Chart.yaml version not replaced"
        );
        publisher.block_on(publish::push(&publisher, &package, &repository, false))?;
    }
    println!(
        "claimd bench-charts: {versions} chart versions published to {repository} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let refs: Vec<ChartRef> = (0..versions)
        .map(|v| ChartRef {
            repository: repository.clone(),
            name: "microservice".into(),
            version: format!("1.0.{v}"),
        })
        .collect();
    let refs: Vec<&ChartRef> = refs.iter().collect();

    // Cold: a new client and an empty cache each run.
    let mut cold = Vec::new();
    for run in 0..runs {
        let remote = Remote::new(
            Registry::new(settings(&scratch.path().join(format!("cold-{run}"))))?.into(),
        );
        let t = Instant::now();
        remote
            .registry()
            .block_on(remote.pull(refs[0]))
            .context("cold pull")?;
        cold.push(t.elapsed());
    }
    // Warm: the references resolved once, then again (memory: no request).
    let cache = scratch.path().join("warm");
    let remote = Remote::new(Registry::new(settings(&cache))?.into());
    let first = Instant::now();
    check(remote.resolve(&refs))?;
    let first = first.elapsed();
    let mut warm = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        check(remote.resolve(&refs))?;
        warm.push(t.elapsed());
    }
    // Disk: a new client over the same cache (tags checked within the refresh interval).
    let mut disk = Vec::new();
    for _ in 0..runs {
        let remote = Remote::new(Registry::new(settings(&cache))?.into());
        let t = Instant::now();
        check(remote.resolve(&refs))?;
        disk.push(t.elapsed());
    }
    for v in [&mut cold, &mut warm, &mut disk] {
        v.sort();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  cold pull of one chart (tag → digest, manifest, layer, verify, unpack, parse): median {:.1} ms over {runs} runs",
        ms(cold[cold.len() / 2])
    );
    println!(
        "  first resolve of {versions} references (all pulled, {} at a time): {:.0} ms",
        versions,
        ms(first)
    );
    println!(
        "  warm resolve of {versions} references (in memory, no request): median {:.2} ms",
        ms(warm[warm.len() / 2])
    );
    println!(
        "  resolve of {versions} references by a new process from the disk cache (no request): median {:.1} ms",
        ms(disk[disk.len() / 2])
    );
    Ok(ExitCode::SUCCESS)
}

/// A folder removed at the end.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check<E: std::fmt::Display>(
    resolved: std::collections::BTreeMap<
        ChartRef,
        Result<std::sync::Arc<claimd::values::Chart>, E>,
    >,
) -> Result<()> {
    for (r, c) in resolved {
        if let Err(e) = c {
            anyhow::bail!("{r}: {e}");
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}
