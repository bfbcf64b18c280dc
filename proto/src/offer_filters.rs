//! Building [`v1::OfferFilters`], and the adaptive offer limit frameworks keep with
//! UPDATE_FRAMEWORK ([`adaptive_offer_limit`]).

use crate::v1::{self, offer_filters};

impl v1::OfferFilters {
    /// Filters asking for offers that hold at least `quantities` (scalar amounts by resource
    /// name, e.g. `[("cpus", 1.0), ("mem", 512.0)]`): one minimum quantity set.
    pub fn minimum<'a>(quantities: impl IntoIterator<Item = (&'a str, f64)>) -> Self {
        let set = offer_filters::ResourceQuantities {
            quantities: quantities
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        };
        v1::OfferFilters {
            min_allocatable_resources: Some(offer_filters::MinAllocatableResources {
                quantities: vec![set],
            }),
        }
    }
}

/// The `max_outstanding_offers` a framework with `demand` tasks it could launch now should ask
/// for, given the limit it has (`current`, `None` = no limit) and the most it ever wants
/// (`cap`, at least 1). Returns the new limit, or `None` to keep the current one.
///
/// About one offer per waiting task, rounded up to a power of two and at least one; raised as
/// soon as the demand needs more, lowered only once the demand has fallen to a quarter of the
/// limit, so a queue that moves by a task or two does not send an update each time.
pub fn adaptive_offer_limit(demand: usize, current: Option<u32>, cap: u32) -> Option<u32> {
    let demand = u32::try_from(demand).unwrap_or(u32::MAX);
    let want = demand
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .min(cap.max(1));
    let current = current.filter(|c| *c > 0).unwrap_or(u32::MAX);
    let keep = want == current || (want < current && want.saturating_mul(4) > current);
    (!keep).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_limit_rises_at_once_and_falls_with_hysteresis() {
        // (demand, current, cap, new limit)
        let cases = [
            (0, None, 16, Some(1)),         // no limit yet: one
            (3, Some(1), 16, Some(4)),      // rises at once, to a power of two
            (4, Some(4), 16, None),         // enough
            (100, Some(4), 16, Some(16)),   // never above the cap
            (100, Some(16), 16, None),      // at the cap
            (5, Some(16), 16, None),        // wants 8: more than a quarter of 16, kept
            (2, Some(16), 16, Some(2)),     // wants 2: a quarter or less, lowered
            (1, Some(4), 16, Some(1)),      // the same one step down
            (7, Some(0), 4, Some(4)),       // 0 means no limit
            (usize::MAX, None, 0, Some(1)), // a cap of 0 counts as 1
        ];
        for (demand, current, cap, want) in cases {
            assert_eq!(
                adaptive_offer_limit(demand, current, cap),
                want,
                "demand {demand}, current {current:?}, cap {cap}"
            );
        }
    }

    #[test]
    fn minimum_is_one_quantity_set() {
        let f = v1::OfferFilters::minimum([("cpus", 2.0), ("mem", 512.0)]);
        let sets = f
            .min_allocatable_resources
            .map(|m| m.quantities)
            .unwrap_or_default();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].quantities.get("cpus"), Some(&2.0));
        assert_eq!(sets[0].quantities.get("mem"), Some(&512.0));
    }
}
