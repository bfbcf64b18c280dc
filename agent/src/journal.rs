//! The agent's checkpoint journal: one append-only file per agent, `meta/journal`, holding
//! every task's launch (its `TaskInfo` and [`ExecutorSpec`]), its [`TaskCheckpoint`] and what
//! the agent forgot, instead of one `agent.json` per task rewritten through a temporary file
//! and a rename at each change, and `task.pb` and `spec.json` in its run directory.
//!
//! Why: each rewrite of a small file allocates an inode and frees another, and a task changed
//! its checkpoint five times; on a busy agent the file system's metadata work was most of
//! the agent's CPU (see `docs/launch-performance.md`). Appending to one file allocates
//! nothing, and one `fdatasync` makes a whole group commit durable.
//!
//! Format: a sequence of frames, each `length (u32 LE) | crc32 of the payload (u32 LE) |
//! payload`, the payload a JSON [`Record`]. The last record of a task wins. A frame cut short
//! or failing its checksum (a crash mid-append) ends the journal: it and anything after it
//! are cut off when the journal is opened. A journal grown past [`COMPACT_MIN_BYTES`] and
//! four times what its live tasks need is rewritten with only their latest records
//! (temporary file, fsync, rename, fsync of the directory).
//!
//! Order of writes: records are buffered in memory and written at [`Journal::commit`], in
//! the order they were recorded; a durable commit returns once they are all on disk. A
//! non-durable record (written after an acknowledgement) reaches the disk with the next
//! commit and is made durable by the next durable one: a crash may lose it, which only means
//! an update is sent again.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::checkpoint::TaskCheckpoint;
use crate::core::TaskKey;
use crate::executor::protocol::ExecutorSpec;
use base64::Engine as _;
use proffer_proto::v1::TaskInfo;
use prost::Message as _;

/// File name of the journal, in `work_dir/meta/`.
pub const JOURNAL_FILE: &str = "journal";

/// A journal is compacted only once it is at least this big.
pub const COMPACT_MIN_BYTES: u64 = 8 << 20;

/// The largest frame payload accepted when reading (a longer length is corruption).
const MAX_PAYLOAD: u32 = 64 << 20;

/// One change recorded in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A task launched: what its executor runs (recorded before its first checkpoint, which
    /// makes it durable).
    Launch {
        /// The framework.
        framework_id: String,
        /// The task.
        task_id: String,
        /// The `TaskInfo`, protobuf in base64.
        task: String,
        /// What the agent decided for it.
        spec: Box<ExecutorSpec>,
    },
    /// A task's checkpoint (it replaces the task's earlier ones).
    Task {
        /// The framework.
        framework_id: String,
        /// The task.
        task_id: String,
        /// The checkpoint.
        checkpoint: TaskCheckpoint,
    },
    /// The agent forgot the task (its end acknowledged, its executor gone).
    Forget {
        /// The framework.
        framework_id: String,
        /// The task.
        task_id: String,
    },
}

/// Where the journal of `work_dir` is.
pub fn path(work_dir: &Path) -> PathBuf {
    work_dir.join("meta").join(JOURNAL_FILE)
}

/// What the journal holds of one task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replayed {
    /// Its launch (`TaskInfo` and executor spec).
    pub launch: Option<(TaskInfo, ExecutorSpec)>,
    /// Its latest checkpoint.
    pub checkpoint: Option<TaskCheckpoint>,
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Replay {
    /// Each task's launch and latest checkpoint.
    pub tasks: BTreeMap<TaskKey, Replayed>,
    /// Bytes cut off the end (a torn or corrupt tail), if any.
    pub cut_bytes: u64,
}

/// The agent's journal (see the module docs).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
    /// Frames recorded and not yet written.
    pending: Vec<u8>,
    /// Some pending frame must be durable at the next commit.
    pending_durable: bool,
    /// Bytes in the file.
    size: u64,
    /// Each live task's launch frame and latest checkpoint frame (what a compaction keeps).
    live: HashMap<TaskKey, [Vec<u8>; 2]>,
    live_bytes: u64,
    /// The least size at which the journal is compacted ([`COMPACT_MIN_BYTES`]).
    compact_min: u64,
}

