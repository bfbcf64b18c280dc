//! Building [`v1::OfferFilters`].

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

#[cfg(test)]
mod tests {
    use super::*;

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
