//! The files an agent and a task's executor share in the task's run directory
//! (`work_dir/meta/tasks/<framework>/<task>/`, outside the sandbox so the task cannot forge them):
//!
//! - `task.pb`: the `TaskInfo` (protobuf) and `spec.json`: [`ExecutorSpec`], what the agent
//!   decided (sandbox, environment, limits), for an executor started with `--run-dir` or a
//!   supervisor asked `run DIR`, and as an agent before the checkpoint journal wrote them (the
//!   agent now gives both to its supervisor on its stdin and keeps them in its journal);
//! - `events.jsonl`: [`ExecutorEvent`]s appended by the executor, one JSON per line (the task's
//!   end fsync'ed when the agent is gone: see [`ExecutorEvent::needs_sync`]);
//! - `kill`: the grace period in milliseconds of a kill request, written by the agent just
//!   before it sends SIGTERM to the executor;
//! - `executor.log`: the executor's own log (its stderr).
//!
//! The agent checkpoints how far it has read `events.jsonl`, so an agent restarted after a crash
//! resumes where it stopped and reports what happened while it was down exactly once.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use proffer_proto::v1::TaskInfo;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupSpec;

/// File names in a run directory.
pub const TASK_FILE: &str = "task.pb";
/// See the module docs.
pub const SPEC_FILE: &str = "spec.json";
/// See the module docs.
pub const EVENTS_FILE: &str = "events.jsonl";
/// See the module docs.
pub const KILL_FILE: &str = "kill";
/// See the module docs.
pub const LOG_FILE: &str = "executor.log";
/// The supervising executor's stderr, in `meta/tasks/<framework>/`.
pub const SUPERVISOR_LOG_FILE: &str = "supervisor.log";
/// What `executor --probe` prints: proves a binary can act as an executor of this protocol.
pub const PROBE_REPLY: &str = "proffer-executor protocol 1";

/// What the agent tells the executor besides the `TaskInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    /// The framework owning the task.
    pub framework_id: String,
    /// The agent's id at launch.
    pub agent_id: String,
    /// Unique id of this launch (names the cgroups).
    pub container_id: String,
    /// The task's sandbox (its working directory).
    pub sandbox: PathBuf,
    /// The full environment of the task (see [`crate::process::task_env`]).
    pub env: Vec<(String, String)>,
    /// SIGTERM → SIGKILL grace when a kill request does not give one.
    pub default_kill_grace_ms: u64,
    /// cgroup limits, when the agent isolates tasks with cgroups.
    pub cgroup: Option<CgroupSpec>,
    /// The fetcher's shared cache directory and its size bound in bytes.
    pub fetch_cache: Option<(PathBuf, u64)>,
    /// Run the task as this user (only honoured when the executor runs as root).
    pub user: Option<String>,
    /// Run the task in its own PID and mount namespaces.
    #[serde(default)]
    pub pid_namespace: bool,
}

/// Something that happened to a task, as the executor records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExecutorEvent {
    /// The task's command is running with this pid (also its process group id).
    Started {
        /// The command's pid.
        pid: u32,
    },
    /// The health check result changed.
    Health {
        /// Healthy or not.
        healthy: bool,
        /// What the check saw.
        message: String,
    },
    /// The readiness check passed for the first time.
    Ready {
        /// What the check saw.
        message: String,
    },
    /// The task ended; the executor exits right after writing this.
    Exited {
        /// The terminal state's name (`TASK_FINISHED`, `TASK_FAILED`, `TASK_KILLED`, …).
        state: String,
        /// Machine-readable reason.
        reason: String,
        /// Human-readable message.
        message: String,
        /// The exit code, if the command exited normally.
        exit_code: Option<i32>,
        /// The last health state, if the task had a health check.
        healthy: Option<bool>,
    },
}

impl ExecutorSpec {
    /// A spec for tests: framework `fw`, agent `a`, container `c`, this sandbox and
    /// environment, a 3 s kill grace, no cgroups, fetch cache, user or PID namespace.
    #[cfg(test)]
    pub(crate) fn example(sandbox: &Path, env: &[(&str, &str)]) -> Self {
        ExecutorSpec {
            framework_id: "fw".into(),
            agent_id: "a".into(),
            container_id: "c".into(),
            sandbox: sandbox.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default_kill_grace_ms: 3000,
            cgroup: None,
            fetch_cache: None,
            user: None,
            pid_namespace: false,
        }
    }
}

