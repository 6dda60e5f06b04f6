//! Several replicas, one worker per repository (with `kubernetes.leases`): each
//! repository has a Lease (coordination.k8s.io/v1) and only its holder works on it.
//! Each replica also keeps a membership Lease, so every replica can count the live
//! ones and take no more than its share.
//!
//! - One round every third of the lease duration (the only periodic work): renew the
//!   membership Lease and the held repository Leases, let a Lease go when holding more
//!   than the share, take free or expired ones (expired first) while under it. An API
//!   error stops the work on the Leases it concerns at once and the next round comes
//!   sooner, then later (backoff), until the server answers again.
//! - A watch on the Leases keeps what every replica holds (no polling): a Lease that
//!   names another holder stops the work at once, and a bumped `claimd.dev/wanted`
//!   annotation on a held one asks for a render.
//! - Every take and every update is a compare-and-swap on the Lease's resourceVersion,
//!   so two replicas never both win; a replica that takes a Lease renders the
//!   repository once (a push made while nobody held it is not lost).
//! - An event for a repository this replica does not hold (hook hand-off, webhook)
//!   bumps `claimd.dev/wanted` on its Lease; the holder renders.
//! - A clean stop lets every Lease go (holderIdentity cleared) and deletes the
//!   membership Lease, so the others take over at once.
//!
//! The API server's clock is never compared with ours: see `kube/lease.rs`.

use super::{backoff, want, Daemon, Slot};
use crate::kube::lease::{self, Record, State, LEASE_LABEL, MEMBER, REPOSITORY};
use crate::kube::{LeaseSettings, Settings};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OnceCell};

/// A repository's Lease as one replica sees it (in the slot).
pub struct Hold {
    /// The Lease's name (`claimd-repo-<hash>`).
    pub name: String,
    /// The repository's identity, readable (annotated on the Lease).
    pub repository: String,
    /// Leases are configured (else the repository is always "held").
    enabled: bool,
    /// Held until then (monotonic; a little before others may see it expire).
    until: Mutex<Option<Instant>>,
    /// The `claimd.dev/wanted` value last acted on.
    wanted: Mutex<Option<String>>,
    /// When this replica last let it go (not taken back for a while).
    released: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hold {
    pub fn new(repository: &str, enabled: bool) -> Hold {
        Hold {
            name: lease::repository_lease(repository),
            repository: repository.to_string(),
            enabled,
            until: Mutex::new(None),
            wanted: Mutex::new(None),
            released: Mutex::new(None),
        }
    }

    /// Whether this replica may work on the repository now.
    pub fn held(&self) -> bool {
        !self.enabled || lock(&self.until).is_some_and(|u| Instant::now() < u)
    }

    /// Held until `until`; true if it was not held before.
    fn hold(&self, until: Instant) -> bool {
        let was = self.held();
        *lock(&self.until) = Some(until);
        !was
    }

    /// Not held any more; true if it was.
    fn drop_hold(&self) -> bool {
        let was = self.held();
        *lock(&self.until) = None;
        was && self.enabled
    }
}

/// A repository's Lease in `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {
    pub name: String,
    /// The replica holding it (None: nobody, or its holder stopped renewing).
    pub holder: Option<String>,
    pub held_by_me: bool,
}

/// A Lease as last seen, and when its record (holder, renewTime) last changed.
struct Seen {
    lease: Lease,
    record: (Option<String>, Option<i64>),
    changed: Instant,
}

/// The replica's side of the Leases.
pub struct Leases {
    kube: Settings,
    namespace: Option<String>,
    pub identity: String,
    duration: Duration,
    api: OnceCell<Api<Lease>>,
    /// Every Lease of claimd in the namespace, kept by the watch (and by our writes).
    cache: Mutex<HashMap<String, Seen>>,
    /// The watch has listed the Leases once.
    synced: AtomicBool,
    /// Rounds done (the first only registers this replica: the others see it before
    /// anybody takes a share).
    rounds: AtomicU64,
    /// A round that may take Leases was done.
    taking: AtomicBool,
    /// Latched once every held repository was reconciled after the first round.
    ready: AtomicBool,
    /// A round at a time; a stop waits for the running one.
    round: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
    stop: Notify,
    tokens: AtomicU64,
}

