//! The master's sans-IO core.
//!
//! ```text
//! let mut master = Master::new(config, seed);
//! master.handle(now, Input::Agent { conn, msg })?;   // events in, with the time they happened
//! master.tick(now);                                  // timers: allocation, pings, timeouts
//! for out in master.take_outbox() { /* send */ }     // messages out, addressed to connections
//! ```
//! The core never reads a clock, touches a socket or a file, or draws from an unseeded RNG;
//! `tests::core_is_pure` checks the sources for that.
//!
//! # Layout of this module
//! - `types`: [`Timestamp`], [`ConnId`], [`Input`], [`Call`], [`Output`], [`MasterConfig`], errors.
//! - `state`: records kept per agent, framework, task and offer.
//! - `rng` (re-exported from the crate root): the seeded [`rng::SplitMix64`].
//! - `agents`: registration, re-registration, pings, removal, status updates.
//! - `liveness`: when agents were last heard from, their pings and removal checks.
//! - `frameworks`: subscription, disconnection, failover, removal.
//! - `maintenance`: maintenance windows and inverse offers.
//! - `calls`: ACCEPT, DECLINE, REVIVE, SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE, TEARDOWN.
//! - `snapshot`: the operator's view of the state.
//! - `partition`: unreachable agents, partition-aware frameworks, agents marked gone.
//! - `persist`: registry ops for changes that must survive, and outputs held until written.
//! - `recovery`: a master rebuilt from its registry; agents awaiting re-registration.
//! - `accounting`: the check that offered + allocated + free = total on every agent.
//! - `authz`: ownership of framework and agent ids, ACL checks, filtered operator views.

mod accounting;
mod agents;
mod authz;
mod calls;
mod frameworks;
pub mod limits;
mod liveness;
mod maintenance;
mod operations;
mod operator_ops;
mod partition;
mod persist;
mod recovery;
mod snapshot;
mod state;
mod tasks;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use crate::rng;
pub use authz::{filter_roles, filter_snapshot};
pub use operator_ops::OperatorOp;
pub use persist::RegistryMismatch;
pub use types::{
    Call, ConnId, DEFAULT_OFFER_COALESCE_MS, ErrorKind, Input, MasterConfig, MasterError, Output,
    Timestamp,
};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use proffer_proto::v1;

use crate::allocator::Allocator;
use crate::rng::SplitMix64;
use state::{AgentState, ConnOwner, FrameworkState, OfferState};

/// Records keyed by id: hashed lookups (ids share long prefixes, so tree searches were mostly
/// `memcmp`), iterated in insertion order, which is deterministic.
type IdMap<V> = indexmap::IndexMap<String, V, rustc_hash::FxBuildHasher>;
/// Ids in insertion order with hashed lookups.
type IdSet = indexmap::IndexSet<String, rustc_hash::FxBuildHasher>;

/// The master state machine.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    master_id: String,
    rng: SplitMix64,
    outbox: Vec<Output>,
    allocator: Allocator,
    agents: IdMap<AgentState>,
    liveness: liveness::Liveness,
    /// What the last tick found due (kept for its buffers).
    due_scratch: liveness::Due,
    frameworks: IdMap<FrameworkState>,
    offers: IdMap<OfferState>,
    conns: HashMap<ConnId, ConnOwner>,
    removed_agents: HashSet<String>,
    removed_frameworks: HashSet<String>,
    /// Retired tasks, newest last: (framework id, task id, record). Summarized only when a
    /// snapshot asks (formatting each finished task's resources cost more than keeping it).
    completed_tasks: VecDeque<(String, String, Box<state::TaskRecord>)>,
    maintenance: BTreeMap<String, maintenance::Window>,
    next_allocation: Timestamp,
    /// Something came back that should be offered before the next allocation interval.
    allocation_pending: bool,
    /// When `allocation_pending` was first seen set (the coalescing window runs from there).
    pending_since: Option<Timestamp>,
    /// When the last allocation cycle ran: what comes back a coalescing window or more after
    /// it is offered at once.
    last_allocated: Option<Timestamp>,
    counters: Counters,
    /// Registry ops and the outputs that wait for them.
    persistence: persist::Persistence,
    /// Agents admitted before a recovery that have not re-registered yet.
    recovering: IdMap<recovery::RecoveringAgent>,
    /// When the agents still recovering are marked unreachable.
    recovering_until: Timestamp,
    /// When `tick_unreachable` must look at the unreachable agents again (the oldest may have
    /// expired, or one was added).
    unreachable_gc_at: Timestamp,
    /// Agents that stopped answering and may come back.
    unreachable: IdMap<partition::UnreachableAgent>,
    /// Tasks killed because their unreachable agent came back and their framework had been
    /// told they were lost: their updates are acknowledged here, not forwarded.
    /// (framework, task) → agent.
    killed_on_return: HashMap<(String, String), String>,
    /// Decides what principals may do (default: everything).
    authorizer: crate::authz::Authorizer,
}

