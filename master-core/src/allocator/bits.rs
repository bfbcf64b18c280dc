//! A growable bit set over small integer indices (framework slots).

use smallvec::SmallVec;

/// Bits over `usize` indices; absent words are zero. Up to 128 frameworks the words live
/// inline, so the allocation cycle's per-agent "has every eligible framework filtered this
/// agent?" test reads no second cache line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BitSet(SmallVec<[u64; 2]>);

impl BitSet {
    /// Sets bit `i`.
    pub fn set(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    /// Clears bit `i`.
    pub fn clear(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Sets or clears bit `i`.
    pub fn assign(&mut self, i: usize, on: bool) {
        if on { self.set(i) } else { self.clear(i) }
    }

    /// Bit `i`.
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// True if every bit of `self` is also in `other`.
    pub fn is_subset(&self, other: &BitSet) -> bool {
        // Each side's inline-or-heap branch taken once, not once per word.
        let (mine, theirs) = (self.0.as_slice(), other.0.as_slice());
        mine.iter()
            .enumerate()
            .all(|(i, w)| w & !theirs.get(i).copied().unwrap_or(0) == 0)
    }

    /// True if no bit is set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Clears everything.
    pub fn clear_all(&mut self) {
        self.0.clear();
    }

    /// Number of set bits.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_subset() {
        let mut a = BitSet::default();
        let mut b = BitSet::default();
        a.set(3);
        a.set(130);
        assert!(a.get(3) && a.get(130) && !a.get(4));
        assert!(!a.is_subset(&b));
        b.set(3);
        b.set(130);
        b.set(7);
        assert!(a.is_subset(&b));
        b.clear(130);
        assert!(!a.is_subset(&b));
        assert_eq!(b.count(), 2);
        assert!(BitSet::default().is_subset(&b));
        assert!(BitSet::default().is_empty() && !b.is_empty());
    }
}
