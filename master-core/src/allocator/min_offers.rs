//! Per-framework, per-role minimum offers (`FrameworkInfo.offer_filters`, as Mesos'
//! `min_allocatable_resources`): an offer in a role is made only if it holds one of the
//! role's minimum quantity sets in full. Agents whose leftovers are too small for a framework
//! get its bit in `filtered`, so later cycles skip them as cheaply as a declined agent.

use proffer_proto::Resources;

use super::Allocator;
use super::scalars::Scalars;
use super::state::FwEntry;

impl Scalars {
    /// True if every amount is at least `min`'s.
    pub(crate) fn covers(&self, min: &Scalars) -> bool {
        self.0.iter().zip(min.0.iter()).all(|(a, m)| a >= m)
    }
}

impl FwEntry {
    /// True if `offer` in role node `role` meets the framework's minimum for that role (if any).
    pub(crate) fn meets_min(&self, role: usize, offer: &Resources) -> bool {
        match self.min_offer.iter().find(|(r, _)| *r == role) {
            Some((_, alts)) if !alts.is_empty() => {
                let s = Scalars::of(offer);
                alts.iter().any(|m| s.covers(m))
            }
            _ => true,
        }
    }

    /// True if nothing within `room` can meet the minimum in any of the framework's roles.
    fn too_small(&self, room: Scalars) -> bool {
        !self.roles.is_empty()
            && self.roles.iter().all(|r| {
                self.min_offer
                    .iter()
                    .find(|(x, _)| x == r)
                    .is_some_and(|(_, alts)| {
                        !alts.is_empty() && !alts.iter().any(|m| room.covers(m))
                    })
            })
    }
}

impl Allocator {
    /// Sets the framework's minimum offers: per role, quantity sets of which an offer must
    /// hold one (an empty list or an absent role: no minimum). Replaces earlier ones.
    pub fn set_min_offers(&mut self, framework_id: &str, per_role: &[(String, Vec<Resources>)]) {
        let Some(slot) = self.fw_slot(framework_id) else {
            return;
        };
        let mins: Vec<(usize, Vec<Scalars>)> = per_role
            .iter()
            .filter_map(|(role, sets)| {
                let node = self.roles.get(role)?;
                Some((node, sets.iter().map(Scalars::of).collect()))
            })
            .collect();
        let any = mins.iter().any(|(_, alts)| !alts.is_empty());
        match self.fws[slot].as_mut() {
            // Unchanged (e.g. a re-subscription): the marks made for them still hold.
            Some(f) if f.min_offer == mins => return,
            Some(f) => f.min_offer = mins,
            None => return,
        }
        self.min_fws.retain(|s| *s != slot);
        if any {
            self.min_fws.push(slot);
        }
        // Bits set for the old minimums no longer hold; filters re-derive on the next
        // revalidation (until then the filter table is consulted directly).
        for bits in &mut self.filtered {
            bits.clear(slot);
        }
    }

    /// After an agent found no taker: marks the frameworks whose minimums its
    /// leftovers cannot meet, so the next cycles pass it over until its free resources grow.
    pub(crate) fn mark_too_small(&mut self, agent: usize) {
        if self.min_fws.is_empty() {
            return;
        }
        let Some(a) = self.agents.get_mut(agent).and_then(Option::as_mut) else {
            return;
        };
        if a.has_reserved {
            return;
        }
        // The bits are valid for `bits_valid_for` (⊇ free); tighten it to free first so a
        // mark made now stays true until free grows past it.
        let bits = &mut self.filtered[agent];
        if a.bits_valid_for != a.free {
            a.revalidate_filters(bits, None);
        }
        let room = Scalars::unreserved(&a.bits_valid_for);
        // Every framework with a minimum, not only the eligible ones: whether the leftovers
        // are too small does not depend on eligibility, and a framework that is at its offer
        // limit now (an adaptive one nearly always is) would otherwise send every agent
        // through a full search again as soon as it answers an offer.
        for &slot in &self.min_fws {
            if !bits.get(slot) && self.fws[slot].as_ref().is_some_and(|f| f.too_small(room)) {
                bits.set(slot);
            }
        }
    }
}
