//! [`RangeSet`]: normalized sets of inclusive integer ranges (e.g. ports).

use smallvec::SmallVec;

/// Storage of a [`RangeSet`]: two ranges inline (a port range, perhaps split once) before it
/// allocates.
type Ranges = SmallVec<[(u64, u64); 2]>;

/// A normalized set of inclusive `u64` ranges: sorted, non-overlapping, non-adjacent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RangeSet(Ranges);

impl RangeSet {
    /// Builds a normalized set from arbitrary inclusive ranges (begin ≤ end).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut v: Ranges = ranges.into_iter().collect();
        v.sort_unstable();
        let mut out = Ranges::with_capacity(v.len());
        for (b, e) in v {
            match out.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((b, e)),
            }
        }
        RangeSet(out)
    }

    /// The ranges, sorted and merged.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Number of integers in the set (saturating).
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, (b, e)| acc.saturating_add(e - b + 1))
    }

    /// True if the set has no element.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Union.
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        RangeSet::from_ranges(self.0.iter().chain(other.0.iter()).copied())
    }

    /// True if every element of `other` is in `self`.
    pub fn contains(&self, other: &RangeSet) -> bool {
        other
            .0
            .iter()
            .all(|&(b, e)| self.0.iter().any(|&(sb, se)| sb <= b && e <= se))
    }

    /// Elements of `self` not in `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let mut out = Ranges::new();
        for &(b, e) in &self.0 {
            let mut cur = Some((b, e));
            for &(ob, oe) in &other.0 {
                let Some((cb, ce)) = cur else { break };
                if oe < cb || ob > ce {
                    continue;
                }
                if ob > cb {
                    out.push((cb, ob - 1));
                }
                cur = if oe < ce { Some((oe + 1, ce)) } else { None };
            }
            if let Some(c) = cur {
                out.push(c);
            }
        }
        RangeSet::from_ranges(out)
    }
}
