//! The scheduler's state store on redb: the framework id, the target spec, one record per task
//! (written *before* the launch is sent, so a restarted scheduler knows every task it may have
//! launched), reservations, and the operator's plan flags (paused, force-completed).

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const TASKS: TableDefinition<&str, &str> = TableDefinition::new("tasks");
const FLAGS: TableDefinition<&str, &str> = TableDefinition::new("plan_flags");

/// A store failure, with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("state store: {op}: {reason}")]
pub struct StoreError {
    /// What was being done.
    pub op: String,
    /// The underlying error.
    pub reason: String,
}

fn fail(op: &str) -> impl Fn(String) -> StoreError + '_ {
    move |reason| StoreError {
        op: op.to_string(),
        reason,
    }
}

/// What the store remembers about one task (keyed by `POD-INDEX-TASK`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `POD-INDEX-TASK`.
    pub name: String,
    /// The current task id (changes on every relaunch).
    pub task_id: String,
    /// The pod type.
    pub pod: String,
    /// The instance index.
    pub index: u32,
    /// The task name within the pod.
    pub task: String,
    /// The agent it was launched on.
    pub agent_id: String,
    /// That agent's hostname.
    pub hostname: String,
    /// That agent's attributes.
    pub attributes: Vec<(String, String)>,
    /// The last known state (`TASK_RUNNING` …; `TASK_STAGING` right after launch).
    pub state: String,
    /// The last status message.
    pub message: String,
    /// The hash of the pod configuration it was launched with.
    pub config: String,
    /// Readiness as last reported (true when the task has no readiness check and runs).
    pub ready: bool,
    /// How many times this task was launched.
    pub launches: u32,
    /// Resources it was launched with, in text form.
    pub resources: String,
    /// Ports: `(environment variable, port)`.
    pub ports: Vec<(String, u64)>,
    /// Resources reserved for it (text form; empty without reservations).
    pub reserved: String,
    /// The pod must come back to this agent (transient recovery), or may move (`replace`).
    pub permanent_failure: bool,
}

/// The redb-backed store. Each write is one transaction.
#[derive(Debug)]
pub struct StateStore {
    db: Database,
}

