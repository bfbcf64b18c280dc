//! What ends with a supervised task, however its supervision ends: its container, its process
//! group and its cgroups.

use nix::sys::signal::Signal;

use super::{container, signal_tree};
use crate::cgroups::{Cgroup, EndState, pool};

/// Deletes a task's container (forcibly) and releases its rootfs when dropped.
pub(super) struct ContainerGuard(pub(super) Option<container::Launch>);

impl ContainerGuard {
    /// Deletes the container now (off the runtime's workers).
    pub(super) async fn finish(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = tokio::task::spawn_blocking(move || c.finish()).await;
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.finish();
        }
    }
}

/// Kills a task's process group when dropped (or at [`TreeGuard::kill`]), once.
pub(super) struct TreeGuard(pub(super) Option<u32>);

impl TreeGuard {
    pub(super) fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            signal_tree(pid, None, Signal::SIGKILL);
        }
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills what is left in a task's cgroups (unless [`CgroupGuard::empty`] did) and gives them
/// back when dropped (kept for the next task when the pool is on and they are clean, else
/// removed: [`pool::release`]).
pub(super) struct CgroupGuard<'a> {
    cgroup: Option<&'a Cgroup>,
    /// What [`CgroupGuard::empty`] found (the pool's check uses it too).
    end: Option<EndState>,
}

impl<'a> CgroupGuard<'a> {
    /// Guards `cgroup` (none: nothing to do).
    pub(super) fn new(cgroup: Option<&'a Cgroup>) -> Self {
        CgroupGuard { cgroup, end: None }
    }

    /// Kills everything left in the cgroups now; true if the OOM killer acted in them.
    pub(super) fn empty(&mut self) -> bool {
        let end = self.cgroup.map(Cgroup::finish);
        self.end = end;
        end.is_some_and(|e| e.oom_killed())
    }
}

impl Drop for CgroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup {
            let end = self.end.unwrap_or_else(|| cg.finish());
            pool::release(cg, &end);
        }
    }
}
