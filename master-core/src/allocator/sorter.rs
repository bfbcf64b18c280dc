//! Ordered sets used by the allocator: members kept sorted by a share key (then by member), with
//! O(log n) updates — the DRF sorter at each level of the role tree.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;

/// Maps a non-negative share onto an order-preserving integer.
pub fn share_key(share: f64) -> u64 {
    if share.is_finite() && share > 0.0 {
        share.to_bits()
    } else {
        0
    }
}

/// Members (`usize` slots) ordered by ascending key, ties by member.
#[derive(Debug, Clone, Default)]
pub struct OrderedSet {
    order: BTreeSet<(u64, usize)>,
    keys: HashMap<usize, u64>,
}

impl OrderedSet {
    /// Inserts `member` or moves it to `key`.
    pub fn set(&mut self, member: usize, key: u64) {
        if let Some(old) = self.keys.insert(member, key) {
            if old == key {
                return;
            }
            self.order.remove(&(old, member));
        }
        self.order.insert((key, member));
    }

    /// Removes `member`.
    pub fn remove(&mut self, member: usize) {
        if let Some(k) = self.keys.remove(&member) {
            self.order.remove(&(k, member));
        }
    }

    /// True if `member` is in the set.
    pub fn contains(&self, member: usize) -> bool {
        self.keys.contains_key(&member)
    }

    /// Members, lowest key first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().map(|(_, m)| *m)
    }

    /// Number of members.
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
    fn orders_by_key_then_member() {
        let mut s = OrderedSet::default();
        s.set(2, share_key(0.5));
        s.set(1, share_key(0.5));
        s.set(3, share_key(0.1));
        s.set(4, share_key(0.0));
        assert_eq!(s.iter().collect::<Vec<_>>(), [4, 3, 1, 2]);
        s.set(4, share_key(0.9));
        s.remove(3);
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(4) && !s.contains(3));
        assert_eq!(share_key(f64::NAN), 0);
    }
}
