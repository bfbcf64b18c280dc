//! Housekeeping of the agent loop: the HTTP endpoint and its view, and sandbox garbage
//! collection (by age, and by disk use).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::info;

use super::Agent;
use crate::AgentError;
use crate::core::TaskKey;
use crate::http::{TaskView, View};

impl Agent {
    /// Starts the HTTP endpoint when configured.
    pub(super) async fn start_http(
        &self,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, AgentError> {
        let Some(address) = self.config.http_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| AgentError::Http { address, source })?;
        let bound = listener.local_addr().unwrap_or(address);
        info!(address = %bound, "agent HTTP endpoint listening");
        let security = std::sync::Arc::new(self.config.http_security.clone());
        let tls = security.tls.clone();
        let app = crate::http::router(self.view.clone(), self.config.work_dir.clone(), security);
        // The same accept loop as the master's: TLS, connection limits and timeouts.
        let limits = proffer_net::listen::ConnLimits::default();
        let never = tokio_util::sync::CancellationToken::new();
        Ok(Some(tokio::spawn(proffer_net::listen::serve(
            listener, app, limits, tls, never,
        ))))
    }

    /// Refreshes the view the HTTP endpoint serves.
    pub(super) fn publish_view(&self) {
        if self.config.http_listen.is_none() {
            return;
        }
        let tasks = self
            .tasks
            .iter()
            .map(|(k, t)| TaskView {
                framework_id: k.framework_id.clone(),
                task_id: k.task_id.clone(),
                state: self
                    .core
                    .state(k)
                    .unwrap_or(proffer_proto::v1::TaskState::TaskStaging)
                    .as_str_name()
                    .to_string(),
                sandbox: format!("sandboxes/{}/{}", k.framework_id, k.task_id),
                ready: t.cp.ready,
                healthy: t.cp.healthy,
                executor_pid: t.container.as_ref().and_then(|c| c.executor.pid),
                user: t
                    .info
                    .command
                    .as_ref()
                    .map(|c| c.user.clone())
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| self.own_user.clone()),
                run_dir: t.run_dir.clone(),
                cgroup: t.spec.as_ref().and_then(|s| s.cgroup.clone()),
            })
            .collect();
        let view = View {
            agent_id: self.id_str().to_string(),
            isolation: self.cgroups.summary(),
            executor: format!("{:?}", self.launcher),
            draining: self.core.draining(),
            registered: self.registered(),
            tasks,
            journal_bytes: self.journal.size(),
        };
        if let Ok(mut v) = self.view.lock() {
            *v = view;
        }
    }

    /// Lets the supervising executors of frameworks with no task on this agent end (they
    /// would otherwise stay for the agent's lifetime, one per framework ever seen, each with
    /// its idle cgroups).
    pub(super) fn retire_idle_supervisors(&mut self) {
        let busy: std::collections::HashSet<&str> =
            self.tasks.keys().map(|k| k.framework_id.as_str()).collect();
        for framework_id in self.supervisors.retire_idle(&busy) {
            info!(%framework_id, "no task of the framework is left here; its supervising executor ends");
        }
    }

    /// Removes sandboxes of tasks the agent no longer tracks, with their run directories:
    /// those older than `gc_delay`, then the oldest ones while the disk is fuller than
    /// `gc_max_disk_fraction`; and run directories of such tasks older than `gc_delay` whose
    /// sandbox is gone.
    pub(super) fn collect_garbage(&self) {
        let work = &self.config.work_dir;
        let run_dir = |k: &TaskKey| crate::checkpoint::run_dir(work, &k.framework_id, &k.task_id);
        let mut ended = self.untracked(&work.join("sandboxes"));
        ended.sort();
        let now = SystemTime::now();
        let old = |mtime: SystemTime| {
            now.duration_since(mtime).unwrap_or_default() >= self.config.gc_delay
        };
        let mut removed = 0;
        for (mtime, key, path) in ended {
            if old(mtime)
                || disk_fraction(work).is_some_and(|f| f > self.config.gc_max_disk_fraction)
            {
                if std::fs::remove_dir_all(&path).is_ok() {
                    removed += 1;
                }
                let _ = std::fs::remove_dir_all(run_dir(&key));
            } else {
                break;
            }
        }
        // Idle task cgroups kept by supervisors that died (those of live ones, this agent's
        // or another's, stay).
        let idle = crate::cgroups::pool::remove_orphans(
            self.cgroups
                .usable
                .values()
                .map(std::path::PathBuf::as_path),
            |pid| crate::containerizer::alive(pid, None),
        );
        if idle > 0 {
            info!(
                idle,
                "removed idle task cgroups left by supervisors that ended"
            );
        }
        let mut orphans = 0;
        for (mtime, key, path) in self.untracked(&work.join("meta").join("tasks")) {
            let sandbox = crate::sandbox::sandbox_dir(work, &key.framework_id, &key.task_id);
            if old(mtime) && !sandbox.exists() && std::fs::remove_dir_all(&path).is_ok() {
                orphans += 1;
            }
        }
        if removed + orphans > 0 {
            info!(
                sandboxes = removed,
                run_dirs_without_sandbox = orphans,
                "garbage-collected sandboxes of ended tasks"
            );
        }
    }

    /// The directories `root/<framework>/<task>` of tasks (and groups) the agent does not
    /// track, with their modification times.
    fn untracked(&self, root: &Path) -> Vec<(SystemTime, TaskKey, PathBuf)> {
        let mut out = Vec::new();
        let Ok(fws) = std::fs::read_dir(root) else {
            return out;
        };
        // A group's shared directory is in use while any of its members is tracked.
        let groups_in_use: std::collections::HashSet<TaskKey> = self
            .tasks
            .iter()
            .filter_map(|(k, t)| Some(TaskKey::new(k.framework_id.clone(), t.group.clone()?)))
            .collect();
        for fw in fws.flatten() {
            let fw_id = fw.file_name().to_string_lossy().into_owned();
            let Ok(tasks) = std::fs::read_dir(fw.path()) else {
                continue;
            };
            for t in tasks.flatten() {
                if !t.file_type().is_ok_and(|f| f.is_dir()) {
                    continue;
                }
                let key = TaskKey::new(fw_id.clone(), t.file_name().to_string_lossy().into_owned());
                if self.tasks.contains_key(&key) || groups_in_use.contains(&key) {
                    continue;
                }
                let mtime = t
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((mtime, key, t.path()));
            }
        }
        out
    }
}

