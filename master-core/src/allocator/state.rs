//! Per-agent and per-framework records, and the allocator's event interface.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use proffer_proto::Resources;
use proffer_proto::resources::UNRESERVED;

use super::bits::BitSet;
use super::filters::FilterTable;
use super::scalars::Scalars;
use super::sorter::share_key;
use super::{Allocator, Timestamp};

/// An agent's record.
#[derive(Debug, Clone)]
pub(crate) struct AgentEntry {
    pub id: String,
    pub generation: u64,
    pub total: Resources,
    pub free: Resources,
    pub has_reserved: bool,
    /// What each (framework slot, role node) holds here.
    pub held: BTreeMap<(usize, usize), Resources>,
    pub active: bool,
    pub draining: bool,
    pub filters: FilterTable,
    /// What the agent's bits in `Allocator::filtered` were computed for (⊇ the current free).
    pub bits_valid_for: Resources,
    /// The earliest filter expiry queued for this agent.
    pub next_expiry: Option<Timestamp>,
}

impl AgentEntry {
    /// Recomputes the agent's filtered bits against its current free resources.
    pub fn revalidate_filters(&mut self, filtered: &mut BitSet, now: Option<Timestamp>) {
        self.bits_valid_for = self.free.clone();
        filtered.clear_all();
        let fws: Vec<usize> = self.filters.frameworks().collect();
        for fw in fws {
            let covered = self.filters.of(fw).any(|(until, r)| {
                now.is_none_or(|t| until > t) && r.contains(&self.bits_valid_for)
            });
            if covered {
                filtered.set(fw);
            }
        }
    }

    /// Called whenever free resources grew.
    pub fn free_grew(&mut self, filtered: &mut BitSet) {
        if !self.bits_valid_for.contains(&self.free) {
            self.revalidate_filters(filtered, None);
        }
    }
}

/// A framework's record.
#[derive(Debug, Clone)]
pub(crate) struct FwEntry {
    pub id: String,
    /// Role nodes it is subscribed to, in subscription order.
    pub roles: Vec<usize>,
    pub suppressed: BTreeSet<usize>,
    pub active: bool,
    /// Allocation per role node (scalars), for shares.
    pub alloc: BTreeMap<usize, Scalars>,
    pub allocated: Resources,
    /// Agents where it has filters.
    pub filtered_agents: BTreeSet<usize>,
    /// At most this many offers outstanding at once (`None`: no limit).
    pub offer_limit: Option<u32>,
    /// Offers made to it that are not answered, rescinded or expired yet.
    pub offers_out: u32,
    /// Per role node: minimum quantity sets an offer must hold one of.
    pub min_offer: Vec<(usize, Vec<Scalars>)>,
}

impl FwEntry {
    pub fn eligible(&self) -> bool {
        self.active
            && !self.at_offer_limit()
            && self.roles.iter().any(|r| !self.suppressed.contains(r))
    }

    /// True if it holds as many outstanding offers as it asked to hold at most.
    pub fn at_offer_limit(&self) -> bool {
        self.offer_limit.is_some_and(|l| self.offers_out >= l)
    }
}

impl Allocator {
    /// Adds a framework subscribed to `roles` (empty = `*`). Re-adding updates its roles.
    pub fn add_framework(&mut self, framework_id: &str, roles: &[String], active: bool) {
        let wanted: Vec<String> = if roles.is_empty() {
            vec![UNRESERVED.to_string()]
        } else {
            roles.to_vec()
        };
        let role_idx: Vec<usize> = wanted.iter().map(|r| self.roles.ensure(r)).collect();
        if let Some(slot) = self.fw_slot(framework_id) {
            self.set_framework_roles(slot, role_idx);
            if let Some(f) = self.fws[slot].as_mut() {
                f.active = active;
            }
            self.refresh_eligible(slot);
            return;
        }
        let slot = self.free_fw_slots.pop().unwrap_or_else(|| {
            self.fws.push(None);
            self.fws.len() - 1
        });
        self.fws[slot] = Some(FwEntry {
            id: framework_id.to_string(),
            roles: Vec::new(),
            suppressed: BTreeSet::new(),
            active,
            alloc: BTreeMap::new(),
            allocated: Resources::new(),
            filtered_agents: BTreeSet::new(),
            offer_limit: None,
            offers_out: 0,
            min_offer: Vec::new(),
        });
        self.fw_ids.insert(framework_id.to_string(), slot);
        self.set_framework_roles(slot, role_idx);
        self.refresh_eligible(slot);
    }

