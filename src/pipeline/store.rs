//! The memo kept between processes: each hook is a new process, and without this a push
//! that changes one claim file among 10,000 applications would read, parse and render
//! all of them.
//!
//! Stored in `<git dir>/claimd/memo.msgpack` (MessagePack, compact: object ids as bytes):
//! the parsed claim files by blob id (those with applications in outline, see
//! [`ParsedFile::outline`]), the generated files of each claim file's applications and
//! the chart references per claim file, each under the context hash it was made in (see
//! [`super::core`]), and the reads ([`Reads`]: the claim files of a `claims/` tree, the
//! generated files under output folders by their tree ids, as left by the last bot
//! commit). Every entry is keyed by what it was computed from, so any memo, however old
//! or whichever process wrote it, gives the same plan as a full render; a memo written
//! by another build of claimd is not used at all. Written to a temporary file and
//! renamed: a kill at any point leaves the old memo or the new one, never a torn one;
//! concurrent hooks each write a whole memo, the last rename wins. A memo that does not
//! read is ignored (a full render, then a new one).

use super::core::{FileOutputs, FileRefs, Outputs};
use super::snapshot::Reads;
use super::Memo;
use crate::claims::ParsedFile;
use crate::values::ChartRef;
use gix::ObjectId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    format!("claimd {} memo 3 {exe}", env!("CARGO_PKG_VERSION"))
}

/// An object id as its raw bytes (MessagePack `bin`: half the size of hex).
#[derive(Clone, Copy)]
struct Oid(ObjectId);

impl Serialize for Oid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Oid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Oid, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Oid;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object id")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Oid, E> {
                ObjectId::try_from(v)
                    .map(Oid)
                    .map_err(|_| E::custom("not an object id"))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// The memo as stored; `Cow`s so that writing it copies nothing but the outlines.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    build: String,
    outputs_context: Option<[u8; 32]>,
    outputs: Vec<StoredOutputs<'a>>,
    refs_context: [u8; 32],
    refs: Vec<(Cow<'a, str>, Oid, Cow<'a, BTreeSet<ChartRef>>)>,
    /// (path, blob, in outline, parsed file).
    parsed: Vec<(Cow<'a, str>, Oid, bool, Cow<'a, ParsedFile>)>,
    /// The claim files of one `claims/` tree.
    claims: Option<(Oid, Files<'a>)>,
    /// The generated files under output folders with these tree ids.
    entries: Option<(Vec<Option<Oid>>, Files<'a>)>,
}

/// (path, blob id) of files.
type Files<'a> = Vec<(Cow<'a, str>, Oid)>;

#[derive(Serialize, Deserialize)]
struct StoredOutputs<'a> {
    claim_file: Cow<'a, str>,
    blob: Oid,
    files: Files<'a>,
    failures: Cow<'a, [crate::render::Failure]>,
    /// Each application's folder and the hash it was rendered from.
    workloads: Vec<(Cow<'a, str>, [u8; 32])>,
}

/// The memo the last process left in `git_dir`, or an empty one.
pub fn load(git_dir: &Path) -> Memo {
    let t = std::time::Instant::now();
    let Ok(bytes) = std::fs::read(file(git_dir)) else {
        return Memo::default();
    };
    match decode(&bytes) {
        Some(memo) => {
            tracing::debug!(elapsed = ?t.elapsed(), bytes = bytes.len(), "memo loaded");
            memo
        }
        None => {
            tracing::debug!("the stored memo does not read or is of another build: not used");
            Memo::default()
        }
    }
}

fn decode(bytes: &[u8]) -> Option<Memo> {
    let stored: Stored = rmp_serde::from_slice(bytes).ok()?;
    if stored.build != build() {
        return None;
    }
    let mut memo = Memo::default();
    let core = &mut memo.core;
    core.outputs = Outputs {
        context: stored.outputs_context,
        files: HashMap::with_capacity(stored.outputs.len()),
    };
    for o in stored.outputs {
        let files = o
            .files
            .into_iter()
            .map(|(path, blob)| (path.into_owned(), blob.0))
            .collect();
        core.outputs.files.insert(
            (o.claim_file.into_owned(), o.blob.0),
            FileOutputs {
                files,
                failures: o.failures.into_owned(),
                workloads: o
                    .workloads
                    .into_iter()
                    .map(|(dir, hash)| (dir.into_owned(), hash))
                    .collect(),
            },
        );
    }
    core.file_refs = FileRefs {
        context: stored.refs_context,
        refs: stored
            .refs
            .into_iter()
            .map(|(path, blob, r)| ((path.into_owned(), blob.0), r.into_owned()))
            .collect(),
    };
    let mut light = HashSet::new();
    core.parsed = stored
        .parsed
        .into_iter()
        .map(|(path, blob, outline, file)| {
            let key = (path.into_owned(), blob.0);
            if outline {
                light.insert(key.clone());
            }
            (key, file.into_owned())
        })
        .collect();
    core.light = light;
    memo.reads = Reads {
        claims: stored.claims.map(|(tree, files)| {
            let files = files
                .into_iter()
                .map(|(p, id)| (p.into_owned(), id.0))
                .collect();
            (tree.0, files)
        }),
        entries: stored.entries.map(|(ids, entries)| {
            let ids = ids.into_iter().map(|i| i.map(|i| i.0)).collect();
            let entries: BTreeMap<String, ObjectId> = entries
                .into_iter()
                .map(|(p, id)| (p.into_owned(), id.0))
                .collect();
            (ids, Arc::new(entries))
        }),
        changed: false,
    };
    Some(memo)
}

