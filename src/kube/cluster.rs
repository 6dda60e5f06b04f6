//! The adapter to the API server (kube-rs): server-side apply, field manager `claimd`,
//! of what differs from the live objects only (an unchanged namespace costs no write),
//! deletion of the namespaces this repository's claims no longer want, and the preview
//! builds. Without a cluster, [`dry_run`] logs what would be applied.

use super::desired::{Desired, Managed, Preview};
use super::objects::{self, CLAIM_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, REPOSITORY_ANNOTATION};
use super::status::{EnvironmentStatus, Step};
use super::{Error, ImageLookup, Settings};
use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use futures_util::StreamExt;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FIELD_MANAGER: &str = "claimd";
/// Namespaces applied at the same time (a first sync of many environments).
const APPLY_CONCURRENCY: usize = 8;

/// Images remembered as pushed, at most (see [`Cluster`]'s `images`).
const IMAGES_KNOWN: usize = 4096;

/// A connection to the cluster claimd manages namespaces in.
#[derive(Clone)]
pub struct Cluster {
    pub(super) client: ::kube::Client,
    /// The namespace of Argo CD's Applications (their health is DeploymentReady).
    argocd_namespace: String,
    /// Images seen in their registry: an image, once pushed, is not asked for again.
    images: Arc<Mutex<HashSet<String>>>,
}

/// What one sync did and found.
#[derive(Debug, Default)]
pub struct Sync {
    /// Write requests made (applies, creates, deletes).
    pub writes: usize,
    pub deleted: Vec<String>,
    pub statuses: Vec<EnvironmentStatus>,
    /// Preview namespace → commit whose image exists: these previews may be committed.
    pub ready: BTreeMap<String, String>,
    /// Something may work later (API server or registry down): try again soon.
    pub retry: bool,
    /// A build runs: its Job's changes are watched; look again later anyway.
    pub building: bool,
    /// What went wrong, for the log.
    pub problems: Vec<String>,
    /// claimd's build Jobs in the cluster by phase (running, succeeded, failed), when
    /// they could be listed.
    pub jobs: Option<[usize; 3]>,
}

fn resource(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "Namespace" => ("", "v1", "namespaces"),
        "ResourceQuota" => ("", "v1", "resourcequotas"),
        "LimitRange" => ("", "v1", "limitranges"),
        "NetworkPolicy" => ("networking.k8s.io", "v1", "networkpolicies"),
        "Job" => ("batch", "v1", "jobs"),
        "Application" => ("argoproj.io", "v1alpha1", "applications"),
        other => unreachable!("claimd does not manage {other}"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

const CHILD_KINDS: [&str; 3] = ["ResourceQuota", "LimitRange", "NetworkPolicy"];

fn managed() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
}

/// Counts a request to the API server in claimd's metrics (when a daemon runs).
fn counted<T>(verb: &'static str, r: Result<T, ::kube::Error>) -> Result<T, ::kube::Error> {
    crate::metrics::kube_request(verb, r.is_ok());
    r
}

fn describe(e: &::kube::Error) -> String {
    match e {
        ::kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => format!("API server unreachable: {other}"),
    }
}

fn not_found(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == 404)
}

/// Whether every field of `want` has the same value in `live` (what the server adds,
/// defaults and status, does not count).
pub fn contains(live: &Json, want: &Json) -> bool {
    match (live, want) {
        (Json::Object(l), Json::Object(w)) => w
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| contains(lv, v))),
        (Json::Array(l), Json::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        _ => live == want,
    }
}

/// Whether `live` already is what applying `obj` would make it (list items carry no
/// `apiVersion` and `kind`).
fn applied(live: &Json, obj: &Json) -> bool {
    let mut want = obj.clone();
    if let Some(m) = want.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    contains(live, &want)
}

fn annotation<'a>(obj: &'a DynamicObject, key: &str) -> Option<&'a str> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// A client for the configured kubeconfig, else `KUBECONFIG` / `~/.kube/config` / the
/// in-cluster service account (`dryRun` is the caller's to heed). `Ok(None)`: no
/// cluster is configured.
pub async fn client(s: &Settings) -> Result<Option<::kube::Client>, Error> {
    let config = match &s.kubeconfig {
        Some(path) => {
            let fail = |source| Error::Config {
                path: path.display().to_string(),
                source,
            };
            let kc = ::kube::config::Kubeconfig::read_from(path).map_err(fail)?;
            ::kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(fail)?
        }
        None => match ::kube::Config::infer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(reason = %e, "no Kubernetes cluster configured: namespaces and builds are logged, not applied (dry-run)");
                return Ok(None);
            }
        },
    };
    let mut config = config;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(30));
    ::kube::Client::try_from(config)
        .map(Some)
        .map_err(Error::Client)
}

