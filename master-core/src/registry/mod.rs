//! The master's registry: what must survive a restart (admitted and gone agents with their
//! resources, frameworks, role weights and quotas, maintenance windows, id counters), kept as
//! records in a few key spaces ("tables") behind one trait, so the core never knows the backend.
//!
//! The core emits [`RegistryOp`]s in an `Output::Persist` batch and acts on the change only once
//! the shell feeds back `Input::Persisted` (group commit: one transaction per batch). A backend
//! is synchronous; the server runs it on a blocking thread. Backends:
//! - [`MemoryRegistry`]: shared in-memory maps, for the harness (it survives a master "crash");
//! - `RedbRegistry` (in the server crate, `proffer-master`): an embedded redb file under the
//!   master's `--work-dir` (one fsync per commit).
//!
//! The stored format is versioned ([`FORMAT_VERSION`] under the `meta` table's `format` key): a
//! registry written by a newer version, or one that cannot be read, is refused with an error
//! naming the file and the problem — never a silent start with an empty registry.
//!
//! # Layout
//! - `memory`: the in-memory backend.
//! - `conformance`: the behaviour every backend must have, as a test any backend can run.

pub mod conformance;
mod memory;

use std::collections::BTreeMap;

pub use memory::MemoryRegistry;

/// The registry format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The `meta` key holding the format version.
pub const FORMAT_KEY: &str = "format";
/// The `meta` key holding the id counters.
pub const COUNTERS_KEY: &str = "counters";

/// A key space of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Format version and counters.
    Meta,
    /// `RegistryAgent` by agent id.
    Agents,
    /// `RegistryFramework` by framework id.
    Frameworks,
    /// `RegistryRole` by role name.
    Roles,
    /// `RegistryMaintenance` by agent id.
    Maintenance,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 5] = [
        Table::Meta,
        Table::Agents,
        Table::Frameworks,
        Table::Roles,
        Table::Maintenance,
    ];

    /// The table's name in a backend.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Agents => "agents",
            Table::Frameworks => "frameworks",
            Table::Roles => "roles",
            Table::Maintenance => "maintenance",
        }
    }
}

/// One write: put `value` under `key` of `table`, or delete the key when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOp {
    /// The table.
    pub table: Table,
    /// The record's key (an id or a role name).
    pub key: String,
    /// The encoded record, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// Everything a registry holds: table → key → encoded record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The records.
    pub tables: BTreeMap<Table, BTreeMap<String, Vec<u8>>>,
}

impl Stored {
    /// The records of `table` (empty if none).
    pub fn table(&self, table: Table) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.tables.get(&table).into_iter().flat_map(|t| t.iter())
    }

    /// One record.
    pub fn get(&self, table: Table, key: &str) -> Option<&Vec<u8>> {
        self.tables.get(&table).and_then(|t| t.get(key))
    }

    /// Applies `ops` in order.
    pub fn apply(&mut self, ops: &[RegistryOp]) {
        for op in ops {
            let t = self.tables.entry(op.table).or_default();
            match &op.value {
                Some(v) => {
                    t.insert(op.key.clone(), v.clone());
                }
                None => {
                    t.remove(&op.key);
                }
            }
        }
    }

    /// True if no table holds a record besides the format version.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|(table, t)| {
            t.is_empty() || (*table == Table::Meta && t.keys().all(|k| k == FORMAT_KEY))
        })
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }
}

/// What a backend is and where it keeps its data (for `/state` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryInfo {
    /// `memory`, `redb`, later `etcd`.
    pub backend: String,
    /// The file, directory or endpoints.
    pub location: String,
}

/// What one commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Records written or deleted.
    pub ops: usize,
    /// Bytes of the records written.
    pub bytes: usize,
}

impl CommitStats {
    /// What committing `ops` writes: how many, and the bytes of their keys and values.
    pub fn of(ops: &[RegistryOp]) -> Self {
        CommitStats {
            ops: ops.len(),
            bytes: ops
                .iter()
                .map(|o| o.key.len() + o.value.as_ref().map_or(0, Vec::len))
                .sum(),
        }
    }
}

/// Registry failures, each naming where and what.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The backend could not be opened, read or written.
    #[error("registry {location}: {what}: {reason}")]
    Backend {
        /// The file or endpoints.
        location: String,
        /// What was being done.
        what: &'static str,
        /// The backend's error.
        reason: String,
    },
    /// Written by a newer (or unknown) format.
    #[error(
        "registry {location} has format version {found}, but this build reads version {FORMAT_VERSION}; use a newer proffer (or a fresh --work-dir)"
    )]
    NewerFormat {
        /// The file.
        location: String,
        /// The version found.
        found: String,
    },
    /// A record or the format marker cannot be decoded.
    #[error("registry {location} is corrupt: {table}/{key}: {reason}")]
    Corrupt {
        /// The file.
        location: String,
        /// The table.
        table: &'static str,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The write was refused because this master no longer holds the leadership (a fenced
    /// write: another master leads now). Never retried: the master steps down.
    #[error("registry {location}: write refused: this master is no longer the leader")]
    Fenced {
        /// The backend.
        location: String,
    },
    /// A test backend was told to fail.
    #[error("registry {location}: write refused (injected fault)")]
    Injected {
        /// The backend.
        location: String,
    },
}

/// A place the master's records are kept. Implementations are synchronous and called from one
/// thread at a time; a networked backend blocks on its client inside these calls.
pub trait Registry: Send {
    /// What and where.
    fn info(&self) -> RegistryInfo;

    /// Reads every record. A fresh registry is marked with [`FORMAT_VERSION`]; one written by a
    /// newer format or one without a marker but with records is refused.
    fn load(&mut self) -> Result<Stored, RegistryError>;

    /// Writes `ops` in one transaction, durably, before returning.
    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError>;
}

/// Checks the format marker of what a backend loaded; returns the op that marks a fresh one.
pub fn check_format(stored: &Stored, location: &str) -> Result<Option<RegistryOp>, RegistryError> {
    match stored.get(Table::Meta, FORMAT_KEY) {
        None if stored.record_count() == 0 => Ok(Some(RegistryOp {
            table: Table::Meta,
            key: FORMAT_KEY.into(),
            value: Some(FORMAT_VERSION.to_string().into_bytes()),
        })),
        None => Err(RegistryError::Corrupt {
            location: location.into(),
            table: "meta",
            key: FORMAT_KEY.into(),
            reason: format!(
                "missing, yet the registry holds {} records",
                stored.record_count()
            ),
        }),
        Some(v) => {
            let text = String::from_utf8_lossy(v).into_owned();
            match text.trim().parse::<u32>() {
                Ok(n) if n == FORMAT_VERSION => Ok(None),
                Ok(n) if n > FORMAT_VERSION => Err(RegistryError::NewerFormat {
                    location: location.into(),
                    found: n.to_string(),
                }),
                _ => Err(RegistryError::Corrupt {
                    location: location.into(),
                    table: "meta",
                    key: FORMAT_KEY.into(),
                    reason: format!("unreadable format version {text:?}"),
                }),
            }
        }
    }
}
