//! cgroups isolation (v1 and v2): detecting what the host allows, creating a task's cgroups
//! with cpu, memory and pids limits, moving the task in, reading usage and OOM kills back,
//! killing everything inside and removing the cgroups.
//!
//! The agent detects support once at start ([`detect`]) and puts a [`CgroupSpec`] in each
//! executor's spec; the executor does the rest with [`Cgroup`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod pool;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Controllers the agent uses.
pub const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// CFS period used with a quota (100 ms, the kernel's default for a new cgroup).
pub const CFS_PERIOD_US: u64 = 100_000;

/// Which cgroup interface a host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>`).
    V1,
    /// The unified hierarchy.
    V2,
}

/// What the host allows: per controller, the directory under which task cgroups are created
/// (already created and writable), or why it is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSupport {
    /// The interface in use, if any controller is usable.
    pub version: Option<CgroupVersion>,
    /// Usable controllers and their parent directory for task cgroups.
    pub usable: BTreeMap<String, PathBuf>,
    /// Controllers that cannot be used, with the reason.
    pub unusable: BTreeMap<String, String>,
}

impl CgroupSupport {
    /// No cgroups at all, with a reason for every controller.
    pub fn none(reason: &str) -> Self {
        CgroupSupport {
            version: None,
            usable: BTreeMap::new(),
            unusable: CONTROLLERS
                .iter()
                .map(|c| (c.to_string(), reason.to_string()))
                .collect(),
        }
    }

    /// Whether `controller` can be used.
    pub fn has(&self, controller: &str) -> bool {
        self.usable.contains_key(controller)
    }

    /// One line for logs and `/state`, e.g. `cgroups-v1 cpu,memory,pids (cpuacct: …)`.
    pub fn summary(&self) -> String {
        let version = match self.version {
            Some(CgroupVersion::V1) => "cgroups-v1",
            Some(CgroupVersion::V2) => "cgroups-v2",
            None => "posix (no cgroups)",
        };
        let used: Vec<&str> = self.usable.keys().map(String::as_str).collect();
        let mut s = format!("{version} [{}]", used.join(","));
        for (c, why) in &self.unusable {
            s.push_str(&format!("; {c} unavailable: {why}"));
        }
        s
    }
}

/// A task's cgroup limits and where to create its cgroups (sent to the executor).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CgroupSpec {
    /// The interface.
    pub version: CgroupVersion,
    /// Parent directory per controller (v2: one entry, `"unified"`).
    pub parents: BTreeMap<String, PathBuf>,
    /// Name of the task's cgroup under each parent.
    pub name: String,
    /// cpu.shares (1024 per cpu); mapped to cpu.weight on v2.
    pub cpu_shares: Option<u64>,
    /// CFS quota per [`CFS_PERIOD_US`], when hard cpu limits are on.
    pub cfs_quota_us: Option<u64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes.
    pub pids_max: Option<u64>,
}

impl CgroupSpec {
    /// The parents of the task's cgroups, each once (one per hierarchy on v1, one on v2).
    pub fn parent_dirs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self.parents.values().map(PathBuf::as_path).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The directories of the task's cgroups (one per hierarchy on v1, one on v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.parent_dirs()
            .into_iter()
            .map(|p| p.join(&self.name))
            .collect()
    }

    /// The directory holding `controller`'s files.
    pub fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        match self.version {
            CgroupVersion::V2 => self.parents.get("unified").map(|p| p.join(&self.name)),
            CgroupVersion::V1 => self.parents.get(controller).map(|p| p.join(&self.name)),
        }
    }
}

/// cpu.shares → cpu.weight, the conversion systemd and runc use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// A mount from `/proc/self/mounts`: mount point, file system type and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// `cgroup` or `cgroup2` for us.
    pub fstype: String,
    /// Comma-separated options.
    pub options: Vec<String>,
}