impl Journal {
    /// Opens (creating) the journal of `work_dir`, replays it and cuts off a torn tail.
    pub fn open(work_dir: &Path) -> Result<(Journal, Replay), AgentError> {
        let path = path(work_dir);
        let meta = path.parent().unwrap_or(work_dir);
        std::fs::create_dir_all(meta)
            .map_err(|e| AgentError::io("creating the journal's directory", meta, e))?;
        // A compaction that did not finish left its temporary file; the journal is intact.
        let _ = std::fs::remove_file(tmp_path(&path));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| AgentError::io("opening the journal", &path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| AgentError::io("reading the journal", &path, e))?;
        let (records, good) = parse(&bytes);
        let mut replay = Replay {
            cut_bytes: (bytes.len() - good) as u64,
            ..Replay::default()
        };
        if replay.cut_bytes > 0 {
            file.set_len(good as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| AgentError::io("cutting the journal's torn tail", &path, e))?;
        }
        let mut journal = Journal {
            path,
            file: Arc::new(Mutex::new(file)),
            pending: Vec::new(),
            pending_durable: false,
            size: good as u64,
            live: HashMap::new(),
            live_bytes: 0,
            compact_min: COMPACT_MIN_BYTES,
        };
        for (record, frame) in records {
            journal.track(&record, frame);
            apply(&mut replay.tasks, record);
        }
        Ok((journal, replay))
    }

    /// Records a task's checkpoint; `durable`: the next commit must make it durable before
    /// it returns (it is written ahead of an update).
    pub fn checkpoint(
        &mut self,
        key: &TaskKey,
        checkpoint: &TaskCheckpoint,
        durable: bool,
    ) -> Result<(), AgentError> {
        self.record(
            &Record::Task {
                framework_id: key.framework_id.clone(),
                task_id: key.task_id.clone(),
                checkpoint: checkpoint.clone(),
            },
            durable,
        )
    }

    /// Records a task's launch (made durable by its first durable checkpoint, which follows).
    pub fn launch(
        &mut self,
        key: &TaskKey,
        task: &TaskInfo,
        spec: &ExecutorSpec,
    ) -> Result<(), AgentError> {
        self.record(
            &Record::Launch {
                framework_id: key.framework_id.clone(),
                task_id: key.task_id.clone(),
                task: base64::engine::general_purpose::STANDARD.encode(task.encode_to_vec()),
                spec: Box::new(spec.clone()),
            },
            false,
        )
    }

    /// Records that the task is forgotten.
    pub fn forget(&mut self, key: &TaskKey) -> Result<(), AgentError> {
        self.record(
            &Record::Forget {
                framework_id: key.framework_id.clone(),
                task_id: key.task_id.clone(),
            },
            false,
        )
    }

    fn record(&mut self, record: &Record, durable: bool) -> Result<(), AgentError> {
        let frame = frame(record)
            .map_err(|e| AgentError::io("encoding a journal record", &self.path, e))?;
        self.pending.extend_from_slice(&frame);
        self.pending_durable |= durable;
        self.track(record, frame);
        Ok(())
    }

    /// Keeps the launch frame and the latest checkpoint frame of each live task.
    fn track(&mut self, record: &Record, frame: Vec<u8>) {
        let key = record.key();
        let freed = match record {
            Record::Launch { .. } | Record::Task { .. } => {
                let slot = usize::from(matches!(record, Record::Task { .. }));
                self.live_bytes += frame.len() as u64;
                let frames = self.live.entry(key).or_default();
                std::mem::replace(&mut frames[slot], frame).len()
            }
            Record::Forget { .. } => self
                .live
                .remove(&key)
                .map_or(0, |[launch, cp]| launch.len() + cp.len()),
        };
        self.live_bytes -= freed as u64;
    }

    /// Nothing recorded since the last commit.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes what was recorded since the last commit, with one `fdatasync` when any of it is
    /// durable, on the blocking pool; then compacts the journal if it grew too big.
    pub async fn commit(&mut self) -> Result<(), AgentError> {
        let Some((bytes, durable)) = self.take_pending() else {
            return Ok(());
        };
        let file = self.file.clone();
        let len = bytes.len() as u64;
        let written = tokio::task::spawn_blocking(move || append(&file, &bytes, durable))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("journal writer failed: {e}"))));
        written.map_err(|e| AgentError::io("appending to the journal", &self.path, e))?;
        self.size += len;
        if self.size >= self.compact_min && self.size > 4 * self.live_bytes {
            self.compact().await?;
        }
        Ok(())
    }

    /// [`Journal::commit`] on the calling thread, without compacting: for the small writes
    /// between group commits (checkpoints after acknowledgements, a durable record outside a
    /// group commit) and for tests. The next [`Journal::commit`] compacts if needed.
    pub fn commit_now(&mut self) -> Result<(), AgentError> {
        let Some((bytes, durable)) = self.take_pending() else {
            return Ok(());
        };
        append(&self.file, &bytes, durable)
            .map_err(|e| AgentError::io("appending to the journal", &self.path, e))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// What was recorded since the last write and whether it must be synced; `None` if nothing.
    fn take_pending(&mut self) -> Option<(Vec<u8>, bool)> {
        if self.pending.is_empty() {
            return None;
        }
        let durable = std::mem::replace(&mut self.pending_durable, false);
        Some((std::mem::take(&mut self.pending), durable))
    }

    /// Rewrites the journal with only the live tasks' latest records.
    async fn compact(&mut self) -> Result<(), AgentError> {
        let snapshot: Vec<u8> = self.live.values().flatten().flatten().copied().collect();
        let (path, file) = (self.path.clone(), self.file.clone());
        let len = snapshot.len() as u64;
        let done = tokio::task::spawn_blocking(move || rewrite(&path, &file, &snapshot))
            .await
            .unwrap_or_else(|e| {
                Err(std::io::Error::other(format!(
                    "journal compaction failed: {e}"
                )))
            });
        done.map_err(|e| AgentError::io("compacting the journal", &self.path, e))?;
        tracing::debug!(from = self.size, to = len, "journal compacted");
        self.size = len;
        Ok(())
    }

    /// Bytes in the journal file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sets the least size at which the journal is compacted (tests).
    pub fn set_compact_min(&mut self, bytes: u64) {
        self.compact_min = bytes;
    }
}

