//! Processes a test leaves behind: tasks keep running when their agent is killed (by design,
//! they survive an agent restart), so a test that stops its cluster with SIGKILL must end its
//! tasks itself, or they hold ports and CPU for the tests after it.

use std::path::{Path, PathBuf};
use std::process::Child;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `(pid, command line)` of every process whose working directory is under `root` (task
/// processes run in sandboxes below their agent's work dir).
pub fn processes_under(root: &Path) -> Vec<(i32, String)> {
    let Ok(root) = std::fs::canonicalize(root) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            cwd.starts_with(&root)
                .then(|| (pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

/// SIGKILLs every process working under `root` (see [`processes_under`]).
pub fn kill_under(root: &Path) {
    for (pid, _) in processes_under(root) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Child processes killed (SIGKILL, newest first) and reaped on drop, and then every process
/// still working under `root`: the tasks their agents had started.
#[derive(Debug)]
pub struct Children {
    /// The children, in the order they were started.
    pub list: Vec<Child>,
    root: PathBuf,
}

impl Children {
    /// No children yet; `root` is the test's work directory.
    pub fn new(root: &Path) -> Children {
        Children {
            list: Vec::new(),
            root: root.to_path_buf(),
        }
    }

    /// Adds a started child; returns its index in [`Children::list`].
    pub fn push(&mut self, child: Child) -> usize {
        self.list.push(child);
        self.list.len() - 1
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in self.list.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_under(&self.root);
    }
}
