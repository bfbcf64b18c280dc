//! One allocation cycle: the quota stage (unmet guarantees first, agents may be chopped), then
//! the fair-share stage (hierarchical weighted DRF, within limits and headroom).

use proffer_proto::Resources;
use proffer_proto::resources::UNRESERVED;

use super::roles::OWN;
use super::scalars::{Scalars, UNCAPPED, chop};
use super::sorter::share_key;
use super::{Allocation, Allocator, Policy, Timestamp, allocatable};

/// In a cycle without guarantees to meet, after visiting this many agents the rest are
/// filtered on their bits in one sequential pass (see `Allocator::keep_useful`): a cycle that
/// stops before never pays for it, one that visits every agent pays a sequential pass instead
/// of a random-order cache miss per agent.
const COMPACT_AFTER: usize = 128;

/// What one agent can give, computed once per search.
struct AgentCtx<'a> {
    /// The unreserved part alone is worth offering.
    unreserved_ok: bool,
    /// Roles with reservations on the agent.
    reserved_roles: Vec<&'a str>,
}

/// What caps unreserved scalars in the current stage.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Quota stage for role `q`, which still needs `unmet`.
    Quota { unmet: Scalars },
    /// Fair stage: unreserved resources left on active agents, and what unmet guarantees need.
    Fair {
        available: Scalars,
        required: Scalars,
    },
}

impl Allocator {
    /// Runs one allocation cycle at `now`.
    pub fn allocate(&mut self, now: Timestamp) -> Vec<Allocation> {
        self.cycles += 1;
        if self.shares_dirty {
            self.refresh_all_shares();
        }
        self.expire_filters(now);
        let mut order = std::mem::take(&mut self.order);
        let mut out = Vec::new();

        // Stage 1: unmet quota guarantees, most starved role first.
        let mut quota_roles: Vec<(u64, usize)> = self.roles.nodes[1..]
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.unmet_guarantee().is_empty())
            .map(|(i, n)| {
                (
                    share_key(n.subtree.dominant_share(self.total_s) / n.weight),
                    i + 1,
                )
            })
            .collect();
        quota_roles.sort_unstable();
        // The agents are visited in a fresh random order. Without guarantees to meet (no role
        // has an unmet one, so no headroom is required either), only the fair stage visits
        // them, and the order is drawn step by step as it goes, so a cycle that stops early
        // (every framework at its offer limit) draws only for what it visited. With guarantees
        // to meet, every agent is ordered now.
        let lazy = quota_roles.is_empty();
        order.clear();
        order.extend(
            self.visit
                .iter()
                .enumerate()
                .filter(|(_, v)| **v)
                .map(|(i, _)| i),
        );
        if !lazy {
            self.rng.shuffle(&mut order);
        }
        if !quota_roles.is_empty() {
            // Roles are served in order, so met ones gather at the front: skip them.
            let mut start = 0;
            for &agent in &order {
                if self.eligible.is_empty() {
                    break;
                }
                while start < quota_roles.len()
                    && self.roles.nodes[quota_roles[start].1]
                        .unmet_guarantee()
                        .is_empty()
                {
                    start += 1;
                }
                for &(_, q) in &quota_roles[start..] {
                    let unmet = self.roles.nodes[q].unmet_guarantee();
                    if unmet.is_empty() {
                        continue;
                    }
                    if !self.agent(agent).is_some_and(|a| allocatable(&a.free)) {
                        break;
                    }
                    if let Some((fw, role, offer)) =
                        self.find(q, agent, now, Stage::Quota { unmet })
                    {
                        self.grant(agent, fw, role, offer, &mut out, None);
                    }
                }
            }
        }

