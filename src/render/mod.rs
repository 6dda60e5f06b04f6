//! Render: a pure function from claims and loaded charts to the generated files.
//!
//! Output layout (DESIGN.md):
//!
//! ```text
//! root-apps/{clusterType}/{clusterType}-apps-rootapp.yaml
//! root-apps/{clusterType}/{clusterType}-platform-rootapp.yaml
//! appsets/{clusterType}/apps/{env}-appset.yaml
//! appsets/{clusterType}/platform/{env}-platform-appset.yaml
//! environments/{clusterType}/{env}/applications/{app}/{values,config}.yaml
//! environments/{clusterType}/{env}/platform/{service}/{values,config}.yaml
//! ```
//!
//! Catalyst Environments render as clusterType `catalyst`, one env folder per namespace.

mod argocd;
mod header;
mod plan;
mod workload;

pub use header::{parse_owners, Header, GENERATED_MARK};
pub use plan::{plan, unified_diff, Change, ChangeKind, Plan, OUTPUT_ROOTS};

use crate::claims::environment_team;
use crate::claims::names::environment_namespace;
use crate::claims::{Bootstrap, Claim, Diagnostic, Environment, Project, Severity, Spec, Workload};
use crate::values::{self, Chart, ChartRef};
use crate::yaml::{self, Pos};
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The clusterType folder of Catalyst Environments.
pub const CATALYST_CLUSTER_TYPE: &str = crate::claims::RESERVED_CLUSTER_TYPE;

/// Choices that are not in the claims (daemon config or CLI), with defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// GitOps repository URL when no BootstrapClaim names one.
    pub repo_url: Option<String>,
    /// Branch Argo CD follows when no BootstrapClaim names one.
    pub branch: String,
    /// OCI charts repository when neither the claim nor a BootstrapClaim names one.
    pub charts_repository: Option<String>,
    pub argocd_namespace: String,
    pub argocd_project: String,
    pub destination_server: String,
    /// Preview hosts are `<namespace>.<preview_domain>`.
    pub preview_domain: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            repo_url: None,
            branch: "main".into(),
            charts_repository: None,
            argocd_namespace: "argocd".into(),
            argocd_project: "default".into(),
            destination_server: "https://kubernetes.default.svc".into(),
            preview_domain: "preview.example.com".into(),
        }
    }
}

/// Each chart reference's chart, or why it could not be had (filled in by the chart
/// adapter).
pub type Charts = BTreeMap<ChartRef, Result<std::sync::Arc<Chart>, ChartUnavailable>>;

/// Why a chart could not be had, as the chart adapter says it: the message a claim's
/// diagnostic quotes, a short name for metrics, and whether trying again later may
/// help (a registry that did not answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartUnavailable {
    message: String,
    kind: &'static str,
    transient: bool,
}

impl ChartUnavailable {
    pub fn new(message: impl Into<String>, kind: &'static str, transient: bool) -> Self {
        ChartUnavailable {
            message: message.into(),
            kind,
            transient,
        }
    }

    /// A short name for metrics (the adapter error's kind).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Worth trying again later.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl std::fmt::Display for ChartUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChartUnavailable {}

/// A piece of the output that could not be rendered. Its files are left as they are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub diagnostic: Diagnostic,
    /// Folder whose existing files must be kept untouched.
    pub keep: Option<String>,
    /// The chart could not be had (registry, tag, archive): nothing the claim's values
    /// did. A push is not refused for this; the render waits for the chart.
    pub chart_unavailable: bool,
}

/// Everything a render produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// Path → content, sorted by path.
    pub files: BTreeMap<String, String>,
    pub failures: Vec<Failure>,
    /// Path → the claim files that produced it (an application's or service's files:
    /// its claim file; a preview's: the Environment's and the Project's). ApplicationSets
    /// and root apps belong to no claim file and are not listed.
    pub sources: BTreeMap<String, Vec<String>>,
}

