//! claimd's own Helm chart (`deploy/helm/claimd`), proven like the six charts of `charts/`
//! (see `charts.rs`, whose Helm and read-back helpers this module uses): real Helm 4
//! (`tests/helm/charts.py`) and the real kube-apiserver 1.20.2 with the operators' CRDs.
//!
//! For the default values and for `HA` (3 replicas, a ReadWriteMany PersistentVolumeClaim,
//! registries and Argo CD with Secret references, ServiceMonitor, PrometheusRule, Grafana
//! dashboard):
//!
//! 1. `helm lint` has no errors and no warnings;
//! 2. `helm install` creates every rendered object and each one reads back from the API
//!    server with every field Helm rendered (the server drops what it does not know; the
//!    comparison shows it did not), the custom resources also pass
//!    `support::crd::validate` against the published prometheus-operator CRDs;
//! 3. the Deployment is what an operator expects (`claimd serve --config
//!    /etc/claimd/claimd.yaml`, probes on the metrics port, non-root, read-only root,
//!    no capabilities, resources), the ClusterRole has exactly the rules of
//!    `deploy/kubernetes/rbac.yaml` (and the Lease Role those of its Role, once it has
//!    one), the API server's RBAC gives the ServiceAccount what claimd calls and no more
//!    (SubjectAccessReviews), and the ConfigMap's claimd.yaml is accepted by claimd's own
//!    config loader (`Config::parse`) with every secret it names mounted from a Secret at
//!    that path, and with `kubernetes.leases` for 3 replicas (a loader that does not know
//!    that key yet reads the rest);
//! 4. (HA) `promtool check rules` and `promtool test rules` (tests/prometheus/
//!    claimd-alerts.test.yaml: series that must fire and must not, per alert) on the rules
//!    of the rendered PrometheusRule; the dashboard's queries use exactly the metric names
//!    of the metrics contract and pass `promtool check rules` as recording rules.
//!
//! And values the chart must refuse: a schema violation (lint) and 3 replicas on a
//! ReadWriteOnce volume (install refused, nothing stored).

use crate::charts::{cluster_with_crds, helm_py, labels_include, read_back, Release, Report};
use crate::support::{crd, kube, setup};

use claimd::daemon::config::Config;
use serde::Deserialize as _;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RELEASE: &str = "claimd";
const CONFIG: &str = "/etc/claimd/claimd.yaml";

/// The metric names of claimd's /metrics (the metrics contract of issue 15), with their
/// types; histograms are queried through `_bucket`, `_sum` and `_count`.
const METRICS: &[(&str, &str)] = &[
    ("claimd_build_info", "gauge"),
    ("claimd_reconcile_total", "counter"),
    ("claimd_reconcile_duration_seconds", "histogram"),
    ("claimd_bot_commits_total", "counter"),
    ("claimd_bot_push_rejections_total", "counter"),
    ("claimd_noop_reconciles_total", "counter"),
    ("claimd_last_reconcile_timestamp_seconds", "gauge"),
    ("claimd_claim_failures_total", "counter"),
    ("claimd_queue_depth", "gauge"),
    ("claimd_chart_cache_total", "counter"),
    ("claimd_registry_errors_total", "counter"),
    ("claimd_kube_requests_total", "counter"),
    ("claimd_build_jobs", "gauge"),
    ("claimd_webhook_requests_total", "counter"),
    ("claimd_lease_held", "gauge"),
];

/// 3 replicas on a shared volume, every Secret reference, all monitoring on.
const HA: &str = "
replicaCount: 3
config:
  repositories:
    - giteaRepository: platform/voltran
    - giteaRepository: Platform/Shop
      branch: production
  chartsRepository: oci://registry.internal:5000/charts
  bot: {name: claimd-bot, email: claimd-bot@example.com}
gitea:
  url: https://gitea.example.com
  pageUrl: https://claimd.example.com
  ca: {existingSecret: gitea-ca, key: ca.crt}
persistence:
  enabled: true
  accessModes: [ReadWriteMany]
  size: 20Gi
registries:
  refresh: 0
  hosts:
    ghcr.io:
      username: bot
      password: {existingSecret: claimd-ghcr, key: password}
    registry.internal:5000:
      plainHttp: true
      token: {existingSecret: claimd-registry, key: token}
      ca: {existingSecret: claimd-registry, key: ca.crt}
