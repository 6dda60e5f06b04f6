//! Readers for the five claim kinds.

use super::names::{host_problem, label_problem};
use super::reader::{as_string, describe, suggest, Ctx, Obj, Spanned};
use super::*;
use crate::yaml::Node;

const KINDS: [(&str, &str); 5] = [
    ("BootstrapClaim", PLATFORM_API),
    ("ApplicationClaim", PLATFORM_API),
    ("PlatformApplicationClaim", PLATFORM_API),
    ("Project", CATALYST_API),
    ("Environment", CATALYST_API),
];

pub fn read_claim(ctx: &mut Ctx, path: &str, doc: &Node) -> Option<Claim> {
    let obj = Obj::new(ctx, doc, "")?;
    let errors_before = ctx.error_count();
    let api = obj.req_str(ctx, "apiVersion");
    let kind = obj.req_str(ctx, "kind");
    let (api, kind) = (api?, kind?);
    let Some(&(kind_name, want_api)) = KINDS.iter().find(|(k, _)| *k == kind.value) else {
        let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        let hint = match suggest(&kind.value, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("claims/ holds only claims: {}", names.join(", ")),
        };
        ctx.error(
            kind.pos,
            format!("unknown kind `{}` ({}); {hint}", kind.value, api.value),
        );
        return None;
    };
    if api.value != want_api {
        ctx.error(
            api.pos,
            format!(
                "{kind_name} has apiVersion `{}`; expected `{want_api}`",
                api.value
            ),
        );
    }
    let meta = obj.req_obj(ctx, "metadata");
    let (name, namespace, labels) = match meta {
        Some(meta) => read_metadata(ctx, meta),
        None => (None, None, Vec::new()),
    };
    if obj.get("status").is_some() {
        ctx.warning(
            obj.key_pos("status").unwrap_or(doc.pos),
            "`status` is ignored: claimd reports status itself (commit statuses and `claimd status`)",
        );
    }
    let spec_obj = obj.req_obj(ctx, "spec");
    obj.finish(ctx);
    let spec = match (kind_name, spec_obj) {
        ("BootstrapClaim", Some(s)) => read_bootstrap(ctx, s).map(Spec::Bootstrap),
        ("ApplicationClaim", Some(s)) => read_workload_claim(ctx, s, false).map(Spec::Application),
        ("PlatformApplicationClaim", Some(s)) => {
            read_workload_claim(ctx, s, true).map(Spec::Platform)
        }
        ("Project", Some(s)) => read_project(ctx, s).map(Spec::Project),
        ("Environment", Some(s)) => read_environment(ctx, s).map(Spec::Environment),
        _ => None,
    };
    if ctx.error_count() > errors_before {
        return None;
    }
    let kind_is_project = kind_name == "Project";
    Some(Claim {
        source: path.to_string(),
        pos: doc.pos,
        name: name?,
        namespace: namespace.clone(),
        labels,
        spec: match spec? {
            Spec::Project(mut p) if kind_is_project => {
                p.team = namespace;
                Spec::Project(p)
            }
            other => other,
        },
    })
}

type Metadata = (
    Option<Spanned<String>>,
    Option<Spanned<String>>,
    Vec<(String, String)>,
);

fn read_metadata(ctx: &mut Ctx, meta: Obj<'_>) -> Metadata {
    let name = meta.req_str(ctx, "name").and_then(|n| label(ctx, n));
    let namespace = meta.opt_str(ctx, "namespace").and_then(|n| label(ctx, n));
    let mut labels = Vec::new();
    if let Some(l) = meta.opt_obj(ctx, "labels") {
        for (k, v) in l.node.as_map().unwrap_or_default() {
            if let Some(s) = as_string(ctx, v, &format!("metadata.labels.{}", k.name)) {
                labels.push((k.name.clone(), s.value));
            }
        }
    }
    if let Some(a) = meta.get("annotations") {
        Obj::new(ctx, a, "metadata.annotations");
    }
    meta.finish(ctx);
    (name, namespace, labels)
}