    fn set_framework_roles(&mut self, slot: usize, roles: Vec<usize>) {
        let Some(f) = self.fws[slot].as_mut() else {
            return;
        };
        let old = std::mem::replace(&mut f.roles, roles.clone());
        for r in old {
            // A role the framework still holds resources in stays until they are recovered.
            if !roles.contains(&r) && f.alloc.get(&r).is_none_or(|s| s.is_empty()) {
                self.roles.nodes[r].frameworks.remove(slot);
                self.roles.rekey_own(r, self.total_s);
            }
        }
        for r in roles {
            let share = self.fws[slot]
                .as_ref()
                .and_then(|f| f.alloc.get(&r).copied())
                .unwrap_or_default()
                .dominant_share(self.total_s);
            self.roles.nodes[r].frameworks.set(slot, share_key(share));
            self.roles.rekey_own(r, self.total_s);
        }
    }

    /// Sets how many offers the framework may hold at once (`None` or 0: no limit).
    pub fn set_offer_limit(&mut self, framework_id: &str, limit: Option<u32>) {
        let Some(slot) = self.fw_slot(framework_id) else {
            return;
        };
        if let Some(f) = self.fws[slot].as_mut() {
            f.offer_limit = limit.filter(|l| *l > 0);
        }
        self.refresh_eligible(slot);
    }

    /// Records that one offer to the framework was made (by an allocation cycle).
    pub(crate) fn offer_made(&mut self, slot: usize) {
        if let Some(f) = self.fws[slot].as_mut() {
            f.offers_out += 1;
            if f.at_offer_limit() {
                self.eligible.clear(slot);
            }
        }
    }

    /// Records that one offer to the framework ended (answered, rescinded, expired or never
    /// sent), so it may be offered more under its offer limit.
    pub fn offer_closed(&mut self, framework_id: &str) {
        if let Some(slot) = self.fw_slot(framework_id) {
            self.close_offer_slot(slot);
        }
    }

    fn close_offer_slot(&mut self, slot: usize) {
        if let Some(f) = self.fws[slot].as_mut() {
            f.offers_out = f.offers_out.saturating_sub(1);
        }
        self.refresh_eligible(slot);
    }

    /// An offer ended unanswered or declined: [`Allocator::offer_closed`] and
    /// [`Allocator::recover`] with one lookup of the framework.
    pub fn recover_offer(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        resources: &Resources,
        refuse_until: Option<Timestamp>,
    ) {
        let Some(fs) = self.fw_slot(framework_id) else {
            return;
        };
        self.close_offer_slot(fs);
        if let Some(slot) = self.agent_slot(agent_id) {
            self.recover_at(fs, slot, resources, refuse_until);
        }
    }

    /// Offers the allocator counts as outstanding for the framework, and its limit.
    pub fn offers_outstanding(&self, framework_id: &str) -> Option<(u32, Option<u32>)> {
        let f = self.fws.get(self.fw_slot(framework_id)?)?.as_ref()?;
        Some((f.offers_out, f.offer_limit))
    }

    fn refresh_eligible(&mut self, slot: usize) {
        let on = self.fws[slot].as_ref().is_some_and(FwEntry::eligible);
        self.eligible.assign(slot, on);
    }

    /// Removes a framework; whatever it still held goes back to the agents.
    pub fn remove_framework(&mut self, framework_id: &str) {
        let Some(slot) = self.fw_ids.remove(framework_id) else {
            return;
        };
        let Some(f) = self.fws[slot].take() else {
            return;
        };
        for (a, bits) in self.agents.iter_mut().zip(self.filtered.iter_mut()) {
            let Some(a) = a else { continue };
            let keys: Vec<(usize, usize)> = a
                .held
                .range((slot, 0)..=(slot, usize::MAX))
                .map(|(k, _)| *k)
                .collect();
            let mut grew = false;
            for k in keys {
                if let Some(res) = a.held.remove(&k) {
                    a.free.add(&res);
                    grew = true;
                }
            }
            a.filters.remove_fw(slot);
            bits.clear(slot);
            if grew {
                a.free_grew(bits);
            }
        }
        for (role, s) in &f.alloc {
            self.roles
                .add_alloc(*role, Scalars::default().minus(*s), self.total_s);
        }
        for r in f.alloc.keys().chain(f.roles.iter()) {
            self.roles.nodes[*r].frameworks.remove(slot);
            self.roles.rekey_own(*r, self.total_s);
        }
        self.eligible.clear(slot);
        self.min_fws.retain(|s| *s != slot);
        self.free_fw_slots.push(slot);
    }

