//! DRF sorter: frameworks ordered by dominant share, then id.

use std::collections::{BTreeMap, BTreeSet};

/// Keeps frameworks sorted by ascending dominant share (ties by id) with O(log n) updates.
#[derive(Debug, Clone, Default)]
pub struct DrfSorter {
    order: BTreeSet<(u64, String)>,
    keys: BTreeMap<String, u64>,
}

/// Maps a non-negative share onto an order-preserving integer.
fn key(share: f64) -> u64 {
    if share.is_finite() && share > 0.0 {
        share.to_bits()
    } else {
        0
    }
}

impl DrfSorter {
    /// Sets (or inserts) a framework's share.
    pub fn set(&mut self, id: &str, share: f64) {
        let k = key(share);
        if let Some(old) = self.keys.get(id) {
            if *old == k {
                return;
            }
            self.order.remove(&(*old, id.to_string()));
        }
        self.order.insert((k, id.to_string()));
        self.keys.insert(id.to_string(), k);
    }

    /// Removes a framework.
    pub fn remove(&mut self, id: &str) {
        if let Some(k) = self.keys.remove(id) {
            self.order.remove(&(k, id.to_string()));
        }
    }

    /// Framework ids, lowest share first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|(_, id)| id.as_str())
    }

    /// Number of frameworks.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_share_then_id() {
        let mut s = DrfSorter::default();
        s.set("b", 0.5);
        s.set("a", 0.5);
        s.set("c", 0.1);
        s.set("d", 0.0);
        assert_eq!(s.iter().collect::<Vec<_>>(), ["d", "c", "a", "b"]);
        s.set("d", 0.9);
        s.remove("c");
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b", "d"]);
        assert_eq!(s.len(), 3);
    }
}
