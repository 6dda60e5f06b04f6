//! Claims: parse and validate the YAML documents under `claims/`, keeping positions so
//! every problem is reported as `file:line:col: message`. Pure: takes file texts.
//!
//! Validation returns every diagnostic it finds, not just the first.

mod check;
mod diagnostic;
mod kinds;
pub mod names;
pub mod quantity;
mod reader;

pub use check::{check_names, duplicate_name, environment_team, Seen, RESERVED_CLUSTER_TYPE};
pub use diagnostic::{Diagnostic, Severity};
pub use reader::Spanned;

use crate::yaml::{self, Limits, NodeValue, Pos};
use serde_json::{Map, Value as Json};

pub const PLATFORM_API: &str = "platform.infraforge.io/v1";
pub const CATALYST_API: &str = "catalyst.catalyst.dev/v1alpha1";

/// One claim document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// Path of the file it came from, relative to the repository root.
    pub source: String,
    /// Position of the document.
    pub pos: Pos,
    pub name: Spanned<String>,
    pub namespace: Option<Spanned<String>>,
    pub labels: Vec<(String, String)>,
    pub spec: Spec,
}

impl Claim {
    /// Leaves out what only rendering its applications and services needs (see
    /// [`ParsedFile::outline`]).
    pub fn to_outline(&mut self) {
        if let Spec::Application(w) | Spec::Platform(w) = &mut self.spec {
            w.workloads = w
                .workloads
                .iter()
                .map(|w| Workload {
                    fields: Json::Null,
                    field_pos: Vec::new(),
                    values: Map::new(),
                    ..w.clone()
                })
                .collect();
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.spec {
            Spec::Bootstrap(_) => "BootstrapClaim",
            Spec::Application(_) => "ApplicationClaim",
            Spec::Platform(_) => "PlatformApplicationClaim",
            Spec::Project(_) => "Project",
            Spec::Environment(_) => "Environment",
        }
    }

    /// `claims/apps.yaml#ApplicationClaim/my-services`: who owns generated files.
    pub fn id(&self) -> String {
        format!("{}#{}/{}", self.source, self.kind(), self.name.value)
    }

    /// The workloads of an ApplicationClaim or PlatformApplicationClaim, with the output
    /// folder they go to (`applications` or `platform`).
    pub fn workloads(&self) -> Option<(&WorkloadClaim, &'static str)> {
        match &self.spec {
            Spec::Application(w) => Some((w, "applications")),
            Spec::Platform(w) => Some((w, "platform")),
            _ => None,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Spec {
    Bootstrap(Bootstrap),
    Application(WorkloadClaim),
    Platform(WorkloadClaim),
    Project(Project),
    Environment(Environment),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bootstrap {
    pub gitea_url: Spanned<String>,
    pub organization: Spanned<String>,
    pub charts_repository: Option<ChartsRepository>,
    /// `voltran`: the GitOps repository.
    pub gitops_repository: Spanned<String>,
    pub charts_git_repository: Option<Spanned<String>>,
    pub branch: String,
    pub cluster_type: Spanned<String>,
    pub environments: Vec<Spanned<String>>,
}

impl Bootstrap {
    /// Clone URL of the GitOps repository on Gitea.
    pub fn gitops_repo_url(&self) -> String {
        format!(
            "{}/{}/{}.git",
            self.gitea_url.value.trim_end_matches('/'),
            self.organization.value,
            self.gitops_repository.value
        )
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChartsRepository {
    pub url: Spanned<String>,
    pub version: Option<Spanned<String>>,
}

/// An ApplicationClaim or a PlatformApplicationClaim: workloads of one environment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadClaim {
    pub environment: Spanned<String>,
    pub cluster_type: Spanned<String>,
    pub namespace: Option<Spanned<String>>,
    /// Applications or services. Shared: cloning a claim (the daemon's cache does, every
    /// run) stays cheap.
    pub workloads: std::sync::Arc<[Workload]>,
}

impl WorkloadClaim {
    /// The namespace a workload goes to: its own, else the claim's, else the
    /// environment's name.
    pub fn namespace_of<'a>(&'a self, w: &'a Workload) -> &'a Spanned<String> {
        w.namespace
            .as_ref()
            .or(self.namespace.as_ref())
            .unwrap_or(&self.environment)
    }
}

/// An application (ApplicationClaim) or a data service (PlatformApplicationClaim): what
/// becomes one Argo CD Application with one chart and one values file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Workload {
    pub name: Spanned<String>,
    /// `Some` for platform services.
    pub service_type: Option<Spanned<ServiceType>>,
    pub production: bool,
    pub chart: ChartSpec,
    pub namespace: Option<Spanned<String>>,
    /// Claim fields that the chart's mapping turns into values (image, replicas, …).
    pub fields: Json,
    /// Where each claim field is (`image.tag`, `env`, …), to place errors about it.
    pub field_pos: Vec<(String, Pos)>,
    /// Raw `values:` passed through.
    pub values: Map<String, Json>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChartSpec {
    pub name: Spanned<String>,
    /// None: the BootstrapClaim's `chartsRepository.version` applies.
    pub version: Option<Spanned<String>>,
    /// None: the BootstrapClaim's (or the configured) charts repository.
    pub repository: Option<Spanned<String>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ServiceType {
    Postgresql,
    Mongodb,
    Redis,
    Rabbitmq,
    Kafka,
}

impl ServiceType {
    pub const ALL: [(&'static str, ServiceType); 5] = [
        ("postgresql", ServiceType::Postgresql),
        ("mongodb", ServiceType::Mongodb),
        ("redis", ServiceType::Redis),
        ("rabbitmq", ServiceType::Rabbitmq),
        ("kafka", ServiceType::Kafka),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("postgresql")
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Project {
    /// The team: the Project's `metadata.namespace`.
    pub team: Option<Spanned<String>>,
    pub repository_url: Spanned<String>,
    pub branch: Option<Spanned<String>>,
    pub deployment_type: Spanned<String>,
    pub path: Spanned<String>,
    pub values: Map<String, Json>,
    pub quota_cpu: Option<Spanned<String>>,
    pub quota_memory: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    pub project_ref: Spanned<String>,
    /// `development` (previews) or `deployment` (staging, production).
    pub env_type: Spanned<String>,
    pub commit_sha: Option<Spanned<String>>,
    pub branch: Option<Spanned<String>>,
    pub pr_number: Option<Spanned<i64>>,
    pub env_vars: Vec<(String, String)>,
}

impl Workload {
    /// Position of a claim field, or of the closest field above it.
    pub fn pos_of(&self, dotted: &str) -> Pos {
        let mut path = dotted;
        loop {
            if let Some((_, pos)) = self.field_pos.iter().find(|(p, _)| p == path) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.name.pos,
            }
        }
    }
}

/// The valid claims of a set of files, and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub claims: Vec<Claim>,
    pub diagnostics: Vec<Diagnostic>,
    /// Files with at least one error (their claims are not in `claims`).
    pub failed_files: Vec<String>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// One parsed claim file: what [`parse_file`] returns, kept for [`combine`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParsedFile {
    pub path: String,
    pub claims: Vec<Claim>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ParsedFile {
    /// This file without what only rendering its applications and services needs (their
    /// claim fields, the positions of those and their raw `values:`): enough for the
    /// checks across files, the chart references and the ApplicationSets, and much smaller.
    /// Whoever renders the applications must parse the file again.
    pub fn outline(&self) -> ParsedFile {
        let mut claims = self.claims.clone();
        claims.iter_mut().for_each(Claim::to_outline);
        ParsedFile {
            path: self.path.clone(),
            claims,
            diagnostics: self.diagnostics.clone(),
        }
    }

    /// Whether [`ParsedFile::outline`] leaves anything out.
    pub fn has_workloads(&self) -> bool {
        self.claims.iter().any(|c| c.workloads().is_some())
    }
}

/// Parses and validates claim files `(path, text)`, then checks them against each other.
/// Files are processed in path order, so the result does not depend on input order.
pub fn load(files: &[(String, String)], limits: &Limits) -> Loaded {
    // Files are independent: parse them on all cores, then combine in path order.
    let parsed = crate::par::map(files, 16, |(path, text)| {
        let (claims, diagnostics) = parse_file(path, text, limits);
        ParsedFile {
            path: path.clone(),
            claims,
            diagnostics,
        }
    });
    combine(parsed)
}

/// Combines parsed files (in any order) and checks them against each other: a file with
/// an error contributes no claims.
pub fn combine(files: Vec<ParsedFile>) -> Loaded {
    combine_named(files, check::check_names)
}

/// [`combine`] with the check of application and service names given: `names` gets the
/// claims of the files without errors, in path order, and says what [`check_names`]
/// would (the daemon keeps those names up to date file by file instead).
pub fn combine_named(
    mut files: Vec<ParsedFile>,
    names: impl FnOnce(&[Claim]) -> Vec<Diagnostic>,
) -> Loaded {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Loaded::default();
    for f in files {
        if f.diagnostics.iter().any(Diagnostic::is_error) {
            out.failed_files.push(f.path);
        } else {
            out.claims.extend(f.claims);
        }
        out.diagnostics.extend(f.diagnostics);
    }
    let mut cross = check::check_rest(&out.claims);
    cross.extend(names(&out.claims));
    for d in &cross {
        if d.is_error() && !out.failed_files.contains(&d.file) {
            out.failed_files.push(d.file.clone());
        }
    }
    out.diagnostics.extend(cross);
    let failed: std::collections::BTreeSet<String> = out.failed_files.iter().cloned().collect();
    out.claims.retain(|c| !failed.contains(&c.source));
    out.failed_files.sort();
    out.diagnostics.sort();
    out
}

/// Parses one file into claims. Every document is read, even after an error.
pub fn parse_file(path: &str, text: &str, limits: &Limits) -> (Vec<Claim>, Vec<Diagnostic>) {
    let mut ctx = reader::Ctx::new(path);
    let docs = match yaml::parse_documents(text, limits) {
        Ok(docs) => docs,
        Err(e) => {
            ctx.error(e.pos, e.message);
            return (Vec::new(), ctx.diags);
        }
    };
    let mut claims = Vec::new();
    for doc in &docs {
        if doc.value == NodeValue::Null {
            continue;
        }
        if let Some(claim) = kinds::read_claim(&mut ctx, path, doc) {
            claims.push(claim);
        }
    }
    (claims, ctx.diags)
}

#[cfg(test)]
mod tests;
