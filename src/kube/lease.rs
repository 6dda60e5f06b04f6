//! Leases (coordination.k8s.io/v1) that let several replicas share the repositories,
//! the pure part: the names, what a Lease's fields say about it at a given moment, and
//! each replica's share. The adapter is `daemon/leases.rs`.
//!
//! Expiry is judged two ways, and either suffices: the Lease's record (holder and
//! renewTime) was seen unchanged for a whole `leaseDurationSeconds` on this replica's
//! monotonic clock (no clock comparison at all), or its `renewTime`, written with the
//! holder's clock, is older than the duration plus [`SKEW`] by this replica's clock and
//! the record was also seen unchanged for half a duration (so a replica that starts next
//! to a Lease left long ago need not wait a whole duration, while a replica whose clock
//! runs ahead never takes a Lease its holder renews every third of a duration).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// Label on every Lease claimd keeps; its value says which kind.
pub const LEASE_LABEL: &str = "claimd.dev/lease";
/// A repository's Lease: whoever holds it works on the repository.
pub const REPOSITORY: &str = "repository";
/// A replica's own Lease: every replica counts the live ones.
pub const MEMBER: &str = "member";
/// Bumped by a replica that received an event for a repository it does not hold; the
/// holder watches its Leases and renders when this changes.
pub const WANTED_ANNOTATION: &str = "claimd.dev/wanted";

/// How far another replica's clock may be off ours before its `renewTime` alone says
/// an expiry that is not one.
pub const SKEW: Duration = Duration::from_secs(2);

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The Lease of a repository, named after its identity (its Gitea `owner/name`, else
/// its canonical path): DNS-safe, stable, the same on every replica.
pub fn repository_lease(identity: &str) -> String {
    format!("claimd-repo-{}", short_hash(identity))
}

/// A replica's membership Lease.
pub fn member_lease(identity: &str) -> String {
    format!("claimd-member-{}", short_hash(identity))
}

/// What a Lease says, in plain terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub holder: Option<&'a str>,
    /// `renewTime`, in microseconds since the Unix epoch.
    pub renewed: Option<i64>,
    pub duration_seconds: Option<i32>,
}

/// A Lease, seen from one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Held by this replica (renew it; it may have expired meanwhile, the update's
    /// resourceVersion decides).
    Mine,
    /// Nobody holds it (never held, or released).
    Free,
    /// Its holder stopped renewing.
    Expired,
    /// Another replica holds it.
    Held,
}

/// What `record` says at `now` (microseconds since the epoch, this replica's clock),
/// when it was last seen to change `unchanged_for` ago; `default` is the duration of a
/// Lease that names none.
pub fn state(
    record: &Record,
    me: &str,
    now: i64,
    unchanged_for: Duration,
    default: Duration,
) -> State {
    let holder = match record.holder {
        None | Some("") => return State::Free,
        Some(h) => h,
    };
    if holder == me {
        return State::Mine;
    }
    let duration = record
        .duration_seconds
        .filter(|d| *d > 0)
        .map_or(default, |d| Duration::from_secs(d as u64));
    let by_clock = record.renewed.is_some_and(|renewed| {
        let limit = (duration + SKEW).as_micros() as i64;
        now.saturating_sub(renewed) > limit
    });
    if unchanged_for >= duration || (by_clock && unchanged_for >= duration / 2) {
        State::Expired
    } else {
        State::Held
    }
}

/// What a replica does with its share on one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired repository Leases it may take now.
    pub take: usize,
    /// Let one of its Leases go (it holds more than its part).
    pub release: bool,
}

/// A replica's share of `repositories` among the live members (`held`: how many
/// repository Leases each holds, this replica `me` among them): at most
/// ceil(repositories / members). Above that it lets one go; and so does the most loaded
/// member (ties: the smallest identity) while it holds two more than the least loaded,
/// so a member that joins late gets its part.
pub fn plan(me: &str, held: &BTreeMap<String, usize>, repositories: usize) -> Plan {
    let members = held.len().max(1);
    let share = repositories.div_ceil(members);
    let mine = held.get(me).copied().unwrap_or(0);
    let least = held.values().copied().min().unwrap_or(0);
    // BTreeMap order: the first of the most loaded is the smallest identity.
    let most = held
        .iter()
        .rev()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| id.as_str());
    let unbalanced = mine >= least + 2 && most == Some(me);
    Plan {
        take: share.saturating_sub(mine),
        release: mine > share || unbalanced,
    }
}