/// Keeps `name` if it is a DNS-1123 label, else reports why not.
fn label(ctx: &mut Ctx, name: Spanned<String>) -> Option<Spanned<String>> {
    match label_problem(&name.value) {
        None => Some(name),
        Some(problem) => {
            ctx.error(name.pos, problem);
            None
        }
    }
}

fn one_of(
    ctx: &mut Ctx,
    value: Spanned<String>,
    field: &str,
    allowed: &[&str],
) -> Option<Spanned<String>> {
    if allowed.contains(&value.value.as_str()) {
        return Some(value);
    }
    let hint = match suggest(&value.value, allowed) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("expected one of: {}", allowed.join(", ")),
    };
    ctx.error(value.pos, format!("`{field}` is `{}`; {hint}", value.value));
    None
}

fn url(
    ctx: &mut Ctx,
    value: Spanned<String>,
    field: &str,
    schemes: &[&str],
) -> Option<Spanned<String>> {
    let ok = schemes.iter().any(|s| {
        value
            .value
            .strip_prefix(s)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    });
    if ok {
        return Some(value);
    }
    ctx.error(
        value.pos,
        format!(
            "`{field}` is `{}`; expected a URL starting with {}",
            value.value,
            schemes.join(" or ")
        ),
    );
    None
}

fn read_bootstrap(ctx: &mut Ctx, spec: Obj<'_>) -> Option<Bootstrap> {
    let gitea_url = spec
        .req_str(ctx, "giteaURL")
        .and_then(|u| url(ctx, u, "spec.giteaURL", &["http://", "https://"]));
    let organization = spec
        .req_str(ctx, "organization")
        .and_then(|o| label(ctx, o));
    let charts_repository = spec.opt_obj(ctx, "chartsRepository").and_then(|c| {
        if let Some(t) = c.opt_str(ctx, "type") {
            one_of(ctx, t, "spec.chartsRepository.type", &["oci"]);
        }
        let url_v = c
            .req_str(ctx, "url")
            .and_then(|u| url(ctx, u, "spec.chartsRepository.url", &["oci://"]));
        let version = c.opt_str(ctx, "version");
        c.finish(ctx);
        Some(ChartsRepository {
            url: url_v?,
            version,
        })
    });
    let repos = spec.req_obj(ctx, "repositories");
    let (gitops_repository, charts_git_repository) = match repos {
        Some(r) => {
            let v = r.req_str(ctx, "voltran").and_then(|n| label(ctx, n));
            let c = r.opt_str(ctx, "charts").and_then(|n| label(ctx, n));
            r.finish(ctx);
            (v, c)
        }
        None => (None, None),
    };
    let gitops = spec.req_obj(ctx, "gitOps");
    let mut envs = Vec::new();
    let (branch, cluster_type) = match gitops {
        Some(g) => {
            let branch = g.opt_str(ctx, "branch");
            let ct = g.req_str(ctx, "clusterType").and_then(|c| label(ctx, c));
            for (p, node) in g.req_list(ctx, "environments").unwrap_or_default() {
                if let Some(e) = as_string(ctx, node, &p).and_then(|e| label(ctx, e)) {
                    if envs.iter().any(|x: &Spanned<String>| x.value == e.value) {
                        ctx.error(e.pos, format!("environment `{}` is listed twice", e.value));
                    }
                    envs.push(e);
                }
            }
            g.finish(ctx);
            (branch, ct)
        }
        None => (None, None),
    };
    spec.finish(ctx);
    Some(Bootstrap {
        gitea_url: gitea_url?,
        organization: organization?,
        charts_repository,
        gitops_repository: gitops_repository?,
        charts_git_repository,
        branch: branch.map_or_else(|| "main".to_string(), |b| b.value),
        cluster_type: cluster_type?,
        environments: envs,
    })
}

type Placement = (
    Option<Spanned<String>>,
    Option<Spanned<String>>,
    Option<Spanned<String>>,
);

fn read_placement(ctx: &mut Ctx, spec: &Obj<'_>) -> Placement {
    let env = spec.req_str(ctx, "environment").and_then(|e| label(ctx, e));
    let ct = spec.req_str(ctx, "clusterType").and_then(|c| label(ctx, c));
    let ns = spec.opt_str(ctx, "namespace").and_then(|n| label(ctx, n));
    (env, ct, ns)
}

