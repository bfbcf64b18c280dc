//! The redb registry: one embedded file, `WORK_DIR/registry.redb`; one write transaction (and
//! one fsync) per commit.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};

use super::{CommitStats, Registry, RegistryError, RegistryInfo, RegistryOp, Stored, Table};

/// The file name under the work dir.
pub const FILE_NAME: &str = "registry.redb";

fn def(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

/// A registry in a redb file.
#[derive(Debug)]
pub struct RedbRegistry {
    db: Database,
    path: PathBuf,
}

impl RedbRegistry {
    /// Opens (or creates) `dir/registry.redb`, creating `dir` if needed. A file that is not a
    /// redb database, or is damaged, is refused with an error naming it.
    pub fn open(dir: &Path) -> Result<RedbRegistry, RegistryError> {
        let path = dir.join(FILE_NAME);
        let location = path.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| RegistryError::Backend {
            location: location.clone(),
            what: "create the work dir",
            reason: e.to_string(),
        })?;
        let db = Database::create(&path).map_err(|e| RegistryError::Backend {
            location: location.clone(),
            what: "open",
            reason: e.to_string(),
        })?;
        Ok(RedbRegistry { db, path })
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn fail(&self, what: &'static str) -> impl Fn(String) -> RegistryError + '_ {
        move |reason| RegistryError::Backend {
            location: self.location(),
            what,
            reason,
        }
    }

    fn read_all(&self) -> Result<Stored, RegistryError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| e.to_string())
            .map_err(self.fail("read"))?;
        let mut stored = Stored::default();
        for table in Table::ALL {
            let t = match txn.open_table(def(table)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(self.fail("open a table")(e.to_string())),
            };
            let entries = stored.tables.entry(table).or_default();
            let iter = t
                .iter()
                .map_err(|e| e.to_string())
                .map_err(self.fail("read a table"))?;
            for entry in iter {
                let (k, v) = entry
                    .map_err(|e| e.to_string())
                    .map_err(self.fail("read a record"))?;
                entries.insert(k.value().to_string(), v.value().to_vec());
            }
        }
        Ok(stored)
    }
}

impl Registry for RedbRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "redb".into(),
            location: self.location(),
        }
    }

    fn load(&mut self) -> Result<Stored, RegistryError> {
        let mut stored = self.read_all()?;
        if let Some(mark) = super::check_format(&stored, &self.location())? {
            self.commit(std::slice::from_ref(&mark))?;
            stored.apply(&[mark]);
        }
        Ok(stored)
    }

    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| e.to_string())
            .map_err(self.fail("begin a write"))?;
        for table in Table::ALL {
            if !ops.iter().any(|o| o.table == table) {
                continue;
            }
            let mut t = txn
                .open_table(def(table))
                .map_err(|e| e.to_string())
                .map_err(self.fail("open a table for writing"))?;
            for op in ops.iter().filter(|o| o.table == table) {
                match &op.value {
                    Some(v) => t.insert(op.key.as_str(), v.as_slice()).map(|_| ()),
                    None => t.remove(op.key.as_str()).map(|_| ()),
                }
                .map_err(|e| e.to_string())
                .map_err(self.fail("write a record"))?;
            }
        }
        txn.commit()
            .map_err(|e| e.to_string())
            .map_err(self.fail("commit"))?;
        Ok(CommitStats::of(ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::conformance::suite;

    #[test]
    fn redb_backend_passes_the_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        suite(|| Box::new(RedbRegistry::open(&path).expect("open")));
    }

    #[test]
    fn redb_refuses_a_file_that_is_not_a_registry() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"not a database at all").expect("write");
        let err = RedbRegistry::open(dir.path()).expect_err("garbage file");
        let text = err.to_string();
        assert!(text.contains(FILE_NAME), "{text}");
    }
}
