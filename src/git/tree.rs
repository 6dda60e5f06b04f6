//! A small edit of a big tree: the trees along the changed paths are read as they are
//! stored and written again with their entries changed, the others copied as bytes.
//! gix's tree editor makes every entry of every tree it passes an owned value: for one
//! changed application that is 2,500 entries of its environment's `applications/`
//! folder taken apart and put together again, most of a small bot commit's time.
//!
//! For a plan's edits (files, none inside another) the result is the editor's, tree for
//! tree (a test compares them): an upsert replaces whatever has the name, a removal
//! takes it away, a folder left empty goes from its parent, and the root is written even
//! when empty. (Edits in order are applied in order: a removal and then a path below it
//! give a folder with that path only; gix's editor brings back what was removed.)

use super::{git_err, Result, Staged};
use gix::objs::tree::EntryMode;
use gix::ObjectId;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// What becomes of one name in a folder.
enum Edit<'a> {
    /// A blob there, or nothing (removed).
    Leaf(Option<ObjectId>),
    /// Edits inside the folder of that name; `fresh`: on an empty folder (an edit before
    /// them removed or replaced what had the name).
    Folder {
        fresh: bool,
        inner: BTreeMap<&'a [u8], Edit<'a>>,
    },
}

/// The entries of one tree, borrowed from its bytes or from the staged paths.
struct Entry<'a> {
    mode: EntryMode,
    name: &'a [u8],
    id: ObjectId,
}

/// The tree `root` with `staged` applied: every tree written goes to `write` (its
/// serialized entries), trees are read with `read`.
pub(crate) fn edit(
    root: ObjectId,
    staged: &[Staged],
    hash: gix::hash::Kind,
    read: &mut dyn FnMut(&ObjectId, &mut Vec<u8>) -> Result<()>,
    write: &mut dyn FnMut(&[u8]) -> Result<ObjectId>,
) -> Result<ObjectId> {
    let mut edits = BTreeMap::new();
    for s in staged {
        if s.path.split('/').any(str::is_empty) {
            return Err(git_err(format!("adding {}", s.path))(
                "a path with an empty name in it",
            ));
        }
        insert(&mut edits, s.path.as_bytes(), s.blob);
    }
    let id = folder(Some(root), &edits, hash, read, write)?;
    match id {
        Some(id) => Ok(id),
        // The root is written even when nothing is left in it.
        None => write(&[]),
    }
}

fn insert<'a>(edits: &mut BTreeMap<&'a [u8], Edit<'a>>, path: &'a [u8], blob: Option<ObjectId>) {
    match path.iter().position(|b| *b == b'/') {
        None => {
            edits.insert(path, Edit::Leaf(blob));
        }
        Some(slash) => {
            let entry = edits.entry(&path[..slash]).or_insert_with(|| Edit::Folder {
                fresh: false,
                inner: BTreeMap::new(),
            });
            if let Edit::Leaf(_) = entry {
                // Removed or a file before, a folder of that name now.
                *entry = Edit::Folder {
                    fresh: true,
                    inner: BTreeMap::new(),
                };
            }
            if let Edit::Folder { inner, .. } = entry {
                insert(inner, &path[slash + 1..], blob);
            }
        }
    }
}

/// From this many changed names in one folder on, they are found through a map.
const MANY_EDITS: usize = 16;