/// An ApplicationClaim (`spec.applications`) or PlatformApplicationClaim (`spec.services`).
fn read_workload_claim(ctx: &mut Ctx, spec: Obj<'_>, service: bool) -> Option<WorkloadClaim> {
    let (env, ct, ns) = read_placement(ctx, &spec);
    let (field, what) = if service {
        ("services", "service")
    } else {
        ("applications", "application")
    };
    let list = spec.req_list(ctx, field);
    let mut workloads = Vec::with_capacity(list.as_ref().map_or(0, Vec::len));
    for (p, node) in list.iter().flatten() {
        if let Some(w) = read_workload(ctx, node, p, service) {
            workloads.push(w);
        }
    }
    if list.is_some_and(|l| l.is_empty()) {
        ctx.error(
            spec.node.pos,
            format!("`spec.{field}` is empty; list at least one {what}"),
        );
    }
    spec.finish(ctx);
    Some(WorkloadClaim {
        environment: env?,
        cluster_type: ct?,
        namespace: ns,
        workloads: workloads.into(),
    })
}

/// Claim fields that a chart's mapping turns into values.
const APP_FIELDS: [&str; 8] = [
    "image",
    "replicas",
    "resources",
    "ingress",
    "env",
    "envFrom",
    "port",
    "autoscaling",
];
const SERVICE_FIELDS: [&str; 5] = ["version", "replicas", "storage", "backup", "resources"];

fn read_workload(ctx: &mut Ctx, node: &Node, path: &str, service: bool) -> Option<Workload> {
    let obj = Obj::new(ctx, node, path)?;
    let name = obj.req_str(ctx, "name").and_then(|n| label(ctx, n));
    let mut service_type = None;
    let mut production = false;
    if service {
        service_type = obj.req_str(ctx, "type").and_then(|t| {
            let names: Vec<&str> = ServiceType::ALL.iter().map(|(n, _)| *n).collect();
            let t = one_of(ctx, t, &format!("{path}.type"), &names)?;
            let st = ServiceType::ALL.iter().find(|(n, _)| *n == t.value)?.1;
            Some(Spanned::new(st, t.pos))
        });
        production = obj.opt_bool(ctx, "production").is_some_and(|b| b.value);
    }
    let chart = read_chart(ctx, &obj, service, service_type.as_ref());
    let namespace = obj.opt_str(ctx, "namespace").and_then(|n| label(ctx, n));
    let values = match obj.get("values") {
        Some(v) => match v.to_json() {
            Json::Object(m) => m,
            Json::Null => Map::new(),
            _ => {
                ctx.error(
                    v.pos,
                    format!(
                        "`{path}.values` must be a map of chart values, found {}",
                        describe(v)
                    ),
                );
                Map::new()
            }
        },
        None => Map::new(),
    };
    let mut fields = Map::new();
    let mut field_pos = Vec::new();
    let allowed: &[&str] = if service {
        &SERVICE_FIELDS
    } else {
        &APP_FIELDS
    };
    for &f in allowed {
        if let Some(v) = obj.get(f) {
            check_field(ctx, f, v, &format!("{path}.{f}"));
            fields.insert(f.to_string(), v.to_json());
            positions(v, f.to_string(), &mut field_pos);
        }
    }
    if let Some(v) = obj.get("values") {
        positions(v, "values".to_string(), &mut field_pos);
    }
    obj.finish(ctx);
    Some(Workload {
        name: name?,
        service_type,
        production,
        chart: chart?,
        namespace,
        fields: Json::Object(fields),
        field_pos,
        values,
    })
}

/// Positions of a field and of every key below it, by dotted path.
fn positions(node: &Node, path: String, out: &mut Vec<(String, Pos)>) {
    if let NodeValue::Map(entries) = &node.value {
        for (k, v) in entries {
            positions(v, format!("{path}.{}", k.name), out);
        }
    }
    out.push((path, node.pos));
}