        // Stage 2: everything else, keeping the headroom unmet guarantees need.
        let mut required = Scalars::default();
        for n in &self.roles.nodes[1..] {
            if n.quota.is_some() {
                required = required.plus(n.unmet_guarantee());
            }
        }
        // The headroom arithmetic is only needed while some guarantee is unmet.
        let mut available = Scalars::default();
        if !required.is_empty() {
            for &agent in &order {
                if let Some(a) = self.agent(agent) {
                    available = available.plus(Scalars::unreserved(&a.free));
                }
            }
        }
        let mut k = 0;
        while k < order.len() {
            // No framework can take anything (all inactive, suppressed or at their offer
            // limits): the rest of the agents need no look.
            if self.eligible.is_empty() {
                break;
            }
            if lazy {
                if k == COMPACT_AFTER {
                    self.keep_useful(&mut order, k);
                    if k >= order.len() {
                        break;
                    }
                }
                self.rng.shuffle_step(&mut order, k);
            }
            let agent = order[k];
            k += 1;
            loop {
                // Every eligible framework has filtered this agent: nothing to do here (checked
                // first, on the dense bit array: a few word operations, no resource arithmetic).
                if self.filtered_for_all(agent) {
                    break;
                }
                let Some(a) = self.agent(agent) else { break };
                if !allocatable(&a.free) {
                    break;
                }
                let stage = Stage::Fair {
                    available,
                    required,
                };
                let pick = match self.policy {
                    Policy::Drf => self.find(0, agent, now, stage),
                    Policy::Random => self.find_random(agent, now, stage),
                };
                let Some((fw, role, offer)) = pick else {
                    self.mark_too_small(agent);
                    break;
                };
                available = available.minus(Scalars::unreserved(&offer));
                self.grant(agent, fw, role, offer, &mut out, Some(&mut required));
            }
        }
        self.order = order;
        out
    }

    /// Drops from `order[from..]` the agents every eligible framework has filtered: they can
    /// give nothing this cycle (eligibility only shrinks during a cycle, and an agent's bits
    /// change only when it is visited). The tail is still nearly in slot order, so this is a
    /// sequential pass over the dense bits instead of a cache miss per agent in random order;
    /// the order of what is left is drawn as before, so it stays uniformly random.
    fn keep_useful(&self, order: &mut Vec<usize>, from: usize) {
        let mut kept = from;
        for i in from..order.len() {
            let agent = order[i];
            if !self.filtered_for_all(agent) {
                order[kept] = agent;
                kept += 1;
            }
        }
        order.truncate(kept);
    }

    /// True if every eligible framework has filtered unreserved agent `agent`, so it can give
    /// nothing now (an agent with reservations is always looked at).
    fn filtered_for_all(&self, agent: usize) -> bool {
        !self.reserved[agent] && self.eligible.is_subset(&self.filtered[agent])
    }

    /// Records an allocation (and lowers the headroom still required by the roles it helps).
    fn grant(
        &mut self,
        agent: usize,
        fw: usize,
        role: usize,
        offer: Resources,
        out: &mut Vec<Allocation>,
        required: Option<&mut Scalars>,
    ) {
        let unmet = |this: &Self| {
            this.roles.chain(role).fold(Scalars::default(), |acc, r| {
                acc.plus(this.roles.nodes[r].unmet_guarantee())
            })
        };
        let unmet_before = unmet(self);
        self.hold(agent, fw, role, &offer);
        self.offer_made(fw);
        if let Some(req) = required {
            let unmet_after = unmet(self);
            *req = req.minus(unmet_before.minus(unmet_after)).positive();
        }
        let (Some(f), Some(a)) = (self.fw(fw), self.agent(agent)) else {
            return;
        };
        out.push(Allocation {
            framework_id: f.id.clone(),
            agent_id: a.id.clone(),
            resources: offer,
            role: self.roles.nodes[role].name.clone(),
        });
    }

    /// The first (framework, role, offer) in DRF order under role node `node`.
    fn find(
        &self,
        node: usize,
        agent: usize,
        now: Timestamp,
        stage: Stage,
    ) -> Option<(usize, usize, Resources)> {
        let a = self.agent(agent)?;
        // Which roles can use anything here: all, if the unreserved part is allocatable; else
        // only roles related to a reservation on the agent.
        let ctx = AgentCtx {
            unreserved_ok: !a.has_reserved || allocatable(&a.free.for_role(UNRESERVED)),
            reserved_roles: if a.has_reserved {
                let mut v: Vec<&str> = a
                    .free
                    .iter()
                    .map(|(k, _)| k.role.as_str())
                    .filter(|r| *r != UNRESERVED)
                    .collect();
                v.dedup();
                v
            } else {
                Vec::new()
            },
        };
        self.find_in(node, agent, now, stage, &ctx)
    }

    fn find_in(
        &self,
        node: usize,
        agent: usize,
        now: Timestamp,
        stage: Stage,
        ctx: &AgentCtx<'_>,
    ) -> Option<(usize, usize, Resources)> {
        let n = &self.roles.nodes[node];
        // The subtree of a quota-stage role includes the role's own frameworks.
        let own_first = node != 0 && !n.children.contains(OWN) && !n.frameworks.is_empty();
        if own_first && let Some(found) = self.pick_framework(node, agent, now, stage) {
            return Some(found);
        }
        for child in n.children.iter() {
            if child == OWN {
                if let Some(found) = self.pick_framework(node, agent, now, stage) {
                    return Some(found);
                }
            } else if !self.at_limit(child)
                && self.may_use(child, ctx)
                && let Some(found) = self.find_in(child, agent, now, stage, ctx)
            {
                return Some(found);
            }
        }
        None
    }

    /// True if some resource on the agent could go to role `role` or its descendants.
    fn may_use(&self, role: usize, ctx: &AgentCtx<'_>) -> bool {
        if ctx.unreserved_ok {
            return true;
        }
        let name = self.roles.nodes[role].name.as_str();
        ctx.reserved_roles.iter().any(|r| {
            *r == name
                || name
                    .strip_prefix(*r)
                    .is_some_and(|rest| rest.starts_with('/'))
                || r.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// The first framework of role node `role` that takes what the role would be offered.
    fn pick_framework(
        &self,
        role: usize,
        agent: usize,
        now: Timestamp,
        stage: Stage,
    ) -> Option<(usize, usize, Resources)> {
        let n = &self.roles.nodes[role];
        // Cheap bit tests first: a role none of whose frameworks is eligible and unfiltered
        // here needs no offer computed.
        let bits = self.filtered.get(agent)?;
        if !n
            .frameworks
            .iter()
            .any(|fw| self.eligible.get(fw) && !bits.get(fw))
        {
            return None;
        }
        let offer = self.role_offer(role, agent, stage)?;
        let fw = n
            .frameworks
            .iter()
            .find(|fw| self.takes(role, *fw, agent, now, &offer))?;
        Some((fw, role, offer))
    }

    /// A seeded random order of roles, and of frameworks within each, for the `random` policy.
    fn find_random(
        &mut self,
        agent: usize,
        now: Timestamp,
        stage: Stage,
    ) -> Option<(usize, usize, Resources)> {
        let mut role_order: Vec<usize> = (1..self.roles.nodes.len())
            .filter(|r| !self.roles.nodes[*r].frameworks.is_empty() && !self.at_limit(*r))
            .collect();
        self.rng.shuffle(&mut role_order);
        for role in role_order {
            let Some(offer) = self.role_offer(role, agent, stage) else {
                continue;
            };
            let mut fws: Vec<usize> = self.roles.nodes[role].frameworks.iter().collect();
            fws.sort_unstable();
            self.rng.shuffle(&mut fws);
            if let Some(fw) = fws
                .into_iter()
                .find(|fw| self.takes(role, *fw, agent, now, &offer))
            {
                return Some((fw, role, offer));
            }
        }
        None
    }

    /// What role node `role` would be offered on `agent` now, if anything worth offering.
    fn role_offer(&self, role: usize, agent: usize, stage: Stage) -> Option<Resources> {
        let a = self.agent(agent)?;
        let caps = match stage {
            Stage::Quota { unmet } => self.limit_caps(role).min(unmet),
            Stage::Fair {
                available,
                required,
            } => self
                .limit_caps(role)
                .min(self.headroom_caps(role, available, required)),
        };
        let offer = if a.has_reserved {
            // The unreserved part (capped), plus what is reserved for the role and each of its
            // ancestors. The role named `*` (frameworks without a role) is a node of the tree
            // too: its "reservations" are the unreserved part, already counted (counting them
            // again offered the unreserved part twice, issue 15).
            let mut o = chop(&a.free.for_role(UNRESERVED), caps);
            for r in self.roles.chain(role) {
                let name = self.roles.nodes[r].name.as_str();
                if name != UNRESERVED {
                    o.add(&a.free.for_role(name));
                }
            }
            o
        } else if caps == UNCAPPED {
            a.free.clone()
        } else {
            chop(&a.free, caps)
        };
        allocatable(&offer).then_some(offer)
    }

    /// True if framework `fw` (in `role`) takes `offer` on `agent`: active, not suppressed in
    /// the role, and no unexpired filter covering the offer.
    fn takes(
        &self,
        role: usize,
        fw: usize,
        agent: usize,
        now: Timestamp,
        offer: &Resources,
    ) -> bool {
        let (Some(f), Some(a)) = (self.fw(fw), self.agent(agent)) else {
            return false;
        };
        f.active
            && !f.at_offer_limit()
            && !f.suppressed.contains(&role)
            && f.roles.contains(&role)
            && !self.filtered.get(agent).is_some_and(|b| b.get(fw))
            && f.meets_min(role, offer)
            && !a
                .filters
                .of(fw)
                .any(|(until, r)| until > now && r.contains(offer))
    }

    /// True if `role`'s subtree can get nothing more under its own limits.
    fn at_limit(&self, role: usize) -> bool {
        let n = &self.roles.nodes[role];
        n.limits.is_some_and(|l| {
            l.0[0] - n.subtree.0[0] < super::MIN_ALLOCATABLE_CPUS_MILLI
                && l.0[1] - n.subtree.0[1] < super::MIN_ALLOCATABLE_MEM_MILLI
        })
    }

    /// How much more (unreserved scalars) `role` may get under its and its ancestors' limits.
    fn limit_caps(&self, role: usize) -> Scalars {
        let mut caps = UNCAPPED;
        for r in self.roles.chain(role) {
            let n = &self.roles.nodes[r];
            if let Some(l) = n.limits {
                let room = Scalars(std::array::from_fn(|i| {
                    if l.0[i] == i64::MAX {
                        i64::MAX
                    } else {
                        (l.0[i] - n.subtree.0[i]).max(0)
                    }
                }));
                caps = caps.min(room);
            }
        }
        caps
    }

    /// How much unreserved `role` may take without eating into other roles' unmet guarantees.
    fn headroom_caps(&self, role: usize, available: Scalars, required: Scalars) -> Scalars {
        if required.is_empty() {
            return UNCAPPED;
        }
        let own = self.roles.chain(role).fold(Scalars::default(), |acc, r| {
            let u = self.roles.nodes[r].unmet_guarantee();
            Scalars(std::array::from_fn(|i| acc.0[i].max(u.0[i])))
        });
        let mut caps = available.minus(required).plus(own).positive();
        // Resources nobody needs for guarantees are not capped.
        for i in 0..4 {
            if required.0[i] <= 0 {
                caps.0[i] = i64::MAX;
            }
        }
        caps
    }

    /// Recomputes every share after the cluster total changed.
    pub(crate) fn refresh_all_shares(&mut self) {
        self.shares_dirty = false;
        for (slot, f) in self.fws.iter().enumerate() {
            let Some(f) = f else { continue };
            for r in &f.roles {
                let share = f
                    .alloc
                    .get(r)
                    .copied()
                    .unwrap_or_default()
                    .dominant_share(self.total_s);
                self.roles.nodes[*r].frameworks.set(slot, share_key(share));
            }
        }
        self.roles.rekey_all(self.total_s);
    }
}
