//! The allocator: decides which framework is offered which agent's free resources.
//!
//! Synchronous and I/O-free, with a narrow event interface as in Mesos: `add_framework`,
//! `remove_framework`, `activate/deactivate_framework`, `add_agent`, `remove_agent`,
//! `update_agent_total`, `convert`, `recover`, `suppress`/`revive` (per role), `set_quota`,
//! `set_weight`, then [`Allocator::allocate`].
//!
//! Semantics follow Mesos's hierarchical allocator (≥ 1.9):
//! - roles form a tree (`eng/ml/batch`); at every node children are ordered by weighted DRF
//!   (dominant share of the subtree's allocation divided by the role's weight), and a role's own
//!   frameworks by their dominant share in it;
//! - stage 1 gives roles with unmet quota **guarantees** what they still need (agents may be
//!   chopped); stage 2 offers the rest in DRF order, without eating into the **headroom** that
//!   unmet guarantees need, and never beyond a role's (or an ancestor's) quota **limits**;
//! - resources reserved for a role are offered only to that role and its descendants;
//! - decline filters refuse offers that fit in what was declined, until they expire;
//! - an offer must hold at least 0.01 cpus or 32 MB of memory.
//!
//! Speed: agents and frameworks live in slots addressed by index; each agent keeps a bit set of
//! frameworks whose filters cover its free resources, so an agent that every eligible framework
//! has filtered is skipped in O(frameworks / 64) — Mesos's DeclineOffers case.
//!
//! # Layout of this module
//! - `bits`: bit sets over framework slots.
//! - `filters`: an agent's decline filters, stored compactly.
//! - `scalars`: cpus/mem/disk/gpus as a fixed array, and chopping.
//! - `sorter`: ordered sets keyed by share (the DRF sorter).
//! - `roles`: the role tree with weights, quotas and allocations.
//! - `state`: per-agent and per-framework records and the event interface.
//! - `cycle`: one allocation cycle (quota stage, then fair-share stage).
//! - `explain`: why a framework or role got what it got.
//! - `accounting`: the invariant free + held = total on every agent, checked on demand.

mod accounting;
mod bits;
mod cycle;
mod explain;
mod filters;
mod min_offers;
mod roles;
pub mod scalars;
pub mod sorter;
mod state;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap as HashMap;

use proffer_proto::Resources;

use crate::rng::SplitMix64;
use crate::time::Timestamp;
use bits::BitSet;
use roles::RoleTree;
use scalars::Scalars;
use state::{AgentEntry, FwEntry};

pub use accounting::{AccountingError, same as same_resources};
pub use roles::Quota;

/// Mesos's minimum allocatable resources: an offer must have at least this many cpus or mem.
pub const MIN_ALLOCATABLE_CPUS_MILLI: i64 = 10;
/// Minimum allocatable memory (milli-MB): 32 MB.
pub const MIN_ALLOCATABLE_MEM_MILLI: i64 = 32_000;

/// One decision: offer `resources` on `agent_id` to `framework_id`, allocated to `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The framework.
    pub framework_id: String,
    /// The agent.
    pub agent_id: String,
    /// What is offered.
    pub resources: Resources,
    /// The role the resources are allocated to.
    pub role: String,
}

/// The order in which frameworks are considered for each agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Hierarchical Dominant Resource Fairness, weighted by role weights (all 1 by default).
    #[default]
    Drf,
    /// A seeded random order of (role, framework) for every agent (a baseline for comparisons).
    Random,
}

impl Policy {
    /// Parses `drf`, `wdrf` (same as drf: weights always apply) or `random`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "drf" | "wdrf" | "weighted-drf" | "hdrf" => Some(Policy::Drf),
            "random" => Some(Policy::Random),
            _ => None,
        }
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Drf => "drf",
            Policy::Random => "random",
        }
    }
}

/// Errors from allocator settings; each names the role and what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    /// A weight that is not a positive finite number.
    #[error("invalid weight {weight} for role `{role}`: must be a positive finite number")]
    InvalidWeight {
        /// The role.
        role: String,
        /// The weight given.
        weight: f64,
    },
    /// A role name that is not allowed.
    #[error("invalid role `{role}`: {reason}")]
    InvalidRole {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// A new role beyond [`MAX_ROLES`](crate::core::limits::MAX_ROLES).
    #[error(
        "role `{role}` would be one role too many: the allocator keeps at most {max} roles \
         (ancestors included)"
    )]
    TooManyRoles {
        /// The role.
        role: String,
        /// The limit.
        max: usize,
    },
    /// A quota that cannot be set.
    #[error("invalid quota for role `{role}`: {reason}")]
    InvalidQuota {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
}