fn read_chart(
    ctx: &mut Ctx,
    obj: &Obj<'_>,
    service: bool,
    service_type: Option<&Spanned<ServiceType>>,
) -> Option<ChartSpec> {
    let chart = if service {
        obj.opt_obj(ctx, "chart")
    } else {
        obj.req_obj(ctx, "chart")
    };
    let Some(chart) = chart else {
        // Services default to the chart named after their type.
        let t = service_type?;
        return Some(ChartSpec {
            name: Spanned::new(t.value.as_str().to_string(), t.pos),
            version: None,
            repository: None,
        });
    };
    let name = if service {
        chart
            .opt_str(ctx, "name")
            .or_else(|| service_type.map(|t| Spanned::new(t.value.as_str().to_string(), t.pos)))
    } else {
        chart.req_str(ctx, "name")
    }
    .and_then(|n| label(ctx, n));
    let version = chart.get("version").and_then(|v| match &v.value {
        NodeValue::Float(_) | NodeValue::Int(_) => {
            ctx.error(
                v.pos,
                format!(
                    "`{}.chart.version` must be a string: write it in quotes, e.g. \"1.0.0\"",
                    obj.path
                ),
            );
            None
        }
        _ => as_string(ctx, v, &format!("{}.chart.version", obj.path)),
    });
    let version = version.and_then(|v| {
        if semver_like(&v.value) {
            Some(v)
        } else {
            ctx.error(
                v.pos,
                format!(
                    "chart version `{}` is not a semantic version like 1.2.3",
                    v.value
                ),
            );
            None
        }
    });
    let repository = chart.opt_str(ctx, "repository").and_then(|u| {
        url(
            ctx,
            u,
            &format!("{}.chart.repository", obj.path),
            &["oci://"],
        )
    });
    chart.finish(ctx);
    Some(ChartSpec {
        name: name?,
        version,
        repository,
    })
}

