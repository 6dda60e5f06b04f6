//! Checks across claims and files: duplicates, undeclared environments, references.

use super::names::environment_namespace;
use super::reader::Ctx;
use super::*;
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

/// The clusterType folder claimd uses for Catalyst Environments.
pub const RESERVED_CLUSTER_TYPE: &str = "catalyst";

/// Applications and services: names unique per environment (the first one in claim
/// order keeps its name; every later one is an error). The daemon keeps the same check
/// up to date file by file instead (`pipeline`'s name index).
pub fn check_names(claims: &[Claim]) -> Vec<Diagnostic> {
    // Sized up front: growing a map of ten thousand names is most of this check's time.
    let total: usize = claims
        .iter()
        .filter_map(|c| c.workloads())
        .map(|(wc, _)| wc.workloads.len())
        .sum();
    let mut names: rustc_hash::FxHashMap<(&str, &str, &str), (&Claim, Pos)> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(total, Default::default());
    let mut diags = Vec::new();
    for c in claims {
        let Some((wc, _)) = c.workloads() else {
            continue;
        };
        let (env, ct) = (&wc.environment.value, &wc.cluster_type.value);
        for w in wc.workloads.iter() {
            match names.entry((ct, env, &w.name.value)) {
                Entry::Occupied(first) => {
                    let (first, pos) = first.get();
                    diags.push(duplicate_name(
                        Seen::new(&c.source, w.name.pos),
                        Seen::new(&first.source, *pos),
                        &w.name.value,
                        ct,
                        env,
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert((c, w.name.pos));
                }
            }
        }
    }
    diags
}

/// Where a name is defined: its claim file and position.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub file: &'a str,
    pub pos: Pos,
}

impl<'a> Seen<'a> {
    pub fn new(file: &'a str, pos: Pos) -> Seen<'a> {
        Seen { file, pos }
    }
}

/// The error on an application or service whose name is taken in its environment.
pub fn duplicate_name(
    again: Seen<'_>,
    first: Seen<'_>,
    name: &str,
    cluster_type: &str,
    environment: &str,
) -> Diagnostic {
    let mut ctx = Ctx::new(again.file);
    ctx.error(
        again.pos,
        format!(
            "`{name}` is already defined in environment `{cluster_type}/{environment}` at {}:{}; application and service names must be unique per environment",
            first.file, first.pos
        ),
    );
    ctx.diags.remove(0)
}

/// Every check across claims but [`check_names`].
pub fn check_rest(claims: &[Claim]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut report = |file: &str, pos: Pos, msg: String| {
        let mut ctx = Ctx::new(file);
        ctx.error(pos, msg);
        diags.extend(ctx.diags);
    };

    // The same claim twice.
    let mut seen: BTreeMap<(&str, &str), &Claim> = BTreeMap::new();
    for c in claims {
        if let Some(first) = seen.insert((c.kind(), &c.name.value), c) {
            report(
                &c.source,
                c.name.pos,
                format!(
                    "{} `{}` is already defined at {}:{}; claim names must be unique per kind",
                    c.kind(),
                    c.name.value,
                    first.source,
                    first.name.pos
                ),
            );
        }
    }

    // BootstrapClaims: one per clusterType, and they must agree on the GitOps repository.
    let mut bootstraps: BTreeMap<&str, (&Claim, &Bootstrap)> = BTreeMap::new();
    for c in claims {
        let Spec::Bootstrap(b) = &c.spec else {
            continue;
        };
        if let Some((first, fb)) = bootstraps.get(b.cluster_type.value.as_str()) {
            report(
                &c.source,
                b.cluster_type.pos,
                format!(
                    "clusterType `{}` already has a BootstrapClaim (`{}` at {}:{}); use one per clusterType",
                    b.cluster_type.value, first.name.value, first.source, fb.cluster_type.pos
                ),
            );
            continue;
        }
        if let Some((first, fb)) = bootstraps.values().next() {
            if fb.gitops_repo_url() != b.gitops_repo_url() || fb.branch != b.branch {
                report(
                    &c.source,
                    b.gitea_url.pos,
                    format!(
                        "BootstrapClaims disagree on the GitOps repository: {}@{} here, {}@{} in `{}` ({})",
                        b.gitops_repo_url(),
                        b.branch,
                        fb.gitops_repo_url(),
                        fb.branch,
                        first.name.value,
                        first.source
                    ),
                );
            }
        }
        bootstraps.insert(&b.cluster_type.value, (c, b));
    }

    // Workloads: declared environments (their names: [`check_names`]).
    for c in claims {
        let Some((wc, _)) = c.workloads() else {
            continue;
        };
        let (env, ct) = (&wc.environment, &wc.cluster_type);
        if ct.value == RESERVED_CLUSTER_TYPE {
            report(
                &c.source,
                ct.pos,
                format!("clusterType `{RESERVED_CLUSTER_TYPE}` is reserved for Catalyst Environments; choose another name"),
            );
        }
        if let Some((bc, b)) = bootstraps.get(ct.value.as_str()) {
            if !b.environments.iter().any(|e| e.value == env.value) {
                let declared: Vec<&str> = b.environments.iter().map(|e| e.value.as_str()).collect();
                report(
                    &c.source,
                    env.pos,
                    format!(
                        "environment `{}` is not declared for clusterType `{}` in BootstrapClaim `{}` ({}); declared: {}. Add it to spec.gitOps.environments there",
                        env.value,
                        ct.value,
                        bc.name.value,
                        bc.source,
                        declared.join(", ")
                    ),
                );
            }
        }
    }

    // Environments: their Project exists; namespaces are unique.
    let projects: BTreeMap<&str, (&Claim, &Project)> = claims
        .iter()
        .filter_map(|c| match &c.spec {
            Spec::Project(p) => Some((c.name.value.as_str(), (c, p))),
            _ => None,
        })
        .collect();
    let mut namespaces: BTreeMap<String, &Claim> = BTreeMap::new();
    for c in claims {
        let Spec::Environment(e) = &c.spec else {
            continue;
        };
        let Some((pc, p)) = projects.get(e.project_ref.value.as_str()) else {
            let known: Vec<&str> = projects.keys().copied().collect();
            report(
                &c.source,
                e.project_ref.pos,
                format!(
                    "Project `{}` is not defined in claims/ (known: {}); add the Project claim or fix spec.projectRef.name",
                    e.project_ref.value,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
            continue;
        };
        let team = environment_team(c, p);
        let Some(team) = team else {
            report(
                &c.source,
                c.name.pos,
                format!(
                    "cannot tell the team of Environment `{}`: set the label catalyst.dev/team or the Project's metadata.namespace",
                    c.name.value
                ),
            );
            continue;
        };
        let ns = environment_namespace(&team, &pc.name.value, &c.name.value);
        if let Some(first) = namespaces.insert(ns.clone(), c) {
            report(
                &c.source,
                c.name.pos,
                format!(
                    "namespace `{ns}` is also used by Environment `{}` ({})",
                    first.name.value, first.source
                ),
            );
        }
    }
    // A preview's namespace that applications go to as well: claimd would own it twice.
    // (Once no Environment's namespace is left, nothing can clash: the rest is not walked.)
    for c in claims {
        if namespaces.is_empty() {
            break;
        }
        let Some((wc, _)) = c.workloads() else {
            continue;
        };
        for w in wc.workloads.iter() {
            let ns = wc.namespace_of(w);
            if let Some(env) = namespaces.remove(&ns.value) {
                report(
                    &env.source,
                    env.name.pos,
                    format!(
                        "namespace `{}` is also where application `{}` of {} goes; rename the Environment or the application's namespace",
                        ns.value, w.name.value, c.source
                    ),
                );
            }
        }
    }
    diags
}

/// The team of an environment: its `catalyst.dev/team` label, else its Project's namespace.
pub fn environment_team(env: &Claim, project: &Project) -> Option<String> {
    env.label("catalyst.dev/team")
        .map(str::to_string)
        .or_else(|| project.team.as_ref().map(|t| t.value.clone()))
}