/// Reads the journal of `work_dir` without changing it: what it holds of each task (for tools
/// and tests; an agent opens it with [`Journal::open`]).
pub fn read_all(work_dir: &Path) -> Result<BTreeMap<TaskKey, Replayed>, AgentError> {
    let path = path(work_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(AgentError::io("reading the journal", path, e)),
    };
    let mut tasks = BTreeMap::new();
    for (record, _) in parse(&bytes).0 {
        apply(&mut tasks, record);
    }
    Ok(tasks)
}

/// Each task's latest checkpoint in the journal of `work_dir` (see [`read_all`]).
pub fn read(work_dir: &Path) -> Result<BTreeMap<TaskKey, TaskCheckpoint>, AgentError> {
    Ok(read_all(work_dir)?
        .into_iter()
        .filter_map(|(k, r)| r.checkpoint.map(|c| (k, c)))
        .collect())
}

impl Record {
    /// The task the record is about.
    fn key(&self) -> TaskKey {
        match self {
            Record::Launch {
                framework_id,
                task_id,
                ..
            }
            | Record::Task {
                framework_id,
                task_id,
                ..
            }
            | Record::Forget {
                framework_id,
                task_id,
            } => TaskKey::new(framework_id.clone(), task_id.clone()),
        }
    }
}

/// Replays one record onto `tasks`. A launch whose `TaskInfo` does not decode is dropped (the
/// task is then recovered from its run directory, or not at all).
fn apply(tasks: &mut BTreeMap<TaskKey, Replayed>, record: Record) {
    let key = record.key();
    match record {
        Record::Launch { task, spec, .. } => {
            let info = base64::engine::general_purpose::STANDARD
                .decode(task)
                .ok()
                .and_then(|b| TaskInfo::decode(b.as_slice()).ok());
            tasks.entry(key).or_default().launch = info.map(|i| (i, *spec));
        }
        Record::Task { checkpoint, .. } => {
            tasks.entry(key).or_default().checkpoint = Some(checkpoint);
        }
        Record::Forget { .. } => {
            tasks.remove(&key);
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Encodes one frame.
fn frame(record: &Record) -> std::io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| std::io::Error::other("journal record too large"))?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes the frames of `bytes` up to the first bad one; returns them (with their bytes)
/// and the length of the good prefix.
fn parse(bytes: &[u8]) -> (Vec<(Record, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&header[i..i + 4]);
            u32::from_le_bytes(w)
        };
        let (len, crc) = (word(0), word(4));
        if len > MAX_PAYLOAD {
            break;
        }
        let end = pos + 8 + len as usize;
        let Some(payload) = bytes.get(pos + 8..end) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice::<Record>(payload) else {
            break;
        };
        out.push((record, bytes[pos..end].to_vec()));
        pos = end;
    }
    (out, pos)
}

fn append(file: &Mutex<std::fs::File>, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let mut f = file
        .lock()
        .map_err(|_| std::io::Error::other("journal lock poisoned"))?;
    f.write_all(bytes)?;
    if durable {
        f.sync_data()?;
    }
    Ok(())
}

/// Replaces the journal at `path` with `snapshot` (temporary file, fsync, rename, fsync of
/// the directory) and points `file` at the new one.
fn rewrite(path: &Path, file: &Mutex<std::fs::File>, snapshot: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(snapshot)?;
    f.sync_all()?;
    let mut current = file
        .lock()
        .map_err(|_| std::io::Error::other("journal lock poisoned"))?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    *current = std::fs::OpenOptions::new().append(true).open(path)?;
    Ok(())
}

#[cfg(test)]
mod tests;
