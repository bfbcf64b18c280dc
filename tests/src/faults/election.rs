//! Leader election and fenced registry writes on virtual time: a simulated etcd holding one
//! election key on a lease, members that campaign and renew it, and a registry whose commits
//! are fenced on the key's creation revision (the leader's epoch).
//!
//! The model follows the production design:
//! - a member that wins creates the election key on a lease of [`TTL_MS`]; the key's revision is
//!   its epoch, and every new leader's epoch is higher than any before;
//! - the leader sends a keep-alive every [`KEEPALIVE_MS`]; requests and answers take a seeded
//!   delay, and are lost while the member is cut off from etcd or its keep-alives are dropped;
//!   etcd renews the lease from the moment a request arrives;
//! - the leader's shell may act only while `now < last answered request's send time + TTL -
//!   MARGIN` (its local deadline), which is always before etcd can expire the lease, so no new
//!   leader can be elected while an old one may still act;
//! - a registry commit carries the epoch and succeeds only while the key exists with that
//!   revision ([`FencedRegistry`]).
//!
//! An independent monitor records every commit accepted from an epoch that was no longer the
//! newest live one ([`SimEtcd::stale_accepted`]: must stay empty), and keeps each term's
//! deadline as etcd saw it ([`SimEtcd::term_deadline`]) so the harness can check that nobody
//! sent to a client after it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use proffer_master_core::core::rng::SplitMix64;
use proffer_master_core::registry::{
    CommitStats, MemoryRegistry, Registry, RegistryError, RegistryInfo, RegistryOp, Stored,
};

/// The lease's time to live (ms).
pub const TTL_MS: u64 = 3_000;
/// How long before its lease could expire a leader steps down (allowance for clock drift):
/// TTL/5, as the production shell's lease clock (`proffer-master`'s `etcd::election`).
pub const MARGIN_MS: u64 = TTL_MS / 5;
/// Keep-alive period.
pub const KEEPALIVE_MS: u64 = TTL_MS / 3;
/// Largest one-way delay of a request to etcd or of its answer (ms).
const MAX_RPC_DELAY_MS: u64 = 40;
/// Where the simulated backend says it is.
const LOCATION: &str = "etcd (simulated)";

/// The shell's view of the leader election (one per master process).
pub trait Election: std::fmt::Debug {
    /// Asks to lead at `now`: the epoch if this member now holds the election key.
    fn campaign(&mut self, now: u64) -> Option<u64>;
    /// Renews the lease: takes in the answers that arrived and sends a keep-alive when one is
    /// due. Returns whether this member may still act as leader ([`Election::is_leader`]).
    fn keep_alive(&mut self, now: u64) -> bool;
    /// True while this member holds a term and `now` is before its local deadline.
    fn is_leader(&self, now: u64) -> bool;
    /// The epoch of the term held (the election key's creation revision), if any.
    fn leader_epoch(&self) -> Option<u64>;
    /// The local deadline of the term held: the member must have stopped acting by then.
    fn deadline(&self) -> Option<u64>;
    /// Gives the term up (the shell stepped down or died): nothing more is renewed.
    fn resign(&mut self);
    /// The member etcd names as the key's holder (where a standby redirects clients).
    fn observe(&self, now: u64) -> Option<usize>;
}

/// The election key.
#[derive(Debug, Clone, Copy)]
struct Key {
    holder: usize,
    epoch: u64,
    expires_at: u64,
}

/// One leadership term as etcd saw it.
#[derive(Debug, Clone, Copy)]
struct Term {
    holder: usize,
    epoch: u64,
    granted_at: u64,
    /// Send time of the latest keep-alive etcd accepted (the grant to begin with).
    renewed_sent_at: u64,
}

/// A keep-alive request or its answer on the wire.
#[derive(Debug, Clone, Copy)]
struct Rpc {
    arrives_at: u64,
    member: usize,
    epoch: u64,
    sent_at: u64,
}

#[derive(Debug)]
struct Etcd {
    now: u64,
    revision: u64,
    key: Option<Key>,
    terms: Vec<Term>,
    requests: Vec<Rpc>,
    answers: Vec<Rpc>,
    /// member → cut off from etcd until.
    cut_until: BTreeMap<usize, u64>,
    /// member → keep-alives lost until.
    drop_until: BTreeMap<usize, u64>,
    rng: SplitMix64,
    registry: MemoryRegistry,
    refused: u64,
    stale_accepted: Vec<String>,
}

impl Etcd {
    fn reachable(&self, member: usize, at: u64) -> bool {
        self.cut_until.get(&member).is_none_or(|u| at >= *u)
    }