impl Cluster {
    /// Connects with the configured kubeconfig, else `KUBECONFIG` / `~/.kube/config` /
    /// the in-cluster service account. `Ok(None)`: no cluster is configured (dry-run).
    pub async fn connect(s: &Settings, argocd_namespace: &str) -> Result<Option<Cluster>, Error> {
        if s.dry_run {
            return Ok(None);
        }
        let Some(client) = client(s).await? else {
            return Ok(None);
        };
        Ok(Some(Cluster {
            client,
            argocd_namespace: argocd_namespace.to_string(),
            images: Arc::default(),
        }))
    }

    fn api(&self, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let r = resource(kind);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &r),
            None => Api::all_with(self.client.clone(), &r),
        }
    }

    async fn apply(&self, obj: &Json) -> Result<(), ::kube::Error> {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let r = self
            .api(kind, ns)
            .patch(name, &params, &Patch::Apply(obj))
            .await;
        counted("patch", r).map(|_| ())
    }

    async fn list(
        &self,
        kind: &str,
        params: &ListParams,
    ) -> Result<Vec<DynamicObject>, ::kube::Error> {
        Ok(counted("list", self.api(kind, None).list(params).await)?.items)
    }

    /// Applies what `desired` wants and differs from the cluster, deletes this
    /// repository's namespaces nobody wants, and runs the preview builds.
    pub async fn sync(&self, d: &Desired, registry: Option<&dyn ImageLookup>) -> Sync {
        let mut out = Sync::default();
        let live_ns: HashMap<String, DynamicObject> = match self.list("Namespace", &managed()).await
        {
            Ok(items) => items
                .into_iter()
                .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
                .collect(),
            Err(e) => {
                // Nothing can be told: previews wait, nothing is deleted.
                let why = describe(&e);
                out.retry = true;
                out.problems.push(why.clone());
                for p in &d.previews {
                    let ns = Step::Unknown("ApiServerUnavailable".into(), why.clone());
                    let (build, deploy) = (
                        Step::Unknown("ApiServerUnavailable".into(), String::new()),
                        Step::Waiting("WaitingForBuild".into(), String::new()),
                    );
                    out.statuses.push(status(p, [&ns, &build, &deploy]));
                }
                return out;
            }
        };
        let mut children: HashMap<(String, String, String), Json> = HashMap::new();
        for kind in CHILD_KINDS {
            match self.list(kind, &managed()).await {
                Ok(items) => {
                    for o in items {
                        let key = (
                            kind.to_string(),
                            o.metadata.namespace.clone().unwrap_or_default(),
                            o.metadata.name.clone().unwrap_or_default(),
                        );
                        children.insert(key, serde_json::to_value(&o).unwrap_or_default());
                    }
                }
                Err(e) => {
                    out.retry = true;
                    out.problems.push(describe(&e));
                }
            }
        }
        // Namespaces side by side (each one's objects in order: the namespace first).
        let work: Vec<_> = d
            .namespaces
            .iter()
            .map(|m| self.ensure(d, m, live_ns.get(&m.name), &children))
            .collect();
        let results: Vec<(Step, Sync)> = futures_util::stream::iter(work)
            .buffered(APPLY_CONCURRENCY)
            .collect()
            .await;
        let mut ns_steps: BTreeMap<&str, Step> = BTreeMap::new();
        for (m, (step, part)) in d.namespaces.iter().zip(results) {
            let name = m.name.as_str();
            out.writes += part.writes;
            out.retry |= part.retry;
            out.problems.extend(part.problems);
            ns_steps.insert(name, step);
        }
        self.clean_up(d, &live_ns, &mut out).await;
        self.builds(d, &ns_steps, registry, &mut out).await;
        out
    }

    /// One namespace and its objects, with a report of its own (namespaces run side by
    /// side).
    async fn ensure(
        &self,
        d: &Desired,
        m: &Managed,
        live: Option<&DynamicObject>,
        children: &HashMap<(String, String, String), Json>,
    ) -> (Step, Sync) {
        let mut out = Sync::default();
        let name = &m.name;
        let live = match live {
            Some(l) => Some(serde_json::to_value(l).unwrap_or_default()),
            None => match counted("get", self.api("Namespace", None).get_opt(name).await) {
                Ok(None) => None,
                Ok(Some(_)) => {
                    let msg = format!("namespace `{name}` exists and is not managed by claimd (no label {MANAGED_BY_LABEL}={MANAGED_BY}); claimd leaves it alone: rename the Environment or remove that namespace");
                    out.problems.push(msg.clone());
                    return (Step::Failed("NamespaceTaken".into(), msg), out);
                }
                Err(e) => {
                    out.retry = true;
                    let step = Step::Waiting("ApiServerUnavailable".into(), describe(&e));
                    return (step, out);
                }
            },
        };
        if let Some(live) = &live {
            let owner = live["metadata"]["annotations"][REPOSITORY_ANNOTATION]
                .as_str()
                .unwrap_or("");
            if owner != d.repository {
                let msg = format!("namespace `{name}` belongs to another repository ({owner}); claimd does not take it over");
                out.problems.push(msg.clone());
                return (Step::Failed("NamespaceTaken".into(), msg), out);
            }
            if !live["metadata"]["deletionTimestamp"].is_null() {
                out.retry = true;
                let why = format!(
                    "namespace `{name}` is being deleted; it is created again once it is gone"
                );
                return (Step::Waiting("NamespaceTerminating".into(), why), out);
            }
        }
        let step = self.apply_all(m, live.as_ref(), children, &mut out).await;
        (step, out)
    }

    async fn apply_all(
        &self,
        m: &Managed,
        live_ns: Option<&Json>,
        children: &HashMap<(String, String, String), Json>,
        out: &mut Sync,
    ) -> Step {
        for obj in &m.objects {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let live = if kind == "Namespace" {
                live_ns
            } else {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                children.get(&(kind.to_string(), m.name.clone(), name.to_string()))
            };
            if live.is_some_and(|l| applied(l, obj)) {
                continue;
            }
            out.writes += 1;
            if let Err(e) = self.apply(obj).await {
                out.retry = true;
                let msg = format!("{kind} in namespace `{}`: {}", m.name, describe(&e));
                out.problems.push(msg.clone());
                return Step::Waiting("ApplyFailed".into(), msg);
            }
            tracing::info!(namespace = %m.name, kind, "applied");
        }
        Step::Done("Applied".into())
    }

    /// Deletes this repository's namespaces that no claim wants any more. Never one
    /// without claimd's label (they are not listed), of another repository, of a claim
    /// file that failed to read, or one already being deleted.
    async fn clean_up(&self, d: &Desired, live: &HashMap<String, DynamicObject>, out: &mut Sync) {
        let mut names: Vec<&String> = live.keys().collect();
        names.sort();
        for name in names {
            let obj = &live[name];
            if d.namespace(name).is_some()
                || obj.metadata.deletion_timestamp.is_some()
                || annotation(obj, REPOSITORY_ANNOTATION) != Some(d.repository.as_str())
            {
                continue;
            }
            let files: BTreeSet<&str> = annotation(obj, CLAIM_ANNOTATION)
                .unwrap_or("")
                .split(',')
                .collect();
            if files.iter().any(|f| d.kept_files.contains(*f)) {
                tracing::info!(namespace = %name, "kept: its claim file does not read now");
                continue;
            }
            out.writes += 1;
            let deleted = self
                .api("Namespace", None)
                .delete(name, &DeleteParams::background())
                .await;
            match counted("delete", deleted) {
                Ok(_) => {
                    tracing::info!(namespace = %name, "deleted: no claim wants it any more");
                    out.deleted.push(name.clone());
                }
                Err(e) if not_found(&e) => {}
                Err(e) => {
                    out.retry = true;
                    out.problems
                        .push(format!("deleting namespace `{name}`: {}", describe(&e)));
                }
            }
        }
    }

    /// Each preview: its image exists, or a build Job makes it.
    async fn builds(
        &self,
        d: &Desired,
        ns_steps: &BTreeMap<&str, Step>,
        registry: Option<&dyn ImageLookup>,
        out: &mut Sync,
    ) {
        let params = managed().labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{}=true",
            objects::BUILD_LABEL
        ));
        let jobs: HashMap<(String, String), DynamicObject> = match self.list("Job", &params).await {
            Ok(items) => {
                out.jobs = Some(job_phases(&items));
                items
                    .into_iter()
                    .map(|o| {
                        let key = (
                            o.metadata.namespace.clone().unwrap_or_default(),
                            o.metadata.name.clone().unwrap_or_default(),
                        );
                        (key, o)
                    })
                    .collect()
            }
            Err(e) => {
                out.retry = true;
                out.problems.push(describe(&e));
                HashMap::new()
            }
        };
        let apps = if d.previews.is_empty() {
            Ok(HashMap::new())
        } else {
            self.applications().await
        };
        for p in &d.previews {
            let ns = ns_steps
                .get(p.namespace.as_str())
                .cloned()
                .unwrap_or_else(|| Step::Waiting("NotApplied".into(), String::new()));
            let build = self.build(p, &ns, &jobs, registry, out).await;
            let deploy = match &build {
                Step::Done(_) => deployment(p, &apps),
                _ => Step::Waiting("WaitingForBuild".into(), String::new()),
            };
            if let (Step::Done(_), Some(commit)) = (&build, &p.commit) {
                out.ready.insert(p.namespace.clone(), commit.clone());
            }
            out.statuses.push(status(p, [&ns, &build, &deploy]));
        }
    }

    async fn build(
        &self,
        p: &Preview,
        ns: &Step,
        jobs: &HashMap<(String, String), DynamicObject>,
        registry: Option<&dyn ImageLookup>,
        out: &mut Sync,
    ) -> Step {
        if p.commit.is_none() {
            let why = "spec.source.commitSha is not set".to_string();
            return Step::Failed("NoCommit".into(), why);
        }
        let (Some(image), Some(job)) = (&p.image, &p.job) else {
            // The Project names no image repository: nothing of ours to build.
            return Step::Done("NoImageRepository".into());
        };
        let known = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(image);
        let exists = match registry {
            _ if known => Ok(true),
            Some(r) => r.exists(image).await.map_err(|e| e.to_string()),
            None => Ok(false),
        };
        if exists == Ok(true) {
            let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: every preview commit is a new tag. Forgetting them all now and
            // then costs one registry lookup per live preview.
            if images.len() >= IMAGES_KNOWN {
                images.clear();
            }
            images.insert(image.clone());
            return Step::Done("ImageExists".into());
        }
        let job_name = job["metadata"]["name"].as_str().unwrap_or_default();
        if let Some(live) = jobs.get(&(p.namespace.clone(), job_name.to_string())) {
            return job_step(job_name, live, out);
        }
        if let Err(e) = exists {
            out.retry = true;
            return Step::Waiting("RegistryUnavailable".into(), e);
        }
        if !matches!(ns, Step::Done(_)) {
            return Step::Waiting("WaitingForNamespace".into(), String::new());
        }
        out.writes += 1;
        out.building = true;
        match self.apply(job).await {
            Ok(()) => {
                tracing::info!(namespace = %p.namespace, job = job_name, %image, "build started");
                Step::Waiting("Building".into(), format!("job {job_name} builds {image}"))
            }
            Err(e) => Step::Waiting("JobNotCreated".into(), describe(&e)),
        }
    }

    /// Calls `changed` with the repository a build Job belongs to whenever one changes,
    /// until `changed` returns false. Reconnects with backoff.
    pub async fn watch_builds(&self, changed: impl Fn(&str) -> bool) {
        use ::kube::runtime::{watcher, WatchStreamExt};
        use futures_util::StreamExt;
        let selector = format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{}=true",
            objects::BUILD_LABEL
        );
        let api = self.api("Job", None);
        let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let job = match event {
                Ok(
                    watcher::Event::Apply(j)
                    | watcher::Event::Delete(j)
                    | watcher::Event::InitApply(j),
                ) => j,
                Ok(_) => continue,
                Err(e) => {
                    crate::metrics::kube_request("watch", false);
                    tracing::debug!(error = %e, "watching build Jobs");
                    continue;
                }
            };
            if let Some(repository) = annotation(&job, REPOSITORY_ANNOTATION) {
                if !changed(repository) {
                    return;
                }
            }
        }
    }

    /// The health and sync status of the preview Applications (named after their
    /// namespaces) in Argo CD's namespace, in one request.
    async fn applications(&self) -> Result<HashMap<String, (String, String)>, ::kube::Error> {
        let params = ListParams::default().labels("claimd.dev/cluster-type=catalyst");
        let api = self.api("Application", Some(&self.argocd_namespace));
        match counted("list", api.list(&params).await) {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .map(|app| {
                    let field = |f: &str| {
                        app.data["status"][f]["status"]
                            .as_str()
                            .unwrap_or("Unknown")
                            .to_string()
                    };
                    let state = (field("health"), field("sync"));
                    (app.metadata.name.unwrap_or_default(), state)
                })
                .collect()),
            Err(e) if not_found(&e) => Ok(HashMap::new()),
            Err(e) => Err(e),
        }
    }
}