/// The order in which `me` tries free Leases: its own, stable for each name and
/// different on each replica, so replicas starting together mostly reach for
/// different repositories.
pub fn preference(me: &str, lease: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(me.as_bytes());
    h.update([0]);
    h.update(lease.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const D: Duration = Duration::from_secs(15);

    fn rec(holder: Option<&str>, renewed: Option<i64>) -> Record<'_> {
        Record {
            holder,
            renewed,
            duration_seconds: Some(15),
        }
    }

    #[test]
    fn names_are_dns_safe_stable_and_distinct() {
        let a = repository_lease("platform/voltran");
        assert_eq!(a, repository_lease("platform/voltran"));
        assert_ne!(a, repository_lease("platform/other"));
        assert_ne!(member_lease("claimd-0"), member_lease("claimd-1"));
        for n in [a, member_lease("Pod_Name.with.dots")] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
        }
    }

    #[test]
    fn a_lease_is_free_mine_held_or_expired() {
        let now = 1_000 * S;
        let fresh = Duration::from_secs(1);
        assert_eq!(state(&rec(None, None), "a", now, fresh, D), State::Free);
        assert_eq!(
            state(&rec(Some(""), Some(now)), "a", now, fresh, D),
            State::Free
        );
        assert_eq!(
            state(&rec(Some("a"), Some(now)), "a", now, fresh, D),
            State::Mine
        );
        // Our own, even long expired: renewing it is ours to try.
        assert_eq!(
            state(&rec(Some("a"), Some(0)), "a", now, D * 9, D),
            State::Mine
        );
        assert_eq!(
            state(&rec(Some("b"), Some(now)), "a", now, fresh, D),
            State::Held
        );
    }

    #[test]
    fn expiry_by_observation_needs_no_clock_agreement() {
        // The holder's clock is an hour ahead: renewTime is in our future.
        let now = 1_000 * S;
        let ahead = rec(Some("b"), Some(now + 3600 * S));
        assert_eq!(
            state(&ahead, "a", now, D - Duration::from_millis(1), D),
            State::Held
        );
        assert_eq!(state(&ahead, "a", now, D, D), State::Expired);
        // No renewTime at all: only observation.
        let none = rec(Some("b"), None);
        assert_eq!(state(&none, "a", now, Duration::ZERO, D), State::Held);
        assert_eq!(state(&none, "a", now, D, D), State::Expired);
    }

    #[test]
    fn expiry_by_renew_time_tolerates_small_skew() {
        let now = 1_000 * S;
        let just_seen = Duration::ZERO;
        // Renewed 16 s ago by its clock: within duration + skew (the holder's clock
        // may be 2 s behind ours).
        let r = rec(Some("b"), Some(now - 16 * S));
        assert_eq!(state(&r, "a", now, just_seen, D), State::Held);
        let r = rec(Some("b"), Some(now - 17 * S - 1));
        assert_eq!(state(&r, "a", now, D / 2, D), State::Expired);
        // Our clock may run far ahead: a Lease its holder keeps renewing (seen to change
        // within a third of the duration) is never taken on the clock alone.
        assert_eq!(state(&r, "a", now, D / 3, D), State::Held);
        // A Lease left long ago is expired after half a duration of looking, not a whole.
        let r = rec(Some("b"), Some(now - 3600 * S));
        assert_eq!(state(&r, "a", now, just_seen, D), State::Held);
        assert_eq!(state(&r, "a", now, D / 2, D), State::Expired);
    }

    #[test]
    fn the_lease_duration_is_the_leases_own() {
        let now = 1_000 * S;
        let short = Record {
            holder: Some("b"),
            renewed: Some(now),
            duration_seconds: Some(3),
        };
        assert_eq!(
            state(&short, "a", now, Duration::from_secs(3), D),
            State::Expired
        );
        let unnamed = Record {
            duration_seconds: None,
            ..short
        };
        assert_eq!(
            state(&unnamed, "a", now, Duration::from_secs(3), D),
            State::Held
        );
        let zero = Record {
            duration_seconds: Some(0),
            ..short
        };
        assert_eq!(state(&zero, "a", now, D, D), State::Expired);
    }

    fn held(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_share_is_the_ceiling_of_repositories_per_live_member() {
        let p = |me, h: &[(&str, usize)], r| plan(me, &held(h), r);
        // Alone: everything.
        assert_eq!(
            p("a", &[("a", 0)], 4),
            Plan {
                take: 4,
                release: false
            }
        );
        // Nobody counted yet (not even itself): as if alone.
        assert_eq!(plan("a", &BTreeMap::new(), 4).take, 4);
        // Three members, four repositories: at most two each.
        assert_eq!(p("a", &[("a", 0), ("b", 0), ("c", 0)], 4).take, 2);
        assert_eq!(p("a", &[("a", 1), ("b", 2), ("c", 1)], 4).take, 1);
        assert_eq!(
            p("b", &[("a", 1), ("b", 2), ("c", 1)], 4),
            Plan {
                take: 0,
                release: false
            }
        );
        // The first replica took all four before the others were seen: it lets go,
        // one a round, down to its share.
        assert_eq!(
            p("a", &[("a", 4), ("b", 0), ("c", 0)], 4),
            Plan {
                take: 0,
                release: true
            }
        );
        assert!(p("a", &[("a", 3), ("b", 1), ("c", 0)], 4).release);
        // Two by two and a late member with none: the most loaded, smallest identity
        // first, lets one go; the other keeps its two.
        assert!(p("a", &[("a", 2), ("b", 2), ("c", 0)], 4).release);
        assert!(!p("b", &[("a", 2), ("b", 2), ("c", 0)], 4).release);
        assert_eq!(p("c", &[("a", 2), ("b", 2), ("c", 0)], 4).take, 2);
        // Balanced: nobody moves.
        for me in ["a", "b", "c"] {
            assert!(!p(me, &[("a", 2), ("b", 1), ("c", 1)], 4).release, "{me}");
            assert!(!p(me, &[("a", 1), ("b", 1), ("c", 1)], 3).release, "{me}");
        }
        // More members than repositories: one each at most.
        assert_eq!(p("a", &[("a", 0), ("b", 1), ("c", 1), ("d", 0)], 2).take, 1);
        assert!(p("a", &[("a", 2), ("b", 0), ("c", 0), ("d", 0)], 2).release);
    }

    #[test]
    fn each_replica_prefers_its_own_order() {
        let names: Vec<String> = (0..8).map(|i| repository_lease(&format!("r{i}"))).collect();
        let order = |me: &str| {
            let mut v = names.clone();
            v.sort_by_key(|n| preference(me, n));
            v
        };
        assert_eq!(order("a"), order("a"));
        assert_ne!(order("a"), order("b"));
    }
}