/// Why nothing could be rendered at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no GitOps repository URL: add a BootstrapClaim to claims/ or set repo_url in the claimd config")]
    NoRepoUrl,
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoRepoUrl => "no_repo_url",
        }
    }
}

struct Ctx<'a> {
    settings: &'a Settings,
    repo_url: String,
    branch: String,
    bootstraps: BTreeMap<&'a str, (&'a Claim, &'a Bootstrap)>,
    out: Rendered,
    /// (clusterType, env) → (apps?, platform?) plus the claims that asked for it.
    appsets: BTreeMap<(String, String), Scaffold>,
}

#[derive(Default)]
struct Scaffold {
    apps: bool,
    platform: bool,
}

/// The charts the claims need: resolve these before calling [`render`].
pub fn chart_refs(claims: &[Claim], settings: &Settings) -> BTreeSet<ChartRef> {
    chart_refs_where(claims, settings, |_| true)
}

/// [`chart_refs`] of the claims `pick` selects (BootstrapClaims are taken from all).
pub fn chart_refs_where(
    claims: &[Claim],
    settings: &Settings,
    pick: impl Fn(&Claim) -> bool,
) -> BTreeSet<ChartRef> {
    let bootstraps = bootstraps(claims);
    // Thousands of workloads share a few charts: collect borrowed, copy once each.
    let mut parts = HashSet::new();
    for (c, ct, w) in workloads(claims).filter(|(c, _, _)| pick(c)) {
        if let Ok(p) = chart_ref_parts(c, ct, w, &bootstraps, settings) {
            parts.insert(p);
        }
    }
    parts
        .into_iter()
        .map(|(repository, name, version)| ChartRef {
            repository: repository.to_string(),
            name: name.to_string(),
            version: version.to_string(),
        })
        .collect()
}

/// Renders every file. Deterministic: the same claims and charts give the same bytes,
/// whatever order the claims come in.
pub fn render(claims: &[Claim], charts: &Charts, settings: &Settings) -> Result<Rendered, Error> {
    render_reusing(claims, charts, settings, &Reuse::NOTHING)
}

/// Which applications and services a render leaves out: the caller has their files from
/// an earlier render of the same claim (or the same application) in the same context.
pub struct Reuse<'a> {
    /// Claims none of whose applications and services are rendered (asked once a claim:
    /// a render in batches leaves out every claim but the batch's, a hundred thousand
    /// applications a batch).
    pub claim: &'a dyn Fn(&Claim) -> bool,
    /// Of the other claims' applications and services, those not rendered.
    pub workload: &'a dyn Fn(&Claim, &Workload) -> bool,
}

impl Reuse<'static> {
    /// Everything is rendered.
    pub const NOTHING: Reuse<'static> = Reuse {
        claim: &|_| false,
        workload: &|_, _| false,
    };
}

/// The folder of an application's or service's generated files.
pub fn workload_dir(cluster_type: &str, environment: &str, folder: &str, name: &str) -> String {
    format!("environments/{cluster_type}/{environment}/{folder}/{name}")
}