    fn keepalives_pass(&self, member: usize, at: u64) -> bool {
        self.reachable(member, at) && self.drop_until.get(&member).is_none_or(|u| at >= *u)
    }

    fn delay(&mut self) -> u64 {
        self.rng.below(MAX_RPC_DELAY_MS + 1)
    }

    /// Moves etcd's clock to `now`: keep-alives that arrived renew the lease (and are
    /// answered), and an expired lease deletes the key.
    fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
        let mut due: Vec<Rpc> = Vec::new();
        self.requests.retain(|r| {
            let arrived = r.arrives_at <= now;
            if arrived {
                due.push(*r);
            }
            !arrived
        });
        due.sort_by_key(|r| (r.arrives_at, r.member));
        for r in due {
            self.expire(r.arrives_at);
            let reachable = self.reachable(r.member, r.arrives_at);
            let Some(key) = self.key.as_mut() else {
                continue;
            };
            if key.epoch != r.epoch || !reachable {
                continue;
            }
            key.expires_at = r.arrives_at + TTL_MS;
            if let Some(t) = self.terms.iter_mut().rev().find(|t| t.epoch == r.epoch) {
                t.renewed_sent_at = t.renewed_sent_at.max(r.sent_at);
            }
            let back = r.arrives_at + self.delay();
            self.answers.push(Rpc {
                arrives_at: back,
                ..r
            });
        }
        self.expire(now);
    }

    /// Deletes the key if its lease ran out by `at` (a deletion is a new revision).
    fn expire(&mut self, at: u64) {
        if self.key.is_some_and(|k| k.expires_at <= at) {
            self.key = None;
            self.revision += 1;
        }
    }

    /// The newest term, if its lease is still live.
    fn live_term(&self) -> Option<u64> {
        let newest = self.terms.last()?;
        self.key
            .filter(|k| k.epoch == newest.epoch && k.expires_at > self.now)
            .map(|k| k.epoch)
    }
}

/// A simulated etcd shared by every member and registry handle (clones share it).
#[derive(Debug, Clone)]
pub struct SimEtcd(Arc<Mutex<Etcd>>);

