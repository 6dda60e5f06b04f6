//! `GET /`: the status page a person reads in a browser. Server-rendered HTML from
//! [`Daemon::status`] (what `GET /v1/status` returns), no script, no external asset: each
//! repository with its last push and bot commit, its claim files red or green with the
//! first error (`file:line:col: message`) and links to their generated files, and its
//! preview Environments with phase and URL. Everything that comes from claims, errors or
//! the cluster is HTML-escaped; the page reloads itself every [`REFRESH`] seconds (the
//! daemon does no work for it between requests).

use crate::daemon::record::ClaimStatus;
use crate::daemon::{Daemon, RepositoryStatus, Status};
use crate::reconcile::ClaimState;
use std::fmt::Write;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::{Filter, Reply};

/// Seconds between the page's reloads.
pub const REFRESH: u32 = 30;

/// `GET /` on whatever listener mounts it.
pub fn routes(daemon: Arc<Daemon>) -> BoxedFilter<(impl Reply,)> {
    warp::path::end()
        .and(warp::get())
        .map(move || {
            let page = render(&daemon.status());
            let reply = warp::reply::html(page);
            let reply = warp::reply::with_header(reply, "cache-control", "no-store");
            // Nothing but the inline style may load or run, whatever a claim holds.
            warp::reply::with_header(
                reply,
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            )
        })
        .boxed()
}

/// `text` with `& < > " '` escaped: safe in element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A repository path for a URL: anything but `A-Z a-z 0-9 - . _ ~ /` percent-encoded.
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `<a href>` to `url` showing `text`, both escaped; just the text when there is no URL.
fn link(url: Option<&str>, text: &str) -> String {
    match url {
        Some(url) => format!("<a href=\"{}\">{}</a>", escape(url), escape(text)),
        None => escape(text),
    }
}