/// Used fraction of the file system holding `dir`.
/// Its blocks or its inodes, whichever is fuller: short tasks leave many small files (a
/// sandbox, `stdout`, `stderr`, a run directory and its event log each), which can use up a
/// file system's inodes long before its blocks.
fn disk_fraction(dir: &std::path::Path) -> Option<f64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    let (blocks, free) = (u64::from(st.blocks()), u64::from(st.blocks_available()));
    #[allow(clippy::useless_conversion)]
    let (files, ffree) = (u64::from(st.files()), u64::from(st.files_available()));
    let used = |total: u64, free: u64| (total > 0).then(|| 1.0 - free as f64 / total as f64);
    match (used(blocks, free), used(files, ffree)) {
        (Some(b), Some(i)) => Some(b.max(i)),
        (b, i) => b.or(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::useless_conversion)]
    fn the_disk_is_as_full_as_the_fuller_of_its_blocks_and_inodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = disk_fraction(dir.path()).expect("statvfs of a temporary directory");
        let st = nix::sys::statvfs::statvfs(dir.path()).expect("statvfs");
        let blocks = 1.0 - u64::from(st.blocks_available()) as f64 / u64::from(st.blocks()) as f64;
        assert!((0.0..=1.0).contains(&f), "{f}");
        assert!(f >= blocks - 1e-3, "{f} < blocks {blocks}");
        if u64::from(st.files()) > 0 {
            let inodes =
                1.0 - u64::from(st.files_available()) as f64 / u64::from(st.files()) as f64;
            assert!(f >= inodes - 1e-3, "{f} < inodes {inodes}");
            assert!((f - blocks.max(inodes)).abs() < 1e-3, "{f}");
        }
    }
}