/// A weight error (kept for callers of [`Allocator::set_weight`]).
pub type InvalidWeight = AllocatorError;

/// One role as the allocator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleInfo {
    /// Full role name.
    pub role: String,
    /// Weight.
    pub weight: f64,
    /// Quota, if any.
    pub quota: Option<Quota>,
    /// Allocated to the role and its descendants (scalars).
    pub allocated: Resources,
    /// Frameworks subscribed to the role itself.
    pub frameworks: Vec<String>,
}

/// The allocator state.
#[derive(Debug, Clone)]
pub struct Allocator {
    agents: Vec<Option<AgentEntry>>,
    /// Per agent slot (parallel to `agents`, kept dense so the cycle's skip test touches one
    /// small array): frameworks with an unexpired decline filter covering the agent's
    /// `bits_valid_for`, or whose minimum offer it cannot meet.
    filtered: Vec<BitSet>,
    /// Per agent slot, dense like `filtered`: active and not draining (visited by the cycle).
    visit: Vec<bool>,
    /// Per agent slot: holds reservations (the cycle's cheap skip does not apply).
    reserved: Vec<bool>,
    agent_ids: HashMap<String, usize>,
    free_agent_slots: Vec<usize>,
    fws: Vec<Option<FwEntry>>,
    fw_ids: HashMap<String, usize>,
    free_fw_slots: Vec<usize>,
    roles: RoleTree,
    total: Resources,
    total_s: Scalars,
    /// Frameworks that are active and not suppressed in every role.
    eligible: BitSet,
    /// Frameworks with minimum offers in some role.
    min_fws: Vec<usize>,
    /// Agents' earliest filter expiries: (until, agent slot, agent generation).
    expiries: BinaryHeap<Reverse<(Timestamp, u32, u64)>>,
    rng: SplitMix64,
    cycles: u64,
    policy: Policy,
    shares_dirty: bool,
    next_gen: u64,
    /// The agent visiting order of the last cycle (kept to reuse its allocation).
    order: Vec<usize>,
}

impl Allocator {
    /// An empty DRF allocator; `seed` drives the agent visiting order.
    pub fn new(seed: u64) -> Self {
        Self::with_policy(seed, Policy::Drf)
    }

    /// An empty allocator with the given policy.
    pub fn with_policy(seed: u64, policy: Policy) -> Self {
        Allocator {
            agents: Vec::new(),
            filtered: Vec::new(),
            visit: Vec::new(),
            reserved: Vec::new(),
            agent_ids: HashMap::default(),
            free_agent_slots: Vec::new(),
            fws: Vec::new(),
            fw_ids: HashMap::default(),
            free_fw_slots: Vec::new(),
            roles: RoleTree::default(),
            total: Resources::new(),
            total_s: Scalars::default(),
            eligible: BitSet::default(),
            min_fws: Vec::new(),
            expiries: BinaryHeap::new(),
            rng: SplitMix64::new(seed),
            cycles: 0,
            policy,
            shares_dirty: false,
            next_gen: 0,
            order: Vec::new(),
        }
    }

    /// The policy in use.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Number of allocation cycles run.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// Sum of all agents' resources.
    pub fn total(&self) -> &Resources {
        &self.total
    }

