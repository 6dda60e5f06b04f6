//! Git adapter (gix): read a commit's files from the object database, write the bot
//! commit with a tree editor, move the branch compare-and-swap. No work tree needed.
//! Pushing to a remote uses the `git` CLI (`push.rs`), since gix cannot push.

pub mod pack;
pub mod push;
mod tree;

use crate::render::{Change, ChangeKind};
use gix::bstr::ByteSlice;
use gix::objs::Find;
pub use gix::ObjectId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open git repository {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<gix::open::Error>,
    },
    #[error("{what}: {source}")]
    Git {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("object {id} is missing from the repository")]
    Missing { id: ObjectId },
}

fn git_err<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> Error {
    let what = what.into();
    move |e| Error::Git {
        what,
        source: e.into(),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Who the bot commits are from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            name: "claimd".into(),
            email: "claimd@localhost".into(),
        }
    }
}

/// Age after which a ref lock file is considered left behind by a crashed process.
pub const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(5);

/// Trailer linking a bot commit to the commit it rendered.
pub const SOURCE_TRAILER: &str = "Claimd-Source";

/// A file of a bot commit whose blob is already written (None: the file is deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub path: String,
    pub blob: Option<ObjectId>,
}

/// A repository opened for claimd (bare or not).
pub struct Repo {
    repo: gix::Repository,
    /// Objects of a push not yet accepted (pre-receive runs before git moves them in).
    quarantine: Option<gix::odb::Handle>,
}

/// The id git gives a blob with this content.
pub fn blob_id(hash: gix::hash::Kind, content: &[u8]) -> Result<ObjectId> {
    gix::objs::compute_hash(hash, gix::objs::Kind::Blob, content).map_err(git_err("hashing a blob"))
}

/// The SHA-1 blob id of `content`, without SHA-1 collision detection (several times
/// faster, on the CPU's SHA instructions where it has them). For comparing content
/// claimd rendered with the ids a tree holds; whatever is written to a repository is
/// hashed by gix, with the detection.
pub fn sha1_blob_id(content: &[u8]) -> ObjectId {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(b"blob ");
    h.update(content.len().to_string().as_bytes());
    h.update([0]);
    h.update(content);
    ObjectId::Sha1(h.finalize().into())
}

/// Files in `dir` whose name starts with `prefix` and that were last written more than
/// an hour ago: temporary files of a process that was killed (a pack, a memo, a prepared
/// bot commit), removed. Errors are ignored: a file that stays is tried again next time.
pub fn remove_stale(dir: &Path, prefix: &str) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(3600);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes one object loose into the object database at `objects`, unless it is loose
/// there already, as git does (zlib at git's `core.looseCompression` default, 1, into a
/// temporary file in the object's folder, renamed into place). gix's `write_object`
/// first asks the whole object database whether it has the object, and a new object,
/// found nowhere, makes it scan the packs folder again and reload its indices: most of a
/// small bot commit's time in the daemon. One that is only in a pack is written loose
/// beside it (`git gc` drops the copy).
fn write_loose(
    objects: &Path,
    hash: gix::hash::Kind,
    kind: gix::objs::Kind,
    data: &[u8],
) -> Result<ObjectId> {
    let id = gix::objs::compute_hash(hash, kind, data).map_err(git_err("hashing an object"))?;
    let hex = id.to_hex().to_string();
    let dir = objects.join(&hex[..2]);
    let path = dir.join(&hex[2..]);
    if path.is_file() {
        return Ok(id);
    }
    let header = gix::objs::encode::loose_header(kind, data.len() as u64);
    let deflated = deflate(&[&header, data]).map_err(git_err("compressing an object"))?;
    let write = || -> std::io::Result<()> {
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        let mut temp = tempfile::Builder::new()
            .prefix("tmp_obj_")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444))
            .tempfile_in(&dir)?;
        std::io::Write::write_all(&mut temp, &deflated)?;
        temp.persist(&path)?;
        Ok(())
    };
    write().map_err(git_err(format!("writing {kind} {id}")))?;
    Ok(id)
}

