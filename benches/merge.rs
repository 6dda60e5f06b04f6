//! Helm's values merge as claimd does it (`claimd::values`): an embedded chart's
//! `values.yaml` coalesced with a claim's overrides, and the two-map merge.
//! `cargo bench --bench merge`.

use claimd::charts::Source;
use claimd::values::{coalesce, merge_maps, ChartRef};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};

fn merge(c: &mut Criterion) {
    let reference = ChartRef {
        repository: "oci://ghcr.io/nimbusprotch".into(),
        name: "microservice".into(),
        version: "1.0.0".into(),
    };
    let charts = Source::Embedded.resolve([&reference]);
    let chart = charts[&reference].as_ref().expect("embedded chart");
    let overrides: Map<String, Value> = json!({
        "replicaCount": 3,
        "image": {"repository": "registry.example.com/app", "tag": "v1.2.3"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "ingress": {"enabled": true, "hosts": [{"host": "app.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]},
        "env": [{"name": "APP_ID", "value": "1"}],
        "podAnnotations": {"team": "team-1"},
    })
    .as_object()
    .cloned()
    .expect("map");
    let mut group = c.benchmark_group("merge");
    group.bench_function("coalesce chart values with a claim's overrides", |b| {
        b.iter(|| coalesce(&chart.defaults, &overrides))
    });
    group.bench_function("merge_maps chart values and overrides", |b| {
        b.iter(|| merge_maps(&chart.defaults, &overrides))
    });
    group.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
