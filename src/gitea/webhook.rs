//! Gitea's push webhook, receiver side: the signature (`X-Gitea-Signature`, checked
//! before anything else is read), the push event, redeliveries, and what a push asks
//! of claimd (render, or nothing and why).

use super::{Error, Secret};
use crate::git::SOURCE_TRAILER;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Bodies larger than this are refused before they are read (a push event of a
/// hundred commits is well below; Gitea caps the commits it lists).
pub const MAX_BODY: u64 = 1 << 20;

/// Whether `signature` (lowercase hex of the HMAC-SHA256 of the raw body keyed with the
/// hook's secret, no prefix: Gitea's `X-Gitea-Signature`) is right. Constant time.
pub fn verify(secret: &Secret, body: &[u8], signature: &str) -> bool {
    let Ok(signature) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The fields of Gitea's push event (`PushPayload`) claimd reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Push {
    #[serde(rename = "ref")]
    pub reference: String,
    pub before: String,
    pub after: String,
    pub repository: Repository,
    #[serde(default)]
    pub head_commit: Option<Commit>,
    #[serde(default)]
    pub commits: Vec<Commit>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub id: String,
    #[serde(default)]
    pub message: String,
    pub author: Person,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Person {
    #[serde(default)]
    pub email: String,
}

/// A push event from its (verified) body.
pub fn parse(body: &[u8]) -> Result<Push, Error> {
    serde_json::from_slice(body).map_err(Error::Payload)
}

/// What a push asks of claimd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Render,
    /// Another branch (a pull request's): render it without committing, for review.
    Preview,
    Ignore(&'static str),
}

impl Push {
    /// For a repository whose branch `branch` claimd renders, committing as `bot_email`.
    pub fn verdict(&self, branch: &str, bot_email: &str) -> Verdict {
        let Some(pushed) = self.reference.strip_prefix("refs/heads/") else {
            return Verdict::Ignore("not a branch (a tag or another ref)");
        };
        if self.after.bytes().all(|b| b == b'0') {
            return Verdict::Ignore("the branch was deleted");
        }
        if pushed != branch {
            return Verdict::Preview;
        }
        let trailer = format!("{SOURCE_TRAILER}: ");
        if let Some(head) = &self.head_commit {
            if head.author.email == bot_email
                && head.message.lines().any(|l| l.starts_with(&trailer))
            {
                return Verdict::Ignore("claimd's own bot commit");
            }
        }
        Verdict::Render
    }
}

impl Push {
    /// The claim files the push adds or changes (`claims/**.yaml`), sorted.
    pub fn claim_files(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .commits
            .iter()
            .flat_map(|c| c.added.iter().chain(&c.modified))
            .filter(|p| p.starts_with("claims/") && (p.ends_with(".yaml") || p.ends_with(".yml")))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Delivery ids (`X-Gitea-Delivery`) seen lately: Gitea redelivers a hook task (the
/// "Redeliver" button, a timeout on its side) with the same id.
pub struct Deliveries {
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    capacity: usize,
}

impl Deliveries {
    pub fn new(capacity: usize) -> Deliveries {
        Deliveries {
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
        }
    }

    /// True the first time `id` is seen (the oldest ids are forgotten past `capacity`).
    pub fn first(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *seen;
        if set.contains(id) {
            return false;
        }
        if order.len() >= self.capacity {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        set.insert(id.to_string());
        order.push_back(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_hmac_sha256() {
        // RFC 4231, test case 2.
        let secret = Secret::new("Jefe");
        let body = b"what do ya want for nothing?";
        let good = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(verify(&secret, body, good));
        assert!(verify(&secret, body, &format!("{good}\n")));
        assert!(!verify(&secret, b"what do ya want for nothing!", good));
        assert!(!verify(&Secret::new("jefe"), body, good));
        assert!(!verify(&secret, body, &good[..62]));
        assert!(!verify(&secret, body, &format!("sha256={good}")));
        assert!(!verify(&secret, body, ""));
    }

    fn push(reference: &str, after: &str, email: &str, message: &str) -> Push {
        let body = serde_json::json!({
            "ref": reference, "before": "1".repeat(40), "after": after,
            "repository": {"full_name": "platform/voltran"},
            "head_commit": {"id": after, "message": message, "author": {"email": email}},
            "commits": [],
        });
        parse(body.to_string().as_bytes()).expect("parse")
    }

    #[test]
    fn only_pushes_to_the_rendered_branch_by_someone_else_render() {
        let a = "a".repeat(40);
        let bot = "claimd@localhost";
        let user = push("refs/heads/main", &a, "dev@example.com", "Add claims\n");
        assert_eq!(user.verdict("main", bot), Verdict::Render);
        assert_eq!(
            push("refs/tags/v1", &a, "dev@example.com", "x").verdict("main", bot),
            Verdict::Ignore("not a branch (a tag or another ref)")
        );
        assert_eq!(user.verdict("production", bot), Verdict::Preview);
        assert_eq!(
            push("refs/heads/main", &"0".repeat(40), "dev@example.com", "x").verdict("main", bot),
            Verdict::Ignore("the branch was deleted")
        );
        let own = format!("claimd: render claims/a.yaml\n\n{SOURCE_TRAILER}: {a}\n");
        assert_eq!(
            push("refs/heads/main", &a, bot, &own).verdict("main", bot),
            Verdict::Ignore("claimd's own bot commit")
        );
        // The trailer alone, from someone else, is not the bot.
        assert_eq!(
            push("refs/heads/main", &a, "dev@example.com", &own).verdict("main", bot),
            Verdict::Render
        );
    }

    #[test]
    fn a_redelivery_is_seen_once_and_old_ids_are_forgotten() {
        let d = Deliveries::new(2);
        assert!(d.first("a"));
        assert!(!d.first("a"));
        assert!(d.first("b"));
        assert!(d.first("c"));
        assert!(d.first("a"), "forgotten past the capacity");
        assert!(!d.first("c"));
    }

    #[test]
    fn a_malformed_body_is_a_payload_error() {
        assert!(matches!(parse(b"{\"ref\": 1}"), Err(Error::Payload(_))));
        assert!(matches!(parse(b"not json"), Err(Error::Payload(_))));
    }
}