/// zlib of `parts` one after the other (a loose object: its header, then its content; a
/// pack entry: its content), at level 1. One compressor a thread, reset for each object:
/// a new one allocates and clears about 300 KB, more than compressing a small object
/// costs (a third of the daemon's bot commit of one changed application).
pub(crate) fn deflate(parts: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    thread_local! {
        static ZLIB: std::cell::RefCell<Compress> =
            std::cell::RefCell::new(Compress::new(Compression::fast(), true));
    }
    ZLIB.with_borrow_mut(|z| {
        z.reset();
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(size / 3 + 64);
        let mut step = |input: &[u8], flush: FlushCompress, out: &mut Vec<u8>| {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = z.total_in();
            let status = z
                .compress_vec(input, out, flush)
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(((z.total_in() - before) as usize, status))
        };
        for part in parts {
            let mut input = *part;
            while !input.is_empty() {
                let (used, _) = step(input, FlushCompress::None, &mut out)?;
                input = &input[used..];
            }
        }
        while step(&[], FlushCompress::Finish, &mut out)?.1 != Status::StreamEnd {}
        Ok(out)
    })
}

/// What the CAS update found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    Updated,
    /// The branch no longer points at the expected commit.
    Moved,
}

/// The staged files of `changes`: `writes` (those with new content) with their blob ids,
/// then the deletions.
fn staged(changes: &[Change], writes: &[&Change], ids: Vec<ObjectId>) -> Vec<Staged> {
    let mut staged: Vec<Staged> = writes
        .iter()
        .zip(ids)
        .map(|(c, id)| Staged {
            path: c.path.clone(),
            blob: Some(id),
        })
        .collect();
    staged.extend(
        changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Delete)
            .map(|c| Staged {
                path: c.path.clone(),
                blob: None,
            }),
    );
    staged
}

impl Repo {
    pub fn open(path: &Path) -> Result<Repo> {
        // Room for as many pack indexes as a busy server repository gathers between two
        // of git's `gc --auto` (which packs them together past 50): a handle the daemon
        // keeps cannot grow its table later, and gix's default (10 % above the packs
        // there at opening, at least 32) made every read fail once pushes had added a
        // few dozen packs.
        let options = gix::open::Options::default().object_store_slots(
            gix::odb::store::init::Slots::AsNeededByDiskState {
                multiplier: 2.0,
                minimum: 256,
            },
        );
        let repo = gix::open_opts(path, options).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(Repo {
            repo,
            quarantine: None,
        })
    }

    /// Opens the repository a hook runs in, including the pushed objects that git
    /// keeps in quarantine until pre-receive accepts them (`GIT_QUARANTINE_PATH`).
    pub fn open_for_hook(path: &Path, quarantine: Option<&Path>) -> Result<Repo> {
        Repo::open(path)?.with_quarantine(quarantine)
    }

    /// A handle a long-lived process keeps between uses (its object caches and pack
    /// indices stay loaded; new objects and refs are still seen).
    pub fn shared(&self) -> gix::ThreadSafeRepository {
        self.repo.clone().into_sync()
    }

    /// The repository of a kept handle (see [`Repo::shared`]).
    pub fn from_shared(shared: &gix::ThreadSafeRepository) -> Repo {
        Repo {
            repo: shared.to_thread_local(),
            quarantine: None,
        }
    }

    /// This repository with the pushed objects of a pre-receive's quarantine.
    pub fn with_quarantine(mut self, quarantine: Option<&Path>) -> Result<Repo> {
        let repo = &mut self;
        if let Some(q) = quarantine {
            let handle = gix::odb::at(q, repo.repo.object_hash())
                .map_err(git_err(format!("opening quarantine {}", q.display())))?;
            let mut handle = handle;
            // Its content is fixed while the hook runs, and most lookups miss it (they
            // are for objects already in the repository): a miss must not rescan it.
            handle.refresh_never();
            repo.quarantine = Some(handle);
        }
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    /// The branch HEAD points at (`main` for `refs/heads/main`), if any.
    pub fn head_branch(&self) -> Option<String> {
        let head = self.repo.head_name().ok()??;
        head.as_bstr()
            .to_str()
            .ok()?
            .strip_prefix("refs/heads/")
            .map(str::to_string)
    }

    /// The commit `refs/heads/<branch>` points at, if the branch exists.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<ObjectId>> {
        let name = format!("refs/heads/{branch}");
        match self
            .repo
            .try_find_reference(name.as_str())
            .map_err(git_err(format!("reading {name}")))?
        {
            Some(r) => Ok(r.target().try_id().map(|id| id.to_owned())),
            None => Ok(None),
        }
    }

