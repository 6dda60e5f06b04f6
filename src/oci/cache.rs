//! The registry cache on disk, shared by every claimd process of a user: blobs by
//! content (`blobs/sha256/<hex>`, verified on every read) and what each tag pointed to
//! when last checked (`tags/<host>/<repository>/<tag>.json`). Files are written to a
//! temporary name and renamed, so a reader never sees half a file.

use super::Location;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What a tag pointed to when last checked: the manifest and the layer claimd uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pinned {
    /// The manifest digest (`sha256:…`).
    pub manifest: String,
    /// The digest of the layer (`sha256:…`).
    pub layer: String,
    /// The layer's size as the manifest gives it.
    pub size: i64,
    /// When the registry last confirmed it (seconds since the epoch).
    #[serde(default)]
    pub checked: u64,
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cache folder.
#[derive(Debug, Clone)]
pub(super) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    /// Where the blob with this sha256 (hex) is kept.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    /// The blob, if it is in the cache and its content matches its digest (a corrupt
    /// one is removed).
    pub fn read_blob(&self, hex: &str) -> Option<Vec<u8>> {
        let path = self.blob_path(hex);
        let bytes = std::fs::read(&path).ok()?;
        if sha256_hex(&bytes) == hex {
            return Some(bytes);
        }
        tracing::warn!(path = %path.display(), "cached blob is corrupt; pulling it again");
        let _ = std::fs::remove_file(&path);
        None
    }

    pub fn write_blob(&self, hex: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.blob_path(hex), bytes)
    }

    fn tag_path(&self, at: &Location) -> PathBuf {
        let host = at.host.replace(':', "_");
        self.dir
            .join("tags")
            .join(host)
            .join(&at.repository)
            .join(format!("{}.json", at.tag))
    }

    pub fn read_tag(&self, at: &Location) -> Option<Pinned> {
        let text = std::fs::read_to_string(self.tag_path(at)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Best effort: a tag not written is checked again next time.
    pub fn write_tag(&self, at: &Location, pinned: &Pinned) {
        let path = self.tag_path(at);
        if let Ok(json) = serde_json::to_vec(pinned) {
            if let Err(e) = write_atomically(&path, &json) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the registry cache");
            }
        }
    }
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
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
    fn blobs_are_verified_and_tags_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let hex = sha256_hex(b"chart");
        assert_eq!(cache.read_blob(&hex), None);
        cache.write_blob(&hex, b"chart").unwrap();
        assert_eq!(cache.read_blob(&hex).as_deref(), Some(&b"chart"[..]));
        std::fs::write(cache.blob_path(&hex), b"tampered").unwrap();
        assert_eq!(cache.read_blob(&hex), None);
        assert!(!cache.blob_path(&hex).exists(), "a corrupt blob is removed");

        let at = Location::of("oci://127.0.0.1:5000/charts", "redis", "1.0.0").unwrap();
        let pinned = Pinned {
            manifest: "sha256:m".into(),
            layer: "sha256:l".into(),
            size: 3,
            checked: 7,
        };
        cache.write_tag(&at, &pinned);
        assert_eq!(cache.read_tag(&at), Some(pinned));
        assert!(dir
            .path()
            .join("tags/127.0.0.1_5000/charts/redis/1.0.0.json")
            .is_file());
    }
}
