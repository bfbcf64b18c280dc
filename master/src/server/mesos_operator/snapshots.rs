//! Read snapshots the core publishes (issue 19, item 3): every read of the master's state
//! (`GET /state`, `GetState`, `/master/state`, `GET_STATE`, the web UI, the operator event
//! stream) is served from an `Arc` the core task published, never by a closure run on it.
//!
//! # How it works
//! - The core task counts its *changes* (one per batch of commands, one per tick that sent
//!   anything) in [`Snapshots::changes`].
//! - A reader that wants a fresh view ([`Snapshots::fresh`]) compares the published snapshot's
//!   `version` with that count. Equal: it is answered at once from the `Arc` (no work on the
//!   core). Behind: it raises a flag and waits for the next publish.
//! - After each batch or tick the core asks its [`Publisher`] whether to build: only when
//!   something changed since the last build, someone wants it (a waiting reader, or live event
//!   subscribers), and enough time passed since the last build: at least `min_interval_ms`
//!   (100 ms), and at least the last build's duration divided by [`Publisher::BUDGET`] (3 %).
//!   So however many readers poll, building snapshots takes at most 3 % of the core's time
//!   (a 10,000-agent snapshot takes tens of ms: one every second or two), none while nobody
//!   reads; a reader in a quiet cluster is answered within the same batch.
//! - Reads are read-your-writes: a reply to a change is sent after the change is counted, so a
//!   read that follows it waits for a snapshot built after it.
//!
//! The published [`Published`] is never mutated; filtering by ACLs and conversions
//! (Mesos JSON, protobuf) happen on the reader's task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use proffer_proto::v1;
use tokio::sync::{Notify, broadcast, watch};

use super::events::Change;

/// How long a reader waits for a fresh snapshot before it takes the latest one.
const FRESH_WAIT: Duration = Duration::from_secs(2);
/// Changes queued per event subscriber before it counts as lagging (then its stream ends).
pub const EVENT_QUEUE: usize = 1024;

/// One published view of the master.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The core's change count when this was built ([`Snapshots::changes`]).
    pub version: u64,
    /// The state (unfiltered; filter per caller with `filter_snapshot`).
    pub state: v1::StateSnapshot,
    /// Every role the allocator knows (unfiltered).
    pub roles: Vec<v1::RoleSummary>,
    /// The master's counters.
    pub stats: crate::core::MasterStats,
}

/// What the core and the readers share.
#[derive(Debug)]
struct Inner {
    tx: watch::Sender<Arc<Published>>,
    /// The core's change count.
    changes: AtomicU64,
    /// A reader waits for a snapshot newer than the published one.
    wanted: AtomicBool,
    /// Live operator event subscribers (they keep snapshots coming while anything changes).
    subscribers: AtomicUsize,
    /// Changes between consecutive snapshots, for the event streams (see `events`).
    events: broadcast::Sender<Arc<Change>>,
    /// How many snapshots the core built (for benchmarks and `/metrics/snapshot`).
    builds: AtomicU64,
    /// Wakes the core task when a reader wants a snapshot.
    wake: Arc<Notify>,
}

/// The readers' handle to the published snapshots (cheap to clone).
#[derive(Debug, Clone)]
pub struct Snapshots {
    inner: Arc<Inner>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots::new()
    }
}