/// Like [`render`], but the applications and services `reuse` names are not rendered.
/// Everything else (ApplicationSets,
/// root apps, preview environments) is rendered as usual.
pub fn render_reusing(
    claims: &[Claim],
    charts: &Charts,
    settings: &Settings,
    reuse: &Reuse<'_>,
) -> Result<Rendered, Error> {
    let mut sorted: Vec<&Claim> = claims.iter().collect();
    sorted.sort_by(|a, b| (&a.source, a.pos, a.kind()).cmp(&(&b.source, b.pos, b.kind())));
    let bootstraps = bootstraps(sorted.iter().copied());
    let first = bootstraps.values().next().map(|(_, b)| *b);
    let repo_url = first
        .map(Bootstrap::gitops_repo_url)
        .or_else(|| settings.repo_url.clone())
        .ok_or(Error::NoRepoUrl)?;
    let branch = first.map_or_else(|| settings.branch.clone(), |b| b.branch.clone());
    let mut ctx = Ctx {
        settings,
        repo_url,
        branch,
        bootstraps,
        out: Rendered::default(),
        appsets: BTreeMap::new(),
    };
    for (_, b) in ctx.bootstraps.values() {
        for env in &b.environments {
            let s = ctx
                .appsets
                .entry((b.cluster_type.value.clone(), env.value.clone()))
                .or_default();
            s.apps = true;
            s.platform = true;
        }
    }
    let mut jobs = Vec::new();
    for &c in &sorted {
        if let Spec::Environment(e) = &c.spec {
            render_environment(&mut ctx, c, e, claims);
            continue;
        }
        let Some((wc, folder)) = c.workloads() else {
            continue;
        };
        let (ct, env, ns, list) = (
            &wc.cluster_type,
            &wc.environment,
            &wc.namespace,
            &wc.workloads[..],
        );
        let s = ctx
            .appsets
            .entry((ct.value.clone(), env.value.clone()))
            .or_default();
        if folder == "applications" {
            s.apps = true;
        } else {
            s.platform = true;
        }
        if (reuse.claim)(c) {
            continue;
        }
        for w in list.iter().filter(|w| !(reuse.workload)(c, w)) {
            let at = workload::Placement {
                cluster_type: &ct.value,
                environment: &env.value,
                namespace: ns.as_ref().map(|n| n.value.as_str()),
                folder,
            };
            let reference = chart_ref(c, &ct.value, w, &ctx.bootstraps, settings);
            jobs.push(workload::Job {
                claim: c,
                at,
                workload: w,
                reference,
            });
        }
    }
    let (files, failures) = workload::render_all(&jobs, charts);
    for (path, content, source) in files {
        ctx.out
            .sources
            .insert(path.clone(), vec![source.to_string()]);
        ctx.out.files.insert(path, content);
    }
    ctx.out.failures.extend(failures);
    render_scaffold(&mut ctx);
    Ok(ctx.out)
}

fn bootstraps<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
) -> BTreeMap<&'a str, (&'a Claim, &'a Bootstrap)> {
    let mut out = BTreeMap::new();
    for c in claims {
        if let Spec::Bootstrap(b) = &c.spec {
            out.entry(b.cluster_type.value.as_str()).or_insert((c, b));
        }
    }
    out
}

fn workloads(claims: &[Claim]) -> impl Iterator<Item = (&Claim, &str, &Workload)> {
    claims.iter().flat_map(|c| {
        let (ct, list): (&str, &[Workload]) = match c.workloads() {
            Some((wc, _)) => (&wc.cluster_type.value, &wc.workloads[..]),
            None => ("", &[]),
        };
        list.iter().map(move |w| (c, ct, w))
    })
}

/// Which chart a workload uses: the claim's repository and version, else its clusterType's
/// BootstrapClaim, else any BootstrapClaim, else the settings.
fn chart_ref(
    claim: &Claim,
    cluster_type: &str,
    w: &Workload,
    bootstraps: &BTreeMap<&str, (&Claim, &Bootstrap)>,
    settings: &Settings,
) -> Result<ChartRef, (Pos, String)> {
    let (repository, name, version) =
        chart_ref_parts(claim, cluster_type, w, bootstraps, settings)?;
    Ok(ChartRef {
        repository: repository.to_string(),
        name: name.to_string(),
        version: version.to_string(),
    })
}