argocd:
  urls: [https://argocd-server.argocd.svc/api/webhook]
  secret: {existingSecret: claimd-argocd, key: webhook.github.secret}
kubernetes:
  egressAllow: [10.0.0.0/8]
  buildEgressPorts: [443, 3000]
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus-stack}
prometheusRule:
  enabled: true
  labels: {release: kube-prometheus-stack}
  runbookBaseUrl: https://runbooks.example.com/claimd
grafanaDashboard:
  enabled: true
";

fn chart_dir() -> String {
    format!("{ROOT}/deploy/helm/claimd")
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Profile {
    Default,
    Ha,
}

#[test]
fn claimd_chart_default_values() {
    check(Profile::Default);
}

#[test]
fn claimd_chart_three_replicas_pvc_and_monitoring() {
    check(Profile::Ha);
}

fn check(profile: Profile) {
    let started = Instant::now();
    let mut r = Report::new("claimd");
    r.context = format!("{profile:?}: ");
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut values = Vec::new();
    if profile == Profile::Ha {
        let file = tmp.path().join("ha.yaml");
        std::fs::write(&file, HA).expect("write values");
        values.push(file.to_str().expect("utf-8 path").to_string());
    }
    let mut args = vec!["lint".to_string(), chart_dir()];
    for v in &values {
        args.extend(["--values".to_string(), v.clone()]);
    }
    let t = Instant::now();
    match helm_py(&args.iter().map(String::as_str).collect::<Vec<_>>()) {
        Ok(lint) => r.check(
            lint["errors"] == 0 && lint["warnings"] == 0,
            format!("helm lint is clean (0 errors, 0 warnings): {lint}"),
        ),
        Err(e) => r.fail(format!("helm lint did not run: {e}")),
    }
    r.time("lint", t);

    let Some(cluster) = cluster_with_crds() else {
        r.finish();
        return;
    };
    let t = Instant::now();
    let name = format!("{profile:?}").to_lowercase();
    let ns = cluster.fresh_namespace(&format!("claimd-chart-{name}"));
    let kubeconfig = cluster.kubeconfig();
    let mut args = vec![
        "install",
        &chart_dir(),
        "--release",
        RELEASE,
        "--namespace",
        &ns,
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8 path"),
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for v in &values {
        args.extend(["--values".to_string(), v.clone()]);
    }
    let installed = helm_py(&args.iter().map(String::as_str).collect::<Vec<_>>());
    r.time("install", t);
    let installed = match installed {
        Ok(v) => v,
        Err(e) => {
            r.fail(format!("helm install was refused: {e}"));
            r.finish();
            return;
        }
    };
    let t = Instant::now();
    let rel = read_back(cluster, &installed, &mut r);
    r.check(
        installed["status"] == "deployed",
        format!("release status deployed (got {})", installed["status"]),
    );
    let notes = installed["notes"].as_str().unwrap_or_default();
    r.check(
        notes.contains("claimd doctor") && notes.contains("/hooks/gitea"),
        format!("NOTES name the next steps (webhook URL, claimd doctor): {notes}"),
    );
    r.check(
        installed["hooks"].as_array().is_some_and(|h| h.is_empty()),
        format!("no hooks (not read back): {}", installed["hooks"]),
    );
    for o in &rel.objects {
        let labels = &o.back["metadata"]["labels"];
        let what = format!("{}/{}", o.kind, o.name);
        r.check(
            labels_include(labels, &standard_labels()),
            format!("{what}: the standard labels (got {labels})"),
        );
        r.check(
            labels["helm.sh/chart"] == "claimd-0.1.0",
            format!("{what}: helm.sh/chart=claimd-0.1.0"),
        );
        // The custom resources, against the published CRDs (strict: unknown fields too).
        if o.rendered["apiVersion"]
            .as_str()
            .is_some_and(|a| a.starts_with("monitoring.coreos.com/"))
        {
            if let Some(dir) = crd::crds_dir_or_skip("claimd_chart") {
                if let Err(errs) = crd::validate(&dir, &o.rendered) {
                    r.fail(format!(
                        "{what} does not match its CRD:\n{}",
                        errs.join("\n")
                    ));
                }
            }
        }
    }
    expect_workload(&mut r, profile, &rel);
    expect_rbac(&mut r, cluster, &rel, &ns);
    expect_config(&mut r, profile, &rel, &ns);
    match profile {
        Profile::Default => {
            for kind in [
                "ServiceMonitor",
                "PrometheusRule",
                "PodDisruptionBudget",
                "PersistentVolumeClaim",
            ] {
                r.check(rel.all(kind).is_empty(), format!("default: no {kind}"));
            }
            r.check(
                rel.all("ConfigMap").len() == 1,
                "default: one ConfigMap (no dashboard)",
            );
        }
        Profile::Ha => {
            expect_monitoring(&mut r, &rel, &ns, tmp.path());
        }
    }
    r.time("read back and checks", t);
    eprintln!(
        "claimd_chart: {profile:?}: {} object(s) in {ns}: {}",
        rel.objects.len(),
        rel.objects
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    r.time("total", started);
    r.finish();
}

fn standard_labels() -> Json {
    json!({
        "app.kubernetes.io/name": "claimd",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/managed-by": "Helm",
    })
}

/// Deployment, Service, volumes.
fn expect_workload(r: &mut Report, p: Profile, rel: &Release) {
    let d = rel.one(r, "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let replicas = if p == Profile::Ha { 3 } else { 1 };
    r.check(
        d["spec"]["replicas"] == replicas,
        format!("Deployment: {replicas} replica(s)"),
    );
    r.check(
        pod["securityContext"]["runAsNonRoot"] == true,
        "Deployment: pod securityContext.runAsNonRoot",
    );
    let c = pod["containers"][0].clone();
    r.check(
        pod["containers"].as_array().map(Vec::len) == Some(1),
        "Deployment: one container",
    );
    r.check(
        c["image"] == "ghcr.io/nimbusprotch/claimd:0.1.0",
        format!(
            "the image is claimd at the chart's appVersion: {}",
            c["image"]
        ),
    );
    r.check(
        c["command"] == json!(["claimd"]) && c["args"] == json!(["serve", "--config", CONFIG]),
        format!(
            "runs `claimd serve --config {CONFIG}`: {} {}",
            c["command"], c["args"]
        ),
    );
    let sc = &c["securityContext"];
    r.check(
        sc["readOnlyRootFilesystem"] == true
            && sc["allowPrivilegeEscalation"] == false
            && sc["capabilities"]["drop"] == json!(["ALL"]),
        format!("container: read-only root, no privilege escalation, drop ALL: {sc}"),
    );
    for (kind, res) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        r.check(
            c["resources"][kind][res].is_string(),
            format!("container: resources.{kind}.{res}"),
        );
    }
    let env = |name: &str| -> Json {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap_or_default()
    };
    r.check(
        env("CLAIMD_METRICS_LISTEN") == "0.0.0.0:9090",
        "CLAIMD_METRICS_LISTEN=0.0.0.0:9090 (the read-only listener the probes and Prometheus reach)",
    );
    let port_of = |name: &str| -> Json {
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].clone())
            .unwrap_or_default()
    };
    r.check(
        port_of("metrics") == 9090 && port_of("webhook") == 8080,
        "container ports metrics 9090 and webhook 8080",
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        r.check(
            c[probe]["httpGet"]["path"] == path && c[probe]["httpGet"]["port"] == "metrics",
            format!("{probe}: GET {path} on the metrics port: {}", c[probe]),
        );
    }
    let mount = |path: &str| -> Option<String> {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == path)
            .and_then(|m| m["name"].as_str().map(String::from))
    };
    let volume = |name: Option<String>| -> Json {
        pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| Some(v["name"].as_str().unwrap_or_default().to_string()) == name)
            .cloned()
            .unwrap_or_default()
    };
    r.check(
        volume(mount("/tmp"))["emptyDir"].is_object(),
        "/tmp is an emptyDir (the root filesystem is read-only)",
    );
    let data = volume(mount("/var/lib/claimd"));
    match p {
        Profile::Default => r.check(
            data["emptyDir"].is_object(),
            "default: the data folder is an emptyDir",
        ),
        Profile::Ha => {
            let pvc = rel.one(r, "PersistentVolumeClaim");
            r.check(
                data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"],
                "HA: the data folder is the chart's PersistentVolumeClaim",
            );
            r.check(
                pvc["spec"]["accessModes"] == json!(["ReadWriteMany"])
                    && pvc["spec"]["resources"]["requests"]["storage"] == "20Gi",
                format!("HA: the claim is ReadWriteMany, 20Gi: {}", pvc["spec"]),
            );
            r.check(
                d["spec"]["strategy"]["type"] == "RollingUpdate",
                "HA: rolling updates (the volume is shared)",
            );
            r.check(
                pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname",
                "HA: the replicas spread over nodes",
            );
            let pdb = rel.one(r, "PodDisruptionBudget");
            r.check(
                pdb["spec"]["maxUnavailable"] == 1
                    && pdb["spec"]["selector"]["matchLabels"]
                        == d["spec"]["selector"]["matchLabels"],
                "HA: the PodDisruptionBudget keeps all but one pod of the Deployment",
            );
        }
    }
    let sa = rel.one(r, "ServiceAccount");
    r.check(
        pod["serviceAccountName"] == sa["metadata"]["name"],
        "Deployment: runs as the chart's ServiceAccount",
    );
    let svc = rel.one(r, "Service");
    r.check(
        svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"],
        "Service: selects the Deployment's pods",
    );
    let ports: BTreeSet<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}:{}->{}", p["name"], p["port"], p["targetPort"]))
        .collect();
    r.check(
        ports
            == BTreeSet::from([
                "\"metrics\":9090->\"metrics\"".to_string(),
                "\"webhook\":8080->\"webhook\"".to_string(),
            ]),
        format!("Service: the webhook and metrics ports: {ports:?}"),
    );
}

