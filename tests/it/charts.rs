//! The six charts of `charts/`, proven with real Helm 4 (v4.3.0, `tests/helm/charts.py`)
//! and a real kube-apiserver 1.20.2 (`tests/support/kube.rs`) that has the operators' CRDs
//! from `../shared/contracts/crds` installed.
//!
//! One test per chart. Each writes a small claims repository (two BootstrapClaims, a dev
//! claim and a production claim for one workload of that chart) and lets `claimd render
//! --charts <working tree>/charts` produce the values.yaml it would commit: the final
//! values (chart values.yaml -> values-production.yaml in production -> the claim's
//! fields through claimd-mapping.yaml -> the claim's raw `values:`). The production
//! claims also switch on the chart's optional objects (monitors, pooler, topics, ...) so
//! that every template is rendered at least once. Then, for dev and for production:
//!
//! 1. `helm lint` on those final values has no errors and no warnings;
//! 2. `helm install` (wait=False) creates every rendered object: each one is read back
//!    from the API server (GET by apiVersion/kind/namespace/name) and every field Helm
//!    rendered must be there with the same value. The server drops fields a custom
//!    resource's schema does not know without a word, so this comparison is what shows
//!    that the operators would see what the chart meant;
//! 3. the objects read back carry the standard labels (`app.kubernetes.io/name` = the
//!    chart, `app.kubernetes.io/instance` = the release, `app.kubernetes.io/managed-by` =
//!    Helm, `helm.sh/chart` = `<chart>-<version>` except on operator resources whose
//!    labels reach the pods), the release has NOTES, and the
//!    chart-specific expectations hold (security context, probes, resources, HA in
//!    production, ...; see the `expect_*` functions);
//!
//! and once per chart, 4. a value that values.schema.json forbids is refused by Helm
//! (install fails naming the value's path, lint reports an error in values.yaml) and by
//! `claimd validate` (exit 1, `claims/bad.yaml:LINE:COL:` at the value, naming its path).
//!
//! Without the CRDs folder the installs (2 and 3) are skipped with a loud message.

use crate::support::helm;
use crate::support::kube;

use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------
// The charts and the claims that exercise them.