/// The folder `tree` (None: none yet) with `edits`; None when nothing is left in it.
fn folder(
    tree: Option<ObjectId>,
    edits: &BTreeMap<&[u8], Edit<'_>>,
    hash: gix::hash::Kind,
    read: &mut dyn FnMut(&ObjectId, &mut Vec<u8>) -> Result<()>,
    write: &mut dyn FnMut(&[u8]) -> Result<ObjectId>,
) -> Result<Option<ObjectId>> {
    let mut buf = Vec::new();
    if let Some(id) = tree {
        read(&id, &mut buf)?;
    }
    let mut entries = Vec::new();
    for entry in gix::objs::TreeRefIter::from_bytes(&buf, hash) {
        // The message only for an error (not formatted for each of thousands of entries).
        let entry = entry.map_err(|e| {
            git_err(format!(
                "reading tree {}",
                tree.unwrap_or(ObjectId::null(hash))
            ))(e)
        })?;
        entries.push(Entry {
            mode: entry.mode,
            name: entry.filename.as_ref(),
            id: entry.oid.to_owned(),
        });
    }
    // Where each name is: looked up in a map when many names change (hundreds of
    // applications in a folder of thousands; a scan for each was quadratic), by a scan
    // when a few do. Entries taken out are marked, and dropped at the end.
    let mut index: Option<HashMap<&[u8], usize>> = (edits.len() > MANY_EDITS).then(|| {
        let mut index = HashMap::with_capacity(entries.len() + edits.len());
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.name).or_insert(i);
        }
        index
    });
    let mut removed = vec![false; entries.len()];
    for (name, edit) in edits {
        let at = match &index {
            Some(index) => index.get(name).copied(),
            None => (0..entries.len()).find(|&i| !removed[i] && entries[i].name == *name),
        };
        let new = match edit {
            Edit::Leaf(None) => None,
            Edit::Leaf(Some(blob)) => {
                Some((EntryMode::from(gix::objs::tree::EntryKind::Blob), *blob))
            }
            Edit::Folder { fresh, inner } => {
                let sub = at
                    .map(|i| &entries[i])
                    .filter(|e| e.mode.is_tree() && !fresh)
                    .map(|e| e.id);
                folder(sub, inner, hash, read, write)?
                    .map(|id| (EntryMode::from(gix::objs::tree::EntryKind::Tree), id))
            }
        };
        match (at, new) {
            // Nothing to take out of a file that was named like the folder.
            (Some(i), None)
                if matches!(edit, Edit::Folder { fresh: false, .. })
                    && !entries[i].mode.is_tree() => {}
            (Some(i), Some((mode, id))) => {
                entries[i].mode = mode;
                entries[i].id = id;
            }
            (None, Some((mode, id))) => {
                if let Some(index) = &mut index {
                    index.insert(name, entries.len());
                }
                entries.push(Entry { mode, name, id });
                removed.push(false);
            }
            (Some(i), None) => {
                removed[i] = true;
                if let Some(index) = &mut index {
                    index.remove(name);
                }
            }
            (None, None) => {}
        }
    }
    let mut kept = removed.iter().map(|r| !r);
    entries.retain(|_| kept.next().unwrap_or(true));
    if entries.is_empty() {
        return Ok(None);
    }
    entries.sort_by(|a, b| git_order(a.name, a.mode.is_tree(), b.name, b.mode.is_tree()));
    let mut out = Vec::with_capacity(buf.len() + 64);
    let mut mode = [0u8; 6];
    for e in &entries {
        out.extend_from_slice(e.mode.as_bytes(&mut mode));
        out.push(b' ');
        out.extend_from_slice(e.name);
        out.push(0);
        out.extend_from_slice(e.id.as_bytes());
    }
    write(&out).map(Some)
}

/// Git's order of tree entries: by name, a folder's name as if it ended in `/`.
fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> Ordering {
    let common = a.len().min(b.len());
    a[..common].cmp(&b[..common]).then_with(|| {
        let next = |name: &[u8], tree: bool| name.get(common).copied().or(tree.then_some(b'/'));
        next(a, a_tree).cmp(&next(b, b_tree))
    })
}

#[cfg(test)]
mod tests {
    use super::{edit, Staged};
    use gix::objs::tree::{Editor, EntryKind};
    use gix::ObjectId;

    /// Names whose order differs as file and as folder (`a` against `a.b`, `a-b`, `a0`).
    const NAMES: [&str; 6] = ["a", "a.b", "a-b", "a0", "b", "values.yaml"];

