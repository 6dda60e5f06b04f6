//! Commit statuses from a reconcile: one per claim file, context `claimd/<claim path>`.

use super::api::{State, Status};
use crate::claims::Diagnostic;
use crate::reconcile::{ClaimResult, ClaimState};

/// Gitea shows a status's description on one line; longer ones are cut here.
const DESCRIPTION: usize = 200;

/// The status of each claim file: `failure` with its first error (`file:line:col:
/// message`), `error` when a chart could not be had (claimd's side, retried), else
/// `success` with what it made. `link`: the daemon's page, `<link>/<claim path>`.
pub fn of_claims(
    claims: &[ClaimResult],
    diagnostics: &[Diagnostic],
    link: Option<&str>,
) -> Vec<Status> {
    statuses(claims, diagnostics, |c| {
        (
            format!(
                "{} application{}, {} file{} changed",
                c.workloads,
                plural(c.workloads),
                c.changed(),
                plural(c.changed())
            ),
            link.map(|l| format!("{}/{}", l.trim_end_matches('/'), c.file)),
        )
    })
}

/// The status of each claim file for a branch preview (rendered, not committed):
/// `+2 ~3 -0 files` (what merging would add, change and remove), linking to the diff.
pub fn of_preview(
    claims: &[ClaimResult],
    diagnostics: &[Diagnostic],
    diff: Option<&str>,
) -> Vec<Status> {
    statuses(claims, diagnostics, |c| {
        (
            format!("+{} ~{} -{} files", c.added, c.modified, c.removed),
            diff.map(str::to_string),
        )
    })
}

fn statuses(
    claims: &[ClaimResult],
    diagnostics: &[Diagnostic],
    success: impl Fn(&ClaimResult) -> (String, Option<String>),
) -> Vec<Status> {
    claims
        .iter()
        .map(|c| {
            let (done, target_url) = success(c);
            let (state, description) = match c.state(diagnostics) {
                (ClaimState::Error, Some(d)) => (
                    State::Error,
                    format!("a chart could not be had; claimd retries: {d}"),
                ),
                (_, Some(d)) => (State::Failure, d.to_string()),
                (_, None) => (State::Success, done),
            };
            Status {
                context: format!("claimd/{}", c.file),
                state,
                description: cut(&description),
                target_url,
            }
        })
        .collect()
}

/// The status of every claim file while its push waits in the queue.
pub fn pending(files: &[String], link: Option<&str>) -> Vec<Status> {
    files
        .iter()
        .map(|f| Status {
            context: format!("claimd/{f}"),
            state: State::Pending,
            description: "queued for rendering".into(),
            target_url: link.map(|l| format!("{}/{f}", l.trim_end_matches('/'))),
        })
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= DESCRIPTION {
        return text.to_string();
    }
    let mut out: String = text.chars().take(DESCRIPTION - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Severity;
    use crate::yaml::Pos;

    fn result(file: &str, workloads: usize, changed: usize, unavailable: bool) -> ClaimResult {
        ClaimResult {
            file: file.into(),
            workloads,
            added: changed / 2,
            modified: changed - changed / 2,
            removed: 0,
            chart_unavailable: unavailable,
        }
    }

    fn error(file: &str, line: u32, message: &str) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            pos: Pos { line, col: 3 },
            severity: Severity::Error,
            message: message.into(),
        }
    }

    #[test]
    fn each_claim_file_gets_its_state_and_first_error() {
        let claims = [
            result("claims/a.yaml", 3, 6, false),
            result("claims/b.yaml", 0, 0, false),
            result("claims/c.yaml", 1, 0, true),
        ];
        let diags = [
            error("claims/b.yaml", 9, "later"),
            error("claims/b.yaml", 4, "replicas: must be a number"),
            error(
                "claims/c.yaml",
                2,
                "chart microservice 1.0.0: registry unreachable",
            ),
        ];
        let s = of_claims(&claims, &diags, Some("http://claimd:7462/claims/"));
        assert_eq!(s[0].context, "claimd/claims/a.yaml");
        assert_eq!(
            (s[0].state, s[0].description.as_str()),
            (State::Success, "3 applications, 6 files changed")
        );
        assert_eq!(
            s[0].target_url.as_deref(),
            Some("http://claimd:7462/claims/claims/a.yaml")
        );
        assert_eq!(s[1].state, State::Failure);
        assert_eq!(
            s[1].description,
            "claims/b.yaml:4:3: replicas: must be a number"
        );
        assert_eq!(s[2].state, State::Error);
        assert!(
            s[2].description.contains("claims/c.yaml:2:3"),
            "{}",
            s[2].description
        );
        let long = [error("claims/a.yaml", 1, &"x".repeat(500))];
        let s = of_claims(&claims[..1], &long, None);
        assert_eq!(s[0].description.chars().count(), DESCRIPTION);
        assert_eq!(s[0].target_url, None);
        let one = of_claims(&[result("claims/d.yaml", 1, 1, false)], &[], None);
        assert_eq!(one[0].description, "1 application, 1 file changed");
        let p = of_preview(&claims, &diags, Some("http://claimd/previews/abc"));
        assert_eq!(p[0].description, "+3 ~3 -0 files");
        assert_eq!(
            p[0].target_url.as_deref(),
            Some("http://claimd/previews/abc")
        );
        assert_eq!(p[1].state, State::Failure);
    }
}
