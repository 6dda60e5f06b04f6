//! The memo kept between processes: each hook is a new process, and without this a push
//! that changes one claim file among 10,000 applications would read, parse and render
//! all of them.
//!
//! Stored in `<git dir>/claimd/memo` (framed by hand, see [`decode`]; object ids as bytes):
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

mod bytes;
mod outline;

use self::bytes::{In, Out};
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
    git_dir.join("claimd").join("memo")
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
    format!("claimd {} {exe}", env!("CARGO_PKG_VERSION"))
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

/// What is stored through serde (MessagePack): the chart references and parsed claim
/// files without their workloads, a few hundred entries of nested types. The lists of
/// paths and the workloads, tens of thousands at 10,000 applications, are framed by hand
/// ([`bytes`], [`outline`]): decoding them through serde was most of a hook's memo load.
#[derive(Serialize, Deserialize)]
struct Rest<'a> {
    refs_context: [u8; 32],
    refs: Vec<(Cow<'a, str>, Oid, Cow<'a, BTreeSet<ChartRef>>)>,
    /// (path, blob, in outline, parsed file).
    parsed: Vec<(Cow<'a, str>, Oid, bool, Cow<'a, ParsedFile>)>,
}

/// The first bytes of a memo file; a memo of another layout is not used.
const MAGIC: &[u8] = b"claimd memo 6\n";

/// The memo the last process left in `git_dir`, or an empty one.
pub fn load(git_dir: &Path) -> Memo {
    read(git_dir).map_or_else(Memo::default, |stored| stored.decode())
}

/// A memo's file as read, not decoded yet.
pub struct Stored(Vec<u8>);

/// The memo's file in `git_dir`, if there is one.
pub fn read(git_dir: &Path) -> Option<Stored> {
    std::fs::read(file(git_dir)).ok().map(Stored)
}

impl Stored {
    /// The memo, or an empty one when it does not read or another build wrote it.
    pub fn decode(&self) -> Memo {
        let t = std::time::Instant::now();
        match decode(&self.0) {
            Some(memo) => {
                tracing::debug!(elapsed = ?t.elapsed(), bytes = self.0.len(), "memo loaded");
                memo
            }
            None => {
                tracing::debug!("the stored memo does not read or is of another build: not used");
                Memo::default()
            }
        }
    }

    /// The chart references the memo was made with, read from its head without decoding
    /// the rest (see [`decode`]): a new process parses those charts while it decodes.
    /// Empty when the memo does not read.
    pub fn chart_refs(&self) -> Vec<ChartRef> {
        let mut r = In::new(&self.0);
        (|| {
            if r.raw(MAGIC.len())? != MAGIC {
                return None;
            }
            r.bytes()?;
            read_chart_refs(&mut r)
        })()
        .unwrap_or_default()
    }
}

/// The layout, in order: [`MAGIC`]; the build; the chart references of all claim files
/// (first, see [`Stored::chart_refs`]); the outputs' context and, per claim file
/// (by path and blob), its generated files, failures (MessagePack) and workloads' hashes;
/// the [`Rest`] and the workloads of its parsed files; the claim files of a `claims/`
/// tree; the generated files under output folders of these tree ids.
fn decode(bytes: &[u8]) -> Option<Memo> {
    let mut r = In::new(bytes);
    if r.raw(MAGIC.len())? != MAGIC || r.bytes()? != build().as_bytes() {
        return None;
    }
    read_chart_refs(&mut r)?;
    let mut memo = Memo::default();
    let core = &mut memo.core;
    let context = if r.flag()? { Some(r.hash()?) } else { None };
    let n = r.len()?;
    let mut files = HashMap::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        let claim_file = r.string()?;
        let blob = r.id()?;
        let outputs = FileOutputs {
            files: r.paths(In::id)?,
            failures: rmp_serde::from_slice(r.bytes()?).ok()?,
            workloads: r.paths(In::hash)?,
        };
        files.insert((claim_file, blob), outputs);
    }
    core.outputs = Outputs { context, files };
    let rest: Rest = rmp_serde::from_slice(r.bytes()?).ok()?;
    core.file_refs = FileRefs {
        context: rest.refs_context,
        refs: rest
            .refs
            .into_iter()
            .map(|(path, blob, r)| ((path.into_owned(), blob.0), r.into_owned()))
            .collect(),
    };
    let mut light = HashSet::new();
    core.parsed = rest
        .parsed
        .into_iter()
        .map(|(path, blob, in_outline, file)| {
            let key = (path.into_owned(), blob.0);
            if in_outline {
                light.insert(key.clone());
            }
            let mut file = file.into_owned();
            outline::join(&mut file, &mut r)?;
            Some((key, file))
        })
        .collect::<Option<_>>()?;
    core.light = light;
    let claims = if r.flag()? {
        Some((r.id()?, r.paths(In::id)?))
    } else {
        None
    };
    let entries = if r.flag()? {
        let n = r.len()?;
        if n > bytes.len() {
            return None;
        }
        let ids = (0..n)
            .map(|_| {
                if r.flag()? {
                    r.id().map(Some)
                } else {
                    Some(None)
                }
            })
            .collect::<Option<Vec<_>>>()?;
        // Written in order: collected into the map without a search per path.
        let entries: BTreeMap<String, ObjectId> = r.paths(In::id)?.into_iter().collect();
        Some((ids, Arc::new(entries)))
    } else {
        None
    };
    if !r.is_empty() {
        return None;
    }
    memo.reads = Reads {
        claims,
        entries,
        changed: false,
    };
    Some(memo)
}

