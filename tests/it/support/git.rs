// Running git in tests, isolated from the machine's configuration (no system config,
// HOME in the test's folder, a fixed identity).

use std::path::Path;
use std::process::{Command, Output};

/// git in `dir`, isolated as [`git`] runs it, not run yet (for more environment).
pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com");
    cmd
}

/// Runs git in `dir` and asserts it succeeded.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    let out = git_command(dir, args).output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An empty bare `<root>/server.git` (branch main) and its clone `<root>/work`.
pub fn server_and_work(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    git(root, &["init", "-q", "--bare", "-b", "main", "server.git"]);
    git(root, &["clone", "-q", "server.git", "work"]);
    (root.join("server.git"), root.join("work"))
}

/// Clones `bare` into `<root>/work` and commits the example claims there (not pushed).
pub fn clone_with_examples(root: &Path, bare: &Path) -> std::path::PathBuf {
    git(
        root,
        &["clone", "-q", &format!("file://{}", bare.display()), "work"],
    );
    let work = root.join("work");
    std::fs::create_dir_all(work.join("claims")).expect("mkdir");
    for (path, text) in claimd::examples::CLAIMS {
        std::fs::write(work.join(path), text).expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "claims"]);
    work
}
