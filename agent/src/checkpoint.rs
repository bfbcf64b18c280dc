//! The agent's on-disk state: the `agent_id` file in the work directory, each task's
//! [`TaskCheckpoint`] in the checkpoint journal ([`crate::journal`]) and, per task, a run
//! directory `meta/tasks/<framework>/<task>/` with the executor files (see
//! [`crate::executor::protocol`]). An agent before the journal kept the checkpoint in the run
//! directory (`agent.json`); a restarted agent still reads that one when the journal has none.

use std::path::{Path, PathBuf};

use proffer_proto::v1::StatusUpdate;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::containerizer::ExecutorRef;

/// The agent's checkpoint of one task (a record of the journal; `agent.json` before it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    /// The framework owning the task.
    pub framework_id: String,
    /// The task's last state (a `TaskState` number).
    pub state: i32,
    /// How far the executor's event log has been turned into status updates.
    pub offset: u64,
    /// Unacknowledged status updates, oldest first (protobuf; base64 strings in JSON, arrays of
    /// byte values as an `agent.json` of an older agent has them are read too).
    #[serde(with = "updates_json")]
    pub updates: Vec<Vec<u8>>,
    /// The executor, once started.
    pub executor: Option<ExecutorRef>,
    /// The readiness check passed.
    #[serde(default)]
    pub ready: bool,
    /// The last health state.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// The task's own pid (its process group), once started.
    #[serde(default)]
    pub task_pid: Option<u32>,
    /// The task group it belongs to, if launched in a group.
    #[serde(default)]
    pub group: Option<String>,
}

impl TaskCheckpoint {
    /// The pending updates, decoded (undecodable ones are dropped).
    pub fn decoded_updates(&self) -> Vec<StatusUpdate> {
        self.updates
            .iter()
            .filter_map(|b| StatusUpdate::decode(b.as_slice()).ok())
            .collect()
    }

    /// Sets the pending updates.
    pub fn set_updates(&mut self, updates: &[StatusUpdate]) {
        self.updates = updates.iter().map(Message::encode_to_vec).collect();
    }
}