/// DeploymentReady: the preview's Argo CD Application is Synced and Healthy.
fn deployment(
    p: &Preview,
    apps: &Result<HashMap<String, (String, String)>, ::kube::Error>,
) -> Step {
    let apps = match apps {
        Ok(apps) => apps,
        Err(e) => return Step::Unknown("ApiServerUnavailable".into(), describe(e)),
    };
    let Some((health, sync)) = apps.get(&p.namespace) else {
        return Step::Waiting(
            "NoApplication".into(),
            "Argo CD has not created the Application yet".into(),
        );
    };
    let message = format!("Argo CD: health {health}, sync {sync}");
    match (health.as_str(), sync.as_str()) {
        ("Healthy", "Synced") => Step::Done("Healthy".into()),
        ("Degraded", _) => Step::Failed("Degraded".into(), message),
        _ => Step::Waiting("Progressing".into(), message),
    }
}

/// How many of `jobs` run, succeeded and failed.
fn job_phases(jobs: &[DynamicObject]) -> [usize; 3] {
    let mut counts = [0; 3];
    for job in jobs {
        let st = &job.data["status"];
        let failed = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Failed" && c["status"] == "True");
        let phase = if st["succeeded"].as_u64().unwrap_or(0) > 0 {
            1
        } else if failed {
            2
        } else {
            0
        };
        counts[phase] += 1;
    }
    counts
}

