//! In-process render of a synthetic repository (`claimd::examples::synthetic`) with the
//! embedded charts: parse and check the claims, then merge and render every file.
//! `cargo bench --bench render`.

use claimd::charts::Source;
use claimd::render::{self, Settings};
use claimd::yaml::Limits;
use criterion::{criterion_group, criterion_main, Criterion};

fn render_apps(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for apps in [1_000, 10_000] {
        let files = claimd::examples::synthetic(apps);
        let settings = Settings::default();
        group.bench_function(format!("parse {apps} applications"), |b| {
            b.iter(|| claimd::claims::load(&files, &Limits::default()))
        });
        let loaded = claimd::claims::load(&files, &Limits::default());
        let charts = Source::Embedded.resolve(&render::chart_refs(&loaded.claims, &settings));
        group.bench_function(format!("render {apps} applications"), |b| {
            b.iter(|| render::render(&loaded.claims, &charts, &settings).expect("render"))
        });
    }
    group.finish();
}

criterion_group!(benches, render_apps);
criterion_main!(benches);
