//! Members of a task group in containers share IPC and UTS namespaces, as a Kubernetes pod's
//! containers do: the first member to prepare holds them (its container's own namespaces),
//! the others join them (`/proc/<its init>/ns/{ipc,uts}` in their runtime spec).
//!
//! The holder is recorded in `<work>/oci-groups/<framework>/<group>.json` (its container id and
//! run directory), chosen under a `flock` of the file beside it, so members prepared at the same
//! time by their own executors agree on one. A later member waits (polling, with a deadline)
//! for the holder's container to have an init process. A holder whose task has ended (its run
//! directory records its exit) is replaced by the next member, so a group id used again starts
//! afresh. Each member keeps its own PID and mount namespaces; all share the host's network.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::oci::OciRuntime;

/// How long a member waits for the holder's container to start.
pub const HOLDER_WAIT: Duration = Duration::from_secs(60);

/// The member holding a group's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its runtime container id.
    pub container_id: String,
    /// Its run directory (its `events.jsonl` says when it ended).
    pub run_dir: PathBuf,
}

/// The record and lock files of the group whose shared directory is `group_dir`
/// (`<work>/sandboxes/<framework>/<group>`).
fn files(work_dir: &Path, group_dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .filter(|n| !n.is_empty() && *n != "..")
            .map(|n| n.to_os_string())
    };
    let (Some(group), Some(framework)) = (name(Some(group_dir)), name(group_dir.parent())) else {
        return Err(format!(
            "task group directory {} has no framework and group name",
            group_dir.display()
        ));
    };
    let dir = work_dir.join("oci-groups").join(framework);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let record = dir.join(&group).with_extension("json");
    let lock = dir.join(&group).with_extension("lock");
    Ok((record, lock))
}

/// True once the task of `run_dir` has ended (its executor recorded its exit).
fn ended(run_dir: &Path) -> bool {
    super::protocol::read_events(run_dir, 0).is_ok_and(|events| {
        events
            .iter()
            .any(|(e, _)| matches!(e, Ok(super::protocol::ExecutorEvent::Exited { .. })))
    })
}

/// Under the group's lock: the live holder, or `me` recorded as the holder (`None`).
fn claim(record: &Path, lock: &Path, me: &Holder) -> Result<Option<Holder>, String> {
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .map_err(|e| format!("opening {}: {e}", lock.display()))?;
    let _guard = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking {}: {e}", lock.display()))?;
    let current = std::fs::read(record)
        .ok()
        .and_then(|b| serde_json::from_slice::<Holder>(&b).ok());
    match current {
        Some(h) if h.container_id != me.container_id && !ended(&h.run_dir) => Ok(Some(h)),
        _ => {
            let bytes = serde_json::to_vec(me).map_err(|e| e.to_string())?;
            super::protocol::write_replace(record, &bytes)
                .map_err(|e| format!("writing {}: {e}", record.display()))?;
            Ok(None)
        }
    }
}

/// The process whose IPC and UTS namespaces member `me` of the group at `group_dir` joins, or
/// `None` when `me` holds them. Waits up to `wait` for the holder's container to start.
pub fn shared_namespaces(
    runtime: &OciRuntime,
    work_dir: &Path,
    group_dir: &Path,
    me: &Holder,
    wait: Duration,
) -> Result<Option<i64>, String> {
    let (record, lock) = files(work_dir, group_dir)?;
    let deadline = Instant::now() + wait;
    loop {
        let Some(holder) = claim(&record, &lock, me)? else {
            return Ok(None);
        };
        if let Ok(state) = runtime.state(&holder.container_id)
            && state.pid > 0
            && matches!(state.status.as_str(), "created" | "running")
        {
            return Ok(Some(state.pid));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "task group: the container {} of the member holding the group's IPC and UTS \
                 namespaces did not start within {} s",
                holder.container_id,
                wait.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str, run_dir: &Path) -> Holder {
        Holder {
            container_id: id.into(),
            run_dir: run_dir.to_path_buf(),
        }
    }

    #[test]
    fn the_first_member_holds_and_an_ended_holder_is_replaced() -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (first_run, second_run) = (tmp.path().join("run1"), tmp.path().join("run2"));
        for d in [&first_run, &second_run] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let group = tmp.path().join("sandboxes/fw/group-1");
        let (record, lock) = files(tmp.path(), &group)?;
        assert!(
            record.ends_with("oci-groups/fw/group-1.json"),
            "{}",
            record.display()
        );
        let first = holder("c1", &first_run);
        assert_eq!(
            claim(&record, &lock, &first)?,
            None,
            "the first member holds"
        );
        assert_eq!(claim(&record, &lock, &first)?, None, "and keeps holding");
        let second = holder("c2", &second_run);
        assert_eq!(claim(&record, &lock, &second)?, Some(first.clone()));
        // The holder's task ends: the next member takes over.
        let mut log =
            super::super::protocol::EventLog::open(&first_run).map_err(|e| e.to_string())?;
        log.append(&super::super::protocol::ExecutorEvent::Exited {
            state: "TASK_FINISHED".into(),
            reason: String::new(),
            message: String::new(),
            exit_code: Some(0),
            healthy: None,
        })
        .map_err(|e| e.to_string())?;
        assert_eq!(claim(&record, &lock, &second)?, None);
        assert_eq!(claim(&record, &lock, &first)?, Some(second));
        assert!(files(tmp.path(), Path::new("/")).is_err());
        Ok(())
    }
}