#[test]
fn microservice() {
    check_chart(&Chart {
        name: "microservice",
        workload: "orders-api",
        service: false,
        dev: "
image: {repository: ghcr.io/acme/orders-api, tag: v1.4.2}
ingress: {enabled: true, host: orders.dev.example.com}
env: [{name: LOG_LEVEL, value: debug}]
",
        prod: "
image: {repository: ghcr.io/acme/orders-api, tag: v1.4.2}
resources: {requests: {cpu: 500m, memory: 512Mi}}
ingress: {enabled: true, host: orders.example.com, className: nginx, clusterIssuer: letsencrypt-prod}
env: [{name: LOG_LEVEL, value: info}]
values:
  config: {FEATURE_BATCHING: \"on\"}
  serviceMonitor: {enabled: true}
  networkPolicy: {enabled: true}
  externalSecret:
    enabled: true
    data: [{secretKey: DATABASE_PASSWORD, remoteRef: {key: orders/db, property: password}}]
",
        bad: Bad {
            path: "containerPort",
            yaml: "containerPort: 70000",
            value: "70000",
        },
        expect: expect_microservice,
    });
}

#[test]
fn postgresql() {
    check_chart(&Chart {
        name: "postgresql",
        workload: "orders-db",
        service: true,
        dev: "
storage: {size: 5Gi}
",
        prod: "
storage: {size: 200Gi}
backup: {s3Bucket: \"s3://my-backups\"}
values:
  pooler: {enabled: true}
  monitoring: {enablePodMonitor: true}
",
        bad: Bad {
            path: "imagePullPolicy",
            yaml: "imagePullPolicy: Sometimes",
            value: "Sometimes",
        },
        expect: expect_postgresql,
    });
}

#[test]
fn mongodb() {
    check_chart(&Chart {
        name: "mongodb",
        workload: "catalog",
        service: true,
        dev: "
storage: {size: 5Gi}
",
        prod: "
storage: {size: 100Gi}
values:
  prometheus: {enabled: true, serviceMonitor: {enabled: true}}
",
        bad: Bad {
            path: "members",
            yaml: "members: 0",
            value: "0",
        },
        expect: expect_mongodb,
    });
}

#[test]
fn redis() {
    check_chart(&Chart {
        name: "redis",
        workload: "cache",
        service: true,
        dev: "
storage: {size: 2Gi}
",
        prod: "
storage: {size: 50Gi}
values:
  exporter: {enabled: true, serviceMonitor: {enabled: true}}
",
        bad: Bad {
            path: "mode",
            yaml: "mode: cluster",
            value: "cluster",
        },
        expect: expect_redis,
    });
}

#[test]
fn rabbitmq() {
    check_chart(&Chart {
        name: "rabbitmq",
        workload: "queue",
        service: true,
        dev: "
storage: {size: 5Gi}
",
        prod: "
storage: {size: 50Gi}
values:
  monitoring: {serviceMonitor: {enabled: true}}
",
        bad: Bad {
            path: "replicas",
            yaml: "replicas: 0",
            value: "0",
        },
        expect: expect_rabbitmq,
    });
}

#[test]
fn kafka() {
    check_chart(&Chart {
        name: "kafka",
        workload: "events",
        service: true,
        dev: "
storage: {size: 10Gi}
",
        prod: "
storage: {size: 500Gi}
values:
  metrics: {enabled: true, podMonitor: {enabled: true}}
  topics: [{name: orders, partitions: 6, replicas: 3, config: {retention.ms: 604800000}}]
  users: [{name: orders-app, authentication: {type: scram-sha-512}}]
",
        bad: Bad {
            // The controller pool: the claim's storage.size maps to the broker pool's size,
            // and when a raw value overrides a mapped claim field, claimd (today) places the
            // error at the claim field, not at the value that was refused.
            path: "nodePools.controller.storage.size",
            yaml: "nodePools:\n  controller:\n    storage:\n      size: lots",
            value: "lots",
        },
        expect: expect_kafka,
    });
}

// ---------------------------------------------------------------------------------------
// Chart-specific expectations, on the objects read back from the API server.

fn expect_microservice(r: &mut Report, p: Profile, rel: &Release) {
    let d = rel.one(r, "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    r.check(
        pod["securityContext"]["runAsNonRoot"] == true,
        "Deployment: pod securityContext.runAsNonRoot is true",
    );
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    r.check(!containers.is_empty(), "Deployment: has containers");
    for c in &containers {
        let n = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        r.check(
            sc["readOnlyRootFilesystem"] == true,
            format!("container {n}: readOnlyRootFilesystem true"),
        );
        r.check(
            sc["allowPrivilegeEscalation"] == false,
            format!("container {n}: allowPrivilegeEscalation false"),
        );
        r.check(
            sc["capabilities"]["drop"] == serde_json::json!(["ALL"]),
            format!("container {n}: capabilities drop [ALL]"),
        );
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            r.check(
                c[probe].is_object(),
                format!("container {n}: has a {probe}"),
            );
        }
        for (kind, res) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            r.check(
                c["resources"][kind][res].is_string(),
                format!("container {n}: resources.{kind}.{res} set"),
            );
        }
        // The root filesystem is read-only: /tmp must be a writable emptyDir.
        let tmp_volume = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == "/tmp")
            .and_then(|m| m["name"].as_str());
        let is_empty_dir = pod["volumes"].as_array().into_iter().flatten().any(|v| {
            Some(v["name"].as_str().unwrap_or("")) == tmp_volume && v["emptyDir"].is_object()
        });
        r.check(
            is_empty_dir,
            format!("container {n}: /tmp is an emptyDir volume"),
        );
    }
    r.check(
        containers.first().map(|c| c["image"].clone())
            == Some("ghcr.io/acme/orders-api:v1.4.2".into()),
        "Deployment: the claim's image ghcr.io/acme/orders-api:v1.4.2",
    );
    let env_value = if p == Profile::Prod { "info" } else { "debug" };
    r.check(
        containers.first().is_some_and(|c| {
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"] == "LOG_LEVEL" && e["value"] == env_value)
        }),
        format!("Deployment: the claim's env LOG_LEVEL={env_value}"),
    );
    let selector = d["spec"]["selector"]["matchLabels"].clone();
    r.check(
        labels_include(&d["spec"]["template"]["metadata"]["labels"], &selector),
        "Deployment: the pod template labels match the selector",
    );
    r.check(
        labels_include(
            &d["spec"]["template"]["metadata"]["labels"],
            &standard_labels("microservice", "orders-api"),
        ),
        "Deployment: the pod template has the app.kubernetes.io name/instance labels",
    );
    let svc = rel.one(r, "Service");
    r.check(
        svc["spec"]["selector"] == selector,
        "Service: selects the Deployment's pods",
    );
    let sa = rel.one(r, "ServiceAccount");
    r.check(
        pod["serviceAccountName"] == sa["metadata"]["name"],
        "Deployment: runs as the chart's ServiceAccount",
    );
    let ing = rel.one(r, "Ingress");
    let host = if p == Profile::Prod {
        "orders.example.com"
    } else {
        "orders.dev.example.com"
    };
    r.check(
        ing["spec"]["rules"][0]["host"] == host,
        format!("Ingress: host {host}"),
    );

    let hpa = rel.all("HorizontalPodAutoscaler");
    let pdb = rel.all("PodDisruptionBudget");
    match p {
        Profile::Dev => {
            r.check(hpa.is_empty(), "dev: no HorizontalPodAutoscaler");
            r.check(pdb.is_empty(), "dev: no PodDisruptionBudget");
            r.check(d["spec"]["replicas"] == 1, "dev: 1 replica");
        }
        Profile::Prod => {
            let hpa = rel.one(r, "HorizontalPodAutoscaler");
            r.check(
                hpa["spec"]["minReplicas"].as_u64().unwrap_or(0) >= 3,
                "production: HPA minReplicas >= 3",
            );
            r.check(
                hpa["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"],
                "production: the HPA scales the Deployment",
            );
            let rendered = rel.rendered("Deployment");
            r.check(
                rendered["spec"].get("replicas").is_none(),
                "production: the Deployment renders no replicas (the HPA owns them)",
            );
            let pdb = rel.one(r, "PodDisruptionBudget");
            r.check(
                pdb["spec"]["selector"]["matchLabels"] == selector,
                "production: the PDB selects the Deployment's pods",
            );
            let spread = pod["topologySpreadConstraints"]
                .as_array()
                .is_some_and(|t| !t.is_empty());
            let anti = pod["affinity"]["podAntiAffinity"].is_object();
            r.check(
                spread || anti,
                "production: topologySpreadConstraints or pod anti-affinity",
            );
            r.check(
                ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
                    == "letsencrypt-prod",
                "production: Ingress has the cert-manager cluster-issuer annotation",
            );
            r.check(
                ing["spec"]["tls"][0]["secretName"].is_string(),
                "production: Ingress has TLS",
            );
            r.check(
                ing["spec"]["ingressClassName"] == "nginx",
                "production: ingressClassName nginx",
            );
            for kind in [
                "ServiceMonitor",
                "NetworkPolicy",
                "ExternalSecret",
                "ConfigMap",
            ] {
                rel.one(r, kind);
            }
            let env_from = containers
                .first()
                .map(|c| c["envFrom"].clone())
                .unwrap_or_default();
            r.check(
                env_from.as_array().is_some_and(|e| {
                    e.iter().any(|x| x["configMapRef"]["name"].is_string())
                        && e.iter().any(|x| x["secretRef"]["name"].is_string())
                }),
                "production: envFrom loads the ConfigMap and the ExternalSecret's Secret",
            );
        }
    }
}

