//! The names of applications and services across claim files, kept by a long-lived
//! process (the daemon's memo): a push that changes one claim file of a hundred updates
//! that file's names instead of checking ten thousand again. It says what
//! [`claims::check_names`] says of the same files (the tests compare the two).

use crate::claims::{self, Diagnostic, ParsedFile, Seen};
use crate::pipeline::core::FileKey;
use crate::yaml::Pos;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::HashMap;
use std::sync::Arc;

/// clusterType, environment, name.
type Name = (Arc<str>, Arc<str>, Arc<str>);

/// Where a name is defined; ordered as the claims are (file path, claim, workload).
#[derive(Clone)]
struct Place {
    file: Arc<str>,
    claim: u32,
    workload: u32,
    pos: Pos,
}

#[derive(Default, Clone)]
pub struct NameIndex {
    /// The claim files indexed and the names each defines (none for a file with an
    /// error: its claims are not checked against others).
    files: HashMap<FileKey, Vec<Name>>,
    places: FxHashMap<Name, Vec<Place>>,
    /// Names defined more than once.
    taken: FxHashSet<Name>,
}

impl NameIndex {
    /// Brings the index to exactly `files` (a snapshot's claim files, as parsed): the
    /// files gone or changed are taken out, the new ones added.
    pub fn sync<'a>(&mut self, files: impl IntoIterator<Item = (&'a FileKey, &'a ParsedFile)>) {
        let files: Vec<(&FileKey, &ParsedFile)> = files.into_iter().collect();
        let live: FxHashSet<&FileKey> = files.iter().map(|(k, _)| *k).collect();
        let gone: Vec<FileKey> = self
            .files
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect();
        for key in &gone {
            self.remove(key);
        }
        for (key, file) in files {
            if !self.files.contains_key(key) {
                self.add(key, file);
            }
        }
    }

    fn remove(&mut self, key: &FileKey) {
        let Some(names) = self.files.remove(key) else {
            return;
        };
        for name in names {
            let Some(places) = self.places.get_mut(&name) else {
                continue; // a name the file defined twice, taken out the first time
            };
            places.retain(|p| *p.file != *key.0);
            if places.len() < 2 {
                self.taken.remove(&name);
            }
            if places.is_empty() {
                self.places.remove(&name);
            }
        }
    }

    fn add(&mut self, key: &FileKey, file: &ParsedFile) {
        let mut names = Vec::new();
        if !file.diagnostics.iter().any(Diagnostic::is_error) {
            for (claim, c) in file.claims.iter().enumerate() {
                let Some((wc, _)) = c.workloads() else {
                    continue;
                };
                let source: Arc<str> = Arc::from(c.source.as_str());
                let ct: Arc<str> = Arc::from(wc.cluster_type.value.as_str());
                let env: Arc<str> = Arc::from(wc.environment.value.as_str());
                for (workload, w) in wc.workloads.iter().enumerate() {
                    let name: Name = (ct.clone(), env.clone(), Arc::from(w.name.value.as_str()));
                    let places = self.places.entry(name.clone()).or_default();
                    places.push(Place {
                        file: source.clone(),
                        claim: claim as u32,
                        workload: workload as u32,
                        pos: w.name.pos,
                    });
                    if places.len() > 1 {
                        self.taken.insert(name.clone());
                    }
                    names.push(name);
                }
            }
        }
        self.files.insert(key.clone(), names);
    }

    /// What [`claims::check_names`] says of the files indexed: every definition of a
    /// name after its first is an error.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for name in &self.taken {
            let mut places: Vec<&Place> = self.places[name].iter().collect();
            places.sort_by(|a, b| {
                (&a.file, a.claim, a.workload).cmp(&(&b.file, b.claim, b.workload))
            });
            let first = places[0];
            for again in &places[1..] {
                out.push(claims::duplicate_name(
                    Seen::new(&again.file, again.pos),
                    Seen::new(&first.file, first.pos),
                    &name.2,
                    &name.0,
                    &name.1,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::NameIndex;
    use crate::claims::{self, Diagnostic, ParsedFile};
    use crate::yaml::Limits;

    /// A claim file of applications named from a small pool, so that names clash
    /// often, within a file and across files; `broken` adds an unknown field (the
    /// file fails on its own and its names are not checked).
    fn claim_file(path: &str, env: &str, names: &[&str], broken: bool) -> ParsedFile {
        let mut text = format!(
            "apiVersion: platform.infraforge.io/v1\nkind: ApplicationClaim\nmetadata:\n  name: {}\nspec:\n  environment: {env}\n  clusterType: c\n  applications:\n",
            path.trim_start_matches("claims/").trim_end_matches(".yaml")
        );
        for n in names {
            text.push_str(&format!(
                "    - name: {n}\n      chart: {{name: microservice, version: \"1.0.0\"}}\n"
            ));
        }
        if broken {
            text.push_str("  colour: red\n");
        }
        let (claims, diagnostics) = claims::parse_file(path, &text, &Limits::default());
        let file = ParsedFile {
            path: path.to_string(),
            claims,
            diagnostics,
        };
        assert_eq!(file.diagnostics.iter().any(Diagnostic::is_error), broken);
        file
    }

    fn blob(file: &ParsedFile) -> gix::ObjectId {
        let text = format!("{:?}", (&file.claims, &file.diagnostics));
        crate::git::blob_id(gix::hash::Kind::Sha1, text.as_bytes()).expect("hash")
    }

    /// What the full check says of `files`.
    fn full(files: &[ParsedFile]) -> Vec<Diagnostic> {
        let mut sorted: Vec<&ParsedFile> = files.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let claims: Vec<claims::Claim> = sorted
            .iter()
            .filter(|f| !f.diagnostics.iter().any(Diagnostic::is_error))
            .flat_map(|f| f.claims.iter().cloned())
            .collect();
        let mut d = claims::check_names(&claims);
        d.sort();
        d
    }

    #[test]
    fn kept_up_to_date_file_by_file_it_says_what_the_full_check_says() {
        // A fixed pseudo-random walk: each step rewrites, breaks, adds or deletes one file.
        let mut walk = crate::testing::Walk::new(0x5eed);
        let mut next = |n: u64| walk.below(n);
        let pool = ["api", "web", "db", "queue", "cache"];
        let mut files: Vec<ParsedFile> = Vec::new();
        let mut index = NameIndex::default();
        let mut clashes = 0;
        for step in 0..400 {
            let path = format!("claims/f{}.yaml", next(6));
            files.retain(|f| f.path != path);
            if next(8) != 0 {
                let names: Vec<&str> = (0..1 + next(4)).map(|_| pool[next(5) as usize]).collect();
                let env = ["dev", "qa"][next(2) as usize];
                files.push(claim_file(&path, env, &names, next(6) == 0));
            }
            let keyed: Vec<((String, gix::ObjectId), &ParsedFile)> = files
                .iter()
                .map(|f| ((f.path.clone(), blob(f)), f))
                .collect();
            index.sync(keyed.iter().map(|(k, f)| (k, *f)));
            let mut kept = index.diagnostics();
            kept.sort();
            let expected = full(&files);
            assert_eq!(kept, expected, "step {step}");
            clashes += usize::from(!expected.is_empty());
        }
        assert!(
            clashes > 50,
            "the walk clashed names in {clashes} steps only"
        );
    }
}
