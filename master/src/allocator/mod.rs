//! The allocator: decides which framework is offered which agent's free resources.
//!
//! Synchronous and I/O-free, with a narrow event interface as in Mesos: `add_framework`,
//! `remove_framework`, `activate/deactivate_framework`, `add_agent`, `remove_agent`,
//! `activate/deactivate_agent`, `recover`, `suppress`, `revive`, then [`Allocator::allocate`].
//!
//! Policy (this version): each cycle visits agents in a seeded random order and gives each
//! agent's whole free, allocatable resources to the eligible framework with the lowest dominant
//! share (DRF, ties broken by id). A framework is eligible for an agent when it is active, not
//! suppressed and has no unexpired decline filter for that agent. Reserved resources go only to
//! frameworks of their role.
//!
//! # Layout of this module
//! - `sorter`: [`sorter::DrfSorter`], frameworks ordered by dominant share.

pub mod sorter;

use std::borrow::Cow;
use std::collections::BTreeMap;

use proffer_proto::Resources;
use proffer_proto::resources::UNRESERVED;

use crate::core::Timestamp;
use crate::core::rng::SplitMix64;
use sorter::DrfSorter;

/// Mesos's minimum allocatable resources: an offer must have at least this many cpus or mem.
pub const MIN_ALLOCATABLE_CPUS_MILLI: i64 = 10;
/// Minimum allocatable memory (milli-MB): 32 MB.
pub const MIN_ALLOCATABLE_MEM_MILLI: i64 = 32_000;

/// One decision: offer `resources` on `agent_id` to `framework_id`.
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

#[derive(Debug, Clone)]
struct AgentEntry {
    total: Resources,
    /// Offered or used by tasks, in all.
    allocated: Resources,
    /// The same, per framework.
    by_framework: BTreeMap<String, Resources>,
    active: bool,
}

/// A decline filter (Mesos semantics): refuse offers that are a subset of `resources`.
#[derive(Debug, Clone)]
struct Filter {
    until: Timestamp,
    resources: Resources,
}

#[derive(Debug, Clone)]
struct FrameworkEntry {
    role: String,
    allocated: Resources,
    active: bool,
    suppressed: bool,
    /// agent id → filters: offers from it that fit in `resources` are refused until `until`.
    filters: BTreeMap<String, Vec<Filter>>,
}

/// The allocator state.
#[derive(Debug, Clone)]
pub struct Allocator {
    agents: BTreeMap<String, AgentEntry>,
    frameworks: BTreeMap<String, FrameworkEntry>,
    total: Resources,
    sorter: DrfSorter,
    rng: SplitMix64,
    cycles: u64,
    policy: Policy,
    /// Role weights (default 1): a role's shares are divided by its weight (weighted DRF).
    weights: BTreeMap<String, f64>,
}

/// The order in which frameworks are considered for each agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Dominant Resource Fairness, weighted by role weights (all 1 by default).
    #[default]
    Drf,
    /// A seeded random order for every agent (a baseline for comparisons).
    Random,
}

impl Policy {
    /// Parses `drf`, `wdrf` (same as drf: weights always apply) or `random`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "drf" | "wdrf" | "weighted-drf" => Some(Policy::Drf),
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

/// A weight that is not a positive finite number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid weight {weight} for role `{role}`: must be a positive finite number")]
pub struct InvalidWeight {
    /// The role.
    pub role: String,
    /// The weight given.
    pub weight: f64,
}

impl Allocator {
    /// An empty DRF allocator; `seed` drives the agent visiting order.
    pub fn new(seed: u64) -> Self {
        Self::with_policy(seed, Policy::Drf)
    }

    /// An empty allocator with the given policy.
    pub fn with_policy(seed: u64, policy: Policy) -> Self {
        Allocator {
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            total: Resources::new(),
            sorter: DrfSorter::default(),
            rng: SplitMix64::new(seed),
            cycles: 0,
            policy,
            weights: BTreeMap::new(),
        }
    }

    /// Adds a framework in `role` (active unless told otherwise). Re-adding replaces it.
    pub fn add_framework(&mut self, framework_id: &str, role: &str, active: bool) {
        self.remove_framework(framework_id);
        self.frameworks.insert(
            framework_id.to_string(),
            FrameworkEntry {
                role: role.to_string(),
                allocated: Resources::new(),
                active,
                suppressed: false,
                filters: BTreeMap::new(),
            },
        );
        self.sorter.set(framework_id, 0.0);
    }

