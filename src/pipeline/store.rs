//! The memo kept between processes: each hook is a new process, and without this a push
//! that changes one claim file among 10,000 applications would render all of them.
//!
//! Stored in `<git dir>/claimd/memo.msgpack` (MessagePack: serde, compact, quick to read): the parsed claim files by blob id, the
//! generated files of each claim file's applications and the chart references per
//! claim file, each under the context hash it was made in (see [`super::core`]). Every entry is keyed by what it was computed
//! from, so any memo, however old or whichever process wrote it, gives the same plan as
//! a full render; a memo written by another build of claimd is not used at all.
//! Written to a temporary file and renamed: a kill at any point leaves the old memo or
//! the new one, never a torn one; concurrent hooks each write a whole memo, the last
//! rename wins. A memo that does not read is ignored (a full render, then a new one).

use super::core::{FileOutputs, FileRefs, Memo, Outputs};
use crate::claims::ParsedFile;
use crate::values::ChartRef;
use gix::ObjectId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Temporary files older than this were left by a killed process.
const STALE: Duration = Duration::from_secs(3600);

fn file(git_dir: &Path) -> PathBuf {
    git_dir.join("claimd").join("memo.msgpack")
}

/// Which build of claimd wrote a memo: its version and the executable's size and
/// modification time (a rebuilt or upgraded binary may render differently).
fn build() -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} {mtime}", m.len())
        })
        .unwrap_or_default();
    format!("claimd {} memo 1 {exe}", env!("CARGO_PKG_VERSION"))
}

#[derive(Serialize, Deserialize)]
struct Stored {
    build: String,
    outputs_context: Option<String>,
    outputs: Vec<StoredOutputs>,
    refs_context: String,
    refs: Vec<(String, String, BTreeSet<ChartRef>)>,
    parsed: Vec<(String, String, ParsedFile)>,
}

/// [`Stored`] by reference, to write it without copying the memo.
#[derive(Serialize)]
struct StoredRef<'a> {
    build: String,
    outputs_context: Option<String>,
    outputs: Vec<StoredOutputs>,
    refs_context: String,
    refs: Vec<(&'a str, String, &'a BTreeSet<ChartRef>)>,
    parsed: Vec<(&'a str, String, &'a ParsedFile)>,
}

#[derive(Serialize, Deserialize)]
struct StoredOutputs {
    claim_file: String,
    blob: String,
    files: Vec<(String, String)>,
    failures: Vec<crate::render::Failure>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn id(s: &str) -> Option<ObjectId> {
    ObjectId::from_hex(s.as_bytes()).ok()
}

/// The memo the last process left in `git_dir`, or an empty one.
pub fn load(git_dir: &Path) -> Memo {
    let t = std::time::Instant::now();
    let mut memo = Memo::default();
    let Ok(bytes) = std::fs::read(file(git_dir)) else {
        return memo;
    };
    match decode(&bytes) {
        Some((outputs, refs, parsed)) => {
            memo.outputs = outputs;
            memo.file_refs = refs;
            memo.parsed = parsed;
            tracing::debug!(elapsed = ?t.elapsed(), bytes = bytes.len(), "memo loaded");
        }
        None => tracing::debug!("the stored memo does not read or is of another build: not used"),
    }
    memo
}

type Parsed = HashMap<(String, ObjectId), ParsedFile>;

fn decode(bytes: &[u8]) -> Option<(Outputs, FileRefs, Parsed)> {
    let stored: Stored = rmp_serde::from_slice(bytes).ok()?;
    if stored.build != build() {
        return None;
    }
    let mut outputs = Outputs {
        context: match &stored.outputs_context {
            Some(c) => Some(unhex32(c)?),
            None => None,
        },
        files: HashMap::with_capacity(stored.outputs.len()),
    };
    for o in stored.outputs {
        let files = o
            .files
            .into_iter()
            .map(|(path, blob)| Some((path, id(&blob)?)))
            .collect::<Option<Vec<_>>>()?;
        outputs.files.insert(
            (o.claim_file, id(&o.blob)?),
            FileOutputs {
                files,
                failures: o.failures,
            },
        );
    }
    let mut refs = FileRefs {
        context: unhex32(&stored.refs_context)?,
        refs: HashMap::with_capacity(stored.refs.len()),
    };
    for (path, blob, r) in stored.refs {
        refs.refs.insert((path, id(&blob)?), r);
    }
    let mut parsed = HashMap::with_capacity(stored.parsed.len());
    for (path, blob, file) in stored.parsed {
        parsed.insert((path, id(&blob)?), file);
    }
    Some((outputs, refs, parsed))
}

/// Leaves `memo` for the next process (atomically; see the module doc), unless it
/// learned nothing since it was loaded.
pub fn save(git_dir: &Path, memo: &Memo) -> std::io::Result<()> {
    if !memo.learned {
        return Ok(());
    }
    let t = std::time::Instant::now();
    let mut outputs: Vec<StoredOutputs> = memo
        .outputs
        .files
        .iter()
        .map(|((claim_file, blob), o)| StoredOutputs {
            claim_file: claim_file.clone(),
            blob: blob.to_string(),
            files: o
                .files
                .iter()
                .map(|(p, id)| (p.clone(), id.to_string()))
                .collect(),
            failures: o.failures.clone(),
        })
        .collect();
    outputs.sort_by(|a, b| (&a.claim_file, &a.blob).cmp(&(&b.claim_file, &b.blob)));
    let mut refs: Vec<(&str, String, &BTreeSet<ChartRef>)> = memo
        .file_refs
        .refs
        .iter()
        .map(|((p, id), r)| (p.as_str(), id.to_string(), r))
        .collect();
    refs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut parsed: Vec<(&str, String, &ParsedFile)> = memo
        .parsed
        .iter()
        .map(|((p, id), f)| (p.as_str(), id.to_string(), f))
        .collect();
    parsed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let stored = StoredRef {
        build: build(),
        outputs_context: memo.outputs.context.as_ref().map(|c| hex(c)),
        outputs,
        refs_context: hex(&memo.file_refs.context),
        refs,
        parsed,
    };
    let path = file(git_dir);
    let dir = path.parent().unwrap_or(git_dir);
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let stale = name.to_string_lossy().starts_with(".memo.")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let tmp = dir.join(format!(".memo.{}.tmp", std::process::id()));
    std::fs::write(
        &tmp,
        rmp_serde::to_vec_named(&stored).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &path)?;
    tracing::debug!(elapsed = ?t.elapsed(), "memo saved");
    Ok(())
}
