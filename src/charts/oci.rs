//! Charts from OCI registries (oci-client): tag → digest, manifest, chart layer, with a
//! content-addressed cache on disk (`blobs/sha256/<hex>`, `tags/…`) and parsed charts
//! in memory by manifest digest. Tags are re-checked at most every `refresh` seconds;
//! `offline` works from the cache alone.

pub use super::credentials::HostSettings;
use super::credentials::{self, Credentials};
use super::{archive, chart_from_files, Error, Memo};
use crate::values::{Chart, ChartRef};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciManifest;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Media types of a Helm chart artifact.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// What charts pushed by Helm before 3.8 (and some tools) carry.
pub const LEGACY_CHART_LAYER: &str = "application/tar+gzip";
pub const PROVENANCE_LAYER: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

/// Prefix of the errors worth retrying (the registry did not answer).
pub(super) const UNREACHABLE: &str = "registry unreachable";

/// Registry settings (the daemon config's `registries:` section; env overrides).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Cache folder (default: `$CLAIMD_CACHE`, else `~/.cache/claimd`).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// Seconds between checks of what a tag points to (default 300; 0: every time).
    #[serde(default)]
    pub refresh: Option<u64>,
    /// Use only what is in the cache; never ask a registry.
    #[serde(default)]
    pub offline: bool,
    /// Per registry host (`ghcr.io`, `127.0.0.1:5000`): transport and credentials.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSettings>,
}

impl Settings {
    /// Applies `CLAIMD_CACHE`, `CLAIMD_OFFLINE=1`, `CLAIMD_REFRESH=<seconds>` and
    /// `CLAIMD_PLAIN_HTTP=<host>,<host>`.
    pub fn with_env(mut self) -> Settings {
        if let Some(dir) = std::env::var_os("CLAIMD_CACHE") {
            self.cache = Some(PathBuf::from(dir));
        }
        if std::env::var("CLAIMD_OFFLINE").is_ok_and(|v| v != "0" && !v.is_empty()) {
            self.offline = true;
        }
        if let Some(secs) = std::env::var("CLAIMD_REFRESH")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            self.refresh = Some(secs);
        }
        if let Ok(hosts) = std::env::var("CLAIMD_PLAIN_HTTP") {
            for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                self.hosts.entry(host.to_string()).or_default().plain_http = true;
            }
        }
        self
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/claimd"))
                .unwrap_or_else(|| std::env::temp_dir().join("claimd-cache"))
        })
    }

    fn refresh(&self) -> Duration {
        Duration::from_secs(self.refresh.unwrap_or(300))
    }
}

/// What a tag pointed to when last checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Pinned {
    manifest: String,
    layer: String,
    size: i64,
    /// When the registry last confirmed it (seconds since the epoch).
    #[serde(default)]
    checked: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A chart's location in a registry.
#[derive(Debug, Clone)]
pub struct Location {
    pub host: String,
    /// Repository path below the host, ending in the chart name.
    pub repository: String,
    pub tag: String,
}

impl Location {
    /// `oci://host/path` + chart name + version (Helm's `+` → `_` tag rule).
    pub fn of(repository: &str, name: &str, version: &str) -> Result<Location, String> {
        let rest = repository.strip_prefix("oci://").ok_or_else(|| {
            format!("chart repository `{repository}` is not an OCI reference (oci://host/path)")
        })?;
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(format!("chart repository `{repository}` has no host"));
        }
        let repository = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}/{name}")
        };
        Ok(Location {
            host: host.to_string(),
            repository,
            tag: version.replace('+', "_"),
        })
    }

    pub fn reference(&self) -> Reference {
        Reference::with_tag(self.host.clone(), self.repository.clone(), self.tag.clone())
    }

    fn at(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.host.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}:{}", self.host, self.repository, self.tag)
    }
}