    /// Removes a framework; anything it still held is returned to the agents.
    pub fn remove_framework(&mut self, framework_id: &str) {
        self.sorter.remove(framework_id);
        self.frameworks.remove(framework_id);
        for a in self.agents.values_mut() {
            if let Some(held) = a.by_framework.remove(framework_id) {
                a.allocated.subtract(&held);
            }
        }
    }

    /// Stops offers to a framework (disconnected) without forgetting it.
    pub fn deactivate_framework(&mut self, framework_id: &str) {
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.active = false;
        }
    }

    /// Resumes offers to a framework.
    pub fn activate_framework(&mut self, framework_id: &str) {
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.active = true;
        }
    }

    /// Adds an agent with `total` resources, of which `used` (by framework) are already in use.
    pub fn add_agent(&mut self, agent_id: &str, total: Resources, used: &[(String, Resources)]) {
        self.remove_agent(agent_id);
        self.total.add(&total);
        let mut entry = AgentEntry {
            total,
            allocated: Resources::new(),
            by_framework: BTreeMap::new(),
            active: true,
        };
        for (fw, res) in used {
            entry.allocated.add(res);
            entry.by_framework.entry(fw.clone()).or_default().add(res);
            if let Some(f) = self.frameworks.get_mut(fw) {
                f.allocated.add(res);
            }
        }
        self.agents.insert(agent_id.to_string(), entry);
        self.refresh_shares();
    }

    /// Removes an agent; whatever frameworks still held on it is dropped from their allocation.
    pub fn remove_agent(&mut self, agent_id: &str) {
        if let Some(a) = self.agents.remove(agent_id) {
            self.total.subtract(&a.total);
            for (fw, res) in &a.by_framework {
                if let Some(f) = self.frameworks.get_mut(fw) {
                    f.allocated.subtract(res);
                }
            }
            self.refresh_shares();
        }
    }

    /// Stops offering an agent's resources (disconnected, draining).
    pub fn deactivate_agent(&mut self, agent_id: &str) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.active = false;
        }
    }

    /// Resumes offering an agent.
    pub fn activate_agent(&mut self, agent_id: &str) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.active = true;
        }
    }

    /// Gives back resources a framework held on an agent (declined, unused or freed by a task),
    /// optionally refusing them to that framework until `refuse_until`.
    pub fn recover(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        resources: &Resources,
        refuse_until: Option<Timestamp>,
    ) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.allocated.subtract(resources);
            if let Some(held) = a.by_framework.get_mut(framework_id) {
                held.subtract(resources);
                if held.is_empty() {
                    a.by_framework.remove(framework_id);
                }
            }
        }
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.allocated.subtract(resources);
            if let Some(until) = refuse_until {
                f.filters
                    .entry(agent_id.to_string())
                    .or_default()
                    .push(Filter {
                        until,
                        resources: resources.clone(),
                    });
            }
            let share = f.allocated.dominant_share(&self.total) / weight_of(&self.weights, &f.role);
            self.sorter.set(framework_id, share);
        }
    }

    /// Sets a role's weight (default 1). Shares of frameworks in the role are divided by it.
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), InvalidWeight> {
        if !weight.is_finite() || weight <= 0.0 {
            return Err(InvalidWeight {
                role: role.to_string(),
                weight,
            });
        }
        self.weights.insert(role.to_string(), weight);
        self.refresh_shares();
        Ok(())
    }

    /// A role's weight.
    pub fn weight(&self, role: &str) -> f64 {
        weight_of(&self.weights, role)
    }

    /// The policy in use.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Stops offers to a framework until [`Allocator::revive`].
    pub fn suppress(&mut self, framework_id: &str) {
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.suppressed = true;
        }
    }

    /// Clears a framework's filters and suppression.
    pub fn revive(&mut self, framework_id: &str) {
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.suppressed = false;
            f.filters.clear();
        }
    }

    /// True if the framework is suppressed.
    pub fn is_suppressed(&self, framework_id: &str) -> bool {
        self.frameworks
            .get(framework_id)
            .is_some_and(|f| f.suppressed)
    }

    /// The framework's current dominant share of the cluster.
    pub fn dominant_share(&self, framework_id: &str) -> f64 {
        self.frameworks
            .get(framework_id)
            .map(|f| f.allocated.dominant_share(&self.total))
            .unwrap_or(0.0)
    }

    /// Everything the framework holds (offered or in use).
    pub fn allocated_to(&self, framework_id: &str) -> Resources {
        self.frameworks
            .get(framework_id)
            .map(|f| f.allocated.clone())
            .unwrap_or_default()
    }

    /// Resources held (offered or in use) on an agent.
    pub fn allocated_on(&self, agent_id: &str) -> Resources {
        self.agents
            .get(agent_id)
            .map(|a| a.allocated.clone())
            .unwrap_or_default()
    }

    /// Sum of all agents' resources.
    pub fn total(&self) -> &Resources {
        &self.total
    }

    /// Number of allocation cycles run.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    fn refresh_shares(&mut self) {
        for (id, f) in &self.frameworks {
            let w = weight_of(&self.weights, &f.role);
            self.sorter
                .set(id, f.allocated.dominant_share(&self.total) / w);
        }
    }

    /// Runs one allocation cycle at `now`.
    pub fn allocate(&mut self, now: Timestamp) -> Vec<Allocation> {
        self.cycles += 1;
        let mut out = Vec::new();
        // Drop expired filters lazily while checking; visit agents in a seeded random order.
        let mut order: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.active)
            .map(|(id, _)| id.clone())
            .collect();
        self.rng.shuffle(&mut order);
        for agent_id in order {
            let Some(agent) = self.agents.get(&agent_id) else {
                continue;
            };
            let Some(free) = agent.total.checked_sub(&agent.allocated) else {
                continue;
            };
            if !allocatable(&free) {
                continue;
            }
            // What every framework may get (unreserved), computed once per agent; reserved
            // resources are added only for frameworks of their role.
            let unreserved = free.for_role(UNRESERVED);
            let has_reserved = unreserved != free;
            let unreserved_ok = allocatable(&unreserved);
            let mut random_order: Vec<&str> = Vec::new();
            if self.policy == Policy::Random {
                random_order = self.sorter.iter().collect();
                random_order.sort_unstable();
                self.rng.shuffle(&mut random_order);
            }
            let candidates: Box<dyn Iterator<Item = &str>> = match self.policy {
                Policy::Drf => Box::new(self.sorter.iter()),
                Policy::Random => Box::new(random_order.into_iter()),
            };
            let chosen = candidates.into_iter().find_map(|fw_id| {
                let f = self.frameworks.get(fw_id)?;
                if !f.active || f.suppressed {
                    return None;
                }
                let offer = if has_reserved && f.role != UNRESERVED {
                    Cow::Owned(unreserved.plus(&free.for_role(&f.role)))
                } else if unreserved_ok {
                    Cow::Borrowed(&unreserved)
                } else {
                    return None;
                };
                let filtered = f.filters.get(&agent_id).is_some_and(|list| {
                    list.iter()
                        .any(|flt| flt.until > now && flt.resources.contains(&offer))
                });
                (!filtered && allocatable(&offer)).then(|| (fw_id.to_string(), offer.into_owned()))
            });
            let Some((fw_id, offer)) = chosen else {
                continue;
            };
            if let Some(a) = self.agents.get_mut(&agent_id) {
                a.allocated.add(&offer);
                a.by_framework.entry(fw_id.clone()).or_default().add(&offer);
            }
            let role = match self.frameworks.get_mut(&fw_id) {
                Some(f) => {
                    f.allocated.add(&offer);
                    f.filters.retain(|_, list| {
                        list.retain(|flt| flt.until > now);
                        !list.is_empty()
                    });
                    let share =
                        f.allocated.dominant_share(&self.total) / weight_of(&self.weights, &f.role);
                    self.sorter.set(&fw_id, share);
                    f.role.clone()
                }
                None => continue,
            };
            out.push(Allocation {
                framework_id: fw_id,
                agent_id,
                resources: offer,
                role,
            });
        }
        out
    }
}

fn weight_of(weights: &BTreeMap<String, f64>, role: &str) -> f64 {
    weights.get(role).copied().unwrap_or(1.0)
}

/// Mesos's rule: an offer is worth making if it has at least 0.01 cpus or 32 MB of memory.
pub fn allocatable(r: &Resources) -> bool {
    r.cpus_milli() >= MIN_ALLOCATABLE_CPUS_MILLI || r.mem_milli() >= MIN_ALLOCATABLE_MEM_MILLI
}

#[cfg(test)]
mod tests;