    /// Stops offers to a framework (disconnected) without forgetting it.
    pub fn deactivate_framework(&mut self, framework_id: &str) {
        self.set_active(framework_id, false);
    }

    /// Resumes offers to a framework.
    pub fn activate_framework(&mut self, framework_id: &str) {
        self.set_active(framework_id, true);
    }

    fn set_active(&mut self, framework_id: &str, active: bool) {
        let Some(slot) = self.fw_slot(framework_id) else {
            return;
        };
        if let Some(f) = self.fws[slot].as_mut() {
            f.active = active;
        }
        self.refresh_eligible(slot);
    }

    /// Stops offers to a framework in `roles` (empty = all its roles) until revived.
    pub fn suppress_roles(&mut self, framework_id: &str, roles: &[String]) {
        let Some(slot) = self.fw_slot(framework_id) else {
            return;
        };
        let idx: Vec<usize> = roles.iter().filter_map(|r| self.roles.get(r)).collect();
        if let Some(f) = self.fws[slot].as_mut() {
            let targets = if roles.is_empty() {
                f.roles.clone()
            } else {
                idx
            };
            f.suppressed.extend(targets);
        }
        self.refresh_eligible(slot);
    }

    /// Clears suppression in `roles` (empty = all) and all of the framework's decline filters.
    pub fn revive_roles(&mut self, framework_id: &str, roles: &[String]) {
        let Some(slot) = self.fw_slot(framework_id) else {
            return;
        };
        let idx: Vec<usize> = roles.iter().filter_map(|r| self.roles.get(r)).collect();
        let agents = match self.fws[slot].as_mut() {
            Some(f) => {
                if roles.is_empty() {
                    f.suppressed.clear();
                } else {
                    f.suppressed.retain(|r| !idx.contains(r));
                }
                std::mem::take(&mut f.filtered_agents)
            }
            None => return,
        };
        for a in agents {
            if let Some(agent) = self.agents.get_mut(a).and_then(Option::as_mut) {
                agent.filters.remove_fw(slot);
                if let Some(bits) = self.filtered.get_mut(a) {
                    bits.clear(slot);
                }
            }
        }
        self.refresh_eligible(slot);
    }

    /// Suppresses all of the framework's roles.
    pub fn suppress(&mut self, framework_id: &str) {
        self.suppress_roles(framework_id, &[]);
    }

    /// Revives all of the framework's roles and clears its filters.
    pub fn revive(&mut self, framework_id: &str) {
        self.revive_roles(framework_id, &[]);
    }

    /// True if the framework is suppressed in every role.
    pub fn is_suppressed(&self, framework_id: &str) -> bool {
        self.fw_slot(framework_id)
            .and_then(|s| self.fw(s))
            .is_some_and(|f| {
                !f.roles.is_empty() && f.roles.iter().all(|r| f.suppressed.contains(r))
            })
    }

    /// The framework's dominant share of the cluster (all roles together).
    pub fn dominant_share(&self, framework_id: &str) -> f64 {
        self.fw_slot(framework_id)
            .and_then(|s| self.fw(s))
            .map(|f| Scalars::of(&f.allocated).dominant_share(self.total_s))
            .unwrap_or(0.0)
    }

    /// Everything the framework holds (offered or in use).
    pub fn allocated_to(&self, framework_id: &str) -> Resources {
        self.fw_slot(framework_id)
            .and_then(|s| self.fw(s))
            .map(|f| f.allocated.clone())
            .unwrap_or_default()
    }