    fn object(&self, id: &gix::oid, buf: &mut Vec<u8>) -> Result<gix::objs::Kind> {
        if let Some(q) = &self.quarantine {
            if let Some(data) = q
                .try_find(id, buf)
                .map_err(git_err(format!("reading {id}")))?
            {
                return Ok(data.kind);
            }
        }
        match self
            .repo
            .objects
            .try_find(id, buf)
            .map_err(git_err(format!("reading {id}")))?
        {
            Some(data) => Ok(data.kind),
            None => Err(Error::Missing { id: id.to_owned() }),
        }
    }

    /// Whether the repository's object database (a quarantine aside) has `id`.
    pub fn has_object(&self, id: ObjectId) -> bool {
        self.repo.has_object(id)
    }

    /// The tree of a commit.
    pub fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        let mut buf = Vec::new();
        self.object(&commit, &mut buf)?;
        let mut c = gix::objs::CommitRefIter::from_bytes(&buf, self.repo.object_hash());
        c.tree_id()
            .map_err(git_err(format!("reading commit {commit}")))
    }

    /// The message and author email of a commit.
    pub fn commit_info(&self, commit: ObjectId) -> Result<(String, String)> {
        let mut buf = Vec::new();
        self.object(&commit, &mut buf)?;
        let c = gix::objs::CommitRef::from_bytes(&buf, self.repo.object_hash())
            .map_err(git_err(format!("decoding commit {commit}")))?;
        let email = c.author().map(|a| a.email.to_string()).unwrap_or_default();
        Ok((c.message.to_str_lossy().into_owned(), email))
    }

    /// The ids of the top-level entries of a commit's tree (cheap: one tree object).
    pub fn top_level(&self, commit: ObjectId) -> Result<BTreeMap<String, ObjectId>> {
        self.top_level_of_tree(self.tree_of(commit)?)
    }

    /// The ids of the entries of one tree.
    pub fn top_level_of_tree(&self, tree: ObjectId) -> Result<BTreeMap<String, ObjectId>> {
        let mut buf = Vec::new();
        self.object(&tree, &mut buf)?;
        let mut out = BTreeMap::new();
        for entry in gix::objs::TreeRefIter::from_bytes(&buf, self.repo.object_hash()) {
            let entry = entry.map_err(git_err(format!("reading tree {tree}")))?;
            out.insert(
                entry.filename.to_str_lossy().into_owned(),
                entry.oid.to_owned(),
            );
        }
        Ok(out)
    }

    /// Every file under the given top-level folders at `commit`, as (path, bytes).
    pub fn read_files(
        &self,
        commit: ObjectId,
        roots: &[&str],
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        self.read_entries(commit, roots)?
            .into_iter()
            .map(|(path, id)| Ok((path, self.read_blob(id)?)))
            .collect()
    }

    /// The blob ids of every file under the given top-level folders (trees only are read).
    pub fn read_entries(
        &self,
        commit: ObjectId,
        roots: &[&str],
    ) -> Result<BTreeMap<String, ObjectId>> {
        let mut out = BTreeMap::new();
        for (name, id) in self.top_level(commit)? {
            if roots.contains(&name.as_str()) {
                self.walk(id, &name, &mut out)?;
            }
        }
        Ok(out)
    }

    pub fn read_blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.object(&id, &mut buf)?;
        Ok(buf)
    }

    /// The hash this repository uses (for [`blob_id`]).
    pub fn object_hash(&self) -> gix::hash::Kind {
        self.repo.object_hash()
    }

    fn walk(
        &self,
        tree: ObjectId,
        prefix: &str,
        out: &mut BTreeMap<String, ObjectId>,
    ) -> Result<()> {
        let mut buf = Vec::new();
        if self.object(&tree, &mut buf)? != gix::objs::Kind::Tree {
            return Ok(());
        }
        let mut subtrees = Vec::new();
        for entry in gix::objs::TreeRefIter::from_bytes(&buf, self.repo.object_hash()) {
            let entry = entry.map_err(git_err(format!("reading tree {tree}")))?;
            let path = format!("{prefix}/{}", entry.filename.to_str_lossy());
            if entry.mode.is_tree() {
                subtrees.push((path, entry.oid.to_owned()));
            } else if entry.mode.is_blob() {
                out.insert(path, entry.oid.to_owned());
            }
        }
        for (path, id) in subtrees {
            self.walk(id, &path, out)?;
        }
        Ok(())
    }

    /// Writes the changed blobs and the edited tree, then one commit on top of `parent`.
    /// The branch is not moved (see [`Repo::update_branch`]).
    pub fn commit_changes(
        &self,
        parent: ObjectId,
        changes: &[Change],
        message: &str,
        bot: &Identity,
    ) -> Result<ObjectId> {
        let (_, tree) = self.write_changes(parent, changes)?;
        self.commit_tree(parent, tree, message, bot)
    }

    /// Writes the blobs of `changes` and the tree of `parent` with them. Many new
    /// objects (a first render, a chart upgrade touching every application) go into one
    /// pack ([`pack`]); a few stay loose.
    pub fn write_changes(
        &self,
        parent: ObjectId,
        changes: &[Change],
    ) -> Result<(Vec<Staged>, ObjectId)> {
        let writes: Vec<&Change> = changes.iter().filter(|c| c.new.is_some()).collect();
        if writes.len() < pack::PACK_FROM {
            let staged = self.write_blobs(changes)?;
            let tree = self.write_tree(parent, &staged)?;
            return Ok((staged, tree));
        }
        let hash = self.repo.object_hash();
        let mut pack = pack::Pack::new(self.repo.objects.store_ref().path(), hash)?;
        let mut ids = Vec::with_capacity(writes.len());
        // Compressed on all cores, a slice at a time (bounded memory), appended in order.
        for slice in writes.chunks(4096) {
            let compressed = crate::par::map(slice, 64, |c| {
                let content = c.new.as_deref().unwrap_or_default();
                pack::compress(hash, gix::objs::Kind::Blob, content.as_bytes())
            });
            for object in compressed {
                let object = object?;
                ids.push(object.id());
                pack.add(&object)?;
            }
        }
        let staged = staged(changes, &writes, ids);
        let tree = self.edit_tree(parent, &staged, |tree| {
            let mut buf = Vec::new();
            gix::objs::WriteTo::write_to(tree, &mut buf).map_err(git_err("writing a tree"))?;
            let object = pack::compress(hash, gix::objs::Kind::Tree, &buf)?;
            pack.add(&object)?;
            Ok(object.id())
        })?;
        pack.finish()?;
        Ok((staged, tree))
    }

    /// Writes the blobs of `changes` (on all cores: compressing and writing them is most
    /// of a commit's work). Deletions come back with no blob.
    pub fn write_blobs(&self, changes: &[Change]) -> Result<Vec<Staged>> {
        let writes: Vec<&Change> = changes.iter().filter(|c| c.new.is_some()).collect();
        let chunks: Vec<&[&Change]> = writes.chunks(512).collect();
        let (objects, hash) = (
            self.repo.objects.store_ref().path(),
            self.repo.object_hash(),
        );
        let written = crate::par::map(&chunks, 1, |part| {
            part.iter()
                .map(|c| {
                    let content = c.new.as_deref().unwrap_or_default();
                    write_loose(objects, hash, gix::objs::Kind::Blob, content.as_bytes())
                })
                .collect::<Result<Vec<ObjectId>>>()
        });
        let mut ids = Vec::with_capacity(writes.len());
        for chunk in written {
            ids.extend(chunk?);
        }
        Ok(staged(changes, &writes, ids))
    }

    /// One commit on top of `parent` with the staged files (blobs already written).
    pub fn commit_staged(
        &self,
        parent: ObjectId,
        staged: &[Staged],
        message: &str,
        bot: &Identity,
    ) -> Result<ObjectId> {
        let tree = self.write_tree(parent, staged)?;
        self.commit_tree(parent, tree, message, bot)
    }

    /// The tree of `parent` with the staged files (blobs already written), written.
    pub fn write_tree(&self, parent: ObjectId, staged: &[Staged]) -> Result<ObjectId> {
        let root = self.tree_of(parent)?;
        tree::edit(
            root,
            staged,
            self.repo.object_hash(),
            // Read through this repository (a pre-receive hook's tree is in the quarantine).
            &mut |id, buf| self.object(id, buf).map(drop),
            &mut |bytes| self.write_loose(gix::objs::Kind::Tree, bytes),
        )
    }

    /// The tree of `parent` with the staged files, each new tree given to `write`.
    fn edit_tree(
        &self,
        parent: ObjectId,
        staged: &[Staged],
        write: impl FnMut(&gix::objs::Tree) -> Result<ObjectId>,
    ) -> Result<ObjectId> {
        let tree = self.tree_of(parent)?;
        let mut buf = Vec::new();
        self.object(&tree, &mut buf)?;
        let root: gix::objs::Tree = gix::objs::TreeRef::from_bytes(&buf, self.repo.object_hash())
            .map_err(git_err(format!("reading tree {tree}")))?
            .into();
        // Read through this repository (a pre-receive hook's tree is in the quarantine).
        let mut editor = gix::objs::tree::Editor::new(root, self, self.repo.object_hash());
        for s in staged {
            match s.blob {
                Some(id) => editor
                    .upsert(s.path.split('/'), gix::objs::tree::EntryKind::Blob, id)
                    .map_err(git_err(format!("adding {}", s.path)))?,
                None => editor
                    .remove(s.path.split('/'))
                    .map_err(git_err(format!("removing {}", s.path)))?,
            };
        }
        editor.write(write)
    }

    /// A first commit (no parent) of `files` (path, content), on no branch.
    pub fn commit_root(
        &self,
        files: &[(String, String)],
        message: &str,
        bot: &Identity,
    ) -> Result<ObjectId> {
        let mut editor =
            gix::objs::tree::Editor::new(gix::objs::Tree::empty(), self, self.repo.object_hash());
        for (path, content) in files {
            let blob = self
                .write_loose(gix::objs::Kind::Blob, content.as_bytes())
                .map_err(git_err(format!("writing {path}")))?;
            editor
                .upsert(path.split('/'), gix::objs::tree::EntryKind::Blob, blob)
                .map_err(git_err(format!("adding {path}")))?;
        }
        let tree = editor.write(|t| {
            let mut bytes = Vec::new();
            gix::objs::WriteTo::write_to(t, &mut bytes).map_err(git_err("writing a tree"))?;
            self.write_loose(gix::objs::Kind::Tree, &bytes)
        })?;
        self.write_commit(tree, &[], message, bot)
    }

    /// One commit of `tree` on top of `parent`.
    pub fn commit_tree(
        &self,
        parent: ObjectId,
        new_tree: ObjectId,
        message: &str,
        bot: &Identity,
    ) -> Result<ObjectId> {
        self.write_commit(new_tree, &[parent], message, bot)
    }

    /// A commit object of `tree` with these parents, by the bot, now.
    fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        message: &str,
        bot: &Identity,
    ) -> Result<ObjectId> {
        let signature = gix::actor::Signature {
            name: bot.name.as_str().into(),
            email: bot.email.as_str().into(),
            time: gix::date::Time::now_local_or_utc(),
        };
        let commit = gix::objs::Commit {
            message: message.into(),
            tree,
            author: signature.clone(),
            committer: signature,
            encoding: None,
            parents: parents.iter().copied().collect(),
            extra_headers: Vec::new(),
        };
        let mut bytes = Vec::new();
        gix::objs::WriteTo::write_to(&commit, &mut bytes).map_err(git_err("writing the commit"))?;
        self.write_loose(gix::objs::Kind::Commit, &bytes)
    }

    /// Writes one object loose into this repository (see [`write_loose`]).
    fn write_loose(&self, kind: gix::objs::Kind, data: &[u8]) -> Result<ObjectId> {
        write_loose(
            self.repo.objects.store_ref().path(),
            self.repo.object_hash(),
            kind,
            data,
        )
    }

    /// Removes the lock of `refs/heads/<branch>`, and HEAD's, if older than
    /// [`STALE_LOCK`] (left by a process killed while it moved the branch: git locks
    /// HEAD too when it moves the branch HEAD names, for HEAD's reflog). True if it
    /// removed one.
    pub fn clear_stale_branch_lock(&self, branch: &str) -> bool {
        let branch_lock = self.remove_stale_lock(&format!("refs/heads/{branch}"));
        self.remove_stale_lock("HEAD") || branch_lock
    }

    /// Removes `<ref>.lock` if it is older than [`STALE_LOCK`]. True if it removed one.
    fn remove_stale_lock(&self, refname: &str) -> bool {
        let lock = self.repo.path().join(format!("{refname}.lock"));
        let stale = std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_LOCK);
        if stale && std::fs::remove_file(&lock).is_ok() {
            tracing::warn!(lock = %lock.display(), "removed a stale ref lock left by a crashed process");
            return true;
        }
        false
    }

    /// Moves `refs/heads/<branch>` from `expected` to `new`, only if it still points at
    /// `expected` (git's own ref lock protects against a concurrent push).
    pub fn update_branch(
        &self,
        branch: &str,
        expected: ObjectId,
        new: ObjectId,
        log: &str,
    ) -> Result<Cas> {
        use gix::refs::transaction::{
            Change as RefChange, LogChange, PreviousValue, RefEdit, RefLog,
        };
        let name = format!("refs/heads/{branch}");
        let edit = RefEdit {
            change: RefChange::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: log.into(),
                },
                expected: PreviousValue::MustExistAndMatch(gix::refs::Target::Object(expected)),
                new: gix::refs::Target::Object(new),
            },
            name: name
                .as_str()
                .try_into()
                .map_err(git_err(format!("bad branch name {name}")))?,
            deref: false,
        };
        let result = match self.repo.edit_reference(edit.clone()) {
            // A lock left behind by a process killed mid-update (git leaves them too)
            // would block the branch forever: a ref lock older than a few seconds is
            // stale, since ref transactions hold it for milliseconds.
            Err(_) if self.remove_stale_lock(&name) => self.repo.edit_reference(edit),
            other => other,
        };
        match result {
            Ok(_) => Ok(Cas::Updated),
            Err(e) => {
                // Whatever went wrong, the ref now tells: if it moved, the caller re-renders.
                if self.branch_tip(branch)? != Some(expected) {
                    Ok(Cas::Moved)
                } else {
                    Err(Error::Git {
                        what: format!("updating {name}"),
                        source: Box::new(e),
                    })
                }
            }
        }
    }
}