/// [`chart_ref`] without copying: (repository, name, version).
fn chart_ref_parts<'a>(
    claim: &Claim,
    cluster_type: &str,
    w: &'a Workload,
    bootstraps: &BTreeMap<&str, (&'a Claim, &'a Bootstrap)>,
    settings: &'a Settings,
) -> Result<(&'a str, &'a str, &'a str), (Pos, String)> {
    let boot = bootstraps
        .get(cluster_type)
        .or_else(|| bootstraps.values().next())
        .and_then(|(_, b)| b.charts_repository.as_ref());
    let repository = w
        .chart
        .repository
        .as_ref()
        .map(|r| r.value.as_str())
        .or_else(|| boot.map(|r| r.url.value.as_str()))
        .or(settings.charts_repository.as_deref())
        .ok_or_else(|| {
            (
                w.chart.name.pos,
                format!(
                    "no charts repository for `{}`: set chart.repository, a BootstrapClaim's spec.chartsRepository.url, or charts_repository in the claimd config",
                    w.name.value
                ),
            )
        })?;
    let version = w
        .chart
        .version
        .as_ref()
        .map(|v| v.value.as_str())
        .or_else(|| boot.and_then(|r| r.version.as_ref()).map(|v| v.value.as_str()))
        .ok_or_else(|| {
            (
                w.name.pos,
                format!(
                    "no chart version for `{}` in {}: set chart.version, or spec.chartsRepository.version in the BootstrapClaim",
                    w.name.value, claim.source
                ),
            )
        })?;
    Ok((
        repository.trim_end_matches('/'),
        w.chart.name.value.as_str(),
        version,
    ))
}

fn fail(ctx: &mut Ctx<'_>, claim: &Claim, pos: Pos, message: String, keep: Option<String>) {
    ctx.out.failures.push(Failure {
        diagnostic: Diagnostic {
            file: claim.source.clone(),
            pos,
            severity: Severity::Error,
            message,
        },
        keep,
        chart_unavailable: false,
    });
}

/// Where a Catalyst Environment goes: its Project, team and namespace.
pub struct PreviewTarget<'a> {
    pub project_claim: &'a Claim,
    pub project: &'a Project,
    pub team: String,
    pub namespace: String,
}

/// The Project, team and namespace of an Environment claim, or where and why they
/// cannot be told.
pub fn preview_target<'a>(
    claim: &Claim,
    e: &Environment,
    claims: &'a [Claim],
) -> Result<PreviewTarget<'a>, (Pos, String)> {
    let Some((pc, project)) = claims.iter().find_map(|c| match &c.spec {
        Spec::Project(p) if c.name.value == e.project_ref.value => Some((c, p)),
        _ => None,
    }) else {
        let msg = format!("Project `{}` is not defined", e.project_ref.value);
        return Err((e.project_ref.pos, msg));
    };
    let Some(team) = environment_team(claim, project) else {
        let msg = "cannot tell the team: set the label catalyst.dev/team or the Project's metadata.namespace".to_string();
        return Err((claim.name.pos, msg));
    };
    let namespace = environment_namespace(&team, &pc.name.value, &claim.name.value);
    Ok(PreviewTarget {
        project_claim: pc,
        project,
        team,
        namespace,
    })
}

