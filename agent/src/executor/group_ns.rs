//! Members of a task group in containers share IPC and UTS namespaces, as a Kubernetes pod's
//! containers do. Like a pod's pause container, a small holder process owns them: the first
//! member to prepare starts `unshare --ipc --uts sleep infinity` (its own process group, so it
//! outlives any one member), and every member's runtime spec joins
//! `/proc/<holder>/ns/{ipc,uts}`. A member leaving ([`leave`], when its container is cleaned
//! up) takes itself off the group's list; the last one kills the holder.
//!
//! The group's record is `<work>/oci-groups/<framework>/<group>.json` (the holder's pid and the
//! members' container ids), changed under a `flock` of the `.lock` file beside it, so members
//! prepared at once by their own executors agree. A holder that is gone (no such process, or
//! not a `sleep`) is replaced by the next member, so a group id used again starts afresh. Each
//! member keeps its own PID and mount namespaces; all share the host's network.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long the holder may take to enter its namespaces.
const HOLDER_START: Duration = Duration::from_secs(5);

/// A group's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The holder process.
    holder: i64,
    /// The container ids of the members that have not left.
    members: Vec<String>,
}

/// A member of a group: what [`leave`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    record: PathBuf,
    lock: PathBuf,
    container_id: String,
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

/// Runs `f` on the group's record under its lock; writes the record back (removes it when
/// `f` returns `None` as the new record).
fn with_record<T>(
    record: &Path,
    lock: &Path,
    f: impl FnOnce(Option<Record>) -> Result<(Option<Record>, T), String>,
) -> Result<T, String> {
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
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
    let (next, out) = f(current)?;
    match next {
        Some(r) => {
            let bytes = serde_json::to_vec(&r).map_err(|e| e.to_string())?;
            super::protocol::write_replace(record, &bytes)
                .map_err(|e| format!("writing {}: {e}", record.display()))?;
        }
        None => {
            let _ = std::fs::remove_file(record);
        }
    }
    Ok(out)
}

/// True while `pid` is a holder (`sleep`) of its own namespaces.
fn holder_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
}

fn ns_of(pid: &str, kind: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

/// Starts a holder and waits until it is in new IPC and UTS namespaces.
fn start_holder() -> Result<i64, String> {
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new("unshare")
        .args(["--ipc", "--uts", "sleep", "infinity"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting `unshare --ipc --uts sleep infinity`: {e}"))?;
    let pid = i64::from(child.id());
    let deadline = Instant::now() + HOLDER_START;
    let (ipc, uts) = (ns_of("self", "ipc"), ns_of("self", "uts"));
    loop {
        let p = pid.to_string();
        if holder_alive(pid) && ns_of(&p, "ipc") != ipc && ns_of(&p, "uts") != uts {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(format!(
                "the namespace holder (pid {pid}) did not enter new IPC and UTS namespaces \
                 within {} s",
                HOLDER_START.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Joins the group whose shared directory is `group_dir` as `container_id`: returns the
/// holder whose IPC and UTS namespaces the member's container joins (started when the group
/// has none), and the membership to [`leave`] when the container is cleaned up.
pub fn join(
    work_dir: &Path,
    group_dir: &Path,
    container_id: &str,
) -> Result<(i64, Member), String> {
    join_with(work_dir, group_dir, container_id, start_holder)
}

fn join_with(
    work_dir: &Path,
    group_dir: &Path,
    container_id: &str,
    start: impl FnOnce() -> Result<i64, String>,
) -> Result<(i64, Member), String> {
    let (record, lock) = files(work_dir, group_dir)?;
    let pid = with_record(&record, &lock, |current| {
        let mut r = match current {
            Some(r) if holder_alive(r.holder) => r,
            _ => Record {
                holder: start()?,
                members: Vec::new(),
            },
        };
        if !r.members.iter().any(|m| m == container_id) {
            r.members.push(container_id.to_string());
        }
        let pid = r.holder;
        Ok((Some(r), pid))
    })?;
    let member = Member {
        record,
        lock,
        container_id: container_id.to_string(),
    };
    Ok((pid, member))
}

/// Takes `member` off its group; the last member kills the holder.
pub fn leave(member: &Member) {
    let result = with_record(&member.record, &member.lock, |current| {
        let Some(mut r) = current else {
            return Ok((None, ()));
        };
        r.members.retain(|m| m != &member.container_id);
        if !r.members.is_empty() {
            return Ok((Some(r), ()));
        }
        if r.holder > 1
            && holder_alive(r.holder)
            && let Ok(raw) = i32::try_from(r.holder)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        Ok((None, ()))
    });
    if let Err(e) = result {
        tracing::warn!(container_id = %member.container_id, error = %e, "leaving the task group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_share_one_holder_and_the_last_one_out_stops_it() -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let group = tmp.path().join("sandboxes/fw/group-1");
        let (record, _) = files(tmp.path(), &group)?;
        assert!(
            record.ends_with("oci-groups/fw/group-1.json"),
            "{}",
            record.display()
        );
        // A real `sleep` stands in for the holder (no namespaces needed to count members).
        let sleeper = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = i64::from(sleeper.id());
        // Until its exec is done, the child's name is still this test's.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !holder_alive(pid) {
            if Instant::now() > deadline {
                return Err("the stand-in holder never became `sleep`".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (p1, a) = join_with(tmp.path(), &group, "c1", || Ok(pid))?;
        let (p2, b) = join_with(tmp.path(), &group, "c2", || Err("started twice".into()))?;
        assert_eq!((p1, p2), (pid, pid));
        leave(&a);
        assert!(holder_alive(pid), "one member left");
        leave(&b);
        let mut sleeper = sleeper;
        let status = sleeper.wait().map_err(|e| e.to_string())?;
        assert!(!status.success(), "the last member killed the holder");
        assert!(!record.exists());
        // A group whose holder is gone starts a new one.
        let (p3, c) = join_with(tmp.path(), &group, "c3", || Ok(-1))?;
        assert_eq!(p3, -1);
        leave(&c);
        assert!(files(tmp.path(), Path::new("/")).is_err());
        Ok(())
    }
}
