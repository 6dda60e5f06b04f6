//! Charts from OCI registries: the registry ([`crate::oci::Registry`]) pins a chart's
//! tag to a manifest digest and hands over its layer, verified; here the layer is
//! unpacked and parsed, once per manifest digest.

use super::{archive, chart_from_files, Error, Memo};
use crate::oci::{self, Location};
use crate::values::{Chart, ChartRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The charts of OCI registries, parsed in memory by manifest digest. Shared by every
/// reconcile.
#[derive(Debug)]
pub struct Remote {
    registry: Arc<oci::Registry>,
    memo: Memo,
}

impl Remote {
    pub fn new(registry: Arc<oci::Registry>) -> Remote {
        Remote {
            registry,
            // Every chart version in use stays parsed (a few KiB each).
            memo: Memo::new(16 * 1024),
        }
    }

    pub fn registry(&self) -> &Arc<oci::Registry> {
        &self.registry
    }

    /// Every chart in `refs`, pulled (or from the cache) concurrently.
    pub fn resolve(&self, refs: &[&ChartRef]) -> BTreeMap<ChartRef, Result<Arc<Chart>, Error>> {
        let pulls = refs
            .iter()
            .map(|r| async move { ((*r).clone(), self.pull(r).await) });
        self.registry
            .block_on(futures_util::future::join_all(pulls))
            .into_iter()
            .collect()
    }

    /// One chart: pin its tag to a digest, then the parsed chart for that digest.
    pub async fn pull(&self, r: &ChartRef) -> Result<Arc<Chart>, Error> {
        let at = Location::of(&r.repository, &r.name, &r.version).map_err(|source| {
            crate::metrics::registry_error(source.kind());
            Error::Registry {
                reference: format!("{}/{}:{}", r.repository, r.name, r.version),
                source,
            }
        })?;
        let fail = |source: oci::Error| {
            crate::metrics::registry_error(source.kind());
            Error::Registry {
                reference: at.to_string(),
                source,
            }
        };
        let pinned = self.registry.pin(&at).await.map_err(fail)?;
        if let Some(chart) = self.memo.get(r, &pinned.manifest) {
            crate::metrics::chart_cache(true);
            return Ok(chart);
        }
        let tgz = self
            .registry
            .layer(&at, &pinned, archive::MAX_ARCHIVE_BYTES)
            .await
            .map_err(fail)?;
        let files = archive::unpack(&tgz).map_err(|source| Error::Archive {
            reference: at.to_string(),
            source,
        })?;
        self.memo.get_or_parse(r, &pinned.manifest, || {
            chart_from_files(r, &files, &at.to_string(), pinned.manifest.clone())
        })
    }
}