fn render_environment(ctx: &mut Ctx<'_>, claim: &Claim, e: &Environment, claims: &[Claim]) {
    let PreviewTarget {
        project_claim: pc,
        project,
        team,
        namespace,
    } = match preview_target(claim, e, claims) {
        Ok(t) => t,
        Err((pos, msg)) => return fail(ctx, claim, pos, msg, None),
    };
    let dir = format!(
        "environments/{CATALYST_CLUSTER_TYPE}/{namespace}/applications/{}",
        pc.name.value
    );
    let Some(sha) = &e.commit_sha else {
        let msg = "`spec.source.commitSha` is needed to render a preview (the image tag and the chart revision)".to_string();
        return fail(ctx, claim, claim.name.pos, msg, Some(dir));
    };
    let host = format!("{namespace}.{}", ctx.settings.preview_domain);
    let values = preview_values(project, &sha.value, &host, e);
    let chart_path = project
        .path
        .value
        .trim_start_matches("./")
        .trim_end_matches('/');
    let header = Header {
        sources: vec![claim.id(), pc.id()],
        chart: Some(format!(
            "{}/{}@{}",
            project.repository_url.value, chart_path, sha.value
        )),
    };
    let config = json!({
        "app": {
            "name": pc.name.value,
            "kind": "preview",
            "environment": claim.name.value,
            "clusterType": CATALYST_CLUSTER_TYPE,
            "team": team,
            "type": e.env_type.value,
        },
        "namespace": namespace,
        "source": {
            "repoURL": project.repository_url.value,
            "path": chart_path,
            "commit": sha.value,
            "branch": e.branch.as_ref().map(|b| b.value.clone()),
            "prNumber": e.pr_number.as_ref().map(|p| p.value),
            "claim": claim.id(),
        },
        "url": format!("https://{host}"),
    });
    for (name, content) in [
        ("config.yaml", header.render(&yaml::emit(&config))),
        (
            "values.yaml",
            header.render(&yaml::emit(&Json::Object(values))),
        ),
    ] {
        let path = format!("{dir}/{name}");
        let sources = [&claim.source, &pc.source];
        let sources = sources.iter().map(|s| s.to_string());
        ctx.out.sources.insert(path.clone(), sources.collect());
        ctx.out.files.insert(path, content);
    }
    let s = ctx
        .appsets
        .entry((
            CATALYST_CLUSTER_TYPE.to_string(),
            "environments".to_string(),
        ))
        .or_default();
    s.apps = true;
}

/// The Project's values with the preview's image tag, environment variables and host.
fn preview_values(project: &Project, sha: &str, host: &str, e: &Environment) -> Map<String, Json> {
    let env: Vec<Json> = e
        .env_vars
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let mut overrides = Map::new();
    overrides.insert("image".into(), json!({"tag": sha}));
    if !env.is_empty() {
        overrides.insert("env".into(), Json::Array(env));
    }
    overrides.insert(
        "ingress".into(),
        json!({"enabled": true, "hosts": [{"host": host, "paths": [{"path": "/", "pathType": "Prefix"}]}]}),
    );
    values::merge_maps(&project.values, &overrides)
}

fn render_scaffold(ctx: &mut Ctx<'_>) {
    let mut roots: BTreeSet<(String, &str)> = BTreeSet::new();
    let appsets = std::mem::take(&mut ctx.appsets);
    for ((ct, env), s) in &appsets {
        let header = Header::shared(&format!("clusterType {ct}, environment {env}"));
        let kinds: &[(&str, bool)] = &[("apps", s.apps), ("platform", s.platform)];
        for &(kind, wanted) in kinds {
            if !wanted {
                continue;
            }
            let (path, obj) = if ct == CATALYST_CLUSTER_TYPE {
                (
                    format!("appsets/{ct}/apps/{env}-appset.yaml"),
                    argocd::preview_appset(ctx.settings, &ctx.repo_url, &ctx.branch),
                )
            } else {
                let file = if kind == "apps" {
                    format!("{env}-appset.yaml")
                } else {
                    format!("{env}-platform-appset.yaml")
                };
                (
                    format!("appsets/{ct}/{kind}/{file}"),
                    argocd::appset(ctx.settings, &ctx.repo_url, &ctx.branch, ct, env, kind),
                )
            };
            ctx.out.files.insert(path, header.render(&yaml::emit(&obj)));
            roots.insert((ct.clone(), kind));
        }
    }
    for (ct, kind) in roots {
        let header = Header::shared(&format!("clusterType {ct}"));
        let obj = argocd::root_app(ctx.settings, &ctx.repo_url, &ctx.branch, &ct, kind);
        ctx.out.files.insert(
            format!("root-apps/{ct}/{ct}-{kind}-rootapp.yaml"),
            header.render(&yaml::emit(&obj)),
        );
    }
}

#[cfg(test)]
mod tests;