impl StateStore {
    /// Opens (or creates) the store at `dir/state.redb`.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            op: format!("create {}", dir.display()),
            reason: e.to_string(),
        })?;
        let path = dir.join("state.redb");
        let db = Database::create(&path)
            .map_err(|e| e.to_string())
            .map_err(fail("open"))?;
        let store = StateStore { db };
        // Create the tables so reads never fail on a fresh store.
        store.write("init", |_, _, _| Ok(()))?;
        Ok(store)
    }

    fn write(
        &self,
        op: &str,
        f: impl FnOnce(
            &mut redb::Table<&str, &str>,
            &mut redb::Table<&str, &str>,
            &mut redb::Table<&str, &str>,
        ) -> Result<(), redb::StorageError>,
    ) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| e.to_string())
            .map_err(fail(op))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| e.to_string())
                .map_err(fail(op))?;
            let mut tasks = txn
                .open_table(TASKS)
                .map_err(|e| e.to_string())
                .map_err(fail(op))?;
            let mut flags = txn
                .open_table(FLAGS)
                .map_err(|e| e.to_string())
                .map_err(fail(op))?;
            f(&mut meta, &mut tasks, &mut flags)
                .map_err(|e| e.to_string())
                .map_err(fail(op))?;
        }
        txn.commit().map_err(|e| e.to_string()).map_err(fail(op))
    }

    fn read_table(
        &self,
        op: &str,
        table: TableDefinition<&str, &str>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| e.to_string())
            .map_err(fail(op))?;
        let t = txn
            .open_table(table)
            .map_err(|e| e.to_string())
            .map_err(fail(op))?;
        let mut out = BTreeMap::new();
        for item in t.iter().map_err(|e| e.to_string()).map_err(fail(op))? {
            let (k, v) = item.map_err(|e| e.to_string()).map_err(fail(op))?;
            out.insert(k.value().to_string(), v.value().to_string());
        }
        Ok(out)
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.read_table("read meta", META)?.remove(key))
    }

    /// Sets a metadata value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write("write meta", |m, _, _| m.insert(key, value).map(|_| ()))
    }

    /// Every task record, by name.
    pub fn tasks(&self) -> Result<BTreeMap<String, TaskRecord>, StoreError> {
        let mut out = BTreeMap::new();
        for (k, v) in self.read_table("read tasks", TASKS)? {
            let rec: TaskRecord = serde_json::from_str(&v).map_err(|e| StoreError {
                op: format!("decode task {k}"),
                reason: e.to_string(),
            })?;
            out.insert(k, rec);
        }
        Ok(out)
    }

    /// Inserts or replaces a task record.
    pub fn put_task(&self, rec: &TaskRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError {
            op: format!("encode task {}", rec.name),
            reason: e.to_string(),
        })?;
        self.write("write task", |_, t, _| {
            t.insert(rec.name.as_str(), json.as_str()).map(|_| ())
        })
    }

    /// Forgets a task.
    pub fn remove_task(&self, name: &str) -> Result<(), StoreError> {
        self.write("remove task", |_, t, _| t.remove(name).map(|_| ()))
    }

    /// The operator's plan flags (`plan`, `plan/phase`, `plan/phase/step` → `paused`/`forced`).
    pub fn flags(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.read_table("read flags", FLAGS)
    }

    /// Replaces all plan flags.
    pub fn set_flags(&self, flags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.write("write flags", |_, _, f| {
            let keys: Vec<String> = f
                .iter()?
                .filter_map(|r| r.ok().map(|(k, _)| k.value().to_string()))
                .collect();
            for k in keys {
                f.remove(k.as_str())?;
            }
            for (k, v) in flags {
                f.insert(k.as_str(), v.as_str())?;
            }
            Ok(())
        })
    }

    /// Deletes everything (end of uninstall).
    pub fn wipe(&self) -> Result<(), StoreError> {
        self.write("wipe", |m, t, f| {
            clear(m)?;
            clear(t)?;
            clear(f)
        })
    }
}

fn clear(table: &mut redb::Table<&str, &str>) -> Result<(), redb::StorageError> {
    let keys: Vec<String> = table
        .iter()?
        .filter_map(|r| r.ok().map(|(k, _)| k.value().to_string()))
        .collect();
    for k in keys {
        table.remove(k.as_str())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> TaskRecord {
        TaskRecord {
            name: name.into(),
            task_id: format!("{name}__1"),
            pod: "web".into(),
            index: 0,
            task: "server".into(),
            agent_id: "a1".into(),
            hostname: "h1".into(),
            attributes: vec![("rack".into(), "r1".into())],
            state: "TASK_RUNNING".into(),
            message: String::new(),
            config: "c1".into(),
            ready: true,
            launches: 1,
            resources: "cpus:0.1".into(),
            ports: vec![("PORT_HTTP".into(), 31000)],
            reserved: String::new(),
            permanent_failure: false,
        }
    }

    #[test]
    fn records_survive_reopening() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let s = StateStore::open(dir.path())?;
            s.set_meta("framework_id", "fw-1")?;
            s.put_task(&rec("web-0-server"))?;
            s.put_task(&rec("web-1-server"))?;
            s.remove_task("web-1-server")?;
            let mut f = BTreeMap::new();
            f.insert("deploy".to_string(), "paused".to_string());
            s.set_flags(&f)?;
        }
        let s = StateStore::open(dir.path())?;
        assert_eq!(s.meta("framework_id")?.as_deref(), Some("fw-1"));
        let tasks = s.tasks()?;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks.get("web-0-server"), Some(&rec("web-0-server")));
        assert_eq!(s.flags()?.get("deploy").map(String::as_str), Some("paused"));
        s.wipe()?;
        assert!(s.tasks()?.is_empty());
        assert_eq!(s.meta("framework_id")?, None);
        Ok(())
    }
}