/// ClusterRole = deploy/kubernetes/rbac.yaml's; the Lease Role; what the API server allows.
fn expect_rbac(r: &mut Report, cluster: &kube::Cluster, rel: &Release, ns: &str) {
    let shipped = std::fs::read_to_string(format!("{ROOT}/deploy/kubernetes/rbac.yaml"))
        .expect("read deploy/kubernetes/rbac.yaml");
    let docs: Vec<Json> = serde_yaml::Deserializer::from_str(&shipped)
        .map(|doc| Json::deserialize(doc).expect("rbac.yaml document"))
        .collect();
    let rules_of = |kind: &str| {
        docs.iter()
            .find(|o| o["kind"] == kind)
            .map(|o| o["rules"].clone())
    };
    let shipped_rules = rules_of("ClusterRole").expect("rbac.yaml has a ClusterRole");
    // The Lease Role: as rbac.yaml has it once it has one (the leases work adds it), else
    // what claimd's Lease code calls.
    let lease_rules = rules_of("Role").unwrap_or_else(|| {
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}])
    });
    let role = rel.one(r, "ClusterRole");
    r.check(
        role["rules"] == shipped_rules,
        format!(
            "ClusterRole: exactly the rules of deploy/kubernetes/rbac.yaml\n  chart: {}\n  file:  {shipped_rules}",
            role["rules"]
        ),
    );
    let binding = rel.one(r, "ClusterRoleBinding");
    let sa = format!("system:serviceaccount:{ns}:claimd");
    r.check(
        binding["roleRef"]["name"] == role["metadata"]["name"]
            && binding["subjects"]
                == json!([{"kind": "ServiceAccount", "name": "claimd", "namespace": ns}]),
        format!("ClusterRoleBinding: the ClusterRole to the ServiceAccount: {binding}"),
    );
    let leases = rel.one(r, "Role");
    r.check(
        leases["rules"] == lease_rules,
        format!(
            "Role: the Lease rules\n  chart: {}\n  want:  {lease_rules}",
            leases["rules"]
        ),
    );
    rel.one(r, "RoleBinding");
    // What the API server's RBAC makes of it, for the chart's ServiceAccount.
    let allowed = |verb: &str, group: &str, resource: &str, in_ns: &str| -> bool {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": sa,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": in_ns},
            },
        });
        let (status, body) = cluster.kubectl_like(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(&review.to_string()),
        );
        status == 201
            && serde_json::from_str::<Json>(&body).unwrap_or_default()["status"]["allowed"] == true
    };
    for (verb, group, resource, in_ns, want) in [
        ("update", "coordination.k8s.io", "leases", ns, true),
        ("create", "coordination.k8s.io", "leases", ns, true),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-system",
            false,
        ),
        ("patch", "coordination.k8s.io", "leases", ns, true),
        ("delete", "coordination.k8s.io", "leases", "default", false),
        ("patch", "", "namespaces", "", true),
        ("create", "batch", "jobs", "team-a", true),
        ("list", "argoproj.io", "applications", "argocd", true),
        ("get", "", "secrets", ns, false),
        ("create", "apps", "deployments", ns, false),
    ] {
        r.check(
            allowed(verb, group, resource, in_ns) == want,
            format!(
                "RBAC: the ServiceAccount may{} {verb} {group}/{resource} in {in_ns:?}",
                if want { "" } else { " not" }
            ),
        );
    }
}