    /// Resources held (offered or in use) on an agent.
    pub fn allocated_on(&self, agent_id: &str) -> Resources {
        let mut sum = Resources::new();
        if let Some(a) = self.agent_slot(agent_id).and_then(|s| self.agent(s)) {
            for res in a.held.values() {
                sum.add(res);
            }
        }
        sum
    }

    /// Adds an agent with `total` resources, of which `used` (by framework) are already in use.
    pub fn add_agent(&mut self, agent_id: &str, total: Resources, used: &[(String, Resources)]) {
        self.remove_agent(agent_id);
        let slot = self.free_agent_slots.pop().unwrap_or_else(|| {
            self.agents.push(None);
            self.filtered.push(BitSet::default());
            self.visit.push(false);
            self.reserved.push(false);
            self.agents.len() - 1
        });
        self.filtered[slot].clear_all();
        let generation = self.next_gen();
        self.total.add(&total);
        self.total_s = Scalars::of(&self.total);
        self.shares_dirty = true;
        let has_reserved = has_reservations(&total);
        self.agents[slot] = Some(AgentEntry {
            id: agent_id.to_string(),
            generation,
            free: total.clone(),
            total,
            has_reserved,
            held: BTreeMap::new(),
            active: true,
            draining: false,
            filters: FilterTable::default(),
            bits_valid_for: Resources::new(),
            next_expiry: None,
        });
        self.agent_ids.insert(agent_id.to_string(), slot);
        self.sync_flags(slot);
        for (fw, res) in used {
            if let Some(fs) = self.fw_slot(fw) {
                let role = self.role_for(fs, res);
                self.hold(slot, fs, role, res);
            }
        }
    }

    /// The role a framework's resources count against: the reservation's role if the framework
    /// has it, else its first role.
    fn role_for(&self, fw: usize, res: &Resources) -> usize {
        let Some(f) = self.fw(fw) else { return 0 };
        for (k, _) in res.iter() {
            if k.role != UNRESERVED
                && let Some(r) = f
                    .roles
                    .iter()
                    .find(|r| self.roles.nodes[**r].name == k.role)
            {
                return *r;
            }
        }
        f.roles.first().copied().unwrap_or(0)
    }

    /// Moves `res` from the agent's free pool to (framework, role).
    pub(crate) fn hold(&mut self, agent: usize, fw: usize, role: usize, res: &Resources) {
        let s = Scalars::of(res);
        if let Some(a) = self.agents.get_mut(agent).and_then(Option::as_mut) {
            a.free.subtract(res);
            a.held.entry((fw, role)).or_default().add(res);
        }
        if let Some(f) = self.fws.get_mut(fw).and_then(Option::as_mut) {
            f.allocated.add(res);
            let e = f.alloc.entry(role).or_default();
            *e = e.plus(s);
            let share = e.dominant_share(self.total_s);
            self.roles.nodes[role].frameworks.set(fw, share_key(share));
        }
        self.roles.add_alloc(role, s, self.total_s);
    }

    /// Removes an agent; whatever frameworks held on it is dropped from their allocation.
    pub fn remove_agent(&mut self, agent_id: &str) {
        let Some(slot) = self.agent_ids.remove(agent_id) else {
            return;
        };
        let Some(a) = self.agents[slot].take() else {
            return;
        };
        self.sync_flags(slot);
        for ((fw, role), res) in &a.held {
            self.release_accounting(*fw, *role, res);
        }
        for fw in a.filters.frameworks() {
            if let Some(f) = self.fws.get_mut(fw).and_then(Option::as_mut) {
                f.filtered_agents.remove(&slot);
            }
        }
        self.total.subtract(&a.total);
        self.total_s = Scalars::of(&self.total);
        self.shares_dirty = true;
        self.free_agent_slots.push(slot);
    }

    /// Subtracts `res` from a framework's and its role's allocation (not from the agent).
    fn release_accounting(&mut self, fw: usize, role: usize, res: &Resources) {
        let s = Scalars::of(res);
        if let Some(f) = self.fws.get_mut(fw).and_then(Option::as_mut) {
            f.allocated.subtract(res);
            let e = f.alloc.entry(role).or_default();
            *e = e.minus(s).positive();
            let share = e.dominant_share(self.total_s);
            if e.is_empty() && !f.roles.contains(&role) {
                f.alloc.remove(&role);
                self.roles.nodes[role].frameworks.remove(fw);
            } else {
                self.roles.nodes[role].frameworks.set(fw, share_key(share));
            }
        }
        self.roles
            .add_alloc(role, Scalars::default().minus(s), self.total_s);
    }