fn expect_postgresql(r: &mut Report, p: Profile, rel: &Release) {
    let c = rel.one(r, "Cluster");
    let (instances, size) = match p {
        Profile::Dev => (1, "5Gi"),
        Profile::Prod => (3, "200Gi"),
    };
    r.check(
        c["spec"]["instances"] == instances,
        format!("Cluster: {instances} instance(s)"),
    );
    r.check(
        c["spec"]["storage"]["size"] == size,
        format!("Cluster: storage {size} (claim)"),
    );
    resources_set(r, "Cluster", &c["spec"]["resources"]);
    r.check(
        c["spec"]["bootstrap"]["initdb"]["database"].is_string()
            && c["spec"]["bootstrap"]["initdb"]["owner"].is_string(),
        "Cluster: bootstrap.initdb database and owner",
    );
    let cluster_name = c["metadata"]["name"].clone();
    match p {
        Profile::Dev => {
            r.check(
                rel.all("ScheduledBackup").is_empty(),
                "dev: no ScheduledBackup",
            );
            r.check(c["spec"].get("backup").is_none(), "dev: no backup section");
        }
        Profile::Prod => {
            r.check(
                c["spec"]["backup"]["barmanObjectStore"]["destinationPath"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("s3://my-backups")),
                "production: barman object store at the claim's s3://my-backups",
            );
            let sb = rel.one(r, "ScheduledBackup");
            r.check(
                sb["spec"]["cluster"]["name"] == cluster_name && sb["spec"]["schedule"].is_string(),
                "production: the ScheduledBackup backs up the Cluster on a schedule",
            );
            let pooler = rel.one(r, "Pooler");
            r.check(
                pooler["spec"]["cluster"]["name"] == cluster_name,
                "production: the Pooler fronts the Cluster",
            );
            let monitors = rel.all("PodMonitor");
            r.check(
                monitors.len() == 2,
                format!(
                    "production: a PodMonitor for the instances and one for the pooler (found {})",
                    monitors.len()
                ),
            );
            r.check(
                c["spec"]["affinity"]["podAntiAffinityType"] == "required",
                "production: required pod anti-affinity",
            );
            r.check(
                c["spec"]["walStorage"]["size"].is_string(),
                "production: WAL volume",
            );
        }
    }
}

fn expect_mongodb(r: &mut Report, p: Profile, rel: &Release) {
    let m = rel.one(r, "MongoDBCommunity");
    let (members, size) = match p {
        Profile::Dev => (1, "5Gi"),
        Profile::Prod => (3, "100Gi"),
    };
    let spec = &m["spec"];
    r.check(
        spec["type"] == "ReplicaSet",
        "MongoDBCommunity: type ReplicaSet",
    );
    r.check(
        spec["members"] == members,
        format!("MongoDBCommunity: {members} member(s)"),
    );
    r.check(spec["version"].is_string(), "MongoDBCommunity: version");
    let users = spec["users"].as_array().cloned().unwrap_or_default();
    r.check(
        !users.is_empty()
            && users
                .iter()
                .all(|u| u["passwordSecretRef"]["name"].is_string()),
        "MongoDBCommunity: users with password secret refs",
    );
    let data = spec["statefulSet"]["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["metadata"]["name"] == "data-volume");
    r.check(
        data.is_some_and(|v| v["spec"]["resources"]["requests"]["storage"] == size),
        format!("MongoDBCommunity: data-volume of {size} (claim)"),
    );
    let pod = &spec["statefulSet"]["spec"]["template"]["spec"];
    let mongod = pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "mongod");
    resources_set(
        r,
        "mongod container",
        &mongod.map(|c| c["resources"].clone()).unwrap_or_default(),
    );
    if p == Profile::Prod {
        r.check(
            pod["affinity"]["podAntiAffinity"].is_object()
                || pod["topologySpreadConstraints"].is_array(),
            "production: members spread (anti-affinity / topology spread)",
        );
        r.check(
            spec["prometheus"]["port"].is_number(),
            "production: metrics endpoint",
        );
        rel.one(r, "ServiceMonitor");
    }
}