fn read_chart_refs(r: &mut In<'_>) -> Option<Vec<ChartRef>> {
    let n = r.len()?;
    if n > r.remaining() {
        return None;
    }
    (0..n)
        .map(|_| {
            Some(ChartRef {
                repository: r.string()?,
                name: r.string()?,
                version: r.string()?,
            })
        })
        .collect()
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
    let mut outputs: Vec<_> = core.outputs.files.iter().collect();
    outputs.sort_by(|a, b| a.0.cmp(b.0));
    let mut refs: Vec<_> = core
        .file_refs
        .refs
        .iter()
        .map(|((p, id), r)| (Cow::Borrowed(p.as_str()), Oid(*id), Cow::Borrowed(r)))
        .collect();
    refs.sort_by(|a, b| (&a.0, a.1 .0).cmp(&(&b.0, b.1 .0)));
    // Every claim file with workloads is stored in outline (made one here if it is not
    // held so in memory), its workloads framed apart from the rest.
    let mut parsed: Vec<_> = core
        .parsed
        .iter()
        .map(|(k, f)| {
            let light = core.light.contains(k);
            let in_outline = light || f.has_workloads();
            let file = if in_outline && !light {
                f.outline()
            } else {
                f.clone()
            };
            let (shell, workloads) = outline::split(file);
            (k, in_outline, shell, workloads)
        })
        .collect();
    parsed.sort_by(|a, b| a.0.cmp(b.0));
    let rest = rmp_serde::to_vec(&Rest {
        refs_context: core.file_refs.context,
        refs,
        parsed: parsed
            .iter()
            .map(|(k, in_outline, shell, _)| {
                let path = Cow::Borrowed(k.0.as_str());
                (path, Oid(k.1), *in_outline, Cow::Borrowed(shell))
            })
            .collect(),
    })
    .map_err(std::io::Error::other)?;

    let path = file(git_dir);
    let dir = path.parent().unwrap_or(git_dir);
    std::fs::create_dir_all(dir)?;
    crate::git::remove_stale(dir, ".memo.");
    // The memo's file before it was framed by hand (all MessagePack): not read any more.
    let _ = std::fs::remove_file(dir.join("memo.msgpack"));
    let tmp = dir.join(format!(".memo.{}.tmp", std::process::id()));
    // Written as it is encoded: a memo of 10,000 applications is megabytes, and a vector
    // grown to that size touches three times as much fresh memory.
    let mut out = Out::new(std::io::BufWriter::with_capacity(
        1 << 16,
        std::fs::File::create(&tmp)?,
    ));
    out.raw(MAGIC)?;
    out.bytes(build().as_bytes())?;
    let charts = core.chart_refs_seen();
    out.len(charts.len())?;
    for c in &charts {
        for text in [&c.repository, &c.name, &c.version] {
            out.bytes(text.as_bytes())?;
        }
    }
    out.flag(core.outputs.context.is_some())?;
    if let Some(context) = &core.outputs.context {
        out.raw(context)?;
    }
    out.len(outputs.len())?;
    for ((claim_file, blob), o) in outputs {
        out.bytes(claim_file.as_bytes())?;
        out.id(blob)?;
        out.paths(o.files.iter().map(|(p, id)| (p.as_str(), id)), Out::id)?;
        out.bytes(&rmp_serde::to_vec(&o.failures).map_err(std::io::Error::other)?)?;
        out.paths(o.workloads.iter().map(|(d, h)| (d.as_str(), h)), |o, h| {
            o.raw(h)
        })?;
    }
    out.bytes(&rest)?;
    for (_, _, _, workloads) in &parsed {
        for list in workloads {
            outline::write(&mut out, list)?;
        }
    }
    out.flag(memo.reads.claims.is_some())?;
    if let Some((tree, files)) = &memo.reads.claims {
        out.id(tree)?;
        out.paths(files.iter().map(|(p, id)| (p.as_str(), id)), Out::id)?;
    }
    out.flag(memo.reads.entries.is_some())?;
    if let Some((ids, entries)) = &memo.reads.entries {
        out.len(ids.len())?;
        for id in ids {
            out.flag(id.is_some())?;
            if let Some(id) = id {
                out.id(id)?;
            }
        }
        out.paths(entries.iter().map(|(p, id)| (p.as_str(), id)), Out::id)?;
    }
    out.into_inner().into_inner().map_err(|e| e.into_error())?;
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
