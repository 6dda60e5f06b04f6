//! The git binary: claimd pushes bot commits with it (`git push` with a lease).

use super::Check;
use crate::git::push::{cli_version, parse_version, MIN_GIT};

/// `git --version` runs and is at least [`MIN_GIT`].
pub fn check() -> Check {
    let (a, b, c) = MIN_GIT;
    let text = match cli_version() {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                "git",
                format!("the git binary does not run ({e})"),
                format!(
                "install git {a}.{b} or later (apt-get install git) and put it on claimd's PATH"
            ),
            )
        }
    };
    match parse_version(&text) {
        Some(v) if v >= MIN_GIT => Check::pass(
            "git",
            format!("git {}", text.trim_start_matches("git version ")),
        ),
        Some(_) => Check::fail(
            "git",
            format!("{text} is older than {a}.{b}.{c}, the oldest claimd pushes with (the token reaches git through GIT_CONFIG_COUNT)"),
            format!("install git {a}.{b} or later"),
        ),
        None => Check::warn(
            "git",
            format!("`git --version` printed {text:?}, which does not read as a version"),
            Some(format!("make sure `git` is git {a}.{b} or later")),
        ),
    }
}
