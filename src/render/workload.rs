//! The two files of each application or data service: `values.yaml` (final merged values)
//! and `config.yaml` (what the ApplicationSet's git files generator reads).
//!
//! Workloads are independent, so they are rendered on all cores; the result is put back
//! in input order, so the output does not depend on scheduling.

use super::{argocd, Charts, Failure, Header};
use crate::claims::{quantity, Claim, Diagnostic, Severity, Workload};
use crate::values::{self, ChartRef, Layers, Profile};
use crate::yaml::{self, Pos};
use serde_json::{json, Map, Value as Json};
use std::collections::HashMap;

pub struct Placement<'a> {
    pub cluster_type: &'a str,
    pub environment: &'a str,
    pub namespace: Option<&'a str>,
    /// `applications` or `platform`.
    pub folder: &'static str,
}

pub struct Job<'a> {
    pub claim: &'a Claim,
    pub at: Placement<'a>,
    pub workload: &'a Workload,
    /// The chart to use, or where and why none could be chosen.
    pub reference: Result<ChartRef, (Pos, String)>,
}

/// (path, content, the claim file it comes from).
type Files<'a> = Vec<(String, String, &'a str)>;

/// Renders every job; files and failures come back in job order.
pub fn render_all<'a>(jobs: &[Job<'a>], charts: &Charts) -> (Files<'a>, Vec<Failure>) {
    // One prepared set of chart layers per (chart, environment, profile).
    let mut layers: HashMap<(&ChartRef, &str, bool), Layers<'_>> = HashMap::new();
    for job in jobs {
        if let Ok(reference) = &job.reference {
            if let Some(Ok(chart)) = charts.get(reference) {
                let profile = profile(job);
                layers
                    .entry((
                        reference,
                        job.at.environment,
                        profile == Profile::Production,
                    ))
                    .or_insert_with(|| Layers::new(chart, job.at.environment, profile));
            }
        }
    }
    let results = crate::par::map(jobs, 64, |job| render_one(job, charts, &layers));
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(f) => files.extend(f),
            Err(f) => failures.extend(f),
        }
    }
    (files, failures)
}

fn profile(job: &Job<'_>) -> Profile {
    Profile::of(
        job.at.environment,
        job.at.cluster_type,
        job.workload.production,
    )
}

fn render_one<'a>(
    job: &Job<'a>,
    charts: &Charts,
    layers: &HashMap<(&ChartRef, &str, bool), Layers<'_>>,
) -> Result<Files<'a>, Vec<Failure>> {
    let (claim, at, w) = (job.claim, &job.at, job.workload);
    let dir = super::workload_dir(at.cluster_type, at.environment, at.folder, &w.name.value);
    let fail = |pos: Pos, message: String| Failure {
        diagnostic: Diagnostic {
            file: claim.source.clone(),
            pos,
            severity: Severity::Error,
            message,
        },
        keep: Some(dir.clone()),
        chart_unavailable: false,
    };
    let unavailable = |pos: Pos, message: String| Failure {
        chart_unavailable: true,
        ..fail(pos, message)
    };
    let reference = job
        .reference
        .as_ref()
        .map_err(|(pos, msg)| vec![unavailable(*pos, msg.clone())])?;
    let chart = match charts.get(reference) {
        Some(Ok(chart)) => chart,
        Some(Err(e)) => {
            let msg = format!("chart {reference} for `{}`: {e}", w.name.value);
            return Err(vec![unavailable(w.chart.name.pos, msg)]);
        }
        None => {
            let msg = format!("chart {reference} for `{}` was not loaded", w.name.value);
            return Err(vec![unavailable(w.chart.name.pos, msg)]);
        }
    };
    let profile = profile(job);
    let layer = &layers[&(reference, at.environment, profile == Profile::Production)];
    let mut merged = layer.merge(&w.fields, &w.values).map_err(|unmapped| {
        unmapped
            .iter()
            .map(|path| {
                let pos = w.pos_of(&path.to_string());
                let msg = format!(
                    "chart {reference} has no mapping for claim field `{path}` (see its {}); set the chart value under `values:` instead",
                    values::MAPPING_FILE
                );
                fail(pos, msg)
            })
            .collect::<Vec<_>>()
    })?;
    let over_limit = requests_over_limits(&merged.final_values);
    if !over_limit.is_empty() {
        let pos = w.pos_of("resources");
        return Err(over_limit
            .into_iter()
            .map(|problem| {
                fail(
                    pos,
                    format!(
                        "`{}`: {problem} after merging with chart {reference}; raise the limit too (resources.limits) or lower the request",
                        w.name.value
                    ),
                )
            })
            .collect());
    }
    if let Some(schema) = &chart.schema {
        // Checked as a JSON value without copying the map: taken out and put back.
        let final_values = Json::Object(std::mem::take(&mut merged.final_values));
        let violations = schema.check(&final_values);
        if let Json::Object(map) = final_values {
            merged.final_values = map;
        }
        if !violations.is_empty() {
            return Err(violations
                .iter()
                .map(|v| {
                    let (pos, fix) = claim_field_for(w, &chart.mapping, &v.path);
                    let at = if v.path.is_empty() {
                        "the values are".to_string()
                    } else {
                        format!("value `{}` is", v.path)
                    };
                    fail(
                        pos,
                        format!(
                            "`{}`: {at} refused by the values.schema.json of chart {reference}: {}; {fix}",
                            w.name.value, v.message
                        ),
                    )
                })
                .collect());
        }
    }
    let namespace = w
        .namespace
        .as_ref()
        .map(|n| n.value.as_str())
        .or(at.namespace)
        .unwrap_or(at.environment);
    let header = Header {
        sources: vec![claim.id()],
        chart: Some(format!("{reference}@{}", chart.digest)),
    };
    let kind = if w.service_type.is_some() {
        "service"
    } else {
        "application"
    };
    let config = json!({
        "app": {
            "name": w.name.value,
            "kind": kind,
            "environment": at.environment,
            "clusterType": at.cluster_type,
            "profile": if profile == Profile::Production { "production" } else { "default" },
        },
        "namespace": namespace,
        "chart": {
            "repoURL": argocd::helm_oci_repo(&reference.repository),
            "name": reference.name,
            "version": reference.version,
            "digest": chart.digest,
        },
        "source": { "claim": claim.id() },
    });
    Ok(vec![
        (
            format!("{dir}/config.yaml"),
            header.render(&yaml::emit(&config)),
            claim.source.as_str(),
        ),
        (
            format!("{dir}/values.yaml"),
            header.render(&merged.file_yaml()),
            claim.source.as_str(),
        ),
    ])
}