/// The ConfigMap's claimd.yaml: claimd's loader accepts it; its secrets are mounted files.
fn expect_config(r: &mut Report, p: Profile, rel: &Release, ns: &str) {
    let cm = rel
        .all("ConfigMap")
        .into_iter()
        .find(|c| c["data"]["claimd.yaml"].is_string())
        .cloned()
        .unwrap_or_default();
    let text = cm["data"]["claimd.yaml"].as_str().unwrap_or_default();
    let yaml: Json = serde_yaml::from_str(text).unwrap_or_default();
    let leases = &yaml["kubernetes"]["leases"];
    match p {
        Profile::Default => r.check(leases.is_null(), "default (1 replica): no leases"),
        Profile::Ha => r.check(
            *leases == json!({"namespace": ns, "durationSeconds": 15}),
            format!("HA: kubernetes.leases in the release namespace: {leases}"),
        ),
    }
    // A claimd whose loader does not know kubernetes.leases yet (before the leases work is
    // merged) gets the rest of the file; once it knows the key, the whole file.
    let knows_leases = Config::parse(Path::new(CONFIG), "kubernetes: {leases: {}}\n").is_ok();
    let text = if leases.is_null() || knows_leases {
        text.to_string()
    } else {
        eprintln!("claimd_chart: this claimd has no kubernetes.leases: its loader reads the config without it");
        let mut without = yaml.clone();
        without["kubernetes"]
            .as_object_mut()
            .map(|k| k.remove("leases"));
        serde_yaml::to_string(&without).expect("YAML")
    };
    let config = match Config::parse(Path::new(CONFIG), &text) {
        Ok(c) => c,
        Err(e) => {
            r.fail(format!(
                "claimd's config loader refuses the ConfigMap's claimd.yaml: {e} ({})\n{text}",
                e.kind()
            ));
            return;
        }
    };
    r.check(
        config.listen.ip().is_loopback(),
        "config: the hook API stays on loopback",
    );
    r.check(
        config.gitea.webhook_listen.map(|a| a.port()) == Some(8080),
        "config: the webhook receiver listens on the container's webhook port",
    );
    r.check(
        config.gitea.webhook_url.as_deref()
            == Some(&*format!(
                "http://claimd.{ns}.svc.cluster.local:8080/hooks/gitea"
            )),
        format!(
            "config: the webhook URL Gitea gets is this release's Service: {:?}",
            config.gitea.webhook_url
        ),
    );
    r.check(
        config.data_dir.as_deref() == Some(Path::new("/var/lib/claimd"))
            && config.registries.cache.as_deref() == Some(Path::new("/var/lib/claimd/cache")),
        "config: dataDir and the chart cache on the data volume",
    );
    let repos: Vec<String> = config
        .repositories
        .iter()
        .map(|repo| {
            format!(
                "{} {} {}",
                repo.path.display(),
                repo.mirror,
                repo.branch.as_deref().unwrap_or("")
            )
        })
        .collect();
    let want: Vec<String> = match p {
        Profile::Default => vec![],
        Profile::Ha => vec![
            "/var/lib/claimd/mirrors/platform/voltran.git true main".into(),
            "/var/lib/claimd/mirrors/platform/shop.git true production".into(),
        ],
    };
    r.check(
        repos == want,
        format!("config: the repositories are Gitea mirrors in dataDir: {repos:?}"),
    );
    // Every secret file the config names, and the Secret key mounted there.
    let mut files = vec![
        ("gitea token", config.gitea.token_file.clone()),
        (
            "gitea webhook secret",
            config.gitea.webhook_secret_file.clone(),
        ),
        ("gitea CA", config.gitea.ca_file.clone()),
        ("argocd secret", config.argocd.secret_file.clone()),
        ("argocd CA", config.argocd.ca_file.clone()),
    ];
    for (host, h) in &config.registries.hosts {
        files.push(("registry password", h.password_file.clone()));
        files.push(("registry token", h.token_file.clone()));
        files.push(("registry CA", h.ca_file.clone()));
        r.check(
            h.password_env.is_none() && h.token_env.is_none(),
            format!("config: {host}'s secrets are files"),
        );
    }
    let mounted = mounted_secrets(rel);
    let named: Vec<(&str, String)> = files
        .iter()
        .filter_map(|(what, f)| f.as_ref().map(|f| (*what, f.display().to_string())))
        .collect();
    for (what, file) in &named {
        r.check(
            mounted.iter().any(|(path, _)| path == file),
            format!(
                "config: the {what} file {file} is a mounted Secret key (mounted: {mounted:?})"
            ),
        );
    }
    r.check(
        named.len() == mounted.len(),
        format!("every mounted Secret key is named by the config: {named:?} vs {mounted:?}"),
    );
    let want_secrets: BTreeSet<&str> = match p {
        Profile::Default => BTreeSet::from(["claimd-gitea/token", "claimd-gitea/webhook-secret"]),
        Profile::Ha => BTreeSet::from([
            "claimd-gitea/token",
            "claimd-gitea/webhook-secret",
            "gitea-ca/ca.crt",
            "claimd-argocd/webhook.github.secret",
            "claimd-ghcr/password",
            "claimd-registry/token",
            "claimd-registry/ca.crt",
        ]),
    };
    let got: BTreeSet<&str> = mounted.iter().map(|(_, s)| s.as_str()).collect();
    r.check(
        got == want_secrets,
        format!("the Secrets referenced in values are the ones mounted: {got:?}"),
    );
    if p == Profile::Ha {
        r.check(
            config.argocd.urls == ["https://argocd-server.argocd.svc/api/webhook"]
                && config.kubernetes.egress_allow == ["10.0.0.0/8"]
                && config.kubernetes.build_egress_ports == [443, 3000]
                && config.registries.refresh == Some(0)
                && config.registries.hosts["registry.internal:5000"].plain_http
                && config.charts_repository.as_deref()
                    == Some("oci://registry.internal:5000/charts")
                && config.bot.as_ref().is_some_and(|b| b.name == "claimd-bot"),
            "HA: argocd, kubernetes, registries, chartsRepository and bot reach claimd's config",
        );
    }
}