    #[test]
    fn a_small_edit_gives_the_tree_gix_s_editor_gives() {
        against_gix(&NAMES, 4, 300);
    }

    /// Many names changed in one folder (found through a map, not a scan), with names
    /// that sort differently as file and as folder among them.
    #[test]
    fn a_big_edit_gives_the_tree_gix_s_editor_gives() {
        let many: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
        let names: Vec<&str> = NAMES
            .iter()
            .copied()
            .chain(many.iter().map(String::as_str))
            .collect();
        against_gix(&names, 120, 60);
    }

    /// `rounds` edits of up to `most` random paths (of `names`, one to three deep) each,
    /// by [`edit`] and by gix's tree editor, give the same trees.
    fn against_gix(names: &[&str], most: u64, rounds: usize) {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = gix::init_bare(dir.path()).expect("init");
        let hash = repo.object_hash();
        let write = |t: &gix::objs::Tree| -> Result<ObjectId, std::convert::Infallible> {
            Ok(repo.write_object(t).expect("write").detach())
        };
        let mut walk = crate::testing::Walk::new(7);
        let mut next = |n: u64| walk.below(n);
        let path = |next: &mut dyn FnMut(u64) -> u64| -> String {
            let depth = 1 + next(3);
            (0..depth)
                .map(|_| names[next(names.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join("/")
        };
        let mut root = repo.empty_tree().id;
        let (mut emptied, mut folders_to_files) = (0, 0);
        for round in 0..rounds {
            // As in a plan: files, none of them inside another (gix's editor, given a
            // removal and then a path below it, brings back what was removed).
            let mut staged: Vec<Staged> = Vec::new();
            for _ in 0..1 + next(most) {
                let path = path(&mut next);
                let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
                if staged
                    .iter()
                    .any(|s| inside(&s.path, &path) || inside(&path, &s.path))
                {
                    continue;
                }
                let blob = (next(3) != 0).then(|| {
                    let content = format!("{}", next(5));
                    repo.write_blob(content.as_bytes()).expect("blob").detach()
                });
                staged.push(Staged { path, blob });
            }
            let before = repo
                .find_tree(root)
                .expect("tree")
                .decode()
                .expect("decode")
                .into();
            let mut editor = Editor::new(before, &repo.objects, hash);
            for s in &staged {
                match s.blob {
                    Some(id) => editor.upsert(s.path.split('/'), EntryKind::Blob, id),
                    None => editor.remove(s.path.split('/')),
                }
                .expect("edit");
            }
            let expected = editor.write(write).expect("editor");
            let got = edit(
                root,
                &staged,
                hash,
                &mut |id, buf| {
                    buf.clear();
                    buf.extend_from_slice(&repo.find_object(*id).expect("read").data);
                    Ok(())
                },
                &mut |bytes| {
                    Ok(
                        gix::objs::Write::write_buf(&repo.objects, gix::objs::Kind::Tree, bytes)
                            .expect("write"),
                    )
                },
            )
            .expect("edit");
            assert_eq!(
                got,
                expected,
                "round {round}: {:?}",
                staged
                    .iter()
                    .map(|s| (&s.path, s.blob.is_some()))
                    .collect::<Vec<_>>()
            );
            emptied += usize::from(folders(&repo, got) < folders(&repo, root));
            folders_to_files += usize::from(
                staged
                    .iter()
                    .any(|s| s.blob.is_some() && !s.path.contains('/')),
            );
            root = got;
        }
        assert!(
            emptied > 10 && folders_to_files > 10,
            "the walk covered too little: {emptied} {folders_to_files}"
        );
    }

    fn folders(repo: &gix::Repository, tree: ObjectId) -> usize {
        let tree = repo
            .find_tree(tree)
            .expect("tree")
            .decode()
            .expect("decode")
            .into_owned();
        tree.entries
            .iter()
            .filter(|e| e.mode.is_tree())
            .map(|e| 1 + folders(repo, e.oid))
            .sum()
    }
}