/// `owner/name` at the end of a repository's Gitea URL.
fn full_name(url: &str) -> Option<String> {
    let mut parts = url.trim_end_matches('/').rsplitn(3, '/');
    let (name, owner) = (parts.next()?, parts.next()?);
    parts.next()?;
    Some(format!("{owner}/{name}"))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f5f6f8;color:#1f2328}
header{background:#1f2328;color:#fff;padding:14px 28px;display:flex;align-items:baseline;gap:16px}
header h1{margin:0;font-size:20px} header p{margin:0;color:#c9d1d9;font-size:13px}
main{padding:20px 28px;max-width:1200px}
section.repository{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin-bottom:20px}
h2{margin:0 0 10px;font-size:17px;word-break:break-all} h3{font-size:14px;margin:16px 0 6px;color:#57606a;text-transform:uppercase;letter-spacing:.04em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:#57606a} dd{margin:0}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:6px 8px;border-top:1px solid #eaeef2;vertical-align:top}
th{font-size:12px;color:#57606a;border-top:0}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.badge.ok{background:#1a7f37} .badge.failed{background:#cf222e} .badge.error{background:#bc4c00}
.badge.ready{background:#1a7f37} .badge.pending,.badge.building,.badge.deploying{background:#9a6700} .badge.failed-phase{background:#cf222e}
tr.claim.failed td,tr.claim.error td{background:#fff5f5}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
td.file code{white-space:nowrap} h2 .path{font-size:13px;font-weight:400;margin-left:8px}
code.error{color:#cf222e;white-space:pre-wrap;word-break:break-word}
ul.generated{margin:0;padding-left:16px} .muted{color:#57606a}
.result.failed{color:#cf222e}
a{color:#0969da;text-decoration:none} a:hover{text-decoration:underline}
";

/// The whole page for `status`.
pub fn render(status: &Status) -> String {
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>claimd status</title><style>{STYLE}</style></head><body>\
         <header><h1>claimd</h1><p>{} repositor{} · this page reloads every {REFRESH} s</p></header><main>",
        status.repositories.len(),
        if status.repositories.len() == 1 { "y" } else { "ies" },
    );
    if status.repositories.is_empty() {
        out.push_str("<p class=\"muted\">No repository is configured.</p>");
    }
    for r in &status.repositories {
        repository(&mut out, r);
    }
    out.push_str("</main></body></html>\n");
    out
}

fn repository(out: &mut String, r: &RepositoryStatus) {
    let rec = &r.record;
    let gitea = rec.gitea.as_deref();
    let name = r.repository.display().to_string();
    // On Gitea: `owner/name` (its page), then the path on disk.
    let title = match gitea.and_then(full_name) {
        Some(full_name) => format!(
            "{} <span class=\"muted path\">{}</span>",
            link(gitea, &full_name),
            escape(&name)
        ),
        None => escape(&name),
    };
    let _ = write!(
        out,
        "<section class=\"repository\" data-repository=\"{}\"><h2>{title}</h2><dl class=\"facts\">",
        escape(&name),
    );
    let commit_url = |c: &str| gitea.map(|g| format!("{g}/commit/{}", url_path(c)));
    out.push_str("<dt>Last push</dt><dd class=\"last-push\">");
    match &rec.last_push {
        Some(p) => {
            let _ = write!(
                out,
                "<code>{}</code> on {} <span class=\"muted\">seen {}</span>",
                link(commit_url(&p.commit).as_deref(), short(&p.commit)),
                escape(&p.reference),
                escape(&p.seen)
            );
        }
        None => out.push_str("<span class=\"muted\">none seen since claimd started</span>"),
    }
    out.push_str("</dd><dt>Last bot commit</dt><dd class=\"last-bot-commit\">");
    match &rec.last_bot_commit {
        Some(b) => {
            let _ = write!(
                out,
                "<code>{}</code> <span class=\"muted\">seen {}</span>",
                link(commit_url(&b.commit).as_deref(), short(&b.commit)),
                escape(&b.seen)
            );
        }
        None => out.push_str("<span class=\"muted\">none since claimd started</span>"),
    }
    out.push_str("</dd><dt>Last reconcile</dt>");
    match &rec.last_reconcile {
        Some(l) => {
            let _ = write!(
                out,
                "<dd class=\"result {}\">{} <span class=\"muted\">at {}</span></dd>",
                if l.ok { "ok" } else { "failed" },
                escape(&l.result),
                escape(&l.at)
            );
        }
        None => out.push_str("<dd class=\"muted\">not yet</dd>"),
    }
    out.push_str("</dl>");
    let tip = rec.last_reconcile.as_ref().and_then(|l| l.tip.as_deref());
    let file_url = |path: &str| {
        gitea
            .zip(tip)
            .map(|(g, t)| format!("{g}/src/commit/{}/{}", url_path(t), url_path(path)))
    };
    let failing = rec
        .claims
        .iter()
        .filter(|c| c.state != ClaimState::Ok)
        .count();
    let _ = write!(
        out,
        "<h3>Claims <span class=\"muted\">({} file{}, {failing} failing)</span></h3>",
        rec.claims.len(),
        if rec.claims.len() == 1 { "" } else { "s" }
    );
    if rec.claims.is_empty() {
        out.push_str("<p class=\"muted\">No claim file rendered yet.</p>");
    } else {
        out.push_str(
            "<table class=\"claims\"><thead><tr><th>State</th><th>Claim file</th>\
             <th>Applications</th><th>Generated files, or the first error</th></tr></thead><tbody>",
        );
        for c in &rec.claims {
            claim(out, c, &file_url);
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h3>Preview environments</h3>");
    if r.environments.is_empty() {
        out.push_str("<p class=\"muted\">No preview environment.</p>");
    } else {
        out.push_str(
            "<table class=\"previews\"><thead><tr><th>Phase</th><th>Environment</th>\
             <th>Namespace</th><th>URL</th><th>Message</th></tr></thead><tbody>",
        );
        for e in &r.environments {
            let phase = e.phase.to_string();
            let class = match phase.to_lowercase().as_str() {
                "failed" => "failed-phase".to_string(),
                other => other.to_string(),
            };
            // Only web URLs become links (never `javascript:` and the like).
            let url = (e.url.starts_with("https://") || e.url.starts_with("http://"))
                .then_some(e.url.as_str());
            let message = e
                .conditions
                .iter()
                .find(|c| c.status != "True")
                .map(|c| format!("{}: {}", c.kind, c.message))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr class=\"preview\" data-environment=\"{}\" data-phase=\"{}\">\
                 <td><span class=\"badge {}\">{}</span></td><td>{}</td><td><code>{}</code></td>\
                 <td>{}</td><td>{}</td></tr>",
                escape(&e.environment),
                escape(&phase),
                escape(&class),
                escape(&phase),
                escape(&e.environment),
                escape(&e.namespace),
                link(url, &e.url),
                escape(&message)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn claim(out: &mut String, c: &ClaimStatus, file_url: &dyn Fn(&str) -> Option<String>) {
    let state = match c.state {
        ClaimState::Ok => "ok",
        ClaimState::Failed => "failed",
        ClaimState::Error => "error",
    };
    let _ = write!(
        out,
        "<tr class=\"claim {state}\" data-claim=\"{}\" data-state=\"{state}\">\
         <td><span class=\"badge {state}\">{state}</span></td><td class=\"file\"><code>{}</code></td><td>{}</td><td>",
        escape(&c.file),
        link(file_url(&c.file).as_deref(), &c.file),
        c.applications
    );
    if let Some(error) = &c.error {
        let _ = write!(out, "<code class=\"error\">{}</code>", escape(error));
    } else if c.generated.is_empty() {
        out.push_str("<span class=\"muted\">no application files</span>");
    } else {
        out.push_str("<ul class=\"generated\">");
        for folder in &c.generated {
            let _ = write!(
                out,
                "<li><code>{}/</code></li>",
                link(file_url(folder).as_deref(), folder)
            );
        }
        if c.generated_total > c.generated.len() {
            let _ = write!(
                out,
                "<li class=\"muted\">and {} more</li>",
                c.generated_total - c.generated.len()
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</td></tr>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::record::{BotCommit, Push, Reconcile, Record};
    use crate::daemon::{DaemonStatus, WorkStatus};

    fn status(record: Record) -> Status {
        Status {
            daemon: DaemonStatus::default(),
            repositories: vec![RepositoryStatus {
                repository: "/srv/git/team/gitops.git".into(),
                work: WorkStatus::default(),
                environments: vec![],
                record,
                lease: None,
            }],
        }
    }

    fn claim(file: &str, state: ClaimState, error: Option<&str>) -> ClaimStatus {
        ClaimStatus {
            file: file.into(),
            state,
            error: error.map(str::to_string),
            applications: 2,
            generated: vec!["environments/nonprod/dev/applications/web".into()],
            generated_total: 3,
        }
    }

    #[test]
    fn claims_and_errors_are_escaped() {
        let evil = "claims/b.yaml:3:9: unknown field `<script>alert(1)</script>` & \"more\"";
        let page = render(&status(Record {
            claims: vec![
                claim("claims/a.yaml", ClaimState::Ok, None),
                claim("claims/<b>.yaml", ClaimState::Failed, Some(evil)),
            ],
            ..Record::default()
        }));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains(
            "claims/b.yaml:3:9: unknown field `&lt;script&gt;alert(1)&lt;/script&gt;` &amp; &quot;more&quot;"
        ));
        assert!(page.contains("data-claim=\"claims/a.yaml\" data-state=\"ok\""));
        assert!(page.contains("data-claim=\"claims/&lt;b&gt;.yaml\" data-state=\"failed\""));
        assert!(page.contains("and 2 more"));
        // No Gitea: paths, not links.
        assert!(!page.contains("href"), "{page}");
    }

    #[test]
    fn on_gitea_commits_and_generated_files_are_links() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let page = render(&status(Record {
            gitea: Some("https://gitea.example.com/team/gitops".into()),
            last_push: Some(Push {
                commit: sha.into(),
                reference: "refs/heads/main".into(),
                seen: "2025-01-01T00:00:00Z".into(),
            }),
            last_bot_commit: Some(BotCommit {
                commit: sha.replace('0', "f"),
                seen: "2025-01-01T00:00:01Z".into(),
            }),
            last_reconcile: Some(Reconcile {
                at: "2025-01-01T00:00:01Z".into(),
                ok: true,
                result: "bot commit".into(),
                tip: Some(sha.into()),
            }),
            claims: vec![claim("claims/a b.yaml", ClaimState::Ok, None)],
        }));
        assert!(page.contains(&format!(
            "<a href=\"https://gitea.example.com/team/gitops/commit/{sha}\">0123456789ab</a>"
        )));
        assert!(page.contains(&format!(
            "href=\"https://gitea.example.com/team/gitops/src/commit/{sha}/claims/a%20b.yaml\""
        )));
        assert!(page.contains(&format!(
            "href=\"https://gitea.example.com/team/gitops/src/commit/{sha}/environments/nonprod/dev/applications/web\""
        )));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(page.contains(
            "<h2><a href=\"https://gitea.example.com/team/gitops\">team/gitops</a> <span class=\"muted path\">/srv/git/team/gitops.git</span></h2>"
        ));
    }
}