#[derive(Debug, Default)]
struct Counters {
    frameworks: u64,
    agents: u64,
    offers: u64,
    tasks_launched: u64,
    tasks_terminal: std::collections::BTreeMap<&'static str, u64>,
    agents_removed: u64,
    frameworks_removed: u64,
    recoveries: u64,
}

/// Counters since the master started (for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MasterStats {
    /// Offers made.
    pub offers_made: u64,
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Tasks that reached each terminal state (`TASK_FINISHED`, …).
    pub tasks_terminal: Vec<(String, u64)>,
    /// Agents removed (ping timeout).
    pub agents_removed: u64,
    /// Frameworks removed (teardown, failover timeout).
    pub frameworks_removed: u64,
    /// Agents registered so far.
    pub agents_registered: u64,
    /// Frameworks subscribed so far (new ids).
    pub frameworks_subscribed: u64,
    /// Allocation cycles run.
    pub allocation_cycles: u64,
}

impl Master {
    /// A new master; `seed` drives every id and random choice it makes.
    pub fn new(config: MasterConfig, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let master_id = format!("{:08x}", rng.next_u64() >> 32);
        let allocator = Allocator::with_policy(rng.next_u64(), config.policy);
        Master {
            config,
            master_id,
            rng,
            outbox: Vec::new(),
            allocator,
            agents: IdMap::default(),
            liveness: Default::default(),
            due_scratch: Default::default(),
            frameworks: IdMap::default(),
            offers: IdMap::default(),
            conns: HashMap::new(),
            removed_agents: HashSet::new(),
            removed_frameworks: HashSet::new(),
            completed_tasks: VecDeque::new(),
            maintenance: BTreeMap::new(),
            next_allocation: Timestamp(0),
            allocation_pending: false,
            pending_since: None,
            last_allocated: None,
            counters: Counters::default(),
            persistence: persist::Persistence::default(),
            recovering: IdMap::default(),
            recovering_until: Timestamp(0),
            unreachable_gc_at: Timestamp(0),
            unreachable: IdMap::default(),
            killed_on_return: HashMap::new(),
            authorizer: Default::default(),
        }
    }

    /// This master's id.
    pub fn master_id(&self) -> &str {
        &self.master_id
    }

    /// The configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// Counters since start.
    pub fn stats(&self) -> MasterStats {
        let c = &self.counters;
        MasterStats {
            offers_made: c.offers,
            tasks_launched: c.tasks_launched,
            tasks_terminal: c
                .tasks_terminal
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            agents_removed: c.agents_removed,
            frameworks_removed: c.frameworks_removed,
            agents_registered: c.agents,
            frameworks_subscribed: c.frameworks,
            allocation_cycles: self.allocator.cycles(),
        }
    }

