//! The agent's on-disk state: the `agent_id` file in the work directory.

use std::path::{Path, PathBuf};

use crate::AgentError;

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
}