/// (absolute file path, "secret/key") for every Secret item of the mounted projected volumes.
fn mounted_secrets(rel: &Release) -> Vec<(String, String)> {
    let d = rel.rendered("Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let mut out = Vec::new();
    for m in pod["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(v) = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == m["name"])
        else {
            continue;
        };
        let at = m["mountPath"].as_str().unwrap_or_default();
        let secrets = v["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("secret"))
            .chain(v.get("secret"));
        for s in secrets {
            let name = s["name"]
                .as_str()
                .or(s["secretName"].as_str())
                .unwrap_or_default();
            for item in s["items"].as_array().into_iter().flatten() {
                out.push((
                    format!("{at}/{}", item["path"].as_str().unwrap_or_default()),
                    format!("{name}/{}", item["key"].as_str().unwrap_or_default()),
                ));
            }
        }
    }
    out
}

/// ServiceMonitor, PrometheusRule (promtool), dashboard (contract names, promtool).
fn expect_monitoring(r: &mut Report, rel: &Release, ns: &str, tmp: &Path) {
    let svc = rel.one(r, "Service");
    let sm = rel.one(r, "ServiceMonitor");
    r.check(
        labels_include(
            &svc["metadata"]["labels"],
            &sm["spec"]["selector"]["matchLabels"],
        ) && sm["spec"]["namespaceSelector"]["matchNames"] == json!([ns])
            && sm["spec"]["endpoints"][0]["port"] == "metrics"
            && sm["spec"]["endpoints"][0]["path"] == "/metrics",
        format!(
            "ServiceMonitor: scrapes /metrics on the Service's metrics port: {}",
            sm["spec"]
        ),
    );
    r.check(
        sm["metadata"]["labels"]["release"] == "kube-prometheus-stack",
        "ServiceMonitor: carries serviceMonitor.labels",
    );

    let rule = rel.one(r, "PrometheusRule");
    let groups = rule["spec"]["groups"].clone();
    let alerts: Vec<&Json> = groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let names: BTreeSet<&str> = alerts.iter().filter_map(|a| a["alert"].as_str()).collect();
    r.check(
        names
            == BTreeSet::from([
                "ClaimdBotPushRejected",
                "ClaimdDown",
                "ClaimdInstanceDown",
                "ClaimdReconcileFailing",
                "ClaimdReconcileStalled",
                "ClaimdRegistryErrors",
            ]),
        format!("PrometheusRule: the alerts {names:?}"),
    );
    for a in &alerts {
        let name = a["alert"].as_str().unwrap_or("?");
        for key in ["summary", "description", "runbook", "runbook_url"] {
            r.check(
                a["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                format!("{name}: annotation {key}"),
            );
        }
        r.check(
            a["labels"]["severity"].is_string(),
            format!("{name}: a severity label"),
        );
        let expr = a["expr"].as_str().unwrap_or_default();
        for m in metric_names(expr) {
            r.check(
                m == "up" || contract_metric(&m),
                format!("{name}: {m} is a metric of the contract"),
            );
        }
    }
    let Some(promtool) = promtool() else {
        r.fail("promtool is not available (tests/prometheus/setup.sh)");
        return;
    };
    // The rules as Prometheus loads them from the PrometheusRule, checked and unit-tested.
    let dir = tmp.join("promtool");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("rules.yaml"),
        json!({ "groups": groups }).to_string(),
    )
    .expect("write rules");
    let tests = std::fs::read_to_string(format!("{ROOT}/tests/prometheus/claimd-alerts.test.yaml"))
        .expect("read the alert tests")
        .replace("@NAMESPACE@", ns);
    std::fs::write(dir.join("tests.yaml"), tests).expect("write tests");
    let (ok, out) = run(&promtool, &["check", "rules", "rules.yaml"], &dir);
    r.check(
        ok && out.contains("SUCCESS: 6 rules found"),
        format!("promtool check rules: {out}"),
    );
    let (ok, out) = run(&promtool, &["test", "rules", "tests.yaml"], &dir);
    r.check(
        ok,
        format!("promtool test rules (fire / must not fire per alert): {out}"),
    );

    // The Grafana dashboard: the chart's file, for the sidecar, querying contract names.
    let cm = rel
        .all("ConfigMap")
        .into_iter()
        .find(|c| c["data"]["claimd.json"].is_string())
        .cloned()
        .unwrap_or_default();
    r.check(
        cm["metadata"]["labels"]["grafana_dashboard"] == "1",
        "dashboard ConfigMap: label grafana_dashboard=\"1\"",
    );
    let file = std::fs::read_to_string(format!("{}/dashboards/claimd.json", chart_dir()))
        .expect("read the dashboard");
    r.check(
        cm["data"]["claimd.json"].as_str() == Some(file.trim_end()),
        "dashboard ConfigMap: carries dashboards/claimd.json",
    );
    check_dashboard(r, &file, &promtool, &dir);
}

/// Every panel's queries use metrics of the contract, every metric has a panel, and every
/// query is valid PromQL (promtool, as recording rules, the variables filled in).
fn check_dashboard(r: &mut Report, text: &str, promtool: &str, dir: &Path) {
    let dash: Json = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            r.fail(format!("dashboard: not JSON: {e}"));
            return;
        }
    };
    r.check(
        dash["uid"].is_string() && dash["title"] == "claimd",
        "dashboard: a title and a uid",
    );
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?");
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        r.check(!targets.is_empty(), format!("panel {title}: has queries"));
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default().to_string();
            let names = metric_names(&expr);
            r.check(
                !names.is_empty() && names.iter().all(|m| contract_metric(m)),
                format!("panel {title}: queries only contract metrics: {names:?}"),
            );
            exprs.push(expr);
        }
    }
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for (m, kind) in METRICS {
        let hit = if *kind == "histogram" {
            used.contains(&format!("{m}_bucket"))
        } else {
            used.contains(*m)
        };
        r.check(hit, format!("dashboard: a panel shows {m}"));
    }
    let rules: Vec<Json> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$job", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": e})
        })
        .collect();
    let n = rules.len();
    std::fs::write(
        dir.join("dashboard.yaml"),
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .expect("write");
    let (ok, out) = run(promtool, &["check", "rules", "dashboard.yaml"], dir);
    r.check(
        ok && out.contains(&format!("SUCCESS: {n} rules found")),
        format!("dashboard queries are valid PromQL (promtool): {out}"),
    );
}