impl ExecutorEvent {
    /// Whether the event must be on disk before the agent is told of it when the agent is gone
    /// (while the agent reads the log, its journal makes the end durable; see `AgentLink`):
    /// only the task's end. A restarted agent reads the log from the page cache whether it was
    /// synced or not; only a crash of the whole host loses unsynced lines, and that also kills
    /// the task and its executor, so the agent reports the executor gone (`TASK_FAILED`)
    /// whether or not `started`, `health` or `ready` were on disk; the end (`exited`, with the
    /// exit code) is the one event that changes what is reported after a power loss.
    pub fn needs_sync(&self) -> bool {
        matches!(self, ExecutorEvent::Exited { .. })
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Replaces `path` with `bytes` through a temporary file and a rename (no fsync).
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes `task.pb` and `spec.json` into `run_dir` (atomically, without fsync: the agent's
/// checkpoint written right after the executor starts is the durable record of the launch).
pub fn write_launch_files(
    run_dir: &Path,
    task: &TaskInfo,
    spec: &ExecutorSpec,
) -> std::io::Result<()> {
    write_replace(&run_dir.join(TASK_FILE), &task.encode_to_vec())?;
    let json = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    write_replace(&run_dir.join(SPEC_FILE), &json)
}

/// Reads `task.pb`.
pub fn read_task(run_dir: &Path) -> std::io::Result<TaskInfo> {
    let bytes = std::fs::read(run_dir.join(TASK_FILE))?;
    TaskInfo::decode(bytes.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads `spec.json`.
pub fn read_spec(run_dir: &Path) -> std::io::Result<ExecutorSpec> {
    let bytes = std::fs::read(run_dir.join(SPEC_FILE))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Appends events to `events.jsonl` (to the page cache; [`EventLog::sync`] makes them durable).
#[derive(Debug)]
pub struct EventLog {
    file: std::fs::File,
}

impl EventLog {
    /// Opens (creating) the log of `run_dir` for appending.
    pub fn open(run_dir: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join(EVENTS_FILE))?;
        Ok(EventLog { file })
    }

    /// Appends one event.
    pub fn append(&mut self, event: &ExecutorEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }

    /// Makes what was appended durable (`fdatasync`).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Reads the complete lines of `events.jsonl` from byte `offset` on; returns the events with
/// the offset just past each. A trailing partial line is left for the next read; a line that
/// does not parse is returned as an error message (and skipped).
pub fn read_events(
    run_dir: &Path,
    offset: u64,
) -> std::io::Result<Vec<(Result<ExecutorEvent, String>, u64)>> {
    EventReader::new(run_dir, offset).read_new()
}

/// One parsed event line (or why it did not parse) and the log offset just past it.
pub type EventAt = (Result<ExecutorEvent, String>, u64);

/// Follows one task's `events.jsonl`: keeps the file open between reads (opened once it
/// exists, until [`EventReader::close`]) and carries a partial last line over to the next
/// read, so each read after the first costs one `read` call (two with new data) instead of an
/// open, a seek, a stat and a close.
#[derive(Debug)]
pub struct EventReader {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// The offset of the first byte of `partial` (just past the last complete line).
    offset: u64,
    /// Bytes read past `offset` that do not end a line yet.
    partial: Vec<u8>,
}

impl EventReader {
    /// A reader of `run_dir`'s event log from byte `offset` on (nothing is opened yet).
    pub fn new(run_dir: &Path, offset: u64) -> Self {
        EventReader {
            path: run_dir.join(EVENTS_FILE),
            file: None,
            offset,
            partial: Vec::new(),
        }
    }

    /// The offset just past the last complete line read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Closes the file until the next read (which opens it again where this one stopped): a
    /// quiet task's watcher holds no descriptor.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// The complete lines appended since the last read (none while the log does not exist).
    pub fn read_new(&mut self) -> std::io::Result<Vec<EventAt>> {
        let file = match &mut self.file {
            Some(f) => f,
            None => match std::fs::File::open(&self.path) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(self.offset + self.partial.len() as u64))?;
                    self.file.insert(f)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            },
        };
        let mut chunk = [0u8; 4096];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&chunk[..n]);
        }
        let mut out = Vec::new();
        let mut pos = 0usize;
        while let Some(nl) = self.partial[pos..].iter().position(|&b| b == b'\n') {
            let line = &self.partial[pos..pos + nl];
            pos += nl + 1;
            let parsed = serde_json::from_slice::<ExecutorEvent>(line).map_err(|e| {
                format!(
                    "bad executor event {:?}: {e}",
                    String::from_utf8_lossy(line)
                )
            });
            out.push((parsed, self.offset + pos as u64));
        }
        self.partial.drain(..pos);
        self.offset += pos as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_partial_lines_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path()).expect("open");
        log.append(&ExecutorEvent::Started { pid: 42 })
            .expect("append");
        log.append(&ExecutorEvent::Exited {
            state: "TASK_FINISHED".into(),
            reason: "REASON_COMMAND_EXITED".into(),
            message: "ok".into(),
            exit_code: Some(0),
            healthy: None,
        })
        .expect("append");
        let all = read_events(dir.path(), 0).expect("read");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, Ok(ExecutorEvent::Started { pid: 42 }));
        let after_first = all[0].1;
        let rest = read_events(dir.path(), after_first).expect("read");
        assert_eq!(rest.len(), 1);
        assert!(matches!(
            rest[0].0,
            Ok(ExecutorEvent::Exited {
                exit_code: Some(0),
                ..
            })
        ));
        // A partial line (a crash mid-write) is not consumed.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(EVENTS_FILE))
            .expect("open");
        f.write_all(b"{\"kind\":\"rea").expect("write");
        let end = rest[0].1;
        assert!(read_events(dir.path(), end).expect("read").is_empty());
        f.write_all(b"dy\",\"message\":\"m\"}\n").expect("write");
        let got = read_events(dir.path(), end).expect("read");
        assert_eq!(
            got[0].0,
            Ok(ExecutorEvent::Ready {
                message: "m".into()
            })
        );
    }

