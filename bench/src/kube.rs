//! `claimd-bench kube`: namespace sync against a real API server (numbers for
//! BENCHMARKS.md): the first apply of N preview namespaces, the sync every reconcile
//! makes when nothing changed, one new Environment among N, and the cleanup of N.

use crate::push::median;
use anyhow::{ensure, Context, Result};
use claimd::claims::{self, Claim};
use claimd::kube::{self, Cluster, Settings};
use claimd::yaml::Limits;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn claims_for(team: &str, environments: usize) -> Vec<Claim> {
    let mut files = vec![(
        "claims/project.yaml".to_string(),
        format!(
            "apiVersion: catalyst.catalyst.dev/v1alpha1\nkind: Project\nmetadata:\n  name: shop\n  namespace: {team}\nspec:\n  source:\n    repositoryUrl: https://git.example.com/org/shop.git\n  deployment:\n    type: helm\n    path: ./chart\n  resources:\n    defaultQuota: {{cpu: \"2\", memory: 4Gi}}\n"
        ),
    )];
    for i in 0..environments {
        files.push((
            format!("claims/pr-{i}.yaml"),
            format!(
                "apiVersion: catalyst.catalyst.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: pr-{i}\nspec:\n  projectRef:\n    name: shop\n  type: development\n  source:\n    commitSha: \"{i:040x}\"\n    branch: feature/{i}\n"
            ),
        ));
    }
    claims::load(&files, &Limits::default()).claims
}

pub fn run(kubeconfig: &Path, environments: usize, runs: usize) -> Result<ExitCode> {
    let settings = Settings {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..Settings::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let cluster = rt
        .block_on(Cluster::connect(&settings, "argocd"))?
        .context("no cluster in the kubeconfig")?;
    let team = format!("bench{}", std::process::id());
    let repository = format!("https://git.example.com/org/{team}.git");
    let all = claims_for(&team, environments);
    let want = |claims: &[Claim]| {
        kube::desired(claims, &[], &repository, "preview.example.com", &settings)
    };

    let t = Instant::now();
    let d = want(&all);
    let pure = t.elapsed();
    let t = Instant::now();
    let first = rt.block_on(cluster.sync(&d, None));
    let first_time = t.elapsed();
    ensure!(first.problems.is_empty(), "{:?}", first.problems);

    let mut noop = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let s = rt.block_on(cluster.sync(&d, None));
        noop.push(t.elapsed());
        ensure!(
            s.writes == 0,
            "a sync with nothing changed wrote {} times",
            s.writes
        );
    }
    let more = claims_for(&team, environments + 1);
    let t = Instant::now();
    let added = rt.block_on(cluster.sync(&want(&more), None));
    let added_time = t.elapsed();
    let t = Instant::now();
    let cleaned = rt.block_on(cluster.sync(&want(&claims_for(&team, 0)), None));
    let cleanup_time = t.elapsed();
    ensure!(
        cleaned.deleted.len() == environments + 1,
        "deleted {:?}",
        cleaned.deleted.len()
    );

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "environments: {environments} (a namespace, quota, limit range and network policy each)"
    );
    println!("desired objects (pure):            {}", ms(pure));
    println!(
        "first sync:                        {} ({} writes)",
        ms(first_time),
        first.writes
    );
    println!(
        "sync, nothing changed (median of {runs}): {} (0 writes)",
        ms(median(noop))
    );
    println!(
        "one Environment added:             {} ({} writes)",
        ms(added_time),
        added.writes
    );
    println!(
        "all removed (cleanup):             {} ({} deletes)",
        ms(cleanup_time),
        cleaned.deleted.len()
    );
    Ok(ExitCode::SUCCESS)
}
