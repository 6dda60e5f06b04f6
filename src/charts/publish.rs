//! Publishing charts to an OCI registry, as Helm does (`helm push`): the chart's
//! `.tgz` as the layer, Chart.yaml as JSON as the config. Each chart has its own
//! version; a version already published with the same content is skipped, one with
//! different content is refused unless forced (a published version must not move).

use super::archive::{self, Package};
use super::Error;
use crate::oci::{self, Location, Registry, CHART_LAYER, HELM_CONFIG};
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::OciManifest;
use std::collections::BTreeMap;
use std::path::Path;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// New version published: the manifest digest.
    Published { at: String, digest: String },
    /// The same content was already published under this version.
    Unchanged { at: String },
    /// Different content replaced what was published (only with `force`).
    Replaced { at: String, digest: String },
}

/// Packages `path` (a chart folder, or an existing `.tgz`).
pub fn package(path: &Path) -> Result<Package, Error> {
    let invalid = |detail: String| Error::Invalid {
        path: path.display().to_string(),
        detail: format!(" {detail}"),
    };
    if path.is_dir() {
        return archive::pack(path).map_err(|e| invalid(e.to_string()));
    }
    let tgz = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let files = archive::unpack(&tgz).map_err(|e| invalid(e.to_string()))?;
    let metadata = crate::yaml::parse_documents(&files["Chart.yaml"], &Default::default())
        .map_err(|e| invalid(format!("Chart.yaml:{e}")))?
        .first()
        .map(crate::yaml::Node::to_json)
        .unwrap_or_default();
    let field = |k: &str| metadata.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(name), Some(version)) = (field("name"), field("version")) else {
        return Err(invalid("Chart.yaml has no name or version".into()));
    };
    Ok(Package {
        name,
        version,
        tgz,
        metadata,
    })
}

/// Pushes a packaged chart to `repository` (`oci://host/path`).
pub async fn push(
    registry: &Registry,
    package: &Package,
    repository: &str,
    force: bool,
) -> Result<Pushed, Error> {
    let at = Location::of(repository, &package.name, &package.version).map_err(|source| {
        Error::Registry {
            reference: repository.to_string(),
            source,
        }
    })?;
    let fail = |source: oci::Error| Error::Registry {
        reference: at.to_string(),
        source,
    };
    let reference = at.reference();
    let auth = (&registry.credentials(&at.host).map_err(fail)?).into();
    let client = registry.client();
    let layer_digest = format!("sha256:{}", sha256_hex(&package.tgz));
    let replacing = match client.pull_manifest(&reference, &auth).await {
        Ok((OciManifest::Image(m), _)) => {
            let same = m
                .layers
                .iter()
                .any(|l| l.media_type == CHART_LAYER && l.digest == layer_digest);
            if same {
                return Ok(Pushed::Unchanged { at: at.to_string() });
            }
            if !force {
                return Err(Error::Published {
                    reference: at.to_string(),
                    version: package.version.clone(),
                });
            }
            true
        }
        Ok((OciManifest::ImageIndex(_), _)) => {
            return Err(Error::NotAChart {
                reference: at.to_string(),
            })
        }
        Err(e) if oci::is_not_found(&e) => false,
        Err(e) => return Err(fail(oci::Error::from_client(e, &at))),
    };
    let config = serde_json::to_vec(&package.metadata).map_err(|e| Error::Invalid {
        path: format!("{}/Chart.yaml", package.name),
        detail: format!(" {e}"),
    })?;
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        package.name.clone(),
    );
    annotations.insert(
        "org.opencontainers.image.version".to_string(),
        package.version.clone(),
    );
    if let Some(d) = package.metadata.get("description").and_then(|v| v.as_str()) {
        annotations.insert("org.opencontainers.image.description".into(), d.into());
    }
    let layers = [ImageLayer::new(
        package.tgz.clone(),
        CHART_LAYER.to_string(),
        None,
    )];
    let config = Config::new(config, HELM_CONFIG.to_string(), None);
    let manifest =
        oci_client::manifest::OciImageManifest::build(&layers, &config, Some(annotations));
    let response = client
        .push(&reference, &layers, config, &auth, Some(manifest))
        .await
        .map_err(|e| fail(oci::Error::from_client(e, &at)))?;
    let digest = client
        .fetch_manifest_digest(&reference, &auth)
        .await
        .unwrap_or(response.manifest_url);
    Ok(if replacing {
        Pushed::Replaced {
            at: at.to_string(),
            digest,
        }
    } else {
        Pushed::Published {
            at: at.to_string(),
            digest,
        }
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