fn expect_redis(r: &mut Report, p: Profile, rel: &Release) {
    let (workload, size) = match p {
        Profile::Dev => {
            r.check(
                rel.all("RedisReplication").is_empty() && rel.all("RedisSentinel").is_empty(),
                "dev: standalone only (no RedisReplication / RedisSentinel)",
            );
            (rel.one(r, "Redis"), "2Gi")
        }
        Profile::Prod => {
            r.check(
                rel.all("Redis").is_empty(),
                "production: no standalone Redis",
            );
            let repl = rel.one(r, "RedisReplication");
            r.check(
                repl["spec"]["clusterSize"] == 3,
                "production: RedisReplication of 3",
            );
            let sentinel = rel.one(r, "RedisSentinel");
            r.check(
                sentinel["spec"]["clusterSize"].as_u64().unwrap_or(0) >= 3,
                "production: RedisSentinel of >= 3",
            );
            r.check(
                sentinel["spec"]["redisSentinelConfig"]["redisReplicationName"]
                    == repl["metadata"]["name"],
                "production: the Sentinels watch the RedisReplication",
            );
            r.check(
                repl["spec"]["affinity"]["podAntiAffinity"].is_object()
                    || repl["spec"]["topologySpreadConstraints"].is_array(),
                "production: pods spread (anti-affinity / topology spread)",
            );
            rel.one(r, "ServiceMonitor");
            (repl, "50Gi")
        }
    };
    let spec = &workload["spec"];
    r.check(
        spec["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == size,
        format!("storage {size} (claim)"),
    );
    resources_set(r, "Redis", &spec["kubernetesConfig"]["resources"]);
    r.check(
        spec["podSecurityContext"]["runAsNonRoot"] == true,
        "pod securityContext.runAsNonRoot",
    );
    r.check(
        spec["securityContext"]["allowPrivilegeEscalation"] == false
            && spec["securityContext"]["capabilities"]["drop"] == serde_json::json!(["ALL"]),
        "container securityContext: no privilege escalation, capabilities dropped",
    );
}

fn expect_rabbitmq(r: &mut Report, p: Profile, rel: &Release) {
    let c = rel.one(r, "RabbitmqCluster");
    let (replicas, size) = match p {
        Profile::Dev => (1, "5Gi"),
        Profile::Prod => (3, "50Gi"),
    };
    r.check(
        c["spec"]["replicas"] == replicas,
        format!("RabbitmqCluster: {replicas} replica(s)"),
    );
    r.check(
        c["spec"]["persistence"]["storage"] == size,
        format!("RabbitmqCluster: persistence {size} (claim)"),
    );
    resources_set(r, "RabbitmqCluster", &c["spec"]["resources"]);
    if p == Profile::Prod {
        rel.one(r, "PodDisruptionBudget");
        r.check(
            c["spec"]["affinity"]["podAntiAffinity"].is_object(),
            "production: pod anti-affinity",
        );
        rel.one(r, "ServiceMonitor");
    }
}

fn expect_kafka(r: &mut Report, p: Profile, rel: &Release) {
    let k = rel.one(r, "Kafka");
    let ann = &k["metadata"]["annotations"];
    r.check(
        ann["strimzi.io/kraft"] == "enabled" && ann["strimzi.io/node-pools"] == "enabled",
        "Kafka: KRaft with node pools (strimzi.io/kraft, strimzi.io/node-pools annotations)",
    );
    r.check(k["spec"].get("zookeeper").is_none(), "Kafka: no ZooKeeper");
    r.check(k["spec"]["kafka"]["version"].is_string(), "Kafka: version");
    let pools = rel.all("KafkaNodePool");
    for pool in &pools {
        r.check(
            pool["metadata"]["labels"]["strimzi.io/cluster"] == k["metadata"]["name"],
            format!(
                "KafkaNodePool {}: belongs to the Kafka cluster",
                pool["metadata"]["name"]
            ),
        );
    }
    let roles = |pool: &Json| -> Vec<String> {
        pool["spec"]["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    };
    let size_of = |pool: &Json| pool["spec"]["storage"]["volumes"][0]["size"].clone();
    let brokers: Vec<&Json> = pools
        .iter()
        .copied()
        .filter(|p| roles(p).contains(&"broker".into()))
        .collect();
    match p {
        Profile::Dev => {
            r.check(
                pools.len() == 1,
                format!("dev: one node pool (found {})", pools.len()),
            );
            r.check(
                pools.first().is_some_and(|p| {
                    let rs = roles(p);
                    rs.contains(&"broker".into())
                        && rs.contains(&"controller".into())
                        && p["spec"]["replicas"] == 1
                }),
                "dev: one dual-role (controller + broker) node",
            );
            r.check(
                brokers.first().is_some_and(|b| size_of(b) == "10Gi"),
                "dev: broker volume 10Gi (claim)",
            );
        }
        Profile::Prod => {
            r.check(
                brokers.len() == 1
                    && brokers[0]["spec"]["replicas"] == 3
                    && roles(brokers[0]) == ["broker"],
                "production: a broker-only pool of 3",
            );
            r.check(
                brokers.first().is_some_and(|b| size_of(b) == "500Gi"),
                "production: broker volumes 500Gi (claim)",
            );
            r.check(
                pools
                    .iter()
                    .any(|p| roles(p) == ["controller"] && p["spec"]["replicas"] == 3),
                "production: a controller-only pool of 3",
            );
            r.check(
                brokers.first().is_some_and(|b| {
                    b["spec"]["template"]["pod"]["affinity"]["podAntiAffinity"].is_object()
                }),
                "production: broker pod anti-affinity",
            );
            let topic = rel.one(r, "KafkaTopic");
            r.check(
                topic["metadata"]["labels"]["strimzi.io/cluster"] == k["metadata"]["name"]
                    && topic["spec"]["partitions"] == 6,
                "production: KafkaTopic orders (6 partitions) of the cluster",
            );
            let user = rel.one(r, "KafkaUser");
            r.check(
                user["spec"]["authentication"]["type"] == "scram-sha-512",
                "production: KafkaUser with SCRAM",
            );
            rel.one(r, "PodMonitor");
        }
    }
}

fn resources_set(r: &mut Report, what: &str, res: &Json) {
    r.check(
        res["requests"]["cpu"].is_string()
            && res["requests"]["memory"].is_string()
            && res["limits"]["memory"].is_string(),
        format!("{what}: resources (requests cpu/memory, limits memory)"),
    );
}

// ---------------------------------------------------------------------------------------
// The run for one chart.

struct Chart {
    name: &'static str,
    /// Application / service name in the claims, and so the Helm release name.
    workload: &'static str,
    /// A PlatformApplicationClaim service (else an ApplicationClaim application).
    service: bool,
    /// The workload's claim fields (YAML, unindented), dev and production.
    dev: &'static str,
    prod: &'static str,
    bad: Bad,
    expect: fn(&mut Report, Profile, &Release),
}

/// A value that the chart's values.schema.json refuses.
struct Bad {
    /// Its values path, as claimd names it.
    path: &'static str,
    /// The values (YAML, unindented) that set it.
    yaml: &'static str,
    /// The offending scalar as written, where claimd's position must point.
    value: &'static str,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Profile {
    Dev,
    Prod,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Prod => "prod",
        }
    }
}

fn check_chart(chart: &Chart) {
    let started = Instant::now();
    let mut r = Report::new(chart.name);
    let chart_dir = format!("{ROOT}/charts/{}", chart.name);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("claimd-charts-{}-", chart.name))
        .tempdir()
        .expect("temp dir");
    let repo = tmp.path().join("repo");
    write_claims(&repo, chart, None);

    // The values claimd commits for each profile.
    let t = Instant::now();
    let out = claimd(
        &repo,
        &[
            "render",
            "--repo",
            ".",
            "--charts",
            &format!("{ROOT}/charts"),
        ],
    );
    assert!(
        out.0,
        "{}: claimd render failed for the dev/production claims:\n{}",
        chart.name, out.1
    );
    r.time("claimd render", t);

    let cluster = cluster_with_crds();
    for profile in [Profile::Dev, Profile::Prod] {
        let values = repo.join(values_path(chart, profile));
        assert!(
            values.is_file(),
            "claimd render wrote no {}",
            values.display()
        );
        let values = values.to_str().expect("utf-8 path").to_string();
        r.context = format!("{} ", profile.name());

        let t = Instant::now();
        match helm_py(&["lint", &chart_dir, "--values", &values]) {
            Ok(lint) => r.check(
                lint["errors"] == 0 && lint["warnings"] == 0,
                format!("helm lint is clean (0 errors, 0 warnings): {lint}"),
            ),
            Err(e) => r.fail(format!("helm lint did not run: {e}")),
        }
        r.time(&format!("{} lint", profile.name()), t);

        let Some(cluster) = cluster else { continue };
        let t = Instant::now();
        let ns = cluster.fresh_namespace(&format!("charts-{}-{}", chart.name, profile.name()));
        let installed = helm_py(&[
            "install",
            &chart_dir,
            "--release",
            chart.workload,
            "--namespace",
            &ns,
            "--kubeconfig",
            cluster.kubeconfig().to_str().expect("utf-8 path"),
            "--values",
            &values,
        ]);
        r.time(&format!("{} install", profile.name()), t);
        let installed = match installed {
            Ok(v) => v,
            Err(e) => {
                r.fail(format!("helm install was refused: {e}"));
                continue;
            }
        };
        let t = Instant::now();
        let rel = read_back(cluster, &installed, &mut r);
        r.check(
            installed["status"] == "deployed",
            format!("release status deployed (got {})", installed["status"]),
        );
        r.check(
            installed["notes"]
                .as_str()
                .is_some_and(|n| !n.trim().is_empty()),
            "the release has NOTES (templates/NOTES.txt)",
        );
        r.check(
            installed["hooks"].as_array().is_some_and(|h| h.is_empty()),
            format!("no hooks (not read back): {}", installed["hooks"]),
        );
        r.check(!rel.objects.is_empty(), "the release created objects");
        for o in &rel.objects {
            check_standard_labels(&mut r, chart, o);
        }
        (chart.expect)(&mut r, profile, &rel);
        r.time(&format!("{} read back", profile.name()), t);
        eprintln!(
            "charts: {} {}: {} object(s) in {ns}: {}",
            chart.name,
            profile.name(),
            rel.objects.len(),
            rel.objects
                .iter()
                .map(|o| format!("{}/{}", o.kind, o.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    r.context = "schema refusal: ".to_string();
    let t = Instant::now();
    check_bad_value(&mut r, chart, &chart_dir, tmp.path(), &repo);
    r.time("schema refusals", t);
    r.time("total", started);
    r.finish();
}

/// 4. The chart's schema refuses `chart.bad`: Helm's install and lint, and `claimd validate`.
fn check_bad_value(r: &mut Report, chart: &Chart, chart_dir: &str, tmp: &Path, repo: &Path) {
    let bad = &chart.bad;
    let bad_file = tmp.join("bad-values.yaml");
    std::fs::write(&bad_file, format!("{}\n", bad.yaml)).expect("write bad values");
    let dev_values = repo.join(values_path(chart, Profile::Dev));
    let files = [dev_values.to_str().unwrap(), bad_file.to_str().unwrap()];
    let pointer = format!("'/{}'", bad.path.replace('.', "/"));

    // Helm: install refused before anything is created, naming the value.
    let cluster = kube::Cluster::shared();
    let ns = cluster.fresh_namespace(&format!("charts-{}-bad", chart.name));
    let kubeconfig = cluster.kubeconfig();
    let mut args = vec![
        "install",
        chart_dir,
        "--release",
        chart.workload,
        "--namespace",
        &ns,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    for f in files {
        args.extend(["--values", f]);
    }
    match helm_py(&args) {
        Ok(v) => r.fail(format!(
            "helm install accepted {:?} (release {}, {} object(s))",
            bad.yaml,
            v["status"],
            v["objects"].as_array().map_or(0, Vec::len)
        )),
        Err(e) => r.check(
            e.contains("values don't meet the specifications of the schema")
                && e.contains(&pointer),
            format!(
                "helm install refuses {:?} with a schema error at {pointer}: {e}",
                bad.yaml
            ),
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
    // Helm lint: an error in values.yaml (helm-sdkpy gives no message text).
    match helm_py(&[
        "lint", chart_dir, "--values", files[0], "--values", files[1],
    ]) {
        Ok(lint) => r.check(
            lint["errors"].as_u64().unwrap_or(0) > 0
                && lint["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["severity"] == "error" && m["path"] == "values.yaml"),
            format!("helm lint reports an error in values.yaml: {lint}"),
        ),
        Err(e) => r.fail(format!("helm lint did not run: {e}")),
    }

    // claimd validate: exit 1, at the value in the claim, naming its path.
    let bad_repo = tmp.join("bad-repo");
    write_claims(&bad_repo, chart, Some(bad));
    let (ok, text) = claimd(
        &bad_repo,
        &["validate", "--charts", &format!("{ROOT}/charts")],
    );
    r.check(!ok, format!("claimd validate exits 1: {text}"));
    let named = format!(
        "value `{}` is refused by the values.schema.json of chart",
        bad.path
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("claims/bad.yaml:") && l.contains(&named));
    match line {
        None => r.fail(format!(
            "claimd validate names no `claims/bad.yaml:LINE:COL: ... {named}`: {text}"
        )),
        Some(line) => {
            let claim = std::fs::read_to_string(bad_repo.join("claims/bad.yaml")).unwrap();
            let mut pos = line
                .split(':')
                .skip(1)
                .map(|n| n.parse::<usize>().unwrap_or(0));
            let (l, c) = (pos.next().unwrap_or(0), pos.next().unwrap_or(0));
            let at = claim
                .lines()
                .nth(l.wrapping_sub(1))
                .and_then(|s| s.get(c.saturating_sub(1)..))
                .unwrap_or("");
            r.check(
                at.starts_with(bad.value),
                format!(
                    "claimd's position {l}:{c} points at `{}` (found {at:?}): {line}",
                    bad.value
                ),
            );
        }
    }
}

/// The claims repository: both BootstrapClaims, and either the dev and production
/// claims of the chart's workload, or (`bad`) one dev claim with the bad values.
fn write_claims(repo: &Path, chart: &Chart, bad: Option<&Bad>) {
    let claims = repo.join("claims");
    std::fs::create_dir_all(&claims).expect("mkdir claims");
    let bootstrap = |name: &str, cluster_type: &str, env: &str| {
        format!(
            "apiVersion: platform.infraforge.io/v1\nkind: BootstrapClaim\nmetadata: {{name: {name}}}\nspec:\n  giteaURL: http://gitea:3000\n  organization: platform\n  chartsRepository: {{type: oci, url: \"oci://ghcr.io/nimbusprotch\", version: \"1.0.0\"}}\n  repositories: {{voltran: voltran}}\n  gitOps: {{branch: main, clusterType: {cluster_type}, environments: [{env}]}}\n"
        )
    };
    std::fs::write(
        claims.join("bootstrap.yaml"),
        format!(
            "{}---\n{}",
            bootstrap("nonprod", "nonprod", "dev"),
            bootstrap("prod", "prod", "prod")
        ),
    )
    .expect("write bootstrap");
    match bad {
        None => {
            std::fs::write(
                claims.join("dev.yaml"),
                claim(chart, Profile::Dev, chart.dev),
            )
            .expect("write");
            std::fs::write(
                claims.join("prod.yaml"),
                claim(chart, Profile::Prod, chart.prod),
            )
            .expect("write");
        }
        Some(bad) => {
            let fields = format!("{}values:\n{}", chart.dev.trim_start(), indent(bad.yaml, 2));
            std::fs::write(claims.join("bad.yaml"), claim(chart, Profile::Dev, &fields))
                .expect("write");
        }
    }
}

fn claim(chart: &Chart, profile: Profile, fields: &str) -> String {
    let (env, cluster_type) = match profile {
        Profile::Dev => ("dev", "nonprod"),
        Profile::Prod => ("prod", "prod"),
    };
    let (kind, list, head) = if chart.service {
        let production = if profile == Profile::Prod {
            "\n      production: true"
        } else {
            ""
        };
        (
            "PlatformApplicationClaim",
            "services",
            format!(
                "    - type: {}\n      name: {}{production}\n",
                chart.name, chart.workload
            ),
        )
    } else {
        (
            "ApplicationClaim",
            "applications",
            format!(
                "    - name: {}\n      chart: {{name: {}, version: \"1.0.0\"}}\n",
                chart.workload, chart.name
            ),
        )
    };
    format!(
        "apiVersion: platform.infraforge.io/v1\nkind: {kind}\nmetadata: {{name: {}-{env}}}\nspec:\n  environment: {env}\n  clusterType: {cluster_type}\n  {list}:\n{head}{}",
        chart.workload,
        indent(fields.trim_start_matches('\n'), 6)
    )
}

fn indent(text: &str, n: usize) -> String {
    text.lines().map(|l| format!("{:n$}{l}\n", "")).collect()
}

/// Where `claimd render` writes the workload's values.yaml.
fn values_path(chart: &Chart, profile: Profile) -> String {
    let (env, cluster_type) = match profile {
        Profile::Dev => ("dev", "nonprod"),
        Profile::Prod => ("prod", "prod"),
    };
    let folder = if chart.service {
        "platform"
    } else {
        "applications"
    };
    format!(
        "environments/{cluster_type}/{env}/{folder}/{}/values.yaml",
        chart.workload
    )
}

/// Runs the claimd binary in `dir`; (success, stdout + stderr).
fn claimd(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_claimd"))
        .args(args)
        .current_dir(dir)
        .env_remove("CLAIMD_CHARTS")
        .output()
        .expect("run claimd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------
// Helm (tests/helm/charts.py) and the API server.

/// Runs `python3 tests/helm/charts.py ARGS` with Helm (and PyYAML) importable; its JSON.
pub(crate) fn helm_py(args: &[&str]) -> Result<Json, String> {
    let mut pythonpath = std::ffi::OsString::from(helm::helm_pythonpath());
    pythonpath.push(":");
    pythonpath.push(kube::pylib_dir()); // PyYAML, when tests/kube/setup.sh had to install it
    let out = Command::new(kube::python())
        .arg(format!("{ROOT}/tests/helm/charts.py"))
        .args(args)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("charts.py: not JSON ({e}): {stdout}"))
}

/// The shared API server with the operators' CRDs, installed once per process; None
/// (after a loud message) when the CRDs folder is absent.
pub(crate) fn cluster_with_crds() -> Option<&'static kube::Cluster> {
    static READY: OnceLock<bool> = OnceLock::new();
    let cluster = kube::Cluster::shared();
    let ready = *READY.get_or_init(|| {
        let Some(dir) = crate::support::crd::crds_dir_or_skip(
            "charts: installs into the API server (the charts are only linted and checked for schema refusals)",
        ) else {
            return false;
        };
        let t = Instant::now();
        let names = cluster.install_crds(&dir);
        eprintln!(
            "charts: {} CRDs installed in {:.1?}",
            names.len(),
            t.elapsed()
        );
        true
    });
    ready.then_some(cluster)
}

pub(crate) struct Object {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) rendered: Json,
    pub(crate) back: Json,
}

pub(crate) struct Release {
    pub(crate) objects: Vec<Object>,
}

impl Release {
    /// The read-back objects of `kind`.
    pub(crate) fn all(&self, kind: &str) -> Vec<&Json> {
        self.objects
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| &o.back)
            .collect()
    }

    /// The one read-back object of `kind` (a problem, and null, if not exactly one).
    pub(crate) fn one(&self, r: &mut Report, kind: &str) -> Json {
        let all = self.all(kind);
        r.check(
            all.len() == 1,
            format!("exactly one {kind} (found {})", all.len()),
        );
        all.first().map(|o| (*o).clone()).unwrap_or_default()
    }

    /// The first object of `kind` as Helm rendered it.
    pub(crate) fn rendered(&self, kind: &str) -> Json {
        self.objects
            .iter()
            .find(|o| o.kind == kind)
            .map(|o| o.rendered.clone())
            .unwrap_or_default()
    }
}

/// GETs every object Helm created and compares it with what Helm rendered.
pub(crate) fn read_back(cluster: &kube::Cluster, installed: &Json, r: &mut Report) -> Release {
    let mut objects = Vec::new();
    for o in installed["objects"].as_array().into_iter().flatten() {
        let (api, kind, name, ns) = (
            o["apiVersion"].as_str().unwrap_or_default(),
            o["kind"].as_str().unwrap_or_default(),
            o["name"].as_str().unwrap_or_default(),
            o["namespace"].as_str().unwrap_or_default(),
        );
        let what = format!("{kind}/{name} ({api})");
        let Some(path) = object_path(cluster, api, kind, ns, name) else {
            r.fail(format!("{what}: the API server serves no such kind"));
            continue;
        };
        let (status, body) = cluster.kubectl_like("GET", &path, None);
        if status != 200 {
            r.fail(format!("{what}: GET {path} answered {status}: {body}"));
            continue;
        }
        let back: Json = serde_json::from_str(&body).expect("the API server answers JSON");
        let rendered = expected_form(&o["object"]);
        let mut diffs = Vec::new();
        subset(&rendered, &back, "", is_builtin(api), &mut diffs);
        for d in diffs {
            r.fail(format!("{what}: {d}"));
        }
        objects.push(Object {
            kind: kind.to_string(),
            name: name.to_string(),
            rendered: o["object"].clone(),
            back,
        });
    }
    Release { objects }
}

/// The labels every object of the release must carry.
fn check_standard_labels(r: &mut Report, chart: &Chart, o: &Object) {
    let labels = &o.back["metadata"]["labels"];
    let what = format!("{}/{}", o.kind, o.name);
    let want = standard_labels(chart.name, chart.workload);
    for (key, value) in want.as_object().unwrap() {
        r.check(
            labels[key] == *value,
            format!("{what}: label {key}={value} (got {})", labels[key]),
        );
    }
    // The operators copy the labels of these resources onto their pods (OT redis even
    // into StatefulSet selectors, which cannot change): a chart-version label there would
    // roll every pod on each chart upgrade, so those charts leave it off on purpose.
    let propagates = matches!(
        o.kind.as_str(),
        "Redis"
            | "RedisReplication"
            | "RedisSentinel"
            | "RabbitmqCluster"
            | "Kafka"
            | "KafkaNodePool"
    );
    if propagates {
        r.check(
            labels.get("helm.sh/chart").is_none(),
            format!("{what}: no helm.sh/chart label (it would reach the pods)"),
        );
        return;
    }
    r.check(
        labels["helm.sh/chart"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{}-", chart.name))),
        format!(
            "{what}: label helm.sh/chart={}-<version> (got {})",
            chart.name, labels["helm.sh/chart"]
        ),
    );
}

fn standard_labels(chart: &str, release: &str) -> Json {
    serde_json::json!({
        "app.kubernetes.io/name": chart,
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm",
    })
}

pub(crate) fn labels_include(labels: &Json, want: &Json) -> bool {
    want.as_object()
        .is_some_and(|w| !w.is_empty() && w.iter().all(|(k, v)| labels[k] == *v))
}

/// API groups built into kube-apiserver (their objects are not custom resources).
fn is_builtin(api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

/// The REST path of an object, from the server's discovery documents (cached).
fn object_path(
    cluster: &kube::Cluster,
    api: &str,
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<String> {
    static DISCOVERY: OnceLock<Mutex<HashMap<String, Json>>> = OnceLock::new();
    let base = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    let doc = {
        let mut cache = DISCOVERY.get_or_init(Default::default).lock().unwrap();
        cache
            .entry(base.clone())
            .or_insert_with(|| {
                let (status, body) = cluster.kubectl_like("GET", &base, None);
                if status == 200 {
                    serde_json::from_str(&body).unwrap_or_default()
                } else {
                    Json::Null
                }
            })
            .clone()
    };
    let res = doc["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && !r["name"].as_str().unwrap_or("/").contains('/'))?;
    let plural = res["name"].as_str()?;
    Some(if res["namespaced"] == true {
        format!("{base}/namespaces/{ns}/{plural}/{name}")
    } else {
        format!("{base}/{plural}/{name}")
    })
}

/// What the server gives back for a rendered object, where it is not a plain copy:
/// a Secret's stringData comes back base64-encoded in data.
fn expected_form(rendered: &Json) -> Json {
    let mut o = rendered.clone();
    if o["apiVersion"] == "v1" && o["kind"] == "Secret" {
        if let Some(Json::Object(sd)) = o.as_object_mut().and_then(|m| m.remove("stringData")) {
            use base64::Engine as _;
            let data = o
                .as_object_mut()
                .unwrap()
                .entry("data")
                .or_insert_with(|| Json::Object(Default::default()));
            for (k, v) in sd {
                let text = v.as_str().map_or_else(|| v.to_string(), String::from);
                data[k.as_str()] = base64::engine::general_purpose::STANDARD
                    .encode(text)
                    .into();
            }
        }
    }
    o
}

/// Every field of `rendered` must be in `back` with the same value. Only nulls may be
/// missing (the server prunes them); for built-in kinds also zero values, which Go's
/// omitempty leaves out. Lists must match in order, or else as a permutation (the HPA of
/// a 1.20 server keeps its metrics in an annotation and gives them back in another order).
fn subset(rendered: &Json, back: &Json, path: &str, builtin: bool, out: &mut Vec<String>) {
    match rendered {
        Json::Object(m) => {
            let Some(b) = back.as_object() else {
                out.push(format!(
                    "{}: rendered {rendered}, read back {back}",
                    show(path)
                ));
                return;
            };
            for (k, v) in m {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => subset(v, bv, &p, builtin, out),
                    None if v.is_null() || (builtin && is_zero(v)) => {}
                    None => out.push(format!(
                        "{}: rendered {v} but the server dropped it",
                        show(&p)
                    )),
                }
            }
        }
        Json::Array(a) => {
            let Some(b) = back.as_array().filter(|b| b.len() == a.len()) else {
                out.push(format!(
                    "{}: rendered {rendered}, read back {back}",
                    show(path)
                ));
                return;
            };
            let mut positional = Vec::new();
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                subset(x, y, &format!("{path}[{i}]"), builtin, &mut positional);
            }
            if positional.is_empty() {
                return;
            }
            let mut used = vec![false; b.len()];
            let permutation = a.iter().all(|x| {
                let hit = (0..b.len()).find(|&j| {
                    let mut d = Vec::new();
                    !used[j] && {
                        subset(x, &b[j], path, builtin, &mut d);
                        d.is_empty()
                    }
                });
                hit.map(|j| used[j] = true).is_some()
            });
            if !permutation {
                out.extend(positional);
            }
        }
        _ => {
            if !same_scalar(rendered, back) {
                out.push(format!(
                    "{}: rendered {rendered}, read back {back}",
                    show(path)
                ));
            }
        }
    }
}

fn show(path: &str) -> &str {
    if path.is_empty() {
        "(object)"
    } else {
        path
    }
}

fn is_zero(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.is_empty(),
    }
}

fn same_scalar(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Number(n), Json::String(s)) | (Json::String(s), Json::Number(n)) => {
            n.to_string() == *s
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------
// Problems are collected, so one run shows all of them; timings go to stderr.

pub(crate) struct Report {
    chart: &'static str,
    pub(crate) context: String,
    problems: Vec<String>,
    checks: usize,
    timings: Vec<(String, Duration)>,
}

impl Report {
    pub(crate) fn new(chart: &'static str) -> Report {
        Report {
            chart,
            context: String::new(),
            problems: Vec::new(),
            checks: 0,
            timings: Vec::new(),
        }
    }

    pub(crate) fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        self.checks += 1;
        if !ok {
            self.problems.push(format!("{}{what}", self.context));
        }
    }

    pub(crate) fn fail(&mut self, what: impl std::fmt::Display) {
        self.check(false, what);
    }

    pub(crate) fn time(&mut self, what: &str, since: Instant) {
        self.timings.push((what.to_string(), since.elapsed()));
    }

    pub(crate) fn finish(self) {
        let mut line = format!("charts: {} timings:", self.chart);
        for (what, d) in &self.timings {
            let _ = write!(line, " {what} {:.2}s,", d.as_secs_f64());
        }
        eprintln!("{} {} checks", line, self.checks);
        if !self.problems.is_empty() {
            panic!(
                "chart {}: {} of {} checks failed:\n  - {}",
                self.chart,
                self.problems.len(),
                self.checks,
                self.problems.join("\n  - ")
            );
        }
    }
}