fn semver_like(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Type checks of the mappable fields.
fn check_field(ctx: &mut Ctx, field: &str, node: &Node, path: &str) {
    match field {
        "image" => {
            if let Some(o) = Obj::new(ctx, node, path) {
                o.opt_str(ctx, "repository");
                o.opt_str(ctx, "tag");
                if let Some(p) = o.opt_str(ctx, "pullPolicy") {
                    one_of(
                        ctx,
                        p,
                        &format!("{path}.pullPolicy"),
                        &["Always", "IfNotPresent", "Never"],
                    );
                }
                o.finish(ctx);
            }
        }
        "replicas" => int_in(ctx, node, path, 0..=1000),
        "port" => int_in(ctx, node, path, 1..=65535),
        "version" => {
            as_string(ctx, node, path);
        }
        "resources" => check_resources(ctx, node, path),
        "ingress" => {
            if let Some(o) = Obj::new(ctx, node, path) {
                o.opt_bool(ctx, "enabled");
                if let Some(h) = o.opt_str(ctx, "host") {
                    if let Some(problem) = host_problem(&h.value) {
                        ctx.error(h.pos, problem);
                    }
                }
                o.opt_str(ctx, "className");
                if let Some(p) = o.opt_str(ctx, "path") {
                    if !p.value.starts_with('/') {
                        ctx.error(p.pos, format!("`{path}.path` must start with `/`"));
                    }
                }
                o.opt_str(ctx, "tlsSecretName").and_then(|n| label(ctx, n));
                o.opt_str(ctx, "clusterIssuer");
                o.finish(ctx);
            }
        }
        "env" => check_env(ctx, node, path),
        "envFrom" if !matches!(node.value, NodeValue::Seq(_)) => {
            ctx.error(
                node.pos,
                format!("`{path}` must be a list, found {}", describe(node)),
            );
        }
        "autoscaling" => {
            if let Some(o) = Obj::new(ctx, node, path) {
                o.opt_bool(ctx, "enabled");
                let min = o.opt_int(ctx, "minReplicas", 1..=1000);
                let max = o.opt_int(ctx, "maxReplicas", 1..=1000);
                if let (Some(min), Some(max)) = (&min, &max) {
                    if min.value > max.value {
                        ctx.error(
                            max.pos,
                            format!(
                                "`{path}.maxReplicas` ({}) is below minReplicas ({})",
                                max.value, min.value
                            ),
                        );
                    }
                }
                o.opt_int(ctx, "targetCPUUtilizationPercentage", 1..=100);
                o.finish(ctx);
            }
        }
        "storage" => {
            if let Some(o) = Obj::new(ctx, node, path) {
                if let Some(s) = o.opt_str(ctx, "size") {
                    quantity(ctx, &s, &format!("{path}.size"));
                }
                o.opt_str(ctx, "storageClass");
                o.finish(ctx);
            }
        }
        "backup" => {
            if let Some(o) = Obj::new(ctx, node, path) {
                if let Some(b) = o.opt_str(ctx, "s3Bucket") {
                    url(ctx, b, &format!("{path}.s3Bucket"), &["s3://"]);
                }
                o.opt_str(ctx, "schedule");
                o.opt_str(ctx, "retention");
                o.finish(ctx);
            }
        }
        _ => {}
    }
}

fn int_in(ctx: &mut Ctx, node: &Node, path: &str, range: std::ops::RangeInclusive<i64>) {
    match node.value {
        NodeValue::Int(i) if range.contains(&i) => {}
        NodeValue::Int(i) => ctx.error(
            node.pos,
            format!(
                "`{path}` is {i}, expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        ),
        _ => ctx.error(
            node.pos,
            format!("`{path}` must be a whole number, found {}", describe(node)),
        ),
    }
}

fn check_resources(ctx: &mut Ctx, node: &Node, path: &str) {
    let Some(o) = Obj::new(ctx, node, path) else {
        return;
    };
    for part in ["requests", "limits"] {
        let Some(m) = o.opt_obj(ctx, part) else {
            continue;
        };
        for (k, v) in m.node.as_map().unwrap_or_default() {
            let p = format!("{path}.{part}.{}", k.name);
            match &v.value {
                NodeValue::Str(s) => quantity(ctx, &Spanned::new(s.clone(), v.pos), &p),
                NodeValue::Int(_) | NodeValue::Float(_) => {}
                _ => ctx.error(
                    v.pos,
                    format!(
                        "`{p}` must be a quantity such as 500m or 512Mi, found {}",
                        describe(v)
                    ),
                ),
            }
        }
    }
    o.finish(ctx);
}

/// Kubernetes resource quantity: `500m`, `1.5`, `512Mi`, `1e3`, `2Gi`.
fn quantity(ctx: &mut Ctx, value: &Spanned<String>, path: &str) {
    if super::quantity::parse(&value.value).is_none() {
        ctx.error(
            value.pos,
            format!(
                "`{path}` is `{}`, not a Kubernetes quantity; write e.g. 500m, 2, 512Mi or 10Gi",
                value.value
            ),
        );
    }
}

fn check_env(ctx: &mut Ctx, node: &Node, path: &str) {
    let NodeValue::Seq(items) = &node.value else {
        ctx.error(
            node.pos,
            format!(
                "`{path}` must be a list of {{name, value}}, found {}",
                describe(node)
            ),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        read_env_var(ctx, item, &format!("{path}[{i}]"), true);
    }
}

fn read_env_var(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    allow_value_from: bool,
) -> Option<(String, String)> {
    let o = Obj::new(ctx, node, path)?;
    let name = o.req_str(ctx, "name");
    if let Some(n) = &name {
        let valid = n.value.bytes().next().is_some_and(|b| !b.is_ascii_digit())
            && n.value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            ctx.error(n.pos, format!("`{}` is not a valid environment variable name (letters, digits, `_`, `.`, `-`; not starting with a digit)", n.value));
        }
    }
    let value = o.opt_str(ctx, "value");
    if allow_value_from {
        o.opt_obj(ctx, "valueFrom");
    }
    o.finish(ctx);
    Some((name?.value, value.map(|v| v.value).unwrap_or_default()))
}

fn read_project(ctx: &mut Ctx, spec: Obj<'_>) -> Option<Project> {
    let source = spec.req_obj(ctx, "source");
    let (repo, branch) = match source {
        Some(s) => {
            let r = s.req_str(ctx, "repositoryUrl").and_then(|u| {
                url(
                    ctx,
                    u,
                    "spec.source.repositoryUrl",
                    &["https://", "http://", "ssh://", "git@"],
                )
            });
            let b = s.opt_str(ctx, "branch");
            s.finish(ctx);
            (r, b)
        }
        None => (None, None),
    };
    let deployment = spec.req_obj(ctx, "deployment");
    let (dtype, dpath, values) = match deployment {
        Some(d) => {
            let t = d.req_str(ctx, "type").and_then(|t| {
                one_of(
                    ctx,
                    t,
                    "spec.deployment.type",
                    &["helm", "manifest", "kustomize"],
                )
            });
            let t = t.and_then(|t| {
                if t.value == "helm" {
                    Some(t)
                } else {
                    ctx.error(
                        t.pos,
                        format!(
                            "deployment type `{}` is not supported by claimd yet; use `helm`",
                            t.value
                        ),
                    );
                    None
                }
            });
            let p = d.req_str(ctx, "path").and_then(|p| {
                let clean = p.value.trim_start_matches("./");
                if clean.starts_with('/') || clean.split('/').any(|s| s == "..") {
                    ctx.error(p.pos, format!("`spec.deployment.path` `{}` must stay inside the repository (no leading `/`, no `..`)", p.value));
                    None
                } else {
                    Some(p)
                }
            });
            let values = match d.get("values").map(|v| (v, v.to_json())) {
                Some((_, Json::Object(m))) => m,
                Some((v, _)) => {
                    ctx.error(
                        v.pos,
                        "`spec.deployment.values` must be a map of chart values",
                    );
                    Map::new()
                }
                None => Map::new(),
            };
            d.finish(ctx);
            (t, p, values)
        }
        None => (None, None, Map::new()),
    };
    let mut quota_cpu = None;
    let mut quota_memory = None;
    if let Some(r) = spec.opt_obj(ctx, "resources") {
        if let Some(q) = r.opt_obj(ctx, "defaultQuota") {
            quota_cpu = q.opt_str(ctx, "cpu");
            quota_memory = q.opt_str(ctx, "memory");
            for (v, p) in [(&quota_cpu, "cpu"), (&quota_memory, "memory")] {
                if let Some(v) = v {
                    quantity(ctx, v, &format!("spec.resources.defaultQuota.{p}"));
                }
            }
            q.finish(ctx);
        }
        r.finish(ctx);
    }
    spec.finish(ctx);
    Some(Project {
        team: None,
        repository_url: repo?,
        branch,
        deployment_type: dtype?,
        path: dpath?,
        values,
        quota_cpu,
        quota_memory,
    })
}

fn read_environment(ctx: &mut Ctx, spec: Obj<'_>) -> Option<Environment> {
    let project_ref = spec.req_obj(ctx, "projectRef").and_then(|p| {
        let n = p.req_str(ctx, "name").and_then(|n| label(ctx, n));
        p.finish(ctx);
        n
    });
    let env_type = spec
        .req_str(ctx, "type")
        .and_then(|t| one_of(ctx, t, "spec.type", &["development", "deployment"]));
    let mut commit_sha = None;
    let mut branch = None;
    let mut pr_number = None;
    if let Some(s) = spec.opt_obj(ctx, "source") {
        commit_sha = s.opt_str(ctx, "commitSha").and_then(|c| {
            let ok = (7..=40).contains(&c.value.len()) && c.value.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if ok {
                Some(c)
            } else {
                ctx.error(
                    c.pos,
                    format!(
                        "`spec.source.commitSha` is `{}`; expected a git commit id: 7 to 40 lower case hex digits",
                        c.value
                    ),
                );
                None
            }
        });
        branch = s.opt_str(ctx, "branch");
        pr_number = s.opt_int(ctx, "prNumber", 1..=i64::from(u32::MAX));
        s.finish(ctx);
    }
    let mut env_vars = Vec::new();
    if let Some(c) = spec.opt_obj(ctx, "config") {
        for (p, node) in c.opt_list(ctx, "envVars").unwrap_or_default() {
            if let Some(v) = read_env_var(ctx, node, &p, false) {
                env_vars.push(v);
            }
        }
        c.finish(ctx);
    }
    spec.finish(ctx);
    Some(Environment {
        project_ref: project_ref?,
        env_type: env_type?,
        commit_sha,
        branch,
        pr_number,
        env_vars,
    })
}
