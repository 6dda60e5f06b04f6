//! The daemon at its listener (`listen`, or `CLAIMD_LISTEN`): `/readyz`, and its
//! counters (`/v1/status`) for the webhook secret check.

use super::{shell, Check};
use crate::daemon::config::Config;
use crate::daemon::DaemonStatus;
use std::path::Path;

/// Whether the setup needs the daemon: a repository that is only a mirror is rendered by
/// nobody else (repositories with hooks render inline without it).
fn required(c: &Config) -> bool {
    c.repositories.iter().any(|r| r.mirror)
}

/// The `/readyz` line, and the daemon's counters when it answers.
pub fn check(c: &Config, config_path: &Path) -> (Check, Option<DaemonStatus>) {
    let addr = c.listen.to_string();
    let start = format!(
        "start it: systemctl start claimd (or claimd serve --config {})",
        shell(config_path)
    );
    let line = match crate::server::get(&addr, "/readyz") {
        Ok((200, _)) => Check::pass("daemon", format!("ready at {addr}")),
        Ok((503, _)) => Check::warn(
            "daemon",
            format!("answers at {addr} but is not ready: it is still rendering every repository once after its start"),
            Some("wait, then run claimd doctor again; claimd's log tells what it does".into()),
        ),
        Ok((status, body)) => Check::fail(
            "daemon",
            format!("{addr} answered /readyz with {status} ({}): is this claimd?", body.trim()),
            format!("set listen (or CLAIMD_LISTEN) in {} to claimd's address", shell(config_path)),
        ),
        Err(e) if required(c) => Check::fail(
            "daemon",
            format!("not running at {addr} ({e}); the repositories claimd mirrors from Gitea are rendered by nobody else"),
            start,
        ),
        Err(e) => Check::warn(
            "daemon",
            format!("not running at {addr} ({e}): the hooks render inline meanwhile"),
            Some(start),
        ),
    };
    let status = match line.level {
        super::Level::Pass | super::Level::Warn => crate::server::status(&addr)
            .ok()
            .filter(|(code, _)| *code == 200)
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| serde_json::from_value(v["daemon"].clone()).ok()),
        _ => None,
    };
    (line, status)
}