impl SimEtcd {
    /// A fresh etcd keeping the registry `registry`; `seed` drives the RPC delays.
    pub fn new(seed: u64, registry: MemoryRegistry) -> SimEtcd {
        SimEtcd(Arc::new(Mutex::new(Etcd {
            now: 0,
            revision: 1,
            key: None,
            terms: Vec::new(),
            requests: Vec::new(),
            answers: Vec::new(),
            cut_until: BTreeMap::new(),
            drop_until: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            registry,
            refused: 0,
            stale_accepted: Vec::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Etcd> {
        // Nothing here is left half-done by a panic that matters to a test that already failed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves etcd's clock to `now` (renewals that arrived, an expired lease).
    pub fn advance(&self, now: u64) {
        self.lock().advance(now);
    }

    /// Cuts `member` off from etcd until `until`: its keep-alives and writes do not get through.
    pub fn cut(&self, member: usize, until: u64) {
        self.lock().cut_until.insert(member, until);
    }

    /// Drops `member`'s keep-alives until `until` (its writes still get through).
    pub fn drop_keepalives(&self, member: usize, until: u64) {
        self.lock().drop_until.insert(member, until);
    }

    /// True if `member` reaches etcd at `now`.
    pub fn reachable(&self, member: usize, now: u64) -> bool {
        self.lock().reachable(member, now)
    }

    /// The member holding the election key.
    pub fn holder(&self) -> Option<usize> {
        self.lock().key.map(|k| k.holder)
    }

    /// The newest epoch ever granted, its holder and when (None before the first election).
    pub fn newest(&self) -> Option<(u64, usize, u64)> {
        self.lock()
            .terms
            .last()
            .map(|t| (t.epoch, t.holder, t.granted_at))
    }

    /// The deadline of term `epoch` as etcd saw it: the send time of the latest keep-alive it
    /// accepted (or the grant) + TTL − MARGIN. No shell can have a later one.
    pub fn term_deadline(&self, epoch: u64) -> Option<u64> {
        self.lock()
            .terms
            .iter()
            .rev()
            .find(|t| t.epoch == epoch)
            .map(|t| t.renewed_sent_at + TTL_MS - MARGIN_MS)
    }

    /// Member `id`'s handle on the election.
    pub fn member(&self, id: usize) -> SimElection {
        SimElection {
            etcd: self.clone(),
            id,
            term: None,
        }
    }

    /// The registry as a leader of `epoch` writes it.
    pub fn fenced(&self, epoch: u64) -> FencedRegistry {
        FencedRegistry {
            etcd: self.clone(),
            epoch,
        }
    }

    /// The registry itself (unfenced: for loading and final checks).
    pub fn registry(&self) -> MemoryRegistry {
        self.lock().registry.clone()
    }

    /// Commits the fence refused so far.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// Commits accepted from an epoch that was not the newest live one (must stay empty).
    pub fn stale_accepted(&self) -> Vec<String> {
        self.lock().stale_accepted.clone()
    }
}

/// A member's term as its shell knows it.
#[derive(Debug, Clone, Copy)]
struct LocalTerm {
    epoch: u64,
    /// Send time of the latest keep-alive answered.
    acked_sent_at: u64,
    next_send: u64,
}

/// One member of the simulated election.
#[derive(Debug)]
pub struct SimElection {
    etcd: SimEtcd,
    id: usize,
    term: Option<LocalTerm>,
}

impl Election for SimElection {
    fn campaign(&mut self, now: u64) -> Option<u64> {
        let mut e = self.etcd.lock();
        e.advance(now);
        if !e.reachable(self.id, now) || e.key.is_some() {
            return None;
        }
        e.revision += 1;
        let epoch = e.revision;
        e.key = Some(Key {
            holder: self.id,
            epoch,
            expires_at: now + TTL_MS,
        });
        e.terms.push(Term {
            holder: self.id,
            epoch,
            granted_at: now,
            renewed_sent_at: now,
        });
        self.term = Some(LocalTerm {
            epoch,
            acked_sent_at: now,
            next_send: now + KEEPALIVE_MS,
        });
        Some(epoch)
    }

    fn keep_alive(&mut self, now: u64) -> bool {
        let Some(t) = self.term.as_mut() else {
            return false;
        };
        let mut e = self.etcd.lock();
        e.advance(now);
        let id = self.id;
        let mut answered = Vec::new();
        e.answers.retain(|a| {
            let mine = a.member == id && a.arrives_at <= now;
            if mine {
                answered.push(*a);
            }
            !mine
        });
        for a in answered {
            if a.epoch == t.epoch && e.reachable(id, a.arrives_at) {
                t.acked_sent_at = t.acked_sent_at.max(a.sent_at);
            }
        }
        if now >= t.next_send {
            t.next_send = now + KEEPALIVE_MS;
            if e.keepalives_pass(id, now) {
                let arrives_at = now + e.delay();
                e.requests.push(Rpc {
                    arrives_at,
                    member: id,
                    epoch: t.epoch,
                    sent_at: now,
                });
            }
        }
        drop(e);
        self.is_leader(now)
    }

    fn is_leader(&self, now: u64) -> bool {
        self.deadline().is_some_and(|d| now < d)
    }

    fn leader_epoch(&self) -> Option<u64> {
        self.term.map(|t| t.epoch)
    }

    fn deadline(&self) -> Option<u64> {
        self.term.map(|t| t.acked_sent_at + TTL_MS - MARGIN_MS)
    }

    fn resign(&mut self) {
        self.term = None;
    }

    fn observe(&self, now: u64) -> Option<usize> {
        let mut e = self.etcd.lock();
        e.advance(now);
        e.key.map(|k| k.holder)
    }
}

/// The registry as one leader writes it: every commit is fenced on its epoch.
#[derive(Debug, Clone)]
pub struct FencedRegistry {
    etcd: SimEtcd,
    epoch: u64,
}

impl Registry for FencedRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "etcd".into(),
            location: LOCATION.into(),
        }
    }

    fn load(&mut self) -> Result<Stored, RegistryError> {
        self.etcd.registry().load()
    }

    /// Succeeds only while the election key exists with this epoch as its revision.
    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError> {
        let mut e = self.etcd.lock();
        let now = e.now;
        let fenced_ok = e
            .key
            .is_some_and(|k| k.epoch == self.epoch && k.expires_at > now);
        if !fenced_ok {
            e.refused += 1;
            return Err(RegistryError::Fenced {
                location: format!("{LOCATION}, epoch {}", self.epoch),
            });
        }
        // The monitor: judged from the terms granted, not from the key the fence looked at.
        if e.live_term() != Some(self.epoch) {
            let newest = e.terms.last().map_or(0, |t| t.epoch);
            let msg = format!(
                "at {now} ms a write of epoch {} was accepted (newest epoch {newest})",
                self.epoch
            );
            e.stale_accepted.push(msg);
        }
        let mut registry = e.registry.clone();
        drop(e);
        registry.commit(ops)
    }
}