/// A client for the chart registries, with its caches. Shared by every reconcile.
pub struct Registry {
    settings: Settings,
    client: Client,
    runtime: OnceLock<tokio::runtime::Runtime>,
    tags: Mutex<HashMap<String, (Pinned, Instant)>>,
    memo: Memo,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("cache", &self.settings.cache_dir())
            .field("offline", &self.settings.offline)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(settings: Settings) -> Result<Registry, Error> {
        let mut plain = Vec::new();
        let mut roots = Vec::new();
        for (host, s) in &settings.hosts {
            if s.plain_http {
                plain.push(host.clone());
            }
            if let Some(ca) = &s.ca_file {
                let data = std::fs::read(ca).map_err(|source| Error::Io {
                    path: ca.clone(),
                    source,
                })?;
                roots.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                });
            }
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            extra_root_certificates: roots,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(30)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::Registry {
            reference: "registry client".into(),
            detail: e.to_string(),
        })?;
        Ok(Registry {
            settings,
            client,
            runtime: OnceLock::new(),
            tags: Mutex::new(HashMap::new()),
            // Every chart version in use stays parsed (a few KiB each).
            memo: Memo::new(16 * 1024),
        })
    }

    /// Runs a future to completion from synchronous code: on the daemon's runtime when
    /// called from one of its blocking threads, else on a runtime of our own.
    pub fn block_on<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(f))
            }
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| self.own_runtime().block_on(f))
                    .join()
                    .expect("registry thread")
            }),
            Err(_) => self.own_runtime().block_on(f),
        }
    }

    fn own_runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
    }

    pub fn credentials(&self, host: &str) -> Result<Credentials, Error> {
        credentials::for_host(host, self.settings.hosts.get(host)).map_err(|e| Error::Registry {
            reference: host.to_string(),
            detail: e.to_string(),
        })
    }

    /// Every chart in `refs`, pulled (or from the cache) concurrently.
    pub fn resolve(&self, refs: &[&ChartRef]) -> BTreeMap<ChartRef, Result<Arc<Chart>, Error>> {
        let pulls = refs
            .iter()
            .map(|r| async move { ((*r).clone(), self.pull(r).await) });
        self.block_on(futures_util::future::join_all(pulls))
            .into_iter()
            .collect()
    }

    /// One chart: pin its tag to a digest, then the parsed chart for that digest.
    pub async fn pull(&self, r: &ChartRef) -> Result<Arc<Chart>, Error> {
        let at =
            Location::of(&r.repository, &r.name, &r.version).map_err(|detail| Error::Registry {
                reference: format!("{}/{}:{}", r.repository, r.name, r.version),
                detail,
            })?;
        let fail = |detail: String| Error::Registry {
            reference: at.to_string(),
            detail,
        };
        let pinned = self.pin(&at).await?;
        if let Some(chart) = self.memo.get(r, &pinned.manifest) {
            return Ok(chart);
        }
        let tgz = self.layer(&at, &pinned).await?;
        let files = archive::unpack(&tgz).map_err(|e| fail(e.to_string()))?;
        self.memo.get_or_parse(r, &pinned.manifest, || {
            chart_from_files(r, &files, &at.to_string(), pinned.manifest.clone())
        })
    }

    /// The digest a tag points to (from memory within `refresh`, else the registry).
    async fn pin(&self, at: &Location) -> Result<Pinned, Error> {
        let key = at.to_string();
        let fail = |detail: String| Error::Registry {
            reference: key.clone(),
            detail,
        };
        if let Some((p, when)) = self.tags.lock().expect("tags").get(&key) {
            if self.settings.offline || when.elapsed() < self.settings.refresh() {
                return Ok(p.clone());
            }
        }
        let on_disk = self.read_tag(at);
        if self.settings.offline {
            return on_disk.ok_or_else(|| {
                fail("not in the chart cache, and claimd is offline (pull it once online, or run without --offline)".into())
            });
        }
        // Checked recently by another claimd process (a hook): no request either.
        if let Some(p) = &on_disk {
            if now_secs().saturating_sub(p.checked) < self.settings.refresh().as_secs() {
                self.remember(&key, p);
                return Ok(p.clone());
            }
        }
        let auth = (&self.credentials(&at.host)?).into();
        let digest = match self
            .client
            .fetch_manifest_digest(&at.reference(), &auth)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                let why = describe(&e, at);
                // The registry is down: what the tag pointed to when last seen is still
                // the best answer (a chart version is not expected to move).
                if let (true, Some(p)) = (why.starts_with(UNREACHABLE), &on_disk) {
                    tracing::warn!(chart = %key, digest = %p.manifest, "{why}; using the digest from the last check");
                    return Ok(p.clone());
                }
                return Err(fail(why));
            }
        };
        let pinned = match on_disk {
            Some(p) if p.manifest == digest => Pinned {
                checked: now_secs(),
                ..p
            },
            _ => {
                let (manifest, got) = self
                    .client
                    .pull_manifest(&at.at(&digest), &auth)
                    .await
                    .map_err(|e| fail(describe(&e, at)))?;
                if got != digest {
                    return Err(fail(format!(
                        "the registry sent manifest {got} for digest {digest}"
                    )));
                }
                chart_layer(&manifest, &digest).map_err(fail)?
            }
        };
        self.write_tag(at, &pinned);
        self.remember(&key, &pinned);
        Ok(pinned)
    }

    fn remember(&self, key: &str, pinned: &Pinned) {
        self.tags
            .lock()
            .expect("tags")
            .insert(key.to_string(), (pinned.clone(), Instant::now()));
    }

    /// The chart layer's bytes, verified against its digest: from the cache, else pulled.
    async fn layer(&self, at: &Location, pinned: &Pinned) -> Result<Vec<u8>, Error> {
        let fail = |detail: String| Error::Registry {
            reference: at.to_string(),
            detail,
        };
        let hex = pinned
            .layer
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| fail(format!("unsupported layer digest {}", pinned.layer)))?;
        let path = self.settings.cache_dir().join("blobs/sha256").join(hex);
        if let Ok(bytes) = std::fs::read(&path) {
            if sha256_hex(&bytes) == hex {
                return Ok(bytes);
            }
            tracing::warn!(path = %path.display(), "cached chart blob is corrupt; pulling it again");
            let _ = std::fs::remove_file(&path);
        }
        if self.settings.offline {
            return Err(fail(
                "chart layer not in the cache, and claimd is offline".into(),
            ));
        }
        if pinned.size < 0 || pinned.size as u64 > archive::MAX_ARCHIVE_BYTES {
            return Err(fail(format!(
                "chart layer of {} bytes is over the {} MiB limit",
                pinned.size,
                archive::MAX_ARCHIVE_BYTES >> 20
            )));
        }
        let auth = (&self.credentials(&at.host)?).into();
        // Authenticates (a token for pull) before the blob request.
        self.client
            .auth(&at.reference(), &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| fail(describe(&e, at)))?;
        let mut bytes = Vec::with_capacity(pinned.size as usize);
        self.client
            .pull_blob(&at.reference(), pinned.layer.as_str(), &mut bytes)
            .await
            .map_err(|e| fail(describe(&e, at)))?;
        let actual = sha256_hex(&bytes);
        if actual != hex {
            return Err(fail(format!(
                "chart layer digest mismatch: expected sha256:{hex}, got sha256:{actual}; nothing was used"
            )));
        }
        write_atomically(&path, &bytes).map_err(|e| fail(format!("writing the cache: {e}")))?;
        Ok(bytes)
    }

    fn tag_path(&self, at: &Location) -> PathBuf {
        let host = at.host.replace(':', "_");
        self.settings
            .cache_dir()
            .join("tags")
            .join(host)
            .join(&at.repository)
            .join(format!("{}.json", at.tag))
    }

    fn read_tag(&self, at: &Location) -> Option<Pinned> {
        let text = std::fs::read_to_string(self.tag_path(at)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_tag(&self, at: &Location, pinned: &Pinned) {
        let path = self.tag_path(at);
        if let Ok(json) = serde_json::to_vec(pinned) {
            if let Err(e) = write_atomically(&path, &json) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the chart cache");
            }
        }
    }

    /// Does `image` (`host/repo:tag` or `…@sha256:…`) exist? A manifest HEAD request.
    pub async fn image_exists(&self, image: &str) -> Result<bool, Error> {
        let reference: Reference = image.parse().map_err(|e| Error::Registry {
            reference: image.to_string(),
            detail: format!("not an image reference: {e}"),
        })?;
        let host = reference.registry().to_string();
        let auth = (&self.credentials(&host)?).into();
        match self.client.fetch_manifest_digest(&reference, &auth).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::Registry {
                reference: image.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Picks the chart layer of a Helm artifact's manifest (a provenance layer is ignored).
fn chart_layer(manifest: &OciManifest, digest: &str) -> Result<Pinned, String> {
    let OciManifest::Image(m) = manifest else {
        return Err("is an image index, not a Helm chart".into());
    };
    if m.config.media_type != HELM_CONFIG {
        return Err(format!(
            "is not a Helm chart (config media type {}, expected {HELM_CONFIG})",
            m.config.media_type
        ));
    }
    let layer = m
        .layers
        .iter()
        .find(|l| l.media_type == CHART_LAYER)
        .or_else(|| m.layers.iter().find(|l| l.media_type == LEGACY_CHART_LAYER))
        .ok_or_else(|| format!("has no chart layer ({CHART_LAYER})"))?;
    Ok(Pinned {
        manifest: digest.to_string(),
        layer: layer.digest.clone(),
        size: layer.size,
        checked: now_secs(),
    })
}

pub(super) fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// A registry error in words a person can act on.
pub(super) fn describe(e: &OciDistributionError, at: &Location) -> String {
    if is_not_found(e) {
        return format!(
            "tag {} not found in {}/{}: publish the chart version (claimd chart push) or fix chart.version",
            at.tag, at.host, at.repository
        );
    }
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => format!(
            "the registry {} refused the credentials (or none were given): set them in claimd's config (registries.hosts.\"{}\") or the Docker config file",
            at.host, at.host
        ),
        OciDistributionError::RequestError(r) if is_certificate_problem(r) => format!(
            "the TLS certificate of {} is not trusted ({}): name its CA as caFile for the host in the registry settings (or plainHttp for a plain HTTP registry)",
            at.host,
            chain(r)
        ),
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            format!("{UNREACHABLE}: {} did not answer ({r}); will retry", at.host)
        }
        OciDistributionError::ServerError { code, .. } if *code >= 500 => {
            format!("{UNREACHABLE}: {} answered {code}; will retry", at.host)
        }
        other => other.to_string(),
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_certificate_problem(e: &dyn std::error::Error) -> bool {
    let text = chain(e);
    text.contains("certificate") || text.contains("UnknownIssuer")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_helm() {
        let l = Location::of("oci://ghcr.io/acme/charts", "redis", "1.2.3+build.4").unwrap();
        assert_eq!(l.host, "ghcr.io");
        assert_eq!(l.repository, "acme/charts/redis");
        assert_eq!(l.tag, "1.2.3_build.4");
        assert_eq!(
            l.to_string(),
            "oci://ghcr.io/acme/charts/redis:1.2.3_build.4"
        );
        let bare = Location::of("oci://127.0.0.1:5000/", "x", "1.0.0").unwrap();
        assert_eq!(
            (bare.host.as_str(), bare.repository.as_str()),
            ("127.0.0.1:5000", "x")
        );
        assert!(Location::of("https://charts.example.com", "x", "1.0.0")
            .unwrap_err()
            .contains("not an OCI reference"));
        assert!(Location::of("oci:///x", "x", "1.0.0").is_err());
    }

    fn manifest(config: &str, layers: &[&str]) -> OciManifest {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": config, "digest": "sha256:00", "size": 1},
            "layers": layers.iter().enumerate().map(|(i, t)| serde_json::json!({
                "mediaType": t, "digest": format!("sha256:{i:02}"), "size": 10 + i
            })).collect::<Vec<_>>(),
        });
        OciManifest::Image(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn picks_the_chart_layer_past_a_provenance_layer() {
        let m = manifest(HELM_CONFIG, &[PROVENANCE_LAYER, CHART_LAYER]);
        let p = chart_layer(&m, "sha256:m").unwrap();
        assert_eq!((p.layer.as_str(), p.size), ("sha256:01", 11));
        let legacy = manifest(HELM_CONFIG, &[LEGACY_CHART_LAYER]);
        assert_eq!(chart_layer(&legacy, "d").unwrap().layer, "sha256:00");
        let image = manifest("application/vnd.oci.image.config.v1+json", &[CHART_LAYER]);
        assert!(chart_layer(&image, "d")
            .unwrap_err()
            .contains("not a Helm chart"));
        let empty = manifest(HELM_CONFIG, &[PROVENANCE_LAYER]);
        assert!(chart_layer(&empty, "d")
            .unwrap_err()
            .contains("no chart layer"));
    }
}