/// Objects as the repository reads them (the quarantine first, when a hook has one).
impl gix::objs::Find for Repo {
    fn try_find<'a>(
        &self,
        id: &gix::oid,
        buffer: &'a mut Vec<u8>,
    ) -> std::result::Result<Option<gix::objs::Data<'a>>, gix::objs::find::Error> {
        match self.object(id, buffer) {
            Ok(kind) => Ok(Some(gix::objs::Data::new(
                buffer,
                kind,
                self.repo.object_hash(),
            ))),
            Err(Error::Missing { .. }) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fast_blob_id_is_gits() {
        for content in [&b""[..], b"a", b"replicaCount: 1\n", &[0u8; 100_000][..]] {
            assert_eq!(
                super::sha1_blob_id(content),
                super::blob_id(gix::hash::Kind::Sha1, content).unwrap()
            );
        }
    }

    /// The reused compressor gives zlib that inflates back to the parts joined, object
    /// after object on one thread (a reset between them), at every size.
    #[test]
    fn deflate_is_zlib_of_the_parts_joined() {
        use std::io::Read;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cases: [&[&[u8]]; 5] = [
            &[],
            &[b""],
            &[b"blob 3\0", b"abc"],
            &[b"tree 300000\0", &big],
            &[&big, b"", &big[..1000]],
        ];
        for parts in cases {
            let z = super::deflate(parts).expect("deflate");
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut back)
                .expect("inflate");
            assert_eq!(back, parts.concat(), "{} part(s)", parts.len());
        }
    }

    /// A loose object as git reads it: `git cat-file` gives back its content.
    #[test]
    fn loose_objects_are_read_back_by_git() {
        let dir = tempfile::tempdir().expect("tmp");
        crate::testing::git(dir.path(), &["init", "-q", "--bare"]);
        let objects = dir.path().join("objects");
        let content = b"replicaCount: 1\n".repeat(5000);
        let write = || {
            super::write_loose(
                &objects,
                gix::hash::Kind::Sha1,
                gix::objs::Kind::Blob,
                &content,
            )
            .expect("write")
        };
        let id = write();
        assert_eq!(id, super::sha1_blob_id(&content));
        assert_eq!(write(), id, "written again: the same object, no error");
        let read = crate::testing::git(dir.path(), &["cat-file", "blob", &id.to_string()]);
        assert_eq!(read.as_bytes(), content.trim_ascii_end());
        let leftovers: Vec<_> = std::fs::read_dir(objects.join(&id.to_string()[..2]))
            .expect("folder")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tmp_obj_"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left");
    }
}
