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
    // What a push changing one claim file parses: one file of 100 applications.
    let one = &claimd::examples::synthetic(claimd::examples::APPS_PER_CLAIM)[1];
    group.bench_function("read YAML of one claim file (100 applications)", |b| {
        b.iter(|| claimd::yaml::parse_documents(&one.1, &Limits::default()).expect("yaml"))
    });
    group.bench_function("parse one claim file (100 applications)", |b| {
        b.iter(|| claimd::claims::parse_file(&one.0, &one.1, &Limits::default()))
    });
    for apps in [1_000, 10_000] {
        let files = claimd::examples::synthetic(apps);
        let settings = Settings::default();
        group.bench_function(format!("parse {apps} applications"), |b| {
            b.iter(|| claimd::claims::load(&files, &Limits::default()))
        });
        let loaded = claimd::claims::load(&files, &Limits::default());
        group.bench_function(
            format!("check the names of {apps} applications against each other"),
            |b| b.iter(|| claimd::claims::check_names(&loaded.claims)),
        );
        let charts = Source::Embedded.resolve(&render::chart_refs(&loaded.claims, &settings));
        group.bench_function(format!("render {apps} applications"), |b| {
            b.iter(|| render::render(&loaded.claims, &charts, &settings).expect("render"))
        });
    }
    group.finish();
}

criterion_group!(benches, render_apps);
criterion_main!(benches);