/// Where to point for a schema violation at values path `path`: the claim field that
/// the chart's mapping turns into it (or into a value inside it), else `values:`.
fn claim_field_for(w: &Workload, mapping: &values::Mapping, path: &str) -> (Pos, String) {
    // `values:` is merged last: a value set there is the one the chart saw.
    if let Some(pos) = raw_value_pos(w, path) {
        return (pos, "set a valid value under `values:`".to_string());
    }
    if let Ok(at) = values::Path::parse(path) {
        let mapped = mapping.fields.iter().find(|f| {
            f.to.iter()
                .any(|to| to.is_prefix_of(&at) || (!at.0.is_empty() && at.is_prefix_of(to)))
        });
        if let Some(f) = mapped {
            let field = f.from.to_string();
            if w.field_pos
                .iter()
                .any(|(p, _)| *p == field || p.starts_with(&field))
            {
                return (w.pos_of(&field), format!("fix the claim field `{field}`"));
            }
        }
    }
    let pos = if path.is_empty() {
        w.name.pos
    } else {
        w.pos_of(&format!("values.{path}"))
    };
    (
        pos,
        "set a valid value under `values:` (or the claim field that maps to it)".to_string(),
    )
}

/// Where the claim's `values:` sets `path` (or the map or list holding it), if it does.
fn raw_value_pos(w: &Workload, path: &str) -> Option<Pos> {
    if path.is_empty() {
        return None;
    }
    let mut key = format!("values.{path}");
    loop {
        if let Some((_, pos)) = w.field_pos.iter().find(|(p, _)| *p == key) {
            return Some(*pos);
        }
        match key.rfind(['.', '[']) {
            Some(i) if &key[..i] != "values" => key.truncate(i),
            _ => return None,
        }
    }
}

/// Every `requests.X` above its `limits.X` in any `resources`-shaped map of the values:
/// Kubernetes would refuse such a pod, so claimd refuses it at push time.
fn requests_over_limits(values: &Map<String, Json>) -> Vec<String> {
    fn walk(m: &Map<String, Json>, path: &mut Vec<String>, out: &mut Vec<String>) {
        if let (Some(Json::Object(req)), Some(Json::Object(lim))) =
            (m.get("requests"), m.get("limits"))
        {
            for (k, r) in req {
                let Some(l) = lim.get(k) else { continue };
                let (Some(rq), Some(lq)) = (quantity::of_json(r), quantity::of_json(l)) else {
                    continue;
                };
                if rq > lq {
                    let at = path.join(".");
                    let show = |v: &Json| v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    out.push(format!(
                        "{at}.requests.{k} ({}) is above {at}.limits.{k} ({})",
                        show(r),
                        show(l)
                    ));
                }
            }
        }
        for (k, child) in m {
            if let Json::Object(cm) = child {
                path.push(k.clone());
                walk(cm, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(values, &mut Vec::new(), &mut out);
    out
}