/// Parses `/proc/self/mounts` text, keeping cgroup mounts.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _dev = f.next()?;
            let point = f.next()?;
            let fstype = f.next()?;
            let options = f.next()?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| Mount {
                point: PathBuf::from(point.replace("\\040", " ")),
                fstype: fstype.to_string(),
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Whether the kernel favours dynamic cgroup changes (`favordynmods` on a cgroup mount, as the
/// boot parameter `cgroup_favordynmods=true` or the v2 mount option gives). Off, every move of
/// a thread or process between cgroups may wait for an RCU grace period, which on an idle
/// machine takes milliseconds; the supervisor moves a thread six times per task.
pub fn favors_dynmods(mounts: &[Mount]) -> bool {
    mounts.iter().any(|m| {
        (m.fstype == "cgroup" || m.fstype == "cgroup2")
            && m.options.iter().any(|o| o == "favordynmods")
    })
}

/// Detects cgroup support from the mounts, creating `<mount>/<root_name>` parents (which
/// proves they are writable). v2 is used when the unified hierarchy has the controllers
/// (enabling them for our subtree); otherwise v1 per-controller hierarchies.
pub fn detect(mounts: &[Mount], root_name: &str) -> CgroupSupport {
    if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2")
        && let Some(s) = try_v2(&m.point, root_name)
    {
        return s;
    }
    let mut usable = BTreeMap::new();
    let mut unusable = BTreeMap::new();
    for c in CONTROLLERS {
        let Some(m) = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == c))
        else {
            unusable.insert(
                c.to_string(),
                "no cgroup v1 hierarchy has it mounted".to_string(),
            );
            continue;
        };
        let parent = m.point.join(root_name);
        match std::fs::create_dir_all(&parent) {
            Ok(()) => {
                usable.insert(c.to_string(), parent);
            }
            Err(e) => {
                unusable.insert(
                    c.to_string(),
                    format!("cannot create {}: {e}", parent.display()),
                );
            }
        }
    }
    let version = (!usable.is_empty()).then_some(CgroupVersion::V1);
    CgroupSupport {
        version,
        usable,
        unusable,
    }
}

fn try_v2(mount: &Path, root_name: &str) -> Option<CgroupSupport> {
    let available = std::fs::read_to_string(mount.join("cgroup.controllers")).ok()?;
    let available: Vec<&str> = available.split_whitespace().collect();
    let wanted: Vec<&str> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| available.contains(c))
        .collect();
    if wanted.is_empty() {
        return None; // a hybrid host: v2 is mounted but the controllers live in v1
    }
    let parent = mount.join(root_name);
    let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
    let ok = std::fs::write(mount.join("cgroup.subtree_control"), enable.trim())
        .and_then(|()| std::fs::create_dir_all(&parent))
        .and_then(|()| std::fs::write(parent.join("cgroup.subtree_control"), enable.trim()));
    let mut usable = BTreeMap::new();
    let mut unusable = BTreeMap::new();
    match ok {
        Ok(()) => {
            for c in &wanted {
                usable.insert(c.to_string(), parent.clone());
            }
            // cpu accounting is always there on v2 (cpu.stat).
            usable.insert("cpuacct".to_string(), parent.clone());
            usable.insert("unified".to_string(), parent.clone());
        }
        Err(e) => {
            for c in &wanted {
                unusable.insert(
                    c.to_string(),
                    format!("cannot enable it under {}: {e}", parent.display()),
                );
            }
        }
    }
    for c in ["cpu", "memory", "pids"] {
        if !available.contains(&c) {
            unusable.insert(c.to_string(), "not in cgroup.controllers".to_string());
        }
    }
    Some(CgroupSupport {
        version: (!usable.is_empty()).then_some(CgroupVersion::V2),
        usable,
        unusable,
    })
}

/// Resource usage of a task's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time used, nanoseconds.
    pub cpu_time_ns: u64,
    /// Resident memory (anonymous + file mapped), bytes.
    pub rss_bytes: u64,
    /// Memory charged to the cgroup (including page cache), bytes.
    pub memory_bytes: u64,
}

/// A task's live cgroups (used by the executor).
#[derive(Debug, Clone)]
pub struct Cgroup {
    spec: CgroupSpec,
    /// Whether [`pool::release`] may keep them for another task (made by [`pool::acquire`]).
    poolable: bool,
}

/// The calling thread inside a task's cgroups (v1); dropped, it goes back to their parents.
#[derive(Debug)]
pub struct ThreadInCgroup {
    tid: String,
    parents: Vec<PathBuf>,
}

impl Drop for ThreadInCgroup {
    fn drop(&mut self) {
        for p in &self.parents {
            if let Err(e) = leave_to(p, &self.tid) {
                tracing::warn!(error = %e, "a thread could not leave a task's cgroup");
            }
        }
    }
}

