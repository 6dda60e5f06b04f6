//! The memo's framing: lengths as LEB128 varints, object ids as their 20 bytes, and lists
//! of paths front-coded (each path as the length it shares with the one before and the
//! rest), since a memo's paths are sorted and mostly share long prefixes
//! (`environments/production/apps/…`). Decoding is a loop over the bytes: no format
//! markers to dispatch on, one allocation per path.

use gix::ObjectId;
use std::io::{self, Write};

/// Writes the framing into `W`.
pub(super) struct Out<W> {
    w: W,
}

impl<W: Write> Out<W> {
    pub fn new(w: W) -> Out<W> {
        Out { w }
    }

    pub fn into_inner(self) -> W {
        self.w
    }

    pub fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)
    }

    pub fn len(&mut self, mut n: usize) -> io::Result<()> {
        let mut buf = [0u8; 10];
        let mut i = 0;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                buf[i] = byte;
                i += 1;
                break;
            }
            buf[i] = byte | 0x80;
            i += 1;
        }
        self.w.write_all(&buf[..i])
    }

    pub fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.len(b.len())?;
        self.w.write_all(b)
    }

    pub fn id(&mut self, id: &ObjectId) -> io::Result<()> {
        self.w.write_all(id.as_bytes())
    }

    pub fn flag(&mut self, on: bool) -> io::Result<()> {
        self.w.write_all(&[u8::from(on)])
    }

    /// A list of `(path, value)`, each path front-coded against the one before.
    pub fn paths<'a, T: 'a>(
        &mut self,
        items: impl ExactSizeIterator<Item = (&'a str, T)>,
        mut value: impl FnMut(&mut Self, T) -> io::Result<()>,
    ) -> io::Result<()> {
        self.len(items.len())?;
        let mut prev: &[u8] = b"";
        for (path, v) in items {
            let path = path.as_bytes();
            let shared = prev.iter().zip(path).take_while(|(a, b)| a == b).count();
            self.len(shared)?;
            self.bytes(&path[shared..])?;
            value(self, v)?;
            prev = path;
        }
        Ok(())
    }
}

/// Reads the framing from a byte slice; `None` at anything that does not read (the memo
/// is then not used).
pub(super) struct In<'a> {
    b: &'a [u8],
}

impl<'a> In<'a> {
    pub fn new(b: &'a [u8]) -> In<'a> {
        In { b }
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.b.len()
    }

    pub fn raw(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }

    pub fn len(&mut self) -> Option<usize> {
        let mut n: usize = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.b.split_first()?;
            self.b = rest;
            n |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.raw(n)
    }

    /// A string written by [`Out::bytes`].
    pub fn string(&mut self) -> Option<String> {
        Some(std::str::from_utf8(self.bytes()?).ok()?.to_owned())
    }

    pub fn id(&mut self) -> Option<ObjectId> {
        ObjectId::try_from(self.raw(20)?).ok()
    }

    pub fn hash(&mut self) -> Option<[u8; 32]> {
        self.raw(32)?.try_into().ok()
    }

    pub fn flag(&mut self) -> Option<bool> {
        match self.raw(1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }

    /// A list written by [`Out::paths`].
    pub fn paths<T>(
        &mut self,
        mut value: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<(String, T)>> {
        let n = self.len()?;
        // Each item takes at least two bytes: a count no input of this size can hold
        // is refused before anything is allocated for it.
        if n > self.b.len() {
            return None;
        }
        let mut out: Vec<(String, T)> = Vec::with_capacity(n);
        for _ in 0..n {
            let shared = self.len()?;
            let rest = self.bytes()?;
            let prev = out.last().map_or("", |(p, _)| p.as_str()).as_bytes();
            let head = prev.get(..shared)?;
            let mut path = Vec::with_capacity(shared + rest.len());
            path.extend_from_slice(head);
            path.extend_from_slice(rest);
            let path = String::from_utf8(path).ok()?;
            out.push((path, value(self)?));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_ids_and_front_coded_paths_read_back() {
        let id = ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").expect("hex");
        let paths = [
            ("environments/dev/apps/a/values.yaml", 1usize),
            ("environments/dev/apps/a/values.yaml", 2),
            ("environments/dev/apps/ab/config.yaml", 300),
            ("environments/é/x", 1 << 40),
            ("", 0),
        ];
        let mut out = Out::new(Vec::new());
        out.len(0)
            .and(out.len(127))
            .and(out.len(128))
            .expect("write");
        out.id(&id).expect("write");
        out.flag(true).expect("write");
        out.paths(paths.iter().map(|(p, n)| (*p, *n)), |o, n| o.len(n))
            .expect("write");
        out.bytes(b"tail").expect("write");
        let bytes = out.into_inner();

        let mut r = In::new(&bytes);
        assert_eq!((r.len(), r.len(), r.len()), (Some(0), Some(127), Some(128)));
        assert_eq!(r.id(), Some(id));
        assert_eq!(r.flag(), Some(true));
        let back = r.paths(|r| r.len()).expect("paths");
        let want: Vec<(String, usize)> = paths.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        assert_eq!(back, want);
        assert_eq!(r.bytes(), Some(&b"tail"[..]));
        assert!(r.is_empty());
    }

    #[test]
    fn truncated_or_corrupt_input_reads_as_none() {
        let mut out = Out::new(Vec::new());
        out.paths([("abc", ()), ("abd", ())].into_iter(), |_, ()| Ok(()))
            .expect("write");
        let bytes = out.into_inner();
        for cut in 0..bytes.len() {
            assert!(
                In::new(&bytes[..cut]).paths(|_| Some(())).is_none(),
                "cut at {cut}"
            );
        }
        // A shared length longer than the path before.
        assert!(In::new(&[1, 5, 0]).paths(|_| Some(())).is_none());
        // Not UTF-8.
        assert!(In::new(&[1, 0, 1, 0xff]).paths(|_| Some(())).is_none());
        // A varint that never ends.
        assert!(In::new(&[0xff; 12]).len().is_none());
        assert!(In::new(&[2]).flag().is_none());
    }
}
