//! Garbage collection of the image cache: a pure LRU decision under a size limit.

/// One cache entry (an unpacked layer or an assembled rootfs) as GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Its key (e.g. `layers/sha256/<hex>`).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last used (any monotonic unit, e.g. milliseconds since the epoch).
    pub last_used: u64,
    /// Whether a running task (or an image being pulled) uses it: never evicted.
    pub in_use: bool,
}

/// Picks the entries to evict so that the total size is at most `limit`: least recently used
/// first (ties broken by key, so the choice is deterministic), skipping entries in use. When
/// the entries in use alone exceed the limit, every entry not in use is evicted.
pub fn select_evictions(entries: &[CacheEntry], limit: u64) -> Vec<String> {
    let mut total: u64 = entries.iter().map(|e| e.size).sum();
    if total <= limit {
        return Vec::new();
    }
    let mut candidates: Vec<&CacheEntry> = entries.iter().filter(|e| !e.in_use).collect();
    candidates.sort_by(|a, b| {
        a.last_used
            .cmp(&b.last_used)
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut evicted = Vec::new();
    for e in candidates {
        if total <= limit {
            break;
        }
        total = total.saturating_sub(e.size);
        evicted.push(e.key.clone());
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, size: u64, last_used: u64, in_use: bool) -> CacheEntry {
        CacheEntry {
            key: key.to_string(),
            size,
            last_used,
            in_use,
        }
    }

    #[test]
    fn nothing_is_evicted_under_the_limit() {
        let entries = [entry("a", 10, 1, false), entry("b", 20, 2, false)];
        assert!(select_evictions(&entries, 30).is_empty());
    }

    #[test]
    fn least_recently_used_go_first_until_under_the_limit() {
        let entries = [
            entry("new", 10, 30, false),
            entry("old", 10, 10, false),
            entry("mid", 10, 20, false),
        ];
        assert_eq!(select_evictions(&entries, 20), vec!["old".to_string()]);
        assert_eq!(
            select_evictions(&entries, 10),
            vec!["old".to_string(), "mid".to_string()]
        );
        assert_eq!(select_evictions(&entries, 0).len(), 3);
    }

    #[test]
    fn entries_in_use_are_kept_even_over_the_limit() {
        let entries = [entry("busy", 100, 1, true), entry("idle", 10, 5, false)];
        assert_eq!(select_evictions(&entries, 50), vec!["idle".to_string()]);
    }

    #[test]
    fn ties_are_broken_by_key() {
        let entries = [entry("b", 10, 1, false), entry("a", 10, 1, false)];
        assert_eq!(select_evictions(&entries, 10), vec!["a".to_string()]);
    }
}
