//! File watching: the configuration file, and the branch refs of repositories with
//! `watchRefs: true` (git servers that cannot run hooks).
//!
//! Reading a file is never a reason to do work. inotify also reports opens, reads,
//! closes without a write and metadata changes; those are dropped in the watcher's
//! callback (counted as ignored), and so is every event on a file claimd does not
//! watch for (a ref lock, the repository's config). What is left is coalesced: a burst
//! (an editor's save, a push) becomes one batch once the files are quiet for
//! [`QUIET`]. A batch only says "look again":
//! - the configuration is read and hashed; nothing happens unless its content
//!   changed, and then only the repositories the change concerns are rendered;
//! - a repository is asked to look at its branch, and renders only if the tip moved
//!   (so the daemon's own bot commit, and anybody's `git log`, cost nothing).
//!
//! At rest the task waits on its channel: no timer ticks (notify's debouncers tick
//! every few milliseconds, which is why this small one is written here).

use super::config::{Changes, Config};
use super::{canonical, Daemon, Event};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A batch ends once no event came for this long...
const QUIET: Duration = Duration::from_millis(50);
/// ...or when it has been collecting for this long (a steady stream still gets served).
const LONGEST: Duration = Duration::from_millis(500);

/// What an event asks to look at again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// Something in the configuration file's folder changed (the file itself, or the
    /// symlink swap a Kubernetes ConfigMap volume does).
    Config,
    /// The branch refs of this repository.
    Refs(PathBuf),
    /// The kernel dropped events (queue overflow): look at everything.
    Everything,
}

/// Whether an event of this kind can mean that a file's content changed.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        // Not produced by inotify; a backend that cannot tell says "something".
        EventKind::Any => true,
    }
}

/// The files watched: the configuration's folder and the watched repositories.
struct Paths {
    config_dir: PathBuf,
    repos: Vec<PathBuf>,
}

impl Paths {
    /// What an event on `path` asks to look at, if anything.
    fn target(&self, path: &Path) -> Option<Target> {
        for repo in &self.repos {
            let Ok(rel) = path.strip_prefix(repo) else {
                continue;
            };
            let lock = rel.extension().is_some_and(|e| e == "lock");
            let branch = rel.starts_with("refs/heads")
                || rel == Path::new("packed-refs")
                || rel == Path::new("HEAD");
            return (branch && !lock).then(|| Target::Refs(repo.clone()));
        }
        (path.parent() == Some(self.config_dir.as_path())).then_some(Target::Config)
    }
}

