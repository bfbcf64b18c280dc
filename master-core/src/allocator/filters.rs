//! Decline filters of one agent, stored compactly: (framework slot, resources index, until)
//! sorted by framework, with the declined resources de-duplicated (in Mesos's DeclineOffers case
//! every framework declines the same whole agent, so one copy serves them all).

use proffer_proto::Resources;

use super::Timestamp;

/// The filters on one agent.
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterTable {
    /// (framework slot, index into `res`, until), sorted by framework slot.
    entries: Vec<(u32, u32, Timestamp)>,
    res: Vec<Resources>,
}

impl FilterTable {
    /// Adds a filter refusing offers ⊆ `resources` to `fw` until `until`.
    pub fn add(&mut self, fw: usize, until: Timestamp, resources: &Resources) {
        let idx = match self.res.iter().rposition(|r| r == resources) {
            Some(i) => i,
            None => {
                self.res.push(resources.clone());
                self.res.len() - 1
            }
        };
        let fw = fw as u32;
        let at = self.entries.partition_point(|e| e.0 <= fw);
        self.entries.insert(at, (fw, idx as u32, until));
    }

    /// The filters of `fw`: (until, resources).
    pub fn of(&self, fw: usize) -> impl Iterator<Item = (Timestamp, &Resources)> {
        let fw = fw as u32;
        let start = self.entries.partition_point(|e| e.0 < fw);
        self.entries[start..]
            .iter()
            .take_while(move |e| e.0 == fw)
            .filter_map(|e| self.res.get(e.1 as usize).map(|r| (e.2, r)))
    }

    /// True if `fw` has a filter.
    pub fn has(&self, fw: usize) -> bool {
        self.of(fw).next().is_some()
    }

    /// Removes all filters of `fw`.
    pub fn remove_fw(&mut self, fw: usize) {
        let fw = fw as u32;
        self.entries.retain(|e| e.0 != fw);
        self.compact();
    }

    /// Removes every filter that expired by `now`; returns the frameworks that lost one.
    pub fn expire_all(&mut self, now: Timestamp) -> Vec<usize> {
        let mut touched: Vec<usize> = self
            .entries
            .iter()
            .filter(|e| e.2 <= now)
            .map(|e| e.0 as usize)
            .collect();
        if touched.is_empty() {
            return touched;
        }
        touched.dedup();
        self.entries.retain(|e| e.2 > now);
        self.compact();
        touched
    }

    /// The earliest expiry, if any.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.entries.iter().map(|e| e.2).min()
    }

    /// Framework slots with filters (with repeats for several filters).
    pub fn frameworks(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().map(|e| e.0 as usize)
    }

    /// Drops the resource table when no entry uses it any more.
    fn compact(&mut self) {
        if self.entries.is_empty() {
            self.res.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_lookup_expire_dedupe() {
        let whole = Resources::parse("cpus:1;mem:128").unwrap_or_default();
        let mut t = FilterTable::default();
        t.add(5, Timestamp(10), &whole);
        t.add(2, Timestamp(20), &whole);
        t.add(5, Timestamp(30), &whole);
        assert_eq!(t.res.len(), 1, "same resources stored once");
        assert_eq!(t.of(5).map(|(u, _)| u.0).collect::<Vec<_>>(), [10, 30]);
        assert!(t.has(2) && !t.has(3));
        assert_eq!(t.expire_all(Timestamp(10)), vec![5]);
        assert_eq!(t.next_expiry(), Some(Timestamp(20)));
        assert_eq!(t.of(5).count(), 1);
        t.remove_fw(5);
        t.remove_fw(2);
        assert!(t.res.is_empty());
    }
}