impl Snapshots {
    /// An empty publication (version 0, nothing built yet; the core's first build is 1).
    pub fn new() -> Snapshots {
        let (tx, _) = watch::channel(Arc::new(Published::default()));
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        Snapshots {
            inner: Arc::new(Inner {
                tx,
                // Version 0 (the empty default) is behind from the start: a read before the
                // core's first build waits for it rather than seeing an empty master.
                changes: AtomicU64::new(1),
                wanted: AtomicBool::new(false),
                subscribers: AtomicUsize::new(0),
                events,
                builds: AtomicU64::new(0),
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// The latest published snapshot (possibly behind the core; never waits).
    pub fn latest(&self) -> Arc<Published> {
        self.inner.tx.borrow().clone()
    }

    /// The core's change count (a snapshot with this `version` is up to date).
    pub fn changes(&self) -> u64 {
        self.inner.changes.load(Ordering::Acquire)
    }

    /// How many snapshots the core has built.
    pub fn builds(&self) -> u64 {
        self.inner.builds.load(Ordering::Relaxed)
    }

    /// A snapshot that includes every change made before this call: the latest one if it is
    /// current, else the next one the core builds (waiting at most 2 s, then the latest).
    pub async fn fresh(&self) -> Arc<Published> {
        let target = self.changes();
        let mut rx = self.inner.tx.subscribe();
        let current = rx.borrow_and_update().clone();
        if current.version >= target {
            return current;
        }
        self.want();
        let wait = rx.wait_for(|p| p.version >= target);
        match tokio::time::timeout(FRESH_WAIT, wait).await {
            Ok(Ok(p)) => p.clone(),
            // Timed out, or the core stopped: the latest is the best there is.
            _ => self.latest(),
        }
    }

    /// Asks the core for a snapshot newer than the published one (it builds one when due).
    pub fn want(&self) {
        self.inner.wanted.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// A receiver of published snapshots (for live views).
    pub fn watch(&self) -> watch::Receiver<Arc<Published>> {
        self.inner.tx.subscribe()
    }

    /// Subscribes to the operator event stream: the changes between consecutive snapshots,
    /// from the next publish on. Snapshots keep coming (every `min_interval_ms` while anything
    /// changes) until the returned guard is dropped.
    pub fn subscribe_events(&self) -> EventSubscription {
        self.inner.subscribers.fetch_add(1, Ordering::AcqRel);
        EventSubscription {
            rx: self.inner.events.subscribe(),
            inner: self.inner.clone(),
        }
    }

    /// Sends one change to the event subscribers (the diff task's side).
    pub(crate) fn send_change(&self, change: Change) {
        // No subscriber: nobody to tell.
        let _ = self.inner.events.send(Arc::new(change));
    }

    /// Whether anyone follows the event stream.
    pub(crate) fn has_subscribers(&self) -> bool {
        self.inner.subscribers.load(Ordering::Acquire) > 0
    }
}

/// A live operator event subscription; dropping it stops the snapshots it asked for.
#[derive(Debug)]
pub struct EventSubscription {
    /// The changes, in order (a `Lagged` error means changes were lost: resubscribe).
    pub rx: broadcast::Receiver<Arc<Change>>,
    inner: Arc<Inner>,
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.inner.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The core task's side: decides when to build and publishes.
#[derive(Debug)]
pub struct Publisher {
    snapshots: Snapshots,
    min_interval_ms: u64,
    /// When the last snapshot was built (core clock, ms); None: never.
    last_build_ms: Option<u64>,
    /// How long the last build took.
    last_cost: Duration,
}

impl Publisher {
    /// The default minimum time between two builds (ms).
    pub const DEFAULT_MIN_INTERVAL_MS: u64 = 100;
    /// The share of the core's time snapshot builds may take: the next build waits at least
    /// the last build's duration divided by this.
    pub const BUDGET: f64 = 0.03;

    /// A publisher for `snapshots` that builds at most once every `min_interval_ms`.
    pub fn new(snapshots: Snapshots, min_interval_ms: u64) -> Publisher {
        Publisher {
            snapshots,
            min_interval_ms,
            last_build_ms: None,
            last_cost: Duration::ZERO,
        }
    }

    /// What wakes the core when a reader wants a snapshot (select on its `notified()`).
    pub fn wake(&self) -> Arc<Notify> {
        self.snapshots.inner.wake.clone()
    }

    /// Counts a change (call before the replies of a batch are sent).
    pub fn changed(&self) {
        self.snapshots.inner.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a snapshot should be built now (`now_ms`: the core's clock).
    pub fn due(&self, now_ms: u64) -> bool {
        let inner = &self.snapshots.inner;
        let behind = inner.tx.borrow().version < inner.changes.load(Ordering::Acquire);
        let wanted =
            inner.wanted.load(Ordering::Acquire) || inner.subscribers.load(Ordering::Acquire) > 0;
        let spaced = self
            .last_build_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.interval_ms());
        behind && wanted && spaced
    }

    /// The time the next build waits after the last one (ms): `min_interval_ms`, or the last
    /// build's duration over [`Self::BUDGET`] if longer.
    pub fn interval_ms(&self) -> u64 {
        let budgeted = (self.last_cost.as_secs_f64() * 1000.0 / Self::BUDGET).ceil() as u64;
        self.min_interval_ms.max(budgeted)
    }

    /// Builds (with `build`) and publishes a snapshot if one is [`due`](Self::due).
    pub fn maybe_publish(&mut self, now_ms: u64, build: impl FnOnce() -> Published) -> bool {
        if !self.due(now_ms) {
            return false;
        }
        self.publish(now_ms, build);
        true
    }

    /// Builds (its `version` is set here) and publishes a snapshot now.
    pub fn publish(&mut self, now_ms: u64, build: impl FnOnce() -> Published) {
        let inner = &self.snapshots.inner;
        inner.wanted.store(false, Ordering::Release);
        let version = inner.changes.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        let mut published = build();
        self.last_cost = started.elapsed();
        published.version = version;
        self.last_build_ms = Some(now_ms);
        inner.builds.fetch_add(1, Ordering::Relaxed);
        inner.tx.send_replace(Arc::new(published));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(n: u64) -> impl FnOnce() -> Published {
        move || Published {
            state: v1::StateSnapshot {
                allocation_cycles: n,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn builds_only_when_behind_wanted_and_spaced() {
        let snaps = Snapshots::new();
        let mut p = Publisher::new(snaps.clone(), 100);
        // Nothing built yet: behind, but nobody wants a snapshot.
        assert!(!p.maybe_publish(0, build(1)), "nobody wants it");
        snaps.inner.wanted.store(true, Ordering::Release);
        assert!(p.maybe_publish(0, build(1)));
        assert_eq!(snaps.latest().version, 1);
        assert!(!p.maybe_publish(200, build(1)), "nothing changed");
        p.changed();
        snaps.inner.wanted.store(true, Ordering::Release);
        assert!(!p.maybe_publish(50, build(2)), "within the interval");
        assert!(p.maybe_publish(100, build(2)));
        assert_eq!(snaps.latest().state.allocation_cycles, 2);
        assert_eq!(snaps.builds(), 2);
    }

    #[test]
    fn slow_builds_are_spaced_to_the_budget() {
        let snaps = Snapshots::new();
        let mut p = Publisher::new(snaps.clone(), 100);
        let sub = snaps.subscribe_events();
        p.changed();
        assert!(p.maybe_publish(0, build(1)));
        // As if that build had taken 60 ms: the next waits 60 / 0.03 = 2,000 ms.
        p.last_cost = Duration::from_millis(60);
        assert_eq!(p.interval_ms(), 2_000);
        p.changed();
        assert!(!p.maybe_publish(1_999, build(2)));
        assert!(p.maybe_publish(2_000, build(2)));
        drop(sub);
    }

    #[test]
    fn subscribers_keep_snapshots_coming() {
        let snaps = Snapshots::new();
        let mut p = Publisher::new(snaps.clone(), 10);
        let sub = snaps.subscribe_events();
        p.changed();
        assert!(p.maybe_publish(0, build(1)));
        drop(sub);
        p.changed();
        assert!(!p.maybe_publish(20, build(2)), "no subscriber left");
    }

    #[tokio::test]
    async fn fresh_is_immediate_when_current_and_waits_when_behind() {
        let snaps = Snapshots::new();
        let mut p = Publisher::new(snaps.clone(), 0);
        // The first build (the core makes it as soon as a reader wants one).
        p.publish(0, build(0));
        assert_eq!(snaps.fresh().await.version, 1, "current: immediate");
        p.changed();
        let reader = tokio::spawn({
            let snaps = snaps.clone();
            async move { snaps.fresh().await }
        });
        // Publish once the reader has asked for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !p.due(1) {
            assert!(tokio::time::Instant::now() < deadline, "reader never asked");
            tokio::task::yield_now().await;
        }
        p.publish(1, build(7));
        let got = reader.await.ok().map(|p| p.state.allocation_cycles);
        assert_eq!(got, Some(7));
    }
}
