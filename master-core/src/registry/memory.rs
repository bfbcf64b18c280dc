//! The in-memory registry: shared maps behind a mutex. Clones share the data, so a harness can
//! drop a master ("crash") and recover a new one from what was committed; faults can be
//! injected (a commit that fails).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{CommitStats, Registry, RegistryError, RegistryInfo, RegistryOp, Stored};

/// An in-memory registry (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    data: Arc<Mutex<Stored>>,
    fail: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following commit fail (`true`) or succeed again (`false`).
    pub fn fail_writes(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// A copy of everything committed so far.
    pub fn contents(&self) -> Stored {
        self.lock().clone()
    }

    /// Commits so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, Stored> {
        // A panic while holding the lock cannot leave the maps half-written (apply is one
        // loop of inserts), so a poisoned lock is still usable.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registry for MemoryRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "memory".into(),
            location: "(in memory)".into(),
        }
    }

    fn load(&mut self) -> Result<Stored, RegistryError> {
        let mut data = self.lock();
        if let Some(mark) = super::check_format(&data, "(in memory)")? {
            data.apply(&[mark]);
        }
        Ok(data.clone())
    }

    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(RegistryError::Injected {
                location: "(in memory)".into(),
            });
        }
        self.lock().apply(ops);
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(CommitStats::of(ops))
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::suite;
    use super::super::{Registry, RegistryOp, Table};
    use super::MemoryRegistry;

    #[test]
    fn memory_backend_passes_the_suite() {
        let shared = MemoryRegistry::new();
        suite(|| Box::new(shared.clone()));
    }

    #[test]
    fn injected_failures_write_nothing() {
        let mut r = MemoryRegistry::new();
        r.load().expect("load");
        r.fail_writes(true);
        let op = RegistryOp {
            table: Table::Agents,
            key: "a".into(),
            value: Some(b"x".to_vec()),
        };
        assert!(r.commit(&[op]).is_err());
        r.fail_writes(false);
        assert!(r.contents().get(Table::Agents, "a").is_none());
    }
}
