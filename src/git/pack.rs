//! Big bot commits as one pack, as `git receive-pack` and `git fast-import` write them,
//! instead of one loose object file per generated file: a first render of 100,000
//! applications would otherwise leave 300,000 files (1.2 GB) in `objects/`.
//!
//! Objects are appended, compressed, to a temporary pack in `objects/pack/`; when it is
//! complete, gix indexes it (as `git index-pack` does: every object is read back and
//! hashed, the pack checksum verified) and moves `pack-<hash>.pack` and `.idx` into place.
//! A kill at any point leaves at most a temporary file (removed by the next pack
//! written here once it is old) and never a pack without its index. Nothing points at
//! the objects until the pack is in place: the commit that does is written after it.

use super::{git_err, Result};
use gix::hash::Kind as HashKind;
use gix::objs::Kind;
use gix::ObjectId;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// From this many new objects on, a commit's objects go into a pack.
pub const PACK_FROM: usize = 512;

/// Objects entered with [`Pack::add`] compressed and hashed, ready to append.
pub struct Compressed {
    id: ObjectId,
    kind: Kind,
    size: usize,
    deflated: Vec<u8>,
}

/// Hashes and compresses one object (a plain function: callers run it on all cores).
pub fn compress(hash: HashKind, kind: Kind, data: &[u8]) -> Result<Compressed> {
    let id = gix::objs::compute_hash(hash, kind, data).map_err(git_err("hashing an object"))?;
    super::deflate(&[data])
        .map(|deflated| Compressed {
            id,
            kind,
            size: data.len(),
            deflated,
        })
        .map_err(git_err("compressing an object"))
}

impl Compressed {
    pub fn id(&self) -> ObjectId {
        self.id
    }
}

/// A pack being written.
pub struct Pack {
    dir: PathBuf,
    /// The temporary pack, removed when the pack is dropped unfinished or finished.
    temp: Remove,
    out: BufWriter<std::fs::File>,
    count: u32,
    hash: HashKind,
    /// Objects already in the pack (the same content in two files is one blob).
    added: std::collections::HashSet<ObjectId>,
}

impl Pack {
    /// A new pack for the object database at `objects` (its `pack/` folder).
    pub fn new(objects: &Path, hash: HashKind) -> Result<Pack> {
        let dir = objects.join("pack");
        std::fs::create_dir_all(&dir).map_err(git_err("creating objects/pack"))?;
        super::remove_stale(&dir, "tmp_claimd_");
        let temp = dir.join(format!(
            "tmp_claimd_{}_{}.pack",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let file = std::fs::File::create_new(&temp).map_err(git_err("creating a pack"))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // The header; the count is filled in by `finish`.
        out.write_all(b"PACK\0\0\0\x02\0\0\0\0")
            .map_err(git_err("writing a pack"))?;
        Ok(Pack {
            dir,
            temp: Remove(temp),
            out,
            count: 0,
            hash,
            added: std::collections::HashSet::new(),
        })
    }

    /// Appends an object (hashed and compressed by [`compress`]).
    pub fn add(&mut self, object: &Compressed) -> Result<()> {
        if !self.added.insert(object.id) {
            return Ok(());
        }
        let type_bits: u8 = match object.kind {
            Kind::Commit => 1,
            Kind::Tree => 2,
            Kind::Blob => 3,
            Kind::Tag => 4,
        };
        // The entry header: type and size, 4 bits of size first, then 7 per byte.
        let mut size = object.size;
        let mut header = [0u8; 10];
        let mut n = 0;
        let mut byte = (type_bits << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            header[n] = byte | 0x80;
            n += 1;
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        header[n] = byte;
        n += 1;
        self.out
            .write_all(&header[..n])
            .and_then(|_| self.out.write_all(&object.deflated))
            .map_err(git_err("writing a pack"))?;
        self.count += 1;
        Ok(())
    }

    /// Completes the pack (count, checksum), indexes it and moves it into place. The
    /// objects can be read once this returns.
    pub fn finish(self) -> Result<()> {
        let Pack {
            dir,
            temp,
            out,
            count,
            hash,
            ..
        } = self;
        let mut file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(git_err("writing a pack"))?;
        file.seek(SeekFrom::Start(8))
            .and_then(|_| file.write_all(&count.to_be_bytes()))
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .map_err(git_err("writing a pack"))?;
        let mut hasher = gix::hash::hasher(hash);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(git_err("reading a pack"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let checksum = hasher.try_finalize().map_err(git_err("hashing a pack"))?;
        file.write_all(checksum.as_bytes())
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .map_err(git_err("writing a pack"))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let outcome = gix_pack::Bundle::write_to_directory(
            &mut reader,
            Some(&dir),
            &mut gix::progress::Discard,
            &AtomicBool::new(false),
            None::<gix::objs::find::Never>,
            hash,
            gix_pack::bundle::write::Options::default(),
        )
        .map_err(git_err("indexing a pack"))?;
        // The `.keep` protects a pack from `git gc` until a ref points into it; the
        // commit and the ref update follow at once.
        if let Some(keep) = outcome.keep_path {
            let _ = std::fs::remove_file(keep);
        }
        drop(temp);
        tracing::debug!(objects = count, "pack written");
        Ok(())
    }
}

/// Removes a file when dropped (the temporary pack, however `finish` ends).
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_added_twice_is_in_the_pack_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let objects = dir.path().join("objects");
        let mut pack = Pack::new(&objects, HashKind::Sha1).expect("pack");
        let same = compress(HashKind::Sha1, Kind::Blob, b"same content\n").expect("blob");
        let other = compress(HashKind::Sha1, Kind::Blob, b"other\n").expect("blob");
        for object in [&same, &other, &same] {
            pack.add(object).expect("add");
        }
        pack.finish().expect("finish");
        let names: Vec<PathBuf> = std::fs::read_dir(objects.join("pack"))
            .expect("pack folder")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "a pack and its index, nothing else: {names:?}"
        );
        let idx = names
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .expect("an index");
        let index = gix_pack::index::File::at(idx, HashKind::Sha1).expect("read the index");
        assert_eq!(index.num_objects(), 2);
    }
}