/// A build Job's state: succeeded, failed (reported, not waited on), or running.
fn job_step(name: &str, live: &DynamicObject, out: &mut Sync) -> Step {
    let st = &live.data["status"];
    if st["succeeded"].as_u64().unwrap_or(0) > 0 {
        return Step::Done("Built".into());
    }
    let failed = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed" && c["status"] == "True");
    if let Some(c) = failed {
        let reason = c["reason"].as_str().unwrap_or("Failed");
        let message = c["message"].as_str().unwrap_or("");
        return Step::Failed(
            "BuildFailed".into(),
            format!("job {name} failed: {reason} {message}")
                .trim_end()
                .to_string(),
        );
    }
    out.building = true;
    Step::Waiting("Building".into(), format!("job {name} is running"))
}

fn status(p: &Preview, steps: [&Step; 3]) -> EnvironmentStatus {
    EnvironmentStatus::new(
        p.claim.clone(),
        p.environment.clone(),
        p.namespace.clone(),
        p.commit.clone(),
        p.url.clone(),
        steps,
    )
}

/// Without a cluster: log every object claimd would apply (when `log`); previews are
/// not held.
pub fn dry_run(d: &Desired, log: bool) -> Sync {
    let mut out = Sync::default();
    for m in d.namespaces.iter().filter(|_| log) {
        for obj in &m.objects {
            tracing::info!(
                kind = obj["kind"].as_str().unwrap_or_default(),
                namespace = %m.name,
                name = obj["metadata"]["name"].as_str().unwrap_or_default(),
                "dry-run: would apply"
            );
            tracing::debug!(object = %obj, "dry-run object");
        }
    }
    for p in &d.previews {
        if let Some(job) = p.job.as_ref().filter(|_| log) {
            tracing::info!(namespace = %p.namespace, job = job["metadata"]["name"].as_str().unwrap_or_default(), "dry-run: would build when the image is missing");
        }
        if let Some(c) = &p.commit {
            out.ready.insert(p.namespace.clone(), c.clone());
        }
        let unknown = Step::Unknown("DryRun".into(), "no Kubernetes cluster configured".into());
        out.statuses.push(status(p, [&unknown, &unknown, &unknown]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_ignores_what_the_server_adds() {
        let want = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": [1, {"y": 2}]}});
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "uid": "u"}, "spec": {"x": [1, {"y": 2, "z": 3}]}, "status": {}});
        assert!(contains(&live, &want));
        let changed = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": [1, {"y": 2}]}});
        assert!(!contains(&live, &changed));
        let longer = json!({"metadata": {}, "spec": {"x": [1, {"y": 2}, 3]}});
        assert!(!contains(&live, &longer));
    }
}
