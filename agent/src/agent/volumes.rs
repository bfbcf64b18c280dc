//! Deleting persistent volumes the master DESTROYed: `WORK_DIR/volumes/<id>` and its data go,
//! unless a live task on this agent still uses the volume or the id is not a plain name.

use std::path::Path;

use tracing::{info, warn};

use super::Agent;

/// Whether `id` is a volume id the agent accepts as a directory name: non-empty, only ASCII
/// letters, digits, `_`, `-` and `.`, and not `.` or `..` (so never a path outside
/// `WORK_DIR/volumes`). Shared by [`super::launch_files::link_volumes`] and [`destroy_volume`].
pub(crate) fn volume_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// What became of one volume the master asked to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The directory was deleted.
    Removed,
    /// There was no directory (never used here, or already deleted).
    Absent,
    /// Skipped: a live task uses it (the task id).
    InUse(String),
    /// Skipped: the id is not a plain name.
    InvalidId,
    /// Deleting failed (the error).
    Failed(String),
}

/// Deletes `work_dir/volumes/<id>` unless `in_use_by` names a live task using it or `id` is
/// invalid. A symbolic link at that path is removed itself, never followed.
pub(crate) fn destroy_volume(work_dir: &Path, id: &str, in_use_by: Option<String>) -> Removal {
    if !volume_id_ok(id) {
        return Removal::InvalidId;
    }
    if let Some(task) = in_use_by {
        return Removal::InUse(task);
    }
    let dir = work_dir.join("volumes").join(id);
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Removal::Absent,
        Err(e) => return Removal::Failed(format!("reading {}: {e}", dir.display())),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(&dir)
    } else {
        std::fs::remove_file(&dir)
    };
    match result {
        Ok(()) => Removal::Removed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Removal::Absent,
        Err(e) => Removal::Failed(format!("deleting {}: {e}", dir.display())),
    }
}

impl Agent {
    /// The id of a live task (not terminal, or its executor still running) that uses volume
    /// `id`.
    fn task_using_volume(&self, id: &str) -> Option<String> {
        self.tasks.iter().find_map(|(key, t)| {
            let live = !self
                .core
                .state(key)
                .is_some_and(proffer_proto::v1::TaskState::is_terminal)
                || t.container.is_some();
            let uses = t
                .info
                .resources
                .iter()
                .any(|r| r.volume.as_ref().is_some_and(|v| v.id == id));
            (live && uses).then(|| key.task_id.clone())
        })
    }

    /// Handles `DestroyVolumes` from the master: deletes each volume's directory, logging what
    /// was skipped and why.
    pub(super) fn destroy_volumes(&mut self, ids: &[String]) -> Vec<Removal> {
        ids.iter()
            .map(|id| {
                let outcome = destroy_volume(&self.config.work_dir, id, self.task_using_volume(id));
                match &outcome {
                    Removal::Removed => info!(volume = %id, "persistent volume deleted"),
                    Removal::Absent => info!(volume = %id, "destroyed volume had no directory"),
                    Removal::InUse(task) => warn!(volume = %id, task = %task,
                        "not deleting a destroyed volume that a live task uses"),
                    Removal::InvalidId => {
                        warn!(volume = %id, "not deleting a volume with an invalid id")
                    }
                    Removal::Failed(e) => warn!(volume = %id, error = %e,
                        "could not delete a destroyed volume"),
                }
                outcome
            })
            .collect()
    }
}

impl Agent {
    /// The master says what this agent has (with dynamic reservations and volumes): checkpoint
    /// it durably and report it from now on (also after a restart of this agent).
    pub(crate) fn checkpoint_resources(&mut self, total: &[proffer_proto::v1::Resource]) {
        let total = match proffer_proto::Resources::from_proto(total) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "the master sent resources that cannot be read; not checkpointed");
                return;
            }
        };
        if total == self.resources {
            return;
        }
        match super::checkpoint::write_resources(&self.config.work_dir, &total) {
            Ok(()) => {
                info!(agent_id = self.id_str(), resources = %total, "resources checkpointed");
                self.resources = total;
            }
            Err(e) => warn!(error = %e, "cannot checkpoint the resources"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(work: &Path, id: &str) -> std::path::PathBuf {
        work.join("volumes").join(id)
    }

    #[test]
    fn deletes_the_directory_and_is_idempotent() -> Result<(), std::io::Error> {
        let work = tempfile::tempdir()?;
        let dir = volume(work.path(), "data");
        std::fs::create_dir_all(dir.join("sub"))?;
        std::fs::write(dir.join("sub/file"), b"old")?;
        assert_eq!(destroy_volume(work.path(), "data", None), Removal::Removed);
        assert!(!dir.exists());
        assert_eq!(destroy_volume(work.path(), "data", None), Removal::Absent);
        // Other volumes are untouched.
        std::fs::create_dir_all(volume(work.path(), "other"))?;
        assert_eq!(destroy_volume(work.path(), "data", None), Removal::Absent);
        assert!(volume(work.path(), "other").is_dir());
        Ok(())
    }

    #[test]
    fn a_volume_in_use_is_kept() -> Result<(), std::io::Error> {
        let work = tempfile::tempdir()?;
        let dir = volume(work.path(), "data");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("file"), b"live")?;
        assert_eq!(
            destroy_volume(work.path(), "data", Some("t1".into())),
            Removal::InUse("t1".into())
        );
        assert_eq!(std::fs::read(dir.join("file"))?, b"live");
        Ok(())
    }

    #[test]
    fn bad_ids_touch_nothing() -> Result<(), std::io::Error> {
        let work = tempfile::tempdir()?;
        // A directory next to `volumes` and one inside it that a bad id could reach.
        std::fs::create_dir_all(work.path().join("keep"))?;
        std::fs::create_dir_all(volume(work.path(), "x"))?;
        for id in ["", ".", "..", "../keep", "/tmp", "a/b", "x/..", "sp ace"] {
            assert_eq!(
                destroy_volume(work.path(), id, None),
                Removal::InvalidId,
                "{id:?}"
            );
        }
        assert!(work.path().join("keep").is_dir());
        assert!(volume(work.path(), "x").is_dir());
        assert!(work.path().join("volumes").is_dir());
        Ok(())
    }

    #[test]
    fn a_symlink_is_removed_not_followed() -> Result<(), std::io::Error> {
        let work = tempfile::tempdir()?;
        let target = work.path().join("elsewhere");
        std::fs::create_dir_all(&target)?;
        std::fs::write(target.join("file"), b"safe")?;
        std::fs::create_dir_all(work.path().join("volumes"))?;
        std::os::unix::fs::symlink(&target, volume(work.path(), "link"))?;
        assert_eq!(destroy_volume(work.path(), "link", None), Removal::Removed);
        assert!(std::fs::symlink_metadata(volume(work.path(), "link")).is_err());
        assert_eq!(std::fs::read(target.join("file"))?, b"safe");
        Ok(())
    }
}