    /// Sets a role's weight (default 1). Shares in the role are divided by it.
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        check_role(role)?;
        if !weight.is_finite() || weight <= 0.0 {
            return Err(AllocatorError::InvalidWeight {
                role: role.to_string(),
                weight,
            });
        }
        let idx = self.roles.ensure(role);
        self.roles.nodes[idx].weight = weight;
        self.roles.rekey(idx, self.total_s);
        Ok(())
    }

    /// A role's weight (1 if never set).
    pub fn weight(&self, role: &str) -> f64 {
        self.roles
            .get(role)
            .map(|i| self.roles.nodes[i].weight)
            .unwrap_or(1.0)
    }

    /// Sets a role's quota (Mesos ≥ 1.9 semantics). Only scalar resources (cpus, mem, disk, gpus)
    /// may be given; guarantees must not exceed limits.
    pub fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
        check_role(role)?;
        let bad = |reason: String| AllocatorError::InvalidQuota {
            role: role.to_string(),
            reason,
        };
        if role == "*" {
            return Err(bad("the default role `*` cannot have a quota".into()));
        }
        for (what, r) in [
            ("guarantees", Some(&quota.guarantees)),
            ("limits", quota.limits.as_ref()),
        ] {
            let Some(r) = r else { continue };
            for (k, _) in r.iter() {
                if !scalars::NAMES.contains(&k.name.as_str()) {
                    return Err(bad(format!(
                        "{what}: `{}` is not a quota resource (cpus, mem, disk, gpus)",
                        k.name
                    )));
                }
                if k.role != "*" {
                    return Err(bad(format!(
                        "{what}: `{}` must not carry a reservation",
                        k.name
                    )));
                }
            }
        }
        let guarantees = Scalars::of(&quota.guarantees);
        let limits = quota.limits.as_ref().map(Scalars::of);
        if let (Some(l), Some(lr)) = (limits, quota.limits.as_ref()) {
            for (i, name) in scalars::NAMES.iter().enumerate() {
                let limited = lr.iter().any(|(k, _)| k.name == *name);
                if limited && guarantees.0[i] > l.0[i] {
                    return Err(bad(format!("guarantee of {name} exceeds its limit")));
                }
            }
        }
        let idx = self.roles.ensure(role);
        let node = &mut self.roles.nodes[idx];
        node.guarantees = guarantees;
        // Resources absent from the limits are unlimited.
        node.limits = limits.map(|l| {
            let lr = quota.limits.as_ref();
            Scalars(std::array::from_fn(|i| {
                let named = lr.is_some_and(|r| r.iter().any(|(k, _)| k.name == scalars::NAMES[i]));
                if named { l.0[i] } else { i64::MAX }
            }))
        });
        node.quota = Some(quota);
        Ok(())
    }

    /// Removes a role's quota.
    pub fn remove_quota(&mut self, role: &str) {
        if let Some(idx) = self.roles.get(role) {
            let node = &mut self.roles.nodes[idx];
            node.quota = None;
            node.guarantees = Scalars::default();
            node.limits = None;
        }
    }

    /// A role's quota.
    pub fn quota(&self, role: &str) -> Option<&Quota> {
        self.roles
            .get(role)
            .and_then(|i| self.roles.nodes[i].quota.as_ref())
    }

    /// Every known role (with a weight, a quota or frameworks), by name.
    pub fn roles(&self) -> Vec<RoleInfo> {
        let mut out: Vec<RoleInfo> = self.roles.nodes[1..]
            .iter()
            .map(|n| RoleInfo {
                role: n.name.clone(),
                weight: n.weight,
                quota: n.quota.clone(),
                allocated: n.subtree.to_resources(),
                frameworks: n
                    .frameworks
                    .iter()
                    .filter_map(|f| {
                        self.fws
                            .get(f)
                            .and_then(Option::as_ref)
                            .map(|f| f.id.clone())
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.role.cmp(&b.role));
        out
    }

    fn next_gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    fn fw_slot(&self, id: &str) -> Option<usize> {
        self.fw_ids.get(id).copied()
    }

    fn agent_slot(&self, id: &str) -> Option<usize> {
        self.agent_ids.get(id).copied()
    }

    fn fw(&self, slot: usize) -> Option<&FwEntry> {
        self.fws.get(slot).and_then(Option::as_ref)
    }

    fn agent(&self, slot: usize) -> Option<&AgentEntry> {
        self.agents.get(slot).and_then(Option::as_ref)
    }
}

fn check_role(role: &str) -> Result<(), AllocatorError> {
    proffer_proto::resources::validate_role(role).map_err(|reason| AllocatorError::InvalidRole {
        role: role.to_string(),
        reason,
    })
}

impl Allocator {
    /// Refuses a weight or quota for a role that would grow the role tree past
    /// [`MAX_ROLES`](crate::core::limits::MAX_ROLES) nodes (checked by the operator calls, not
    /// on recovery: roles recorded before the limit still load).
    pub fn check_room_for(&self, role: &str) -> Result<(), AllocatorError> {
        let max = crate::core::limits::MAX_ROLES;
        if self.roles.get(role).is_none() && self.roles.nodes.len() + role.split('/').count() > max
        {
            return Err(AllocatorError::TooManyRoles {
                role: role.to_string(),
                max,
            });
        }
        Ok(())
    }
}

/// Mesos's rule: an offer is worth making if it has at least 0.01 cpus or 32 MB of memory.
pub fn allocatable(r: &Resources) -> bool {
    r.cpus_milli() >= MIN_ALLOCATABLE_CPUS_MILLI || r.mem_milli() >= MIN_ALLOCATABLE_MEM_MILLI
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