fn micros(t: &MicroTime) -> i64 {
    t.0.as_microsecond()
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn record_of(l: &Lease) -> (Option<String>, Option<i64>) {
    let spec = l.spec.as_ref();
    (
        spec.and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        spec.and_then(|s| s.renew_time.as_ref()).map(micros),
    )
}

fn holder_of(l: &Lease) -> Option<&str> {
    l.spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

fn kind_of(l: &Lease) -> Option<&str> {
    l.metadata
        .labels
        .as_ref()?
        .get(LEASE_LABEL)
        .map(String::as_str)
}

/// Whether `a` is an older version than `b`. resourceVersions are opaque to clients;
/// the API server's are etcd revisions, numbers that only grow, and a version that is
/// not a number is never taken for older.
fn older(a: &Lease, b: &Lease) -> bool {
    let rv = |l: &Lease| l.metadata.resource_version.as_deref()?.parse::<u64>().ok();
    matches!((rv(a), rv(b)), (Some(a), Some(b)) if a < b)
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Leases {
    pub fn new(kube: &Settings, settings: &LeaseSettings) -> Arc<Leases> {
        Arc::new(Leases {
            kube: kube.clone(),
            namespace: settings.namespace.clone(),
            identity: settings.identity(),
            duration: Duration::from_secs(settings.duration_seconds.max(1) as u64),
            api: OnceCell::new(),
            cache: Mutex::default(),
            synced: AtomicBool::new(false),
            rounds: AtomicU64::new(0),
            taking: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            round: tokio::sync::Mutex::new(()),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            tokens: AtomicU64::new(0),
        })
    }

    async fn api(&self) -> Result<Api<Lease>, String> {
        self.api
            .get_or_try_init(|| async {
                let client = crate::kube::cluster::client(&self.kube)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        "no Kubernetes cluster is configured (kubernetes.kubeconfig)".to_string()
                    })?;
                let ns = self
                    .namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_string());
                Ok(Api::namespaced(client, &ns))
            })
            .await
            .cloned()
    }

    fn period(&self) -> Duration {
        self.duration / 3
    }

    /// Held until: a little before anybody else may take it over.
    fn until(&self, start: Instant) -> Instant {
        start + self.duration * 5 / 6
    }

    /// Records a Lease as seen now; its record's change time moves only if it changed.
    /// False for a version older than the one already seen (a watch event that arrives
    /// after our own update returned): it is ignored.
    fn observe(&self, l: &Lease) -> bool {
        let Some(name) = l.metadata.name.clone() else {
            return false;
        };
        let record = record_of(l);
        let mut cache = lock(&self.cache);
        match cache.get_mut(&name) {
            Some(seen) if older(l, &seen.lease) => false,
            Some(seen) if seen.record == record => {
                seen.lease = l.clone();
                true
            }
            _ => {
                cache.insert(
                    name,
                    Seen {
                        lease: l.clone(),
                        record,
                        changed: Instant::now(),
                    },
                );
                true
            }
        }
    }

    fn cached(&self, name: &str) -> Option<Lease> {
        lock(&self.cache).get(name).map(|s| s.lease.clone())
    }

    fn state(&self, name: &str) -> Option<State> {
        let cache = lock(&self.cache);
        let seen = cache.get(name)?;
        Some(self.state_of(seen))
    }

    fn state_of(&self, seen: &Seen) -> State {
        let r = Record {
            holder: seen.record.0.as_deref(),
            renewed: seen.record.1,
            duration_seconds: seen
                .lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds),
        };
        lease::state(
            &r,
            &self.identity,
            Timestamp::now().as_microsecond(),
            seen.changed.elapsed(),
            self.duration,
        )
    }

    /// A new Lease of `kind` held by this replica.
    fn fresh(&self, name: &str, kind: &str, repository: Option<&str>) -> Lease {
        let t = now();
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(BTreeMap::from([
                    (LEASE_LABEL.to_string(), kind.to_string()),
                    (
                        crate::kube::objects::MANAGED_BY_LABEL.to_string(),
                        crate::kube::objects::MANAGED_BY.to_string(),
                    ),
                ])),
                annotations: repository.map(|r| {
                    BTreeMap::from([(
                        crate::kube::objects::REPOSITORY_ANNOTATION.to_string(),
                        r.to_string(),
                    )])
                }),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration.as_secs() as i32),
                acquire_time: Some(t.clone()),
                renew_time: Some(t),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Compare-and-swap on a Lease: `change` edits the current one (false: leave it),
    /// `create` makes it when there is none. A conflict re-reads it and tries once more.
    /// Ok(None): left alone, or another replica was quicker.
    async fn update(
        &self,
        api: &Api<Lease>,
        name: &str,
        change: impl Fn(&Leases, &mut Lease) -> bool,
        create: impl Fn() -> Option<Lease>,
    ) -> Result<Option<Lease>, kube::Error> {
        let mut current = match self.cached(name) {
            Some(l) => Some(l),
            None => {
                let l = api.get_opt(name).await?;
                if let Some(l) = &l {
                    self.observe(l);
                }
                l
            }
        };
        for attempt in 0..2 {
            let result = match current.take() {
                None => match create() {
                    Some(l) => api.create(&PostParams::default(), &l).await,
                    None => return Ok(None),
                },
                Some(mut l) => {
                    if !change(self, &mut l) {
                        return Ok(None);
                    }
                    api.replace(name, &PostParams::default(), &l).await
                }
            };
            match result {
                Ok(l) => {
                    self.observe(&l);
                    return Ok(Some(l));
                }
                Err(e) if (conflict(&e) || not_found(&e)) && attempt == 0 => {
                    current = api.get_opt(name).await?;
                    if let Some(l) = &current {
                        self.observe(l);
                    }
                }
                Err(e) if conflict(&e) || not_found(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn renewed(&self, l: &mut Lease) {
        let spec = l.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
    }

    async fn renew_member(&self, api: &Api<Lease>) -> Result<(), kube::Error> {
        let name = lease::member_lease(&self.identity);
        self.update(
            api,
            &name,
            |me, l| {
                me.renewed(l);
                l.spec
                    .get_or_insert_with(LeaseSpec::default)
                    .holder_identity = Some(me.identity.clone());
                true
            },
            || Some(self.fresh(&name, MEMBER, None)),
        )
        .await
        .map(|_| ())
    }

    /// Renews a held Lease; a Lease another replica took stops the work at once.
    async fn renew(&self, api: &Api<Lease>, slot: &Arc<Slot>) -> Result<(), kube::Error> {
        let hold = &slot.lease;
        let start = Instant::now();
        let result = self
            .update(
                api,
                &hold.name,
                |me, l| {
                    if holder_of(l) != Some(me.identity.as_str()) {
                        return false;
                    }
                    me.renewed(l);
                    true
                },
                || None,
            )
            .await;
        match result {
            Ok(Some(l)) => {
                if hold.hold(self.until(start)) {
                    // Held again after a failed renewal: look at the repository anew.
                    tracing::info!(repository = %hold.repository, lease = %hold.name, "lease renewed again");
                    self.took(slot, &l);
                } else {
                    tracing::trace!(lease = %hold.name, "lease renewed");
                    // A push handed to us may have raced with this renewal (conflict,
                    // re-read): the Lease written is the newest.
                    self.wanted(slot, &l);
                }
                Ok(())
            }
            Ok(None) => {
                if hold.drop_hold() {
                    let holder = self.cached(&hold.name);
                    let holder = holder.as_ref().and_then(holder_of).unwrap_or("nobody");
                    tracing::info!(repository = %hold.repository, lease = %hold.name, %holder, "lease lost: this replica stops working on the repository");
                }
                Ok(())
            }
            Err(e) => {
                if hold.drop_hold() {
                    tracing::warn!(repository = %hold.repository, lease = %hold.name, error = %e, "lease not renewed: this replica stops working on the repository");
                }
                Err(e)
            }
        }
    }

    /// This replica (again) holds `l`: the repository is rendered once.
    fn took(&self, slot: &Arc<Slot>, l: &Lease) {
        *lock(&slot.lease.wanted) = wanted_of(l);
        slot.ask(want::RENDER);
    }

    async fn acquire(&self, api: &Api<Lease>, slot: &Arc<Slot>) -> Result<bool, kube::Error> {
        let hold = &slot.lease;
        let start = Instant::now();
        let previous = self
            .cached(&hold.name)
            .as_ref()
            .and_then(holder_of)
            .map(str::to_string);
        let result = self
            .update(
                api,
                &hold.name,
                |me, l| {
                    let seen = lock(&me.cache);
                    let state = seen.get(&hold.name).map(|s| me.state_of(s));
                    drop(seen);
                    if !matches!(state, Some(State::Free | State::Expired) | None) {
                        return false;
                    }
                    let spec = l.spec.get_or_insert_with(LeaseSpec::default);
                    let transitions = spec.lease_transitions.unwrap_or(0);
                    if spec
                        .holder_identity
                        .as_deref()
                        .is_some_and(|h| !h.is_empty())
                    {
                        spec.lease_transitions = Some(transitions + 1);
                    }
                    spec.holder_identity = Some(me.identity.clone());
                    spec.acquire_time = Some(now());
                    me.renewed(l);
                    let annotations = l.metadata.annotations.get_or_insert_with(BTreeMap::new);
                    annotations
                        .entry(crate::kube::objects::REPOSITORY_ANNOTATION.to_string())
                        .or_insert_with(|| hold.repository.clone());
                    true
                },
                || Some(self.fresh(&hold.name, REPOSITORY, Some(&hold.repository))),
            )
            .await?;
        let Some(l) = result else {
            return Ok(false);
        };
        hold.hold(self.until(start));
        match previous {
            Some(from) => {
                tracing::info!(repository = %hold.repository, lease = %hold.name, %from, "lease taken over")
            }
            None => {
                tracing::info!(repository = %hold.repository, lease = %hold.name, "lease taken")
            }
        }
        self.took(slot, &l);
        Ok(true)
    }

    /// Lets a Lease go (holderIdentity cleared): another replica takes it at once.
    async fn release(&self, api: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
        self.update(
            api,
            name,
            |me, l| {
                let spec = l.spec.get_or_insert_with(LeaseSpec::default);
                if spec.holder_identity.as_deref() != Some(me.identity.as_str()) {
                    return false;
                }
                spec.holder_identity = None;
                true
            },
            || None,
        )
        .await
        .map(|_| ())
    }

    /// One round: renew, balance, take.
    async fn round(&self, daemon: &Arc<Daemon>, api: &Api<Lease>) -> Result<(), kube::Error> {
        let slots: Vec<Arc<Slot>> = lock(&daemon.slots).values().cloned().collect();
        if let Err(e) = self.renew_member(api).await {
            for slot in &slots {
                if slot.lease.drop_hold() {
                    tracing::warn!(repository = %slot.lease.repository, error = %e, "leases not renewed: this replica stops working on the repository");
                }
            }
            return Err(e);
        }
        let mut failed = None;
        for slot in &slots {
            let mine = self.state(&slot.lease.name) == Some(State::Mine);
            if mine || slot.lease.held() {
                if let Err(e) = self.renew(api, slot).await {
                    failed = Some(e);
                }
            }
        }
        // Leases of repositories no longer configured.
        let names: HashSet<&str> = slots.iter().map(|s| s.lease.name.as_str()).collect();
        let orphans: Vec<String> = lock(&self.cache)
            .iter()
            .filter(|(name, seen)| {
                kind_of(&seen.lease) == Some(REPOSITORY)
                    && seen.record.0.as_deref() == Some(self.identity.as_str())
                    && !names.contains(name.as_str())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in orphans {
            self.release(api, &name).await?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !self.synced.load(Ordering::SeqCst) || self.rounds.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        // Who is alive, and what each holds.
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut holders: Vec<String> = Vec::new();
        {
            let cache = lock(&self.cache);
            for seen in cache.values() {
                let live = matches!(self.state_of(seen), State::Mine | State::Held);
                match (kind_of(&seen.lease), &seen.record.0) {
                    (Some(MEMBER), Some(id)) if live => {
                        counts.entry(id.clone()).or_insert(0);
                    }
                    (Some(REPOSITORY), Some(id)) if live => {
                        if let Some(name) = &seen.lease.metadata.name {
                            if names.contains(name.as_str()) {
                                holders.push(id.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        counts.entry(self.identity.clone()).or_insert(0);
        let held: Vec<&Arc<Slot>> = slots.iter().filter(|s| s.lease.held()).collect();
        for id in holders {
            if let Some(n) = counts.get_mut(&id) {
                *n += 1;
            }
        }
        counts.insert(self.identity.clone(), held.len());
        let plan = lease::plan(&self.identity, &counts, slots.len());
        self.taking.store(true, Ordering::SeqCst);
        if plan.release {
            // The last in this replica's order that is not rendering right now.
            let mut mine: Vec<&&Arc<Slot>> = held
                .iter()
                .filter(|s| !s.busy.load(Ordering::SeqCst))
                .collect();
            mine.sort_by_key(|s| lease::preference(&self.identity, &s.lease.name));
            if let Some(slot) = mine.last() {
                slot.lease.drop_hold();
                *lock(&slot.lease.released) = Some(Instant::now());
                self.release(api, &slot.lease.name).await?;
                tracing::info!(repository = %slot.lease.repository, lease = %slot.lease.name, members = counts.len(), "lease let go: another replica takes its share");
            }
            return Ok(());
        }
        if plan.take == 0 {
            return Ok(());
        }
        // Free and expired Leases: expired first, then in this replica's order.
        let mut candidates: Vec<(bool, [u8; 32], &Arc<Slot>)> = slots
            .iter()
            .filter(|s| !s.lease.held())
            .filter(|s| lock(&s.lease.released).is_none_or(|t| t.elapsed() >= self.duration * 2))
            .filter_map(|s| match self.state(&s.lease.name) {
                None | Some(State::Free) => Some((false, s)),
                Some(State::Expired) => Some((true, s)),
                Some(State::Mine | State::Held) => None,
            })
            .map(|(expired, s)| {
                (
                    !expired,
                    lease::preference(&self.identity, &s.lease.name),
                    s,
                )
            })
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        let mut taken = 0;
        for (_, _, slot) in candidates {
            if taken == plan.take {
                break;
            }
            if self.acquire(api, slot).await? {
                taken += 1;
            }
        }
        Ok(())
    }

    /// How long until the first repository Lease another replica holds expires, if it
    /// is not renewed meanwhile (a holder that stops is taken over at once, not up to a
    /// round later).
    fn next_expiry(&self) -> Option<Duration> {
        let cache = lock(&self.cache);
        cache
            .values()
            .filter(|seen| kind_of(&seen.lease) == Some(REPOSITORY))
            .filter(|seen| self.state_of(seen) == State::Held)
            .map(|seen| {
                let d = seen
                    .lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_duration_seconds)
                    .filter(|d| *d > 0)
                    .map_or(self.duration, |d| Duration::from_secs(d as u64));
                d.saturating_sub(seen.changed.elapsed())
            })
            .min()
    }

    /// What the watch saw: a Lease another replica took stops our work on it; a bumped
    /// `claimd.dev/wanted` on one we hold asks for a render.
    fn seen(&self, daemon: &Weak<Daemon>, l: &Lease) {
        if !self.observe(l) || kind_of(l) != Some(REPOSITORY) {
            return;
        }
        let Some(daemon) = daemon.upgrade() else {
            return;
        };
        let name = l.metadata.name.as_deref().unwrap_or_default();
        let slot = lock(&daemon.slots)
            .values()
            .find(|s| s.lease.name == name)
            .cloned();
        let Some(slot) = slot else {
            return;
        };
        let hold = &slot.lease;
        if holder_of(l) != Some(self.identity.as_str()) {
            if hold.drop_hold() {
                let holder = holder_of(l).unwrap_or("nobody");
                tracing::info!(repository = %hold.repository, lease = %hold.name, %holder, "lease lost: this replica stops working on the repository");
            }
            return;
        }
        if !hold.held() {
            return;
        }
        self.wanted(&slot, l);
    }

    /// A held Lease as last seen (watch or our own update): renders when its
    /// `claimd.dev/wanted` changed since we last acted on it.
    fn wanted(&self, slot: &Arc<Slot>, l: &Lease) {
        let hold = &slot.lease;
        let wanted = wanted_of(l);
        let mut last = lock(&hold.wanted);
        if *last != wanted {
            *last = wanted;
            drop(last);
            tracing::debug!(repository = %hold.repository, "another replica received a push: rendering");
            slot.ask(want::RENDER);
        }
    }

    /// An event (a push) for a repository this replica does not hold: the holder is
    /// told through the Lease's `claimd.dev/wanted`. No Lease yet: whoever takes it
    /// renders anyway.
    pub(super) fn forward(self: &Arc<Self>, slot: &Arc<Slot>) {
        let (leases, name, repository) = (
            self.clone(),
            slot.lease.name.clone(),
            slot.lease.repository.clone(),
        );
        let token = format!(
            "{}/{}/{}",
            self.identity,
            self.tokens.fetch_add(1, Ordering::SeqCst),
            Timestamp::now().as_microsecond()
        );
        tokio::spawn(async move {
            let patch = serde_json::json!({
                "metadata": {"annotations": {lease::WANTED_ANNOTATION: token}}
            });
            for attempt in 1..=6u32 {
                let result = match leases.api().await {
                    Ok(api) => api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| (not_found(&e), e.to_string())),
                    Err(e) => Err((false, e)),
                };
                match result {
                    Ok(()) => {
                        tracing::debug!(%repository, lease = %name, "push handed to the lease's holder");
                        return;
                    }
                    Err((true, _)) => {
                        tracing::debug!(%repository, "no lease yet: the replica that takes it renders");
                        return;
                    }
                    Err((false, e)) if attempt == 6 => {
                        tracing::warn!(%repository, error = %e, "could not hand a push to the lease's holder; it is rendered when the lease next changes hands");
                    }
                    Err(_) => tokio::time::sleep(backoff(attempt)).await,
                }
            }
        });
    }

    /// The repository's Lease for `GET /v1/status`.
    pub fn status(&self, hold: &Hold) -> LeaseStatus {
        let holder = lock(&self.cache)
            .get(&hold.name)
            .and_then(|seen| match self.state_of(seen) {
                State::Mine | State::Held => seen.record.0.clone(),
                State::Free | State::Expired => None,
            });
        LeaseStatus {
            name: hold.name.clone(),
            holder,
            held_by_me: hold.held(),
        }
    }

    /// Ready once a round that may take Leases was done and every repository held then
    /// was reconciled.
    pub(super) fn ready(&self, slots: &HashMap<std::path::PathBuf, Arc<Slot>>) -> bool {
        if self.ready.load(Ordering::SeqCst) {
            return true;
        }
        let ready = self.taking.load(Ordering::SeqCst)
            && slots
                .values()
                .all(|s| !s.lease.held() || s.work.reconciles.load(Ordering::SeqCst) > 0);
        if ready {
            self.ready.store(true, Ordering::SeqCst);
        }
        ready
    }

    /// A clean stop: no more rounds, the running reconciles finish, every Lease this
    /// replica holds is let go and its membership Lease deleted.
    pub(super) async fn release_all(&self, daemon: &Arc<Daemon>) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        let _round = self.round.lock().await;
        let slots: Vec<Arc<Slot>> = lock(&daemon.slots).values().cloned().collect();
        for slot in &slots {
            slot.lease.drop_hold();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while slots.iter().any(|s| s.busy.load(Ordering::SeqCst)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(api) = self.api.get() else {
            return;
        };
        let mine: Vec<String> = lock(&self.cache)
            .iter()
            .filter(|(_, s)| {
                kind_of(&s.lease) == Some(REPOSITORY)
                    && s.record.0.as_deref() == Some(self.identity.as_str())
            })
            .map(|(name, _)| name.clone())
            .collect();
        let releases = mine.iter().map(|name| self.release(api, name));
        let all = futures_util::future::join_all(releases);
        match tokio::time::timeout(Duration::from_secs(5), all).await {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                tracing::info!(
                    released = mine.len() - failed,
                    failed,
                    "leases let go: other replicas take over"
                );
            }
            Err(_) => tracing::warn!("letting the leases go timed out: they expire instead"),
        }
        let member = lease::member_lease(&self.identity);
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            api.delete(&member, &DeleteParams::default()),
        )
        .await;
    }
}

fn wanted_of(l: &Lease) -> Option<String> {
    l.metadata
        .annotations
        .as_ref()?
        .get(lease::WANTED_ANNOTATION)
        .cloned()
}

/// The rounds: connect, start the watch, then renew, balance and take every third of
/// the lease duration (sooner, then backing off, after an API error).
pub(super) async fn run(daemon: Weak<Daemon>, leases: Arc<Leases>) {
    let mut failures = 0u32;
    let api = loop {
        match leases.api().await {
            Ok(api) => break api,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::error!(error = %e, "leases: cannot reach the cluster; this replica works on no repository until it can");
                }
                if leases.pause(backoff(failures)).await {
                    return;
                }
            }
        }
    };
    tracing::info!(identity = %leases.identity, namespace = %api_namespace(&api), duration = ?leases.duration, "leases: this replica works only on the repositories whose lease it holds");
    tokio::spawn(watch(daemon.clone(), leases.clone(), api.clone()));
    // Let the watch list the Leases (members included) before taking any, and start
    // after a short delay of this replica's own so that replicas started together do
    // not all reach at the same moment.
    let listed = Instant::now();
    while !leases.synced.load(Ordering::SeqCst) && listed.elapsed() < leases.duration {
        if leases.pause(Duration::from_millis(50)).await {
            return;
        }
    }
    let jitter = u64::from_le_bytes(
        lease::preference(&leases.identity, "start")[..8]
            .try_into()
            .unwrap_or_default(),
    ) % (leases.period().as_millis().max(1) as u64);
    if leases.pause(Duration::from_millis(jitter)).await {
        return;
    }
    failures = 0;
    loop {
        let Some(d) = daemon.upgrade() else {
            return;
        };
        let result = {
            let _round = leases.round.lock().await;
            if leases.stopped.load(Ordering::SeqCst) {
                return;
            }
            leases.round(&d, &api).await
        };
        drop(d);
        leases.rounds.fetch_add(1, Ordering::SeqCst);
        let delay = match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!("leases: the API server answers again");
                }
                failures = 0;
                let expiry = leases.next_expiry().map(|e| e + Duration::from_millis(50));
                expiry.map_or(leases.period(), |e| e.min(leases.period()))
            }
            Err(e) => {
                failures += 1;
                let delay = backoff(failures);
                if failures == 1 {
                    tracing::warn!(error = %e, retry_in = ?delay, "leases: the API server did not answer");
                } else {
                    tracing::debug!(error = %e, retry_in = ?delay, "leases: the API server did not answer");
                }
                delay
            }
        };
        if leases.pause(delay).await {
            return;
        }
    }
}

fn api_namespace(api: &Api<Lease>) -> String {
    api.namespace().unwrap_or_default().to_string()
}

impl Leases {
    /// Waits `delay`; true if the daemon stops meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        if self.stopped.load(Ordering::SeqCst) {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {},
            _ = self.stop.notified() => {},
        }
        self.stopped.load(Ordering::SeqCst)
    }
}

/// Keeps the cache of Leases (a kube watch; it relists and reconnects with backoff).
async fn watch(daemon: Weak<Daemon>, leases: Arc<Leases>, api: Api<Lease>) {
    use futures_util::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let stream = watcher(api, watcher::Config::default().labels(LEASE_LABEL)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        if leases.stopped.load(Ordering::SeqCst) || daemon.strong_count() == 0 {
            return;
        }
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(l)) => {
                listed.extend(l.metadata.name.clone());
                leases.seen(&daemon, &l);
            }
            Ok(watcher::Event::InitDone) => {
                lock(&leases.cache).retain(|name, _| listed.contains(name));
                leases.synced.store(true, Ordering::SeqCst);
            }
            Ok(watcher::Event::Apply(l)) => leases.seen(&daemon, &l),
            Ok(watcher::Event::Delete(l)) => {
                if let Some(name) = &l.metadata.name {
                    lock(&leases.cache).remove(name);
                }
            }
            Err(e) => tracing::debug!(error = %e, "watching leases"),
        }
    }
}