/// Leaves `memo` for the next process (atomically; see the module doc), unless it
/// learned nothing since it was loaded. Claim files with applications are kept in
/// outline (see [`ParsedFile::outline`]): a hook renders only the few that changed.
pub fn save(git_dir: &Path, memo: &Memo) -> std::io::Result<()> {
    let core = &memo.core;
    if !core.learned && !memo.reads.changed {
        return Ok(());
    }
    let t = std::time::Instant::now();
    let mut outputs: Vec<StoredOutputs> = core
        .outputs
        .files
        .iter()
        .map(|((claim_file, blob), o)| StoredOutputs {
            claim_file: Cow::Borrowed(claim_file),
            blob: Oid(*blob),
            files: o
                .files
                .iter()
                .map(|(p, id)| (Cow::Borrowed(p.as_str()), Oid(*id)))
                .collect(),
            failures: Cow::Borrowed(&o.failures),
            workloads: o
                .workloads
                .iter()
                .map(|(dir, hash)| (Cow::Borrowed(dir.as_str()), *hash))
                .collect(),
        })
        .collect();
    outputs.sort_by(|a, b| (&a.claim_file, a.blob.0).cmp(&(&b.claim_file, b.blob.0)));
    let mut refs: Vec<_> = core
        .file_refs
        .refs
        .iter()
        .map(|((p, id), r)| (Cow::Borrowed(p.as_str()), Oid(*id), Cow::Borrowed(r)))
        .collect();
    refs.sort_by(|a, b| (&a.0, a.1 .0).cmp(&(&b.0, b.1 .0)));
    let outlines: Vec<_> = core
        .parsed
        .iter()
        .filter(|(k, f)| !core.light.contains(*k) && f.has_workloads())
        .map(|(k, f)| (k, f.outline()))
        .collect();
    let outlines: HashMap<_, _> = outlines.iter().map(|(k, f)| (*k, f)).collect();
    let mut parsed: Vec<_> = core
        .parsed
        .iter()
        .map(|(k, f)| {
            let (outline, file) = match outlines.get(k) {
                Some(o) => (true, Cow::Borrowed(*o)),
                None => (core.light.contains(k), Cow::Borrowed(f)),
            };
            (Cow::Borrowed(k.0.as_str()), Oid(k.1), outline, file)
        })
        .collect();
    parsed.sort_by(|a, b| (&a.0, a.1 .0).cmp(&(&b.0, b.1 .0)));
    let stored = Stored {
        build: build(),
        outputs_context: core.outputs.context,
        outputs,
        refs_context: core.file_refs.context,
        refs,
        parsed,
        claims: memo.reads.claims.as_ref().map(|(tree, files)| {
            let files = files
                .iter()
                .map(|(p, id)| (Cow::Borrowed(p.as_str()), Oid(*id)))
                .collect();
            (Oid(*tree), files)
        }),
        entries: memo.reads.entries.as_ref().map(|(ids, entries)| {
            (
                ids.iter().map(|i| i.map(Oid)).collect(),
                entries
                    .iter()
                    .map(|(p, id)| (Cow::Borrowed(p.as_str()), Oid(*id)))
                    .collect(),
            )
        }),
    };
    let path = file(git_dir);
    let dir = path.parent().unwrap_or(git_dir);
    std::fs::create_dir_all(dir)?;
    crate::git::remove_stale(dir, ".memo.");
    let tmp = dir.join(format!(".memo.{}.tmp", std::process::id()));
    // Written as it is encoded: a memo of 10,000 applications is 5 MB, and a vector grown
    // to that size touches three times as much fresh memory (most of a save's time).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&tmp)?);
    rmp_serde::encode::write(&mut out, &stored).map_err(std::io::Error::other)?;
    out.into_inner().map_err(|e| e.into_error())?;
    std::fs::rename(&tmp, &path)?;
    tracing::debug!(elapsed = ?t.elapsed(), "memo saved");
    Ok(())
}

/// [`save`] in a child process, so that the caller, a hook git waits for, can exit at
/// once: git goes on with the push (and post-receive) while the memo is written on
/// another core. The child keeps nothing of git's open: standard input, output and
/// error go to `/dev/null` (git waits for a hook's output to close), in a session of
/// its own. A kill at any point still leaves the old memo or the new one; a push that
/// starts before the child is done reads the old one (correct, only slower). Saved in
/// this process where a child cannot be made safely: other threads running (a lock one
/// of them holds would never be released in the child), or not Linux.
pub fn save_detached(git_dir: &Path, memo: &Memo) -> std::io::Result<()> {
    if !memo.core.learned && !memo.reads.changed {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    if only_thread() {
        // SAFETY: this is the process's only thread (checked above), so the child's
        // copy of every lock (the allocator's, stdio's) is in a consistent state; the
        // child writes the memo and leaves with `_exit` (no exit handlers, no flushing
        // of buffers the parent owns).
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain system calls on descriptors this process owns.
                unsafe {
                    libc::setsid();
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    if null >= 0 {
                        for fd in 0..3 {
                            libc::dup2(null, fd);
                        }
                        if null > 2 {
                            libc::close(null);
                        }
                    }
                }
                let code = i32::from(save(git_dir, memo).is_err());
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            -1 => {}
            _ => return Ok(()),
        }
    }
    save(git_dir, memo)
}

/// Whether the calling thread is the process's only one.
#[cfg(target_os = "linux")]
fn only_thread() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}
