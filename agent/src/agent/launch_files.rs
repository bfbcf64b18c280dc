//! A task's directories at launch: its sandbox, run directory and group directory, created
//! with the rest of the batch's on the blocking pool at the next commit, and its persistent
//! volumes linked into the sandbox.

use proffer_proto::v1::TaskInfo;

use crate::core::TaskKey;

/// The files of a task to launch, written at the next commit with the batch's others.
pub(crate) struct LaunchFiles {
    pub(super) key: TaskKey,
    pub(super) work_dir: std::path::PathBuf,
    pub(super) sandbox: std::path::PathBuf,
    pub(super) run_dir: std::path::PathBuf,
    /// The task group's shared directory, if in a group.
    pub(super) shared: Option<std::path::PathBuf>,
    pub(super) task: TaskInfo,
}

impl LaunchFiles {
    /// Creates the sandbox, run and group directories and links volumes (the launch itself is
    /// in the journal). A run directory left by an earlier task of the same id (forgotten, not
    /// yet garbage-collected) is emptied first: its event log is not this task's.
    fn write(&self) -> Result<(), String> {
        let creating = |d: &std::path::Path, e| format!("creating {}: {e}", d.display());
        for d in [Some(&self.sandbox), self.shared.as_ref()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(d).map_err(|e| creating(d, e))?;
        }
        // One mkdir on the usual path; the framework's directory only on its first task.
        let run_dir = &self.run_dir;
        match std::fs::create_dir(run_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(run_dir).map_err(|e| creating(run_dir, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_dir_all(run_dir)
                    .and_then(|()| std::fs::create_dir(run_dir))
                    .map_err(|e| creating(run_dir, e))?;
            }
            Err(e) => return Err(creating(run_dir, e)),
        }
        link_volumes(&self.work_dir, &self.sandbox, &self.task)
    }
}

/// Writes the launch files of a batch on up to 16 threads of the blocking pool; the results
/// are in the batch's order.
pub(super) async fn write_launch_files_all(batch: Vec<LaunchFiles>) -> Vec<Result<(), String>> {
    if batch.len() <= 1 {
        return batch.iter().map(LaunchFiles::write).collect();
    }
    let chunk = batch.len().div_ceil(batch.len().min(16));
    let batch = std::sync::Arc::new(batch);
    let workers: Vec<_> = (0..batch.len())
        .step_by(chunk)
        .map(|from| {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || {
                let to = (from + chunk).min(batch.len());
                batch[from..to]
                    .iter()
                    .map(LaunchFiles::write)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(batch.len());
    for (i, w) in futures::future::join_all(workers)
        .await
        .into_iter()
        .enumerate()
    {
        match w {
            Ok(r) => out.extend(r),
            Err(e) => {
                let n = chunk.min(batch.len() - i * chunk);
                out.extend((0..n).map(|_| Err(format!("writing launch files failed: {e}"))));
            }
        }
    }
    out
}

/// Persistent volumes: each `disk` resource carrying a volume is a directory under
/// `WORK_DIR/volumes/<id>` that outlives the task; the task sees it at
/// `<sandbox>/<container_path>` (a symbolic link). A relaunched task that uses the same volume
/// finds its data there.
pub(crate) fn link_volumes(
    work_dir: &std::path::Path,
    sandbox: &std::path::Path,
    task: &TaskInfo,
) -> Result<(), String> {
    for r in &task.resources {
        let Some(v) = &r.volume else { continue };
        let bad = |why: &str| format!("volume `{}` at `{}`: {why}", v.id, v.container_path);
        if !super::volumes::volume_id_ok(&v.id) {
            return Err(bad("invalid volume id"));
        }
        let rel = std::path::Path::new(&v.container_path);
        let rel_ok = !v.container_path.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !rel_ok {
            return Err(bad("the container path must be relative, without `..`"));
        }
        let store = work_dir.join("volumes").join(&v.id);
        std::fs::create_dir_all(&store)
            .map_err(|e| bad(&format!("creating {}: {e}", store.display())))?;
        let link = sandbox.join(rel);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| bad(&format!("creating {}: {e}", parent.display())))?;
        }
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link)
                .map_err(|e| bad(&format!("replacing {}: {e}", link.display())))?;
        }
        std::os::unix::fs::symlink(&store, &link)
            .map_err(|e| bad(&format!("linking {}: {e}", link.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod volume_tests {
    use super::*;
    use proffer_proto::v1;

    fn task_with(id: &str, path: &str) -> TaskInfo {
        TaskInfo {
            resources: vec![v1::Resource {
                name: "disk".into(),
                role: "web".into(),
                value: Some(v1::resource::Value::ScalarMilli(100_000)),
                volume: Some(v1::PersistentVolume {
                    id: id.into(),
                    container_path: path.into(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn volumes_outlive_sandboxes_and_bad_paths_are_refused() -> Result<(), String> {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let s1 = work.path().join("sandboxes/fw/t1");
        let s2 = work.path().join("sandboxes/fw/t2");
        for s in [&s1, &s2] {
            std::fs::create_dir_all(s).map_err(|e| e.to_string())?;
        }
        link_volumes(work.path(), &s1, &task_with("data", "mnt/data"))?;
        std::fs::write(s1.join("mnt/data/file"), b"kept").map_err(|e| e.to_string())?;
        // A relaunch (new sandbox) with the same volume sees the data.
        link_volumes(work.path(), &s2, &task_with("data", "mnt/data"))?;
        assert_eq!(
            std::fs::read(s2.join("mnt/data/file")).map_err(|e| e.to_string())?,
            b"kept"
        );
        for (id, path) in [
            ("../x", "d"),
            ("ok", "/abs"),
            ("ok", "a/../../b"),
            ("", "d"),
        ] {
            assert!(
                link_volumes(work.path(), &s1, &task_with(id, path)).is_err(),
                "{id} {path}"
            );
        }
        Ok(())
    }
}
