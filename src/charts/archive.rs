//! Chart archives (`.tgz`, as `helm package` makes them): reading the data files claimd
//! needs out of one safely, and packaging a chart folder reproducibly.

use super::files::{is_chart_data, ChartFiles};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Component, Path};

/// Largest chart archive accepted, compressed.
pub const MAX_ARCHIVE_BYTES: u64 = 10 << 20;
/// Largest chart content accepted, uncompressed (Helm's own limit is 100 MiB).
pub const MAX_UNPACKED_BYTES: u64 = 100 << 20;
/// Largest data file (values, mapping, schema) accepted.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a readable chart archive: {0}")]
    Corrupt(String),
    #[error("the archive is larger than {} MiB unpacked", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
    #[error("{path} is larger than {} KiB", MAX_FILE_BYTES >> 10)]
    FileTooLarge { path: String },
    #[error("entry `{0}` would be written outside the chart folder")]
    Escape(String),
    #[error("no Chart.yaml at the top of the archive")]
    NoChart,
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Chart(String),
}

impl Error {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Corrupt(_) => "corrupt_archive",
            Error::TooLarge | Error::FileTooLarge { .. } => "archive_too_large",
            Error::Escape(_) => "archive_escape",
            Error::NoChart => "no_chart_yaml",
            Error::NotText { .. } => "not_text",
            Error::Io { .. } => "io",
            Error::Chart(_) => "invalid",
        }
    }
}

/// The data files of the chart in a `.tgz`: `Chart.yaml`, `values*.yaml`,
/// `values.schema.json` and the mapping file from the chart's top folder (not from
/// sub-charts). Refuses entries that would escape the folder, and oversize content.
pub fn unpack(tgz: &[u8]) -> Result<ChartFiles, Error> {
    if tgz.len() as u64 > MAX_ARCHIVE_BYTES {
        return Err(Error::TooLarge);
    }
    let decoder = GzDecoder::new(tgz).take(MAX_UNPACKED_BYTES + 1);
    let mut archive = tar::Archive::new(decoder);
    let mut files = ChartFiles::new();
    let mut root: Option<String> = None;
    let corrupt = |e: std::io::Error| Error::Corrupt(e.to_string());
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let shown = path.display().to_string();
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => return Err(Error::Escape(shown)),
            }
        }
        if !entry.header().entry_type().is_file() {
            // Folders, links (which could point anywhere) and the rest: not needed.
            continue;
        }
        let [top, name] = parts.as_slice() else {
            continue; // deeper files (templates, sub-charts) are not claimd's business
        };
        if root.get_or_insert_with(|| top.clone()) != top {
            return Err(Error::Corrupt(format!(
                "files of more than one chart folder ({} and {top})",
                root.unwrap_or_default()
            )));
        }
        if !is_chart_data(name) {
            continue;
        }
        if entry.size() > MAX_FILE_BYTES {
            return Err(Error::FileTooLarge { path: shown });
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(corrupt)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::NotText { path: shown })?;
        files.insert(name.clone(), text);
    }
    // Reading to the end checks the whole archive (and its size limit).
    let mut rest = archive.into_inner();
    let mut sink = [0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = rest.read(&mut sink).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_UNPACKED_BYTES {
            return Err(Error::TooLarge);
        }
    }
    if rest.limit() == 0 {
        return Err(Error::TooLarge);
    }
    if !files.contains_key("Chart.yaml") {
        return Err(Error::NoChart);
    }
    Ok(files)
}

/// A packaged chart.
pub struct Package {
    pub name: String,
    pub version: String,
    pub tgz: Vec<u8>,
    /// Chart.yaml as JSON: the config blob of the chart's OCI artifact.
    pub metadata: serde_json::Value,
}

/// Packages a chart folder like `helm package`, but reproducibly: the same files give
/// the same bytes (sorted entries, zero timestamps and owners). `.helmignore` is honoured.
pub fn pack(dir: &Path) -> Result<Package, Error> {
    let chart_yaml = read_text(dir, "Chart.yaml")?;
    let metadata = crate::yaml::parse_documents(&chart_yaml, &crate::yaml::Limits::default())
        .map_err(|e| Error::Chart(format!("{}/Chart.yaml:{e}", dir.display())))?
        .first()
        .map(crate::yaml::Node::to_json)
        .unwrap_or_default();
    let field = |k: &str| {
        metadata
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Chart(format!(
                    "{}/Chart.yaml: `{k}` is missing; a chart needs apiVersion, name and version",
                    dir.display()
                ))
            })
    };
    let name = field("name")?;
    let version = field("version")?;
    field("apiVersion")?;
    if semver::Version::parse(&version).is_err() {
        return Err(Error::Chart(format!(
            "{}/Chart.yaml: version `{version}` is not SemVer 2 (e.g. 1.2.3); Helm refuses it",
            dir.display()
        )));
    }
    let ignore = Ignore::read(dir)?;
    let mut paths = Vec::new();
    walk(dir, "", &ignore, &mut paths)?;
    paths.sort();
    let mut builder = tar::Builder::new(Vec::new());
    for rel in &paths {
        let bytes = std::fs::read(dir.join(rel)).map_err(|source| Error::Io {
            path: rel.clone(),
            source,
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, format!("{name}/{rel}"), bytes.as_slice())
            .map_err(|source| Error::Io {
                path: rel.clone(),
                source,
            })?;
    }
    let tar = builder.into_inner().map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let tgz = gz.finish().map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(Package {
        name,
        version,
        tgz,
        metadata,
    })
}