/// Starts watching the configuration file and the refs of the repositories that ask for
/// it. Events go to the daemon until it stops.
pub fn watch(daemon: Arc<Daemon>, config_path: &Path, config: &Config) -> notify::Result<()> {
    let config_file = canonical(config_path);
    let config_dir = config_file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let paths = Arc::new(RwLock::new(Paths {
        config_dir: config_dir.clone(),
        repos: Vec::new(),
    }));
    let (tx, rx) = mpsc::unbounded_channel();
    let (shared, d) = (paths.clone(), daemon.clone());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let stats = &d.stats;
        let Ok(event) = res else { return };
        stats.watch_events.fetch_add(1, Ordering::Relaxed);
        if event.need_rescan() {
            let _ = tx.send(Target::Everything);
            return;
        }
        let target = changes_content(&event.kind)
            .then(|| {
                let paths = shared.read().unwrap_or_else(|p| p.into_inner());
                event.paths.iter().find_map(|p| paths.target(p))
            })
            .flatten();
        match target {
            Some(t) => {
                let _ = tx.send(t);
            }
            None => {
                stats.watch_ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    })?;
    watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    let mut w = Watches {
        watcher,
        paths,
        config_file,
        hash: None,
    };
    w.hash = w.read().ok().map(|text| digest(&text));
    w.follow(config);
    tokio::spawn(w.run(daemon, rx));
    Ok(())
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

struct Watches {
    watcher: notify::RecommendedWatcher,
    paths: Arc<RwLock<Paths>>,
    config_file: PathBuf,
    /// The configuration's content last seen (reloaded only when it differs).
    hash: Option<[u8; 32]>,
}

impl Watches {
    fn read(&self) -> std::io::Result<String> {
        std::fs::read_to_string(&self.config_file)
    }

    /// Watches the refs of exactly the repositories that set `watchRefs`.
    fn follow(&mut self, config: &Config) {
        let wanted: BTreeSet<PathBuf> = config
            .repositories
            .iter()
            .filter(|r| r.watch_refs)
            .map(|r| canonical(&r.path))
            .collect();
        let mut paths = self.paths.write().unwrap_or_else(|p| p.into_inner());
        for repo in paths.repos.iter().filter(|r| !wanted.contains(*r)) {
            let _ = self.watcher.unwatch(&repo.join("refs"));
            let _ = self.watcher.unwatch(repo);
        }
        let mut repos = Vec::new();
        for repo in wanted {
            if !paths.repos.contains(&repo) {
                let watched = self
                    .watcher
                    .watch(&repo.join("refs"), RecursiveMode::Recursive)
                    // packed-refs and HEAD
                    .and_then(|()| self.watcher.watch(&repo, RecursiveMode::NonRecursive));
                if let Err(e) = watched {
                    tracing::warn!(repo = %repo.display(), error = %e, "cannot watch the refs; pushes are seen through the hooks only");
                    continue;
                }
            }
            repos.push(repo);
        }
        paths.repos = repos;
    }

    async fn run(mut self, daemon: Arc<Daemon>, mut rx: mpsc::UnboundedReceiver<Target>) {
        let mut stop = daemon.stop.subscribe();
        loop {
            let first = tokio::select! {
                t = rx.recv() => match t {
                    Some(t) => t,
                    None => return,
                },
                _ = stop.changed() => return,
            };
            let mut batch = BTreeSet::from([first]);
            let until = Instant::now() + LONGEST;
            while Instant::now() < until {
                match tokio::time::timeout(QUIET, rx.recv()).await {
                    Ok(Some(t)) => {
                        batch.insert(t);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.handle(&daemon, &batch);
            daemon.stats.watch_batches.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Asks the repositories to look at their refs, then looks at the configuration
    /// (last, so once a check is counted every event before it was handled).
    fn handle(&mut self, daemon: &Arc<Daemon>, batch: &BTreeSet<Target>) {
        let everything = batch.contains(&Target::Everything);
        let repos: Vec<PathBuf> = if everything {
            let paths = self.paths.read().unwrap_or_else(|p| p.into_inner());
            paths.repos.clone()
        } else {
            batch
                .iter()
                .filter_map(|t| match t {
                    Target::Refs(repo) => Some(repo.clone()),
                    _ => None,
                })
                .collect()
        };
        for repo in repos {
            daemon.send(Event::RefsChanged { repo });
        }
        if everything || batch.contains(&Target::Config) {
            self.reload(daemon);
        }
    }

    /// Reads the configuration; when its content changed, applies it and renders the
    /// repositories the change concerns.
    fn reload(&mut self, daemon: &Arc<Daemon>) {
        self.reload_if_changed(daemon);
        daemon.stats.config_checks.fetch_add(1, Ordering::SeqCst);
    }

    fn reload_if_changed(&mut self, daemon: &Arc<Daemon>) {
        let stats = &daemon.stats;
        let text = match self.read() {
            Ok(text) => text,
            Err(e) => {
                // Mid-save by an editor that renames, or removed: the next event tells.
                tracing::warn!(config = %self.config_file.display(), error = %e, "configuration not readable; keeping the running one");
                return;
            }
        };
        let hash = digest(&text);
        if self.hash == Some(hash) {
            return;
        }
        self.hash = Some(hash);
        let config = match Config::parse(&self.config_file, &text) {
            Ok(config) => config,
            Err(e) => {
                stats.config_errors.fetch_add(1, Ordering::SeqCst);
                tracing::error!(error = %e, "configuration not reloaded; the running one stays");
                return;
            }
        };
        stats.config_reloads.fetch_add(1, Ordering::SeqCst);
        let changes: Changes = daemon.configure(&config);
        tracing::info!("configuration reloaded: {changes}");
        for repo in changes.to_reconcile(&config) {
            daemon.send(Event::Configured {
                repo: repo.to_path_buf(),
            });
        }
        self.follow(&config);
        for repo in &changes.watch {
            // Refs may have moved while they were not watched.
            daemon.send(Event::RefsChanged { repo: repo.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn only_events_that_can_change_content_count() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)),
            EventKind::Other,
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn only_branch_refs_and_the_config_folder_are_targets() {
        let paths = Paths {
            config_dir: PathBuf::from("/etc/claimd"),
            repos: vec![PathBuf::from("/srv/a.git")],
        };
        let refs = Some(Target::Refs(PathBuf::from("/srv/a.git")));
        for p in [
            "/srv/a.git/refs/heads/main",
            "/srv/a.git/refs/heads/team/x",
            "/srv/a.git/packed-refs",
            "/srv/a.git/HEAD",
        ] {
            assert_eq!(paths.target(Path::new(p)), refs, "{p}");
        }
        for p in [
            "/srv/a.git/refs/heads/main.lock",
            "/srv/a.git/packed-refs.lock",
            "/srv/a.git/config",
            "/srv/a.git/refs/tags/v1",
            "/srv/a.git/FETCH_HEAD",
            "/srv/b.git/refs/heads/main",
            "/etc/claimd/sub/file",
        ] {
            assert_eq!(paths.target(Path::new(p)), None, "{p}");
        }
        assert_eq!(
            paths.target(Path::new("/etc/claimd/claimd.yaml")),
            Some(Target::Config)
        );
        assert_eq!(
            paths.target(Path::new("/etc/claimd/..data")),
            Some(Target::Config)
        );
    }
}