    /// Replaces an agent's total (e.g. after a reservation changed labels); held resources stay.
    pub fn update_agent_total(&mut self, agent_id: &str, total: Resources) {
        let Some(slot) = self.agent_slot(agent_id) else {
            return;
        };
        let Some(a) = self.agents[slot].as_mut() else {
            return;
        };
        let held = a.held.values().fold(Resources::new(), |mut acc, r| {
            acc.add(r);
            acc
        });
        self.total.subtract(&a.total);
        self.total.add(&total);
        a.has_reserved = has_reservations(&total);
        a.free = total.checked_sub(&held).unwrap_or_default();
        a.total = total;
        a.revalidate_filters(&mut self.filtered[slot], None);
        self.sync_flags(slot);
        self.total_s = Scalars::of(&self.total);
        self.shares_dirty = true;
    }

    /// A held chunk changed labels (`from` → `to`, e.g. unreserved → reserved); it stays held by
    /// the framework and the agent's total changes accordingly. `from` may span the
    /// framework's roles on that agent.
    pub fn convert(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        from: &Resources,
        to: &Resources,
    ) {
        let (Some(fs), Some(slot)) = (self.fw_slot(framework_id), self.agent_slot(agent_id)) else {
            return;
        };
        let (_, left) = self.release_held(slot, fs, from);
        if let Some(a) = self.agents[slot].as_mut() {
            // Whatever of `from` was not held (it should all be) is taken from the free pool.
            a.free.subtract(&left);
            a.total.subtract(from);
            a.total.add(to);
            a.free.add(to);
            a.has_reserved = has_reservations(&a.total);
        }
        self.sync_flags(slot);
        self.total.subtract(from);
        self.total.add(to);
        self.total_s = Scalars::of(&self.total);
        self.shares_dirty = true;
        let role = self.role_for(fs, to);
        self.hold(slot, fs, role, to);
    }

    /// Stops offering an agent's resources (disconnected).
    pub fn deactivate_agent(&mut self, agent_id: &str) {
        self.set_agent_active(agent_id, false);
    }

    /// Resumes offering an agent.
    pub fn activate_agent(&mut self, agent_id: &str) {
        self.set_agent_active(agent_id, true);
    }

    fn set_agent_active(&mut self, agent_id: &str, active: bool) {
        let Some(slot) = self.agent_slot(agent_id) else {
            return;
        };
        if let Some(a) = self.agents[slot].as_mut() {
            a.active = active;
        }
        self.sync_flags(slot);
    }

    /// Copies the agent's flags the cycle reads into the dense arrays.
    fn sync_flags(&mut self, slot: usize) {
        let (visit, reserved) = match self.agents.get(slot).and_then(Option::as_ref) {
            Some(a) => (a.active && !a.draining, a.has_reserved),
            None => (false, false),
        };
        if let (Some(v), Some(r)) = (self.visit.get_mut(slot), self.reserved.get_mut(slot)) {
            *v = visit;
            *r = reserved;
        }
    }

    /// Marks an agent as draining: it gets no new offers until undrained.
    pub fn set_draining(&mut self, agent_id: &str, draining: bool) {
        let Some(slot) = self.agent_slot(agent_id) else {
            return;
        };
        if let Some(a) = self.agents[slot].as_mut() {
            a.draining = draining;
        }
        self.sync_flags(slot);
    }

    /// True while the agent is drained.
    pub fn is_draining(&self, agent_id: &str) -> bool {
        self.agent_slot(agent_id)
            .and_then(|s| self.agent(s))
            .is_some_and(|a| a.draining)
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
        // A framework that is gone already returned everything it held when it was removed.
        let (Some(fs), Some(slot)) = (self.fw_slot(framework_id), self.agent_slot(agent_id)) else {
            return;
        };
        self.recover_at(fs, slot, resources, refuse_until);
    }

