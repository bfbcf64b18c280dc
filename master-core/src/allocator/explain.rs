//! Explanations: why a framework or role got nothing, or less than its share, right now.

use proffer_proto::resources::UNRESERVED;

use super::scalars::Scalars;
use super::{Allocator, Timestamp, allocatable};

impl Allocator {
    /// Why `framework_id` is (not) getting offers at `now`, one reason per line.
    pub fn explain_framework(&self, framework_id: &str, now: Timestamp) -> Vec<String> {
        let Some(slot) = self.fw_slot(framework_id) else {
            return vec![format!(
                "framework `{framework_id}` is not known to the allocator"
            )];
        };
        let Some(f) = self.fw(slot) else {
            return Vec::new();
        };
        // First, in one line: a minimum offer no agent could ever meet.
        let mut out: Vec<String> = self.impossible_minimums(f).into_iter().collect();
        let share = Scalars::of(&f.allocated).dominant_share(self.total_s);
        out.push(format!(
            "holds {} (dominant share {:.3})",
            f.allocated, share
        ));
        if !f.active {
            out.push("inactive: the framework is disconnected, so it gets no offers".into());
        }
        if let Some(limit) = f.offer_limit {
            let state = if f.at_offer_limit() {
                "at its limit: no more offers until it answers one"
            } else {
                "below its limit"
            };
            out.push(format!(
                "holds {} of at most {limit} outstanding offers (max_outstanding_offers): {state}",
                f.offers_out
            ));
        }
        for r in &f.roles {
            let name = &self.roles.nodes[*r].name;
            if f.suppressed.contains(r) {
                out.push(format!("suppressed in role `{name}` until it sends REVIVE"));
            }
            if let Some((_, alts)) = f.min_offer.iter().find(|(x, _)| x == r)
                && !alts.is_empty()
            {
                let sets: Vec<String> = alts.iter().map(|m| m.to_resources().to_string()).collect();
                out.push(format!(
                    "offers in role `{name}` must hold at least one of: {} (offer_filters); \
                     smaller leftovers are not offered to it",
                    sets.join(" | ")
                ));
            }
            out.extend(self.role_limits(*r));
        }
        let mut filtered = 0;
        let mut soonest: Option<Timestamp> = None;
        for a in self.agents.iter().flatten() {
            {
                let live: Vec<Timestamp> = a
                    .filters
                    .of(slot)
                    .map(|(u, _)| u)
                    .filter(|u| *u > now)
                    .collect();
                if !live.is_empty() {
                    filtered += 1;
                    let until = live.iter().copied().max();
                    soonest = match (soonest, until) {
                        (Some(s), Some(u)) => Some(s.min(u)),
                        (s, u) => s.or(u),
                    };
                }
            }
        }
        if filtered > 0 {
            let until = soonest
                .map(|t| format!(" (the first expires in {} ms)", t.since(now)))
                .unwrap_or_default();
            out.push(format!(
                "declined offers from {filtered} agent(s) with filters still active{until}"
            ));
        }
        out.extend(self.cluster_reasons(&f.roles));
        out
    }

    /// Why role `role` is (not) getting resources, one reason per line.
    pub fn explain_role(&self, role: &str, now: Timestamp) -> Vec<String> {
        let Some(r) = self.roles.get(role) else {
            return vec![format!(
                "role `{role}` is unknown (no framework, weight or quota uses it)"
            )];
        };
        let n = &self.roles.nodes[r];
        let mut out = vec![format!(
            "allocated {} (weighted dominant share {:.3}, weight {})",
            n.subtree.to_resources(),
            n.subtree.dominant_share(self.total_s) / n.weight,
            n.weight
        )];
        if n.quota.is_some() && !self.total_s.covers(&n.guarantees) {
            out.insert(
                0,
                format!(
                    "its quota guarantees {} exceed the whole cluster ({}): they can never be met",
                    n.guarantees.to_resources(),
                    self.total_s.to_resources()
                ),
            );
        }
        if n.frameworks.is_empty() && n.child_names.is_empty() {
            out.push("no framework is subscribed to this role".into());
        }
        let unmet = n.unmet_guarantee();
        if n.quota.is_some() {
            if unmet.is_empty() {
                out.push("quota guarantees are met".into());
            } else {
                out.push(format!(
                    "quota guarantees still need {}",
                    unmet.to_resources()
                ));
            }
        }
        out.extend(self.role_limits(r));
        for fw in n.frameworks.iter() {
            if let Some(f) = self.fw(fw) {
                for line in self.explain_framework(&f.id, now).into_iter().skip(1) {
                    out.push(format!("framework {}: {line}", f.id));
                }
            }
        }
        out.extend(self.cluster_reasons(&[r]));
        out
    }