/// The `tasks` files of the parents that spawning threads go back to, kept open across tasks
/// (one open per hierarchy per process, not three per task).
static HOME_TASKS: std::sync::Mutex<std::collections::BTreeMap<PathBuf, std::fs::File>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Moves thread `tid` into `parent` through its kept `tasks` file; a file that no longer works
/// (the parent was removed and made again) is opened afresh once.
fn leave_to(parent: &Path, tid: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut files = HOME_TASKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(mut f) = files.get(parent)
        && f.write_all(tid.as_bytes()).is_ok()
    {
        return Ok(());
    }
    files.remove(parent);
    let path = parent.join("tasks");
    let err = |e: std::io::Error| format!("writing {tid:?} to {}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(err)?;
    f.write_all(tid.as_bytes()).map_err(err)?;
    files.insert(parent.to_path_buf(), f);
    Ok(())
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| format!("writing {value:?} to {}: {e}", dir.join(file).display()))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (memory.stat, cpu.stat, memory.events).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroup {
    /// Creates the task's cgroups and writes its limits.
    pub fn create(spec: &CgroupSpec) -> Result<Self, String> {
        for d in spec.dirs() {
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("creating cgroup {}: {e}", d.display()))?;
        }
        let cg = Cgroup {
            spec: spec.clone(),
            poolable: false,
        };
        cg.apply()?;
        Ok(cg)
    }

    fn apply(&self) -> Result<(), String> {
        let s = &self.spec;
        match s.version {
            CgroupVersion::V1 => {
                if let Some(d) = s.dir_of("cpu") {
                    if let Some(shares) = s.cpu_shares {
                        write(&d, "cpu.shares", &shares.max(2).to_string())?;
                    }
                    if let Some(q) = s.cfs_quota_us {
                        // The period is not written: a new cgroup has the kernel's default,
                        // which is CFS_PERIOD_US, whatever its parent's (checked on 6.18).
                        write(&d, "cpu.cfs_quota_us", &q.max(1000).to_string())?;
                    }
                }
                if let (Some(d), Some(bytes)) = (s.dir_of("memory"), s.memory_bytes) {
                    write(&d, "memory.limit_in_bytes", &bytes.to_string())?;
                    // Also bound swap where the kernel accounts it (best effort).
                    let _ = write(&d, "memory.memsw.limit_in_bytes", &bytes.to_string());
                }
                if let (Some(d), Some(max)) = (s.dir_of("pids"), s.pids_max) {
                    write(&d, "pids.max", &max.to_string())?;
                }
            }
            CgroupVersion::V2 => {
                let Some(d) = s.dir_of("unified") else {
                    return Err("cgroup v2 spec without a directory".into());
                };
                if let Some(shares) = s.cpu_shares {
                    write(&d, "cpu.weight", &shares_to_weight(shares).to_string())?;
                }
                if let Some(q) = s.cfs_quota_us {
                    write(&d, "cpu.max", &format!("{} {CFS_PERIOD_US}", q.max(1000)))?;
                }
                if let Some(bytes) = s.memory_bytes {
                    write(&d, "memory.max", &bytes.to_string())?;
                    let _ = write(&d, "memory.swap.max", "0");
                }
                if let Some(max) = s.pids_max {
                    write(&d, "pids.max", &max.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` into every cgroup of the task.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        for d in self.spec.dirs() {
            write(&d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether one thread can enter the task's cgroups on its own (v1 `tasks` files): then a
    /// command spawned from that thread starts inside them, with no wrapper to hold it.
    pub fn per_thread(&self) -> bool {
        self.spec.version == CgroupVersion::V1
    }

    /// Moves the calling thread (only it) into the task's cgroups until the guard is dropped;
    /// a process it spawns meanwhile is born inside them.
    pub fn enter_thread(&self) -> Result<ThreadInCgroup, String> {
        let guard = ThreadInCgroup {
            tid: nix::unistd::gettid().to_string(),
            parents: self
                .spec
                .parent_dirs()
                .into_iter()
                .map(Path::to_path_buf)
                .collect(),
        };
        for d in self.spec.dirs() {
            write(&d, "tasks", &guard.tid)?;
        }
        Ok(guard)
    }

    /// The processes in the task's cgroup.
    pub fn procs(&self) -> Vec<i32> {
        procs_of(&self.spec)
    }

    /// Kills what is left (SIGKILL, retrying while new processes appear), then reads the
    /// memory counters once: the OOM verdict and the pool's cleanliness check both use what
    /// this returns.
    pub fn finish(&self) -> EndState {
        let empty = kill_all(&self.spec);
        EndState {
            empty,
            ..memory_counters(&self.spec)
        }
    }

    /// Current usage.
    pub fn usage(&self) -> Usage {
        usage(&self.spec)
    }

    /// Removes the cgroups (after [`Cgroup::finish`]).
    pub fn destroy(&self) {
        destroy(&self.spec);
    }
}

/// Processes in the task's cgroup.
pub fn procs_of(spec: &CgroupSpec) -> Vec<i32> {
    let Some(d) = spec.dirs().into_iter().next() else {
        return Vec::new();
    };
    std::fs::read_to_string(d.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// What a task's cgroups hold at its end ([`Cgroup::finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndState {
    /// No process is left in them.
    pub empty: bool,
    /// The OOM killer's count (v1 `memory.oom_control`, v2 `memory.events`), when readable.
    pub oom_kill: Option<u64>,
    /// How often the memory limit was hit (v1 `memory.failcnt`), when readable.
    pub failcnt: Option<u64>,
}

impl EndState {
    /// Whether the OOM killer acted: its count, or (on a v1 kernel without that count) the
    /// limit having been hit.
    pub fn oom_killed(&self) -> bool {
        match self.oom_kill {
            Some(n) => n > 0,
            None => self.failcnt.is_some_and(|n| n > 0),
        }
    }
}

/// The memory counters of a task's cgroup (`empty` left false).
fn memory_counters(spec: &CgroupSpec) -> EndState {
    let Some(d) = spec.dir_of("memory") else {
        return EndState::default();
    };
    match spec.version {
        CgroupVersion::V2 => EndState {
            oom_kill: keyed(&d.join("memory.events"), "oom_kill"),
            ..EndState::default()
        },
        CgroupVersion::V1 => EndState {
            oom_kill: keyed(&d.join("memory.oom_control"), "oom_kill"),
            failcnt: read_u64(&d.join("memory.failcnt")),
            ..EndState::default()
        },
    }
}

/// SIGKILLs everything in the cgroup until it is empty (bounded); true once it is.
pub fn kill_all(spec: &CgroupSpec) -> bool {
    if spec.version == CgroupVersion::V2
        && let Some(d) = spec.dir_of("unified")
        && d.join("cgroup.kill").exists()
    {
        let _ = write(&d, "cgroup.kill", "1");
    }
    for _ in 0..50 {
        let procs = procs_of(spec);
        if procs.is_empty() {
            return true;
        }
        for p in procs {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    procs_of(spec).is_empty()
}

/// Usage of the task's cgroup (zeros where a controller is missing).
pub fn usage(spec: &CgroupSpec) -> Usage {
    let mut u = Usage::default();
    match spec.version {
        CgroupVersion::V1 => {
            if let Some(d) = spec.dir_of("cpuacct") {
                u.cpu_time_ns = read_u64(&d.join("cpuacct.usage")).unwrap_or(0);
            }
            if let Some(d) = spec.dir_of("memory") {
                let stat = d.join("memory.stat");
                u.rss_bytes = keyed(&stat, "total_rss")
                    .or_else(|| keyed(&stat, "rss"))
                    .unwrap_or(0);
                u.memory_bytes = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
            }
        }
        CgroupVersion::V2 => {
            if let Some(d) = spec.dir_of("unified") {
                u.cpu_time_ns = keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
                u.rss_bytes = keyed(&d.join("memory.stat"), "anon").unwrap_or(0);
                u.memory_bytes = read_u64(&d.join("memory.current")).unwrap_or(0);
            }
        }
    }
    u
}

/// Removes the task's cgroups (retrying for up to 2 s while the kernel releases them).
pub fn destroy(spec: &CgroupSpec) {
    for d in spec.dirs() {
        for _ in 0..200 {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => {
                    kill_all(spec);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
proc /proc proc rw 0 0
";

    #[test]
    fn mount_parsing_keeps_cgroups() {
        let m = parse_mounts(MOUNTS);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(m[1].options.iter().any(|o| o == "cpuacct"));
        assert_eq!(m[3].fstype, "cgroup2");
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }

    /// v1 detection and limit files against a fake hierarchy in a temporary directory.
    #[test]
    fn v1_on_a_fake_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mounts: Vec<Mount> = ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|c| Mount {
                point: root.join(c),
                fstype: "cgroup".into(),
                options: vec!["rw".into(), c.to_string()],
            })
            .collect();
        let s = detect(&mounts, "proffer");
        assert_eq!(s.version, Some(CgroupVersion::V1));
        assert!(s.has("cpu") && s.has("memory") && !s.has("pids"), "{s:?}");
        assert!(s.summary().contains("pids unavailable"), "{}", s.summary());
        let spec = CgroupSpec {
            version: CgroupVersion::V1,
            parents: s.usable.clone(),
            name: "c1".into(),
            cpu_shares: Some(512),
            cfs_quota_us: Some(50_000),
            memory_bytes: Some(64 << 20),
            pids_max: None,
        };
        let cg = Cgroup::create(&spec).expect("create");
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(root.join(c).join("proffer/c1").join(f)).unwrap_or_default()
        };
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(
            read("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        std::fs::write(
            root.join("memory/proffer/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .expect("w");
        assert!(cg.finish().oom_killed());
        std::fs::write(root.join("cpuacct/proffer/c1/cpuacct.usage"), "12345\n").expect("w");
        std::fs::write(
            root.join("memory/proffer/c1/memory.stat"),
            "cache 1\nrss 4096\ntotal_rss 8192\n",
        )
        .expect("w");
        let u = cg.usage();
        assert_eq!((u.cpu_time_ns, u.rss_bytes), (12345, 8192));
    }

    /// A thread enters a task's cgroups through their `tasks` files and goes back to the
    /// parents through files kept open across tasks.
    #[test]
    fn a_thread_enters_and_leaves_through_kept_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parents: BTreeMap<String, PathBuf> = ["cpu", "memory"]
            .iter()
            .map(|c| (c.to_string(), dir.path().join(c).join("proffer")))
            .collect();
        let spec = CgroupSpec {
            version: CgroupVersion::V1,
            parents: parents.clone(),
            name: "t1".into(),
            cpu_shares: None,
            cfs_quota_us: None,
            memory_bytes: None,
            pids_max: None,
        };
        let cg = Cgroup::create(&spec).expect("create");
        for p in parents.values() {
            std::fs::write(p.join("tasks"), "").expect("a parent's tasks file");
        }
        let tid = nix::unistd::gettid().to_string();
        for round in 1..=2 {
            let inside = cg.enter_thread().expect("enter");
            for p in parents.values() {
                let task_file = std::fs::read_to_string(p.join("t1/tasks")).expect("read");
                assert_eq!(task_file, tid, "round {round}");
            }
            drop(inside);
            for p in parents.values() {
                let home = std::fs::read_to_string(p.join("tasks")).expect("read");
                // A regular file shows each write of the one kept descriptor.
                assert_eq!(home, tid.repeat(round), "round {round}");
            }
        }
    }

    #[test]
    fn favordynmods_is_read_from_the_cgroup_mounts() {
        let off = parse_mounts(MOUNTS);
        assert!(!favors_dynmods(&off));
        let on = parse_mounts(
            "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,favordynmods 0 0\n",
        );
        assert!(favors_dynmods(&on));
        // The option of another file system does not count.
        let other = parse_mounts("tmpfs /x tmpfs rw,favordynmods 0 0\n");
        assert!(!favors_dynmods(&other));
    }

    #[test]
    fn v2_limits_are_written_in_v2_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("proffer");
        let spec = CgroupSpec {
            version: CgroupVersion::V2,
            parents: [("unified".to_string(), parent.clone())]
                .into_iter()
                .collect(),
            name: "c2".into(),
            cpu_shares: Some(1024),
            cfs_quota_us: Some(150_000),
            memory_bytes: Some(1 << 30),
            pids_max: Some(100),
        };
        let cg = Cgroup::create(&spec).expect("create");
        let read = |f: &str| std::fs::read_to_string(parent.join("c2").join(f)).unwrap_or_default();
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("memory.max"), (1u64 << 30).to_string());
        assert_eq!(read("pids.max"), "100");
        std::fs::write(
            parent.join("c2/memory.events"),
            "low 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("w");
        assert!(cg.finish().oom_killed());
    }
}