    /// [`Allocator::recover`] for framework slot `fs` and agent slot `slot`.
    fn recover_at(
        &mut self,
        fs: usize,
        slot: usize,
        resources: &Resources,
        refuse_until: Option<Timestamp>,
    ) {
        let (taken, _) = self.release_held(slot, fs, resources);
        if let Some(a) = self.agents[slot].as_mut() {
            a.free.add(&taken);
        }
        let generation = self.agents[slot]
            .as_ref()
            .map(|a| a.generation)
            .unwrap_or(0);
        if let Some(a) = self.agents[slot].as_mut() {
            let bits = &mut self.filtered[slot];
            a.free_grew(bits);
            if let Some(until) = refuse_until {
                if resources.contains(&a.bits_valid_for) {
                    bits.set(fs);
                }
                a.filters.add(fs, until, resources);
                if a.next_expiry.is_none_or(|t| until < t) {
                    a.next_expiry = Some(until);
                    self.expiries
                        .push(Reverse((until, slot as u32, generation)));
                }
            }
        }
        if refuse_until.is_some()
            && let Some(f) = self.fws[fs].as_mut()
        {
            f.filtered_agents.insert(slot);
        }
    }

    /// Takes `res` out of the (framework `fs`, role) chunks held on agent `slot` — `res` may span
    /// the framework's roles — and out of their accounting. Returns what was taken and what of
    /// `res` was not held. The agent's free pool is left to the caller.
    fn release_held(&mut self, slot: usize, fs: usize, res: &Resources) -> (Resources, Resources) {
        let mut left = res.clone();
        // (role, what was taken from that role's chunk); usually exactly one.
        let mut released: Vec<(usize, Resources)> = Vec::new();
        let mut emptied: Vec<(usize, usize)> = Vec::new();
        if let Some(a) = self.agents[slot].as_mut() {
            for (key, held) in a.held.range_mut((fs, 0)..=(fs, usize::MAX)) {
                if left.is_empty() {
                    break;
                }
                let take = if *held == left {
                    // The common case (a whole offer declined): the chunk goes as it is.
                    left = Resources::new();
                    std::mem::take(held)
                } else if held.contains(&left) {
                    std::mem::take(&mut left)
                } else {
                    let t = intersect(held, &left);
                    left.subtract(&t);
                    t
                };
                if !take.is_empty() {
                    held.subtract(&take);
                    if held.is_empty() {
                        emptied.push(*key);
                    }
                    released.push((key.1, take));
                }
            }
            for key in &emptied {
                a.held.remove(key);
            }
        }
        let mut taken = Resources::new();
        for (role, take) in released {
            self.release_accounting(fs, role, &take);
            if taken.is_empty() {
                taken = take;
            } else {
                taken.add(&take);
            }
        }
        (taken, left)
    }

    /// Drops filters that expired by `now`.
    pub(crate) fn expire_filters(&mut self, now: Timestamp) {
        while let Some(Reverse((until, slot, generation))) = self.expiries.peek().copied() {
            if until > now {
                break;
            }
            self.expiries.pop();
            let slot = slot as usize;
            let Some(a) = self.agents.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if a.generation != generation || a.next_expiry != Some(until) {
                continue; // stale entry
            }
            let bits = &mut self.filtered[slot];
            for fw in a.filters.expire_all(now) {
                if a.filters.has(fw) {
                    let covered = a.filters.of(fw).any(|(_, r)| r.contains(&a.bits_valid_for));
                    bits.assign(fw, covered);
                } else {
                    bits.clear(fw);
                    if let Some(f) = self.fws.get_mut(fw).and_then(Option::as_mut) {
                        f.filtered_agents.remove(&slot);
                    }
                }
            }
            a.next_expiry = a.filters.next_expiry();
            if let Some(t) = a.next_expiry {
                self.expiries.push(Reverse((t, slot as u32, generation)));
            }
        }
    }
}

/// True if any entry of `r` is reserved for a role.
fn has_reservations(r: &Resources) -> bool {
    r.iter().any(|(k, _)| k.role != UNRESERVED)
}

/// The common part of two resource bags (scalars: min; ranges and sets: overlap by subtraction).
fn intersect(a: &Resources, b: &Resources) -> Resources {
    // a ∩ b = a − (a − b)
    let mut a_minus_b = a.clone();
    a_minus_b.subtract(b);
    let mut out = a.clone();
    out.subtract(&a_minus_b);
    out
}
