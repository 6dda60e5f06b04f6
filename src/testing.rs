//! What the crate's unit tests share.

/// A fixed pseudo-random walk (a linear congruential generator): the same steps on every
/// run, so a failing step can be named and replayed.
pub(crate) struct Walk(u64);

impl Walk {
    pub(crate) fn new(seed: u64) -> Walk {
        Walk(seed)
    }

    /// The next step, below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// git on the repository `git_dir` (`init` makes it), which must succeed: its output,
/// trimmed. Commits are by a fixed identity.
pub(crate) fn git(git_dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