/// Whether `name` is a contract metric (histogram series by their suffixes).
fn contract_metric(name: &str) -> bool {
    METRICS.iter().any(|(m, kind)| {
        name == *m
            || (*kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(m)))
    })
}

/// The metric names a PromQL expression selects (identifiers followed by `{` or standing
/// alone, not functions, keywords, labels or strings).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "by",
        "without",
        "on",
        "ignoring",
        "unless",
        "and",
        "or",
        "rate",
        "increase",
        "histogram_quantile",
        "time",
        "absent",
        "le",
        "bool",
        "group_left",
        "group_right",
        "offset",
    ];
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let (mut i, mut in_str, mut depth_braces) = (0, false, 0);
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_str {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == '$' {
            // A dashboard variable ($job, $__rate_interval): not a metric.
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            _ => {}
        }
        if (c.is_ascii_alphabetic() || c == '_' || c == ':')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            let start = i;
            while i < bytes.len()
                && ((bytes[i] as char).is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || bytes[i] == b':')
            {
                i += 1;
            }
            let word = &expr[start..i];
            let rest = expr[i..].trim_start();
            let is_call = rest.starts_with('(');
            let in_grouping = expr[..start].trim_end().ends_with('(') && {
                let before = expr[..start].trim_end().trim_end_matches('(').trim_end();
                before.ends_with("by") || before.ends_with("on") || before.ends_with("without")
            };
            if depth_braces == 0
                && !is_call
                && !in_grouping
                && !WORDS.contains(&word)
                && !expr[..start].trim_end().ends_with(',')
                && !expr[..start].trim_end().ends_with('[')
            {
                out.insert(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

fn promtool() -> Option<String> {
    let path = setup::run_setup_script("tests/prometheus/setup.sh", "promtool (Prometheus)");
    Path::new(&path).is_file().then_some(path)
}

fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Values the chart refuses: a schema violation, and 3 replicas on one ReadWriteOnce volume.
#[test]
fn claimd_chart_refuses_bad_values() {
    let mut r = Report::new("claimd");
    let tmp = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).expect("write values");
        p.to_str().expect("utf-8").to_string()
    };
    for (what, yaml) in [
        ("replicaCount 0", "replicaCount: 0\n"),
        (
            "a repository by path",
            "config:\n  repositories: [{path: /srv/git/x.git}]\n",
        ),
        ("a secret inline", "gitea:\n  token: hunter2\n"),
    ] {
        let bad = write("bad.yaml", yaml);
        match helm_py(&["lint", &chart_dir(), "--values", &bad]) {
            Ok(lint) => r.check(
                lint["errors"].as_u64().unwrap_or(0) > 0
                    && lint["messages"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|m| m["severity"] == "error" && m["path"] == "values.yaml"),
                format!("{what}: helm lint reports an error in values.yaml: {lint}"),
            ),
            Err(e) => r.fail(format!("helm lint did not run: {e}")),
        }
    }
    // 3 replicas on a ReadWriteOnce volume: the template refuses, before any object exists.
    let rwo = write(
        "rwo.yaml",
        "replicaCount: 3\npersistence: {enabled: true, accessModes: [ReadWriteOnce]}\n",
    );
    let cluster = kube::Cluster::shared();
    let ns = cluster.fresh_namespace("claimd-chart-bad");
    let kubeconfig = cluster.kubeconfig();
    match helm_py(&[
        "install",
        &chart_dir(),
        "--release",
        RELEASE,
        "--namespace",
        &ns,
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--values",
        &rwo,
    ]) {
        Ok(v) => r.fail(format!(
            "3 replicas on ReadWriteOnce installed: {}",
            v["status"]
        )),
        Err(e) => r.check(
            e.contains("persistence.accessModes must include ReadWriteMany"),
            format!("3 replicas on ReadWriteOnce: install refused with the reason: {e}"),
        ),
    }
    let secrets = cluster.get_json(&format!("/api/v1/namespaces/{ns}/secrets"));
    r.check(
        secrets["items"].as_array().is_some_and(|i| i.is_empty()),
        format!(
            "the refused install stored no release: {}",
            secrets["items"]
        ),
    );
    r.finish();
}

#[test]
fn promql_metric_names_are_found() {
    let names = metric_names(
        "sum by (namespace, repository) (increase(claimd_reconcile_total{job=\"x\",result=~\"a|b\"}[$__rate_interval])) > 0 unless on (namespace) max(claimd_queue_depth) > time() - 900 and absent(up{job=\"claimd\"} == 1)",
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "claimd_queue_depth".to_string(),
            "claimd_reconcile_total".to_string(),
            "up".to_string()
        ])
    );
    assert!(contract_metric("claimd_reconcile_duration_seconds_bucket"));
    assert!(!contract_metric("claimd_queue_depth_bucket"));
    assert!(!contract_metric("claimd_reconciles_total"));
}