/// How [`TaskCheckpoint::updates`] look in JSON: each update a base64 string (an array of
/// byte values, four times bigger, is what agents before the journal wrote, and is read too).
mod updates_json {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Update {
        Base64(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(updates: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let engine = base64::engine::general_purpose::STANDARD;
        s.collect_seq(updates.iter().map(|u| engine.encode(u)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let engine = base64::engine::general_purpose::STANDARD;
        Vec::<Update>::deserialize(d)?
            .into_iter()
            .map(|u| match u {
                Update::Base64(text) => engine.decode(text).map_err(serde::de::Error::custom),
                Update::Bytes(bytes) => Ok(bytes),
            })
            .collect()
    }
}

/// File name of [`TaskCheckpoint`] in a run directory.
pub const TASK_CHECKPOINT_FILE: &str = "agent.json";

/// The run directory of a task.
pub fn run_dir(work_dir: &Path, framework_id: &str, task_id: &str) -> PathBuf {
    work_dir
        .join("meta")
        .join("tasks")
        .join(framework_id)
        .join(task_id)
}

/// Saves a task's checkpoint atomically; `durable` also fsyncs it (needed before an update
/// is sent; an acknowledgement may be lost in a crash, which only means a re-send).
pub fn write_task(run_dir: &Path, cp: &TaskCheckpoint, durable: bool) -> Result<(), AgentError> {
    let path = run_dir.join(TASK_CHECKPOINT_FILE);
    let json = serde_json::to_vec(cp)
        .map_err(|e| AgentError::io("encoding task checkpoint", &path, std::io::Error::other(e)))?;
    if durable {
        crate::executor::protocol::write_atomic(&path, &json)
    } else {
        crate::executor::protocol::write_replace(&path, &json)
    }
    .map_err(|e| AgentError::io("writing task checkpoint", path, e))
}

/// Reads a task's checkpoint; `None` when there is none.
pub fn read_task(run_dir: &Path) -> Result<Option<TaskCheckpoint>, AgentError> {
    let path = run_dir.join(TASK_CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| AgentError::io("parsing task checkpoint", path, std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::io("reading task checkpoint", path, e)),
    }
}

/// Every run directory under `work_dir/meta/tasks`, as (framework id, task id, path).
pub fn list_run_dirs(work_dir: &Path) -> Vec<(String, String, PathBuf)> {
    let root = work_dir.join("meta").join("tasks");
    let mut out = Vec::new();
    let Ok(fws) = std::fs::read_dir(&root) else {
        return out;
    };
    for fw in fws.flatten() {
        let Ok(tasks) = std::fs::read_dir(fw.path()) else {
            continue;
        };
        for t in tasks.flatten() {
            if t.path().is_dir() {
                out.push((
                    fw.file_name().to_string_lossy().into_owned(),
                    t.file_name().to_string_lossy().into_owned(),
                    t.path(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Path of the file holding the agent id.
pub fn agent_id_path(work_dir: &Path) -> PathBuf {
    work_dir.join("agent_id")
}

/// Reads the saved agent id; `None` when there is none (or it is empty).
pub fn read_agent_id(work_dir: &Path) -> Result<Option<String>, AgentError> {
    let path = agent_id_path(work_dir);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim();
            Ok((!id.is_empty()).then(|| id.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::io("reading agent id", path, e)),
    }
}

/// Saves the agent id atomically (write a temporary file, fsync, rename).
pub fn write_agent_id(work_dir: &Path, id: &str) -> Result<(), AgentError> {
    use std::io::Write;
    let path = agent_id_path(work_dir);
    let tmp = work_dir.join("agent_id.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| AgentError::io("writing agent id", &path, e))
}

/// Path of the agent's checkpointed resources (what the master last told it it has).
pub fn resources_path(work_dir: &Path) -> PathBuf {
    work_dir.join("resources.pb")
}

/// Checkpoints the agent's total (with dynamic reservations and volumes) atomically and
/// durably (write a temporary file, fsync, rename).
pub fn write_resources(
    work_dir: &Path,
    total: &proffer_proto::Resources,
) -> Result<(), AgentError> {
    use std::io::Write;
    let path = resources_path(work_dir);
    let tmp = work_dir.join("resources.pb.tmp");
    let bytes = proffer_proto::v1::CheckpointResources {
        total: total.to_proto(),
    }
    .encode_to_vec();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| AgentError::io("writing checkpointed resources", &path, e))
}

/// Reads the checkpointed resources; `None` when there are none.
pub fn read_resources(work_dir: &Path) -> Result<Option<proffer_proto::Resources>, AgentError> {
    let path = resources_path(work_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("reading checkpointed resources", path, e)),
    };
    let bad = |e: String| {
        AgentError::io(
            "parsing checkpointed resources",
            &path,
            std::io::Error::other(e),
        )
    };
    let msg = proffer_proto::v1::CheckpointResources::decode(bytes.as_slice())
        .map_err(|e| bad(e.to_string()))?;
    proffer_proto::Resources::from_proto(&msg.total)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// Forgets the agent id (a missing file is fine).
pub fn delete_agent_id(work_dir: &Path) -> Result<(), AgentError> {
    let path = agent_id_path(work_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io("deleting agent id", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_agent_id(dir.path()).ok(), Some(None));
        write_agent_id(dir.path(), "agent-7").expect("write");
        assert_eq!(read_agent_id(dir.path()).ok(), Some(Some("agent-7".into())));
        assert!(!dir.path().join("agent_id.tmp").exists());
        delete_agent_id(dir.path()).expect("delete");
        delete_agent_id(dir.path()).expect("delete twice");
        assert_eq!(read_agent_id(dir.path()).ok(), Some(None));
    }

    #[test]
    fn updates_are_base64_in_json_and_an_older_agents_byte_arrays_are_read() {
        let cp = TaskCheckpoint {
            framework_id: "fw".into(),
            updates: vec![vec![0, 1, 255], vec![]],
            ..Default::default()
        };
        let json = serde_json::to_value(&cp).expect("encode");
        assert_eq!(json["updates"], serde_json::json!(["AAH/", ""]));
        let back: TaskCheckpoint = serde_json::from_value(json).expect("decode");
        assert_eq!(back, cp);
        let old = r#"{"framework_id":"fw","state":1,"offset":0,"updates":[[0,1,255],[]],"executor":null}"#;
        let read: TaskCheckpoint = serde_json::from_str(old).expect("older agent.json");
        assert_eq!(read.updates, cp.updates);
        let bad = r#"{"framework_id":"fw","state":1,"offset":0,"updates":["!!"],"executor":null}"#;
        assert!(serde_json::from_str::<TaskCheckpoint>(bad).is_err());
    }

    #[test]
    fn resources_round_trip_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_resources(dir.path()).expect("none").is_none());
        let total = proffer_proto::Resources::parse(
            "cpus:3;cpus(web,dynamic=ops):1;disk(web,dynamic=ops)[v1:data]:100;mem:1024",
        )
        .expect("resources");
        write_resources(dir.path(), &total).expect("write");
        assert_eq!(read_resources(dir.path()).expect("read"), Some(total));
        std::fs::write(resources_path(dir.path()), b"\xff\xff garbage").expect("garbage");
        let err = read_resources(dir.path()).expect_err("garbage");
        assert!(err.to_string().contains("resources.pb"), "{err}");
    }
}