    /// Read access to the allocator (for tests and explanations).
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Sets a role's weight for weighted DRF (default 1).
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), MasterError> {
        proffer_proto::resources::validate_role(role).map_err(|reason| {
            MasterError::InvalidField {
                field: "role".into(),
                reason: format!("`{role}`: {reason}"),
            }
        })?;
        self.allocator
            .check_room_for(role)
            .and_then(|()| self.allocator.set_weight(role, weight))
            .map_err(|e| {
                let field = match e {
                    crate::allocator::AllocatorError::TooManyRoles { .. } => "role",
                    _ => "weight",
                };
                MasterError::InvalidField {
                    field: field.into(),
                    reason: e.to_string(),
                }
            })?;
        self.persist_role(role);
        self.allocation_pending = true;
        Ok(())
    }

    /// Sets a role's quota (guarantees set aside for it; limits cap it and its children).
    pub fn set_quota(
        &mut self,
        role: &str,
        guarantees: proffer_proto::Resources,
        limits: Option<proffer_proto::Resources>,
    ) -> Result<(), MasterError> {
        let quota = crate::allocator::Quota { guarantees, limits };
        self.allocator
            .check_room_for(role)
            .and_then(|()| self.allocator.set_quota(role, quota))
            .map_err(|e| MasterError::InvalidField {
                field: "quota".into(),
                reason: e.to_string(),
            })?;
        self.persist_role(role);
        self.allocation_pending = true;
        Ok(())
    }

    /// Removes a role's quota.
    pub fn remove_quota(&mut self, role: &str) -> Result<(), MasterError> {
        proffer_proto::resources::validate_role(role).map_err(|reason| {
            MasterError::InvalidField {
                field: "role".into(),
                reason: format!("`{role}`: {reason}"),
            }
        })?;
        if self.allocator.quota(role).is_none() {
            return Err(MasterError::InvalidField {
                field: "role".into(),
                reason: format!("role `{role}` has no quota"),
            });
        }
        self.allocator.remove_quota(role);
        self.persist_role(role);
        self.allocation_pending = true;
        Ok(())
    }

    /// Every role the allocator knows (weights, quotas, allocations, frameworks).
    pub fn roles(&self) -> Vec<crate::allocator::RoleInfo> {
        self.allocator.roles()
    }

    /// Why a framework (by id) or a role (by name) gets what it gets at `now`, one line each.
    pub fn why(&self, framework_or_role: &str, now: Timestamp) -> Vec<String> {
        if self.frameworks.contains_key(framework_or_role) {
            self.allocator.explain_framework(framework_or_role, now)
        } else {
            self.allocator.explain_role(framework_or_role, now)
        }
    }

    /// Feeds one input that happened at `now`. On error the state is unchanged, except that the
    /// core may have queued an error message to the connection concerned.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<(), MasterError> {
        let result = self.handle_input(now, input);
        self.note_pending(now);
        result
    }

    /// Starts the coalescing window at `now` if an allocation became pending while offers are
    /// flowing (an allocation ran less than a window ago); after a quiet spell the window is
    /// already over, so what came back is offered at the next tick (a lone task's slot waits
    /// for nothing, a busy master still gathers).
    fn note_pending(&mut self, now: Timestamp) {
        if self.allocation_pending && self.pending_since.is_none() {
            let window = self.config.offer_coalesce_ms;
            let busy = self.last_allocated.is_some_and(|t| now.since(t) < window);
            self.pending_since = Some(if busy {
                now
            } else {
                Timestamp(now.0.saturating_sub(window))
            });
        }
    }

    /// When the core next needs a tick for an allocation that is pending (the end of the
    /// coalescing window), if one is; the shell's periodic ticks cover every other timer.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        if !self.allocation_pending {
            return None;
        }
        // Pending with no window running: due at once (the shell ticks after every batch).
        let due = self
            .pending_since
            .map_or(Timestamp(0), |t| t.plus_ms(self.config.offer_coalesce_ms));
        Some(due.min(self.next_allocation))
    }

    fn handle_input(&mut self, now: Timestamp, input: Input) -> Result<(), MasterError> {
        match input {
            Input::Agent { conn, msg } => self.on_agent_message(now, conn, msg),
            Input::AgentDisconnected { conn } => {
                self.on_agent_disconnected(now, conn);
                Ok(())
            }
            Input::Subscribe { conn, info } => self.on_subscribe(now, conn, *info),
            Input::FrameworkDisconnected { conn } => {
                self.on_framework_disconnected(now, conn);
                Ok(())
            }
            Input::Call(call) => self.on_call(now, call),
            Input::Persisted { seq } => {
                self.persistence.acknowledge(seq, now, &mut self.outbox);
                Ok(())
            }
        }
    }

    /// Runs timers due at `now`: agent pings and removal, framework heartbeats and failover,
    /// offer timeouts, and allocation (on its interval, or sooner after relevant events).
    pub fn tick(&mut self, now: Timestamp) {
        self.tick_recovering(now);
        self.tick_unreachable(now);
        self.tick_agents(now);
        self.tick_frameworks(now);
        self.tick_offers(now);
        self.tick_maintenance(now);
        // Resources that came back with an input wait out the coalescing window; anything else
        // that asked for an allocation (an operator's change, a timer above) gets it now.
        let coalesced = self
            .pending_since
            .is_none_or(|t| now >= t.plus_ms(self.config.offer_coalesce_ms));
        if (self.allocation_pending && coalesced) || now >= self.next_allocation {
            self.allocate(now);
        }
    }

    /// Takes the queued outputs, in order.
    pub fn take_outbox(&mut self) -> Vec<Output> {
        self.close_persist_batch();
        std::mem::take(&mut self.outbox)
    }

    /// Puts the ops recorded since the last batch into the outbox as one `Output::Persist`.
    fn close_persist_batch(&mut self) {
        if let Some((seq, ops)) = self.persistence.take_batch() {
            self.outbox.push(Output::Persist { seq, ops });
        }
    }

    /// Moves the queued outputs, in order, into `buf` (cleared first) and keeps `buf`'s old
    /// allocation as the new outbox: a caller that drains `buf` and passes it back each time
    /// reuses two buffers instead of growing a fresh one (a ping round to 10k agents queues
    /// 10k outputs at once).
    pub fn take_outbox_into(&mut self, buf: &mut Vec<Output>) {
        self.close_persist_batch();
        buf.clear();
        std::mem::swap(buf, &mut self.outbox);
    }

    /// Runs one allocation cycle now and sends the resulting offers.
    pub fn allocate(&mut self, now: Timestamp) {
        self.allocation_pending = false;
        self.pending_since = None;
        self.last_allocated = Some(now);
        self.next_allocation = now.plus_ms(self.config.allocation_interval_ms);
        let allocations = self.allocator.allocate(now);
        let mut per_framework: BTreeMap<String, Vec<v1::Offer>> = BTreeMap::new();
        for a in allocations {
            let Some(agent) = self.agents.get(&a.agent_id) else {
                // Never sent: free the framework's slot and give the resources back (they
                // would otherwise stay held by the framework).
                self.allocator
                    .recover_offer(&a.framework_id, &a.agent_id, &a.resources, None);
                continue;
            };
            self.counters.offers += 1;
            let offer_id = format!("{}-O{}", self.master_id, self.counters.offers);
            let offer = v1::Offer {
                id: offer_id.clone(),
                framework_id: a.framework_id.clone(),
                agent_id: a.agent_id.clone(),
                hostname: agent.info.hostname.clone(),
                resources: a.resources.to_proto(),
                attributes: agent.info.attributes.clone(),
                allocation_role: a.role.clone(),
                unavailability: self.unavailability(&a.agent_id, now),
            };
            tracing::debug!(framework_id = %a.framework_id, agent_id = %a.agent_id,
                offer_id = %offer_id, resources = %a.resources, "offer");
            self.offers.insert(
                offer_id.clone(),
                OfferState {
                    framework_id: a.framework_id.clone(),
                    agent_id: a.agent_id.clone(),
                    resources: a.resources,
                    expires: self.config.offer_timeout_ms.map(|t| now.plus_ms(t)),
                },
            );
            if let Some(f) = self.frameworks.get_mut(&a.framework_id) {
                f.offers.insert(offer_id);
            }
            per_framework.entry(a.framework_id).or_default().push(offer);
        }
        self.send_inverse_offers(now);
        for (fw, offers) in per_framework {
            self.send_event(&fw, v1::event::Event::Offers(v1::Offers { offers }));
        }
    }

    fn tick_offers(&mut self, now: Timestamp) {
        // Offers expire only with a timeout configured: without one there is nothing to scan
        // (the shell ticks after every batch of inputs, with thousands of offers out).
        if self.config.offer_timeout_ms.is_none() {
            return;
        }
        let expired: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.expires.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.rescind_offer(&id, None);
        }
    }

    /// Removes an offer, gives its resources back (optionally filtered until `refuse_until`)
    /// and tells the framework with RESCIND.
    fn rescind_offer(&mut self, offer_id: &str, refuse_until: Option<Timestamp>) {
        if let Some(o) = self.remove_offer(offer_id, refuse_until) {
            self.send_event(
                &o.framework_id,
                v1::event::Event::Rescind(v1::Rescind {
                    offer_id: offer_id.to_string(),
                }),
            );
        }
    }

    /// Removes an offer and gives its resources back to the allocator, without telling anyone.
    fn remove_offer(
        &mut self,
        offer_id: &str,
        refuse_until: Option<Timestamp>,
    ) -> Option<OfferState> {
        let o = self.offers.swap_remove(offer_id)?;
        if let Some(f) = self.frameworks.get_mut(&o.framework_id) {
            f.offers.swap_remove(offer_id);
        }
        self.allocator
            .recover_offer(&o.framework_id, &o.agent_id, &o.resources, refuse_until);
        self.allocation_pending |= refuse_until.is_none();
        Some(o)
    }

    /// Sends an event to a framework if it is connected (events to a disconnected framework are
    /// dropped, as in Mesos; status updates are re-sent by agents until acknowledged).
    fn send_event(&mut self, framework_id: &str, event: v1::event::Event) {
        if let Some(conn) = self.frameworks.get(framework_id).and_then(|f| f.conn) {
            self.push(Output::ToFramework {
                conn,
                event: v1::Event { event: Some(event) },
            });
        }
    }

    /// Sends a message to an agent if it is connected.
    fn send_agent(&mut self, agent_id: &str, msg: v1::master_message::Msg) {
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            self.push(Output::ToAgent {
                conn,
                msg: v1::MasterMessage { msg: Some(msg) },
            });
        }
    }

    fn send_conn(&mut self, conn: ConnId, msg: v1::master_message::Msg) {
        self.push(Output::ToAgent {
            conn,
            msg: v1::MasterMessage { msg: Some(msg) },
        });
    }

    fn random_hex(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }
}