fn read_text(dir: &Path, name: &str) -> Result<String, Error> {
    std::fs::read_to_string(dir.join(name)).map_err(|source| Error::Io {
        path: dir.join(name).display().to_string(),
        source,
    })
}

fn walk(dir: &Path, rel: &str, ignore: &Ignore, out: &mut Vec<String>) -> Result<(), Error> {
    let here = dir.join(rel);
    let io = |source| Error::Io {
        path: here.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(&here).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry.file_type().map_err(io)?;
        if ignore.matches(&path, &name, kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            walk(dir, &path, ignore, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
        // Symlinks are left out: Helm follows them, but they could point anywhere.
    }
    Ok(())
}

/// The patterns of a `.helmignore` (gitignore-like: `*`, `?`, a trailing `/` for
/// folders, a pattern with `/` matches the path, one without matches any name).
struct Ignore(Vec<String>);

impl Ignore {
    fn read(dir: &Path) -> Result<Ignore, Error> {
        let path = dir.join(".helmignore");
        if !path.is_file() {
            return Ok(Ignore(Vec::new()));
        }
        let text = read_text(dir, ".helmignore")?;
        Ok(Ignore(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
        ))
    }

    fn matches(&self, path: &str, name: &str, is_dir: bool) -> bool {
        self.0.iter().any(|p| {
            let (p, dir_only) = match p.strip_suffix('/') {
                Some(p) => (p, true),
                None => (p.as_str(), false),
            };
            if dir_only && !is_dir {
                return false;
            }
            let p = p.trim_start_matches('/');
            if p.contains('/') {
                glob(p, path)
            } else {
                glob(p, name)
            }
        })
    }
}

/// `*` (not across `/`), `?` and literal characters.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|&c| c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the name bytes directly as a hostile archive would.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn reads_only_top_level_data_files() {
        let files = unpack(&tgz(&[
            ("redis/Chart.yaml", b"name: redis\nversion: 1.0.0\n"),
            ("redis/values.yaml", b"a: 1\n"),
            ("redis/values-production.yaml", b"a: 2\n"),
            ("redis/templates/x.yaml", b"kind: X\n"),
            ("redis/charts/sub/values.yaml", b"b: 1\n"),
        ]))
        .unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["Chart.yaml", "values-production.yaml", "values.yaml"]
        );
    }

    #[test]
    fn refuses_escapes_garbage_and_missing_chart_yaml() {
        let escape = unpack(&tgz(&[("redis/../../etc/passwd", b"x")])).unwrap_err();
        assert!(matches!(escape, Error::Escape(_)), "{escape}");
        let absolute = unpack(&tgz(&[("/etc/values.yaml", b"x")])).unwrap_err();
        assert!(matches!(absolute, Error::Escape(_)), "{absolute}");
        assert!(matches!(
            unpack(b"not a gzip file").unwrap_err(),
            Error::Corrupt(_)
        ));
        assert!(matches!(
            unpack(&tgz(&[("redis/values.yaml", b"a: 1\n")])).unwrap_err(),
            Error::NoChart
        ));
        let big = vec![b'a'; (MAX_FILE_BYTES + 1) as usize];
        assert!(matches!(
            unpack(&tgz(&[("redis/values.yaml", &big)])).unwrap_err(),
            Error::FileTooLarge { .. }
        ));
    }

    #[test]
    fn pack_is_reproducible_honours_helmignore_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("Chart.yaml"),
            "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(d.join("values.yaml"), "replicas: 1\n").unwrap();
        std::fs::create_dir(d.join("templates")).unwrap();
        std::fs::write(d.join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
        std::fs::write(d.join("notes.bak"), "x").unwrap();
        std::fs::create_dir(d.join(".git")).unwrap();
        std::fs::write(d.join(".git/HEAD"), "x").unwrap();
        std::fs::write(d.join(".helmignore"), "# comment\n*.bak\n.git/\n").unwrap();
        let a = pack(d).unwrap();
        let b = pack(d).unwrap();
        assert_eq!(a.tgz, b.tgz, "same files, same bytes");
        assert_eq!((a.name.as_str(), a.version.as_str()), ("demo", "0.1.0"));
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(GzDecoder::new(a.tgz.as_slice()));
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            [
                "demo/.helmignore",
                "demo/Chart.yaml",
                "demo/templates/cm.yaml",
                "demo/values.yaml"
            ]
        );
        assert_eq!(unpack(&a.tgz).unwrap()["values.yaml"], "replicas: 1\n");
        std::fs::write(
            d.join("Chart.yaml"),
            "apiVersion: v2\nname: demo\nversion: \"1.0\"\n",
        )
        .unwrap();
        let err = pack(d).err().unwrap().to_string();
        assert!(err.contains("SemVer"), "{err}");
    }

    #[test]
    fn glob_matches_like_helmignore() {
        assert!(glob("*.bak", "a.bak"));
        assert!(!glob("*.bak", "dir/a.bak"));
        assert!(glob("templates/*.txt", "templates/a.txt"));
        assert!(glob("?.yaml", "a.yaml"));
        assert!(!glob("?.yaml", "ab.yaml"));
    }
}