    fn role_limits(&self, role: usize) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.roles.chain(role) {
            let n = &self.roles.nodes[r];
            if let Some(l) = n.limits {
                for (i, name) in super::scalars::NAMES.iter().enumerate() {
                    if l.0[i] != i64::MAX && n.subtree.0[i] >= l.0[i] {
                        out.push(format!(
                            "quota limit reached for {name} in role `{}`",
                            n.name
                        ));
                    }
                }
            }
        }
        out
    }

    fn cluster_reasons(&self, roles: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        let mut free_unres = Scalars::default();
        let mut reserved_elsewhere = false;
        let mut any_allocatable = false;
        let mut inactive = 0;
        for a in self.agents.iter().flatten() {
            if !a.active || a.draining {
                inactive += 1;
                continue;
            }
            free_unres = free_unres.plus(Scalars::unreserved(&a.free));
            any_allocatable |= allocatable(&a.free);
            reserved_elsewhere |= a.free.iter().any(|(k, _)| {
                k.role != UNRESERVED
                    && !roles.iter().any(|r| {
                        let name = &self.roles.nodes[*r].name;
                        k.role == *name || name.starts_with(&format!("{}/", k.role))
                    })
            });
        }
        if !any_allocatable {
            out.push("no agent has free resources above the minimum (0.01 cpus or 32 MB): the cluster is fully allocated".into());
        }
        if inactive > 0 {
            out.push(format!("{inactive} agent(s) are disconnected or draining"));
        }
        if reserved_elsewhere {
            out.push("some free resources are reserved for other roles".into());
        }
        let mut required = Scalars::default();
        for (i, n) in self.roles.nodes.iter().enumerate().skip(1) {
            if n.quota.is_some() && !roles.contains(&i) {
                required = required.plus(n.unmet_guarantee());
            }
        }
        if !required.is_empty() {
            out.push(format!(
                "{} is held back as headroom for other roles' unmet quota guarantees (free unreserved: {})",
                required.to_resources(),
                free_unres.to_resources()
            ));
        }
        out
    }
}

impl Allocator {
    /// A line saying that no agent in the cluster could ever meet `f`'s minimum offer in one
    /// of its roles (naming the role, the minimum and the largest agent), if so.
    fn impossible_minimums(&self, f: &super::state::FwEntry) -> Option<String> {
        let agents: Vec<&super::state::AgentEntry> = self.agents.iter().flatten().collect();
        if agents.is_empty() {
            return None;
        }
        for (role, alts) in &f.min_offer {
            if alts.is_empty() {
                continue;
            }
            let name = self.roles.nodes[*role].name.as_str();
            let usable = |a: &super::state::AgentEntry| Scalars::of(&a.total.usable_by(name));
            if agents
                .iter()
                .any(|a| alts.iter().any(|m| usable(a).covers(m)))
            {
                continue;
            }
            let largest = agents
                .iter()
                .map(|a| (usable(a), a.id.as_str()))
                .max_by_key(|(s, _)| (s.0[0], s.0[1]))
                .map(|(s, id)| format!("{} ({id})", s.to_resources()))
                .unwrap_or_default();
            let wanted: Vec<String> = alts.iter().map(|m| m.to_resources().to_string()).collect();
            return Some(format!(
                "no agent can ever meet its minimum offer in role `{name}` ({}): the largest agent has {largest}",
                wanted.join(" or ")
            ));
        }
        None
    }
}