    #[test]
    fn a_reader_follows_the_log_across_partial_lines_and_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reader = EventReader::new(dir.path(), 0);
        assert!(reader.read_new().expect("no log yet").is_empty());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join(EVENTS_FILE))
            .expect("open");
        let started = b"{\"kind\":\"started\",\"pid\":7}\n";
        f.write_all(started).expect("write");
        f.write_all(b"{\"kind\":\"rea").expect("write");
        let got = reader.read_new().expect("read");
        assert_eq!(
            got,
            [(Ok(ExecutorEvent::Started { pid: 7 }), started.len() as u64)]
        );
        assert_eq!(
            reader.offset(),
            started.len() as u64,
            "the partial line is not consumed"
        );
        // Closed with a partial line held: the next read opens the log again past it.
        reader.close();
        f.write_all(b"dy\",\"message\":\"m\"}\nnot json\n")
            .expect("write");
        let got = reader.read_new().expect("read");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].0,
            Ok(ExecutorEvent::Ready {
                message: "m".into()
            })
        );
        assert!(
            matches!(&got[1].0, Err(m) if m.contains("not json")),
            "{got:?}"
        );
        let len = std::fs::metadata(dir.path().join(EVENTS_FILE))
            .expect("stat")
            .len();
        assert_eq!((got[1].1, reader.offset()), (len, len));
        assert!(reader.read_new().expect("read").is_empty());
        // A reader from an offset skips what came before, as `read_events` does.
        let mut later = EventReader::new(dir.path(), got[0].1);
        assert_eq!(later.read_new().expect("read").len(), 1);
    }

    #[test]
    fn launch_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let task = TaskInfo {
            task_id: "t".into(),
            ..Default::default()
        };
        let spec = ExecutorSpec {
            pid_namespace: true,
            ..ExecutorSpec::example(dir.path(), &[("A", "b")])
        };
        write_launch_files(dir.path(), &task, &spec).expect("write");
        assert_eq!(read_task(dir.path()).expect("task"), task);
        assert_eq!(read_spec(dir.path()).expect("spec"), spec);
    }
}
