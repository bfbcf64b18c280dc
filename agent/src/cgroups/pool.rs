//! Reusing a finished task's cgroups for the next task with the same limits (cgroups v1).
//!
//! Creating a task's cgroups (a `mkdir` per hierarchy: the kernel allocates and populates a
//! css per controller) and removing them (an `rmdir` each, then an offline and an RCU free in
//! kernel workers) cost more than the rest of a short task's isolation. The supervising
//! executor, which starts many tasks of one framework, keeps the cgroups of a finished task
//! idle under a pool name (`pool-<pid>-<n>`, renamed within their parent: a cheap kernfs
//! rename on v1) and renames them to the next task's container id when that task has the same
//! limits (the pool is keyed by the hierarchies and every limit, so nothing has to be written
//! again). Only clean cgroups are kept: empty, never OOM-killed in (`oom_kill` is a counter that
//! cannot be reset), no failed charge, and at most [`MAX_LEFT_BYTES`] still charged; their CPU
//! counter is reset when reused. Anything else is removed as before.
//!
//! cgroups v2 cannot rename a cgroup, so there the pool is never used. A supervisor removes its
//! idle cgroups when it ends ([`drain`]); the agent removes those of supervisors that died
//! ([`remove_orphans`], at start and with its garbage collection).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::{Cgroup, CgroupSpec, CgroupVersion, EndState, read_u64, write};

/// The most memory a finished task may leave charged (page cache) for its cgroups to be reused.
pub const MAX_LEFT_BYTES: u64 = 1 << 20;

/// The prefix of idle pooled cgroups' names, followed by `<pid>-<n>`.
pub const POOL_PREFIX: &str = "pool-";

/// The pool key: what a task's cgroups are (hierarchies and limits), without their name.
fn key(spec: &CgroupSpec) -> CgroupSpec {
    named(spec, String::new())
}

/// `spec`'s cgroups under another name.
fn named(spec: &CgroupSpec, name: String) -> CgroupSpec {
    CgroupSpec {
        name,
        ..spec.clone()
    }
}

/// Idle cgroups by key.
#[derive(Debug)]
struct Pool {
    idle: HashMap<CgroupSpec, Vec<String>>,
    count: usize,
    max_idle: usize,
    next: u64,
}

/// A pool behind a lock; `None` while reuse is off.
type Shared = Mutex<Option<Pool>>;

/// The process's pool; `None` until [`enable`] (and after [`drain`]).
static POOL: Shared = Mutex::new(None);

fn lock(pool: &Shared) -> std::sync::MutexGuard<'_, Option<Pool>> {
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn new(max_idle: usize) -> Pool {
        Pool {
            idle: HashMap::new(),
            count: 0,
            max_idle,
            next: 0,
        }
    }
}

/// Turns reuse on in this process, keeping at most `max_idle` idle sets of cgroups.
pub fn enable(max_idle: usize) {
    *lock(&POOL) = Some(Pool::new(max_idle));
}

/// The task's cgroups: an idle set with the same limits renamed to `spec.name` (its CPU
/// counter reset), or new ones ([`Cgroup::create`]).
pub fn acquire(spec: &CgroupSpec) -> Result<Cgroup, String> {
    acquire_in(&POOL, spec)
}

/// Gives back a task's cgroups once its processes are gone: kept idle for the next task with
/// the same limits when the pool is on, has room and they are clean; removed otherwise.
pub fn release(cg: &Cgroup, end: &EndState) {
    release_in(&POOL, cg, end);
}

/// Turns reuse off and removes every idle cgroup (a supervisor's last act).
pub fn drain() {
    drain_in(&POOL);
}

fn acquire_in(pool: &Shared, spec: &CgroupSpec) -> Result<Cgroup, String> {
    if spec.version == CgroupVersion::V1 {
        let key = key(spec);
        let slot = lock(pool)
            .as_mut()
            .and_then(|p| p.idle.get_mut(&key)?.pop().inspect(|_| p.count -= 1));
        if let Some(slot) = slot {
            match rename_all(spec, &slot, &spec.name) {
                Ok(()) => {
                    if let Some(d) = spec.dir_of("cpuacct") {
                        write(&d, "cpuacct.usage", "0")?;
                    }
                    return Ok(Cgroup {
                        spec: spec.clone(),
                        poolable: true,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an idle cgroup could not be reused; removing it");
                    super::destroy(&named(spec, slot));
                }
            }
        }
    }
    let mut cg = Cgroup::create(spec)?;
    cg.poolable = spec.version == CgroupVersion::V1;
    Ok(cg)
}

fn release_in(pool: &Shared, cg: &Cgroup, end: &EndState) {
    if cg.poolable && clean(&cg.spec, end) {
        let slot = lock(pool).as_mut().and_then(|p| {
            (p.count < p.max_idle).then(|| {
                p.next += 1;
                format!("{POOL_PREFIX}{}-{}", std::process::id(), p.next)
            })
        });
        if let Some(slot) = slot {
            match rename_all(&cg.spec, &cg.spec.name, &slot) {
                Ok(()) => {
                    let mut guard = lock(pool);
                    if let Some(p) = guard.as_mut() {
                        p.idle.entry(key(&cg.spec)).or_default().push(slot);
                        p.count += 1;
                        return;
                    }
                    drop(guard);
                    // Drained meanwhile: remove what was just renamed.
                    super::destroy(&named(&cg.spec, slot));
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "a task's cgroups are removed, not pooled"),
            }
        }
    }
    cg.destroy();
}

fn drain_in(pool: &Shared) {
    let Some(p) = lock(pool).take() else {
        return;
    };
    for (key, slots) in p.idle {
        for slot in slots {
            super::destroy(&named(&key, slot));
        }
    }
}

/// Whether a finished task's cgroups can serve another task as they are (`end`: what
/// [`Cgroup::finish`] read at the task's end).
fn clean(spec: &CgroupSpec, end: &EndState) -> bool {
    if !end.empty {
        return false;
    }
    let Some(d) = spec.dir_of("memory") else {
        return true;
    };
    end.oom_kill == Some(0)
        && end.failcnt == Some(0)
        && read_u64(&d.join("memory.usage_in_bytes")).is_some_and(|b| b <= MAX_LEFT_BYTES)
}

/// Renames the cgroup `from` to `to` under every parent of `spec`; on a failure, the ones
/// already renamed are renamed back.
fn rename_all(spec: &CgroupSpec, from: &str, to: &str) -> Result<(), String> {
    let parents = spec.parent_dirs();
    for (i, p) in parents.iter().enumerate() {
        if let Err(e) = std::fs::rename(p.join(from), p.join(to)) {
            for done in &parents[..i] {
                let _ = std::fs::rename(done.join(to), done.join(from));
            }
            return Err(format!(
                "renaming cgroup {} to {to}: {e}",
                p.join(from).display()
            ));
        }
    }
    Ok(())
}

/// The pid in an idle pooled cgroup's name (`pool-<pid>-<n>`).
pub fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(POOL_PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the idle pooled cgroups under `parents` whose process is not `alive` (a supervisor
/// that died keeps them); returns how many were removed. Others are left alone.
pub fn remove_orphans<'a>(
    parents: impl IntoIterator<Item = &'a Path>,
    alive: impl Fn(u32) -> bool,
) -> usize {
    let mut removed = 0;
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(owner) else {
                continue;
            };
            if !alive(pid) && std::fs::remove_dir(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// What the fake hierarchy's files say of `spec`'s cgroups now (as [`Cgroup::finish`]
    /// reads them, without killing anything).
    fn observed(spec: &CgroupSpec) -> EndState {
        EndState {
            empty: super::super::procs_of(spec).is_empty(),
            ..super::super::memory_counters(spec)
        }
    }

    /// A fake v1 hierarchy (cpu, cpuacct, memory) under a temporary directory, with task
    /// `name` created in it and its files as a clean finished task leaves them.
    struct Fake {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().to_path_buf();
            for c in ["cpu", "cpuacct", "memory"] {
                std::fs::create_dir_all(root.join(c).join("proffer")).expect("mkdir");
            }
            Fake { _dir: dir, root }
        }

        fn spec(&self, name: &str, mem_mb: u64) -> CgroupSpec {
            CgroupSpec {
                version: CgroupVersion::V1,
                parents: ["cpu", "cpuacct", "memory"]
                    .iter()
                    .map(|c| (c.to_string(), self.root.join(c).join("proffer")))
                    .collect(),
                name: name.into(),
                cpu_shares: Some(102),
                cfs_quota_us: None,
                memory_bytes: Some(mem_mb << 20),
                pids_max: None,
            }
        }

        /// Writes what the kernel would show for a finished task.
        fn finished(&self, name: &str, oom_kill: u64, failcnt: u64, usage: u64) {
            let mem = self.root.join("memory/proffer").join(name);
            let w = |f: &str, v: String| std::fs::write(mem.join(f), v).expect("write");
            w(
                "memory.oom_control",
                format!("oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kill}\n"),
            );
            w("memory.failcnt", format!("{failcnt}\n"));
            w("memory.usage_in_bytes", format!("{usage}\n"));
            for c in ["cpu", "cpuacct", "memory"] {
                std::fs::write(
                    self.root
                        .join(c)
                        .join("proffer")
                        .join(name)
                        .join("cgroup.procs"),
                    "",
                )
                .expect("write");
            }
            std::fs::write(
                self.root
                    .join("cpuacct/proffer")
                    .join(name)
                    .join("cpuacct.usage"),
                "777\n",
            )
            .expect("write");
        }

        fn names(&self, c: &str) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.root.join(c).join("proffer"))
                .expect("read_dir")
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            v.sort();
            v
        }
    }

    fn idle(pool: &Shared) -> usize {
        lock(pool).as_ref().map_or(0, |p| p.count)
    }

    #[test]
    fn a_clean_finished_tasks_cgroups_serve_the_next_task_with_the_same_limits() {
        let fake = Fake::new();
        let pool: Shared = Mutex::new(Some(Pool::new(4)));
        let first = acquire_in(&pool, &fake.spec("t1", 32)).expect("create");
        assert_eq!(fake.names("memory"), ["t1"]);
        fake.finished("t1", 0, 0, 4096);
        release_in(&pool, &first, &observed(&first.spec));
        let slot = format!("{POOL_PREFIX}{}-1", std::process::id());
        for c in ["cpu", "cpuacct", "memory"] {
            assert_eq!(
                fake.names(c),
                std::slice::from_ref(&slot),
                "{c}: renamed, not removed"
            );
        }
        assert_eq!(idle(&pool), 1);
        let second = acquire_in(&pool, &fake.spec("t2", 32)).expect("reuse");
        for c in ["cpu", "cpuacct", "memory"] {
            assert_eq!(fake.names(c), ["t2"], "{c}");
        }
        let read = |p: &str| std::fs::read_to_string(fake.root.join(p)).expect("read");
        assert_eq!(
            read("cpuacct/proffer/t2/cpuacct.usage"),
            "0",
            "CPU counter reset"
        );
        assert_eq!(
            read("cpu/proffer/t2/cpu.shares"),
            "102",
            "limits carried over"
        );
        assert_eq!(idle(&pool), 0);
        // Other limits: new cgroups; the idle set stays for its own kind.
        fake.finished("t2", 0, 0, 0);
        release_in(&pool, &second, &observed(&second.spec));
        let other = acquire_in(&pool, &fake.spec("t3", 64)).expect("create");
        assert_eq!(
            fake.names("memory"),
            [
                format!("{POOL_PREFIX}{}-2", std::process::id()),
                "t3".into()
            ]
        );
        assert_eq!(idle(&pool), 1);
        assert!(other.poolable);
    }

    #[test]
    fn only_clean_cgroups_are_kept() {
        let fake = Fake::new();
        let mem = fake.spec("t", 32);
        let cases = [
            ((0, 0, 0), true),
            ((0, 0, MAX_LEFT_BYTES), true),
            ((1, 0, 0), false),
            ((0, 3, 0), false),
            ((0, 0, MAX_LEFT_BYTES + 1), false),
        ];
        acquire_in(&Mutex::new(None), &mem).expect("create");
        for ((oom, failcnt, usage), want) in cases {
            fake.finished("t", oom, failcnt, usage);
            assert_eq!(
                clean(&mem, &observed(&mem)),
                want,
                "oom_kill {oom}, failcnt {failcnt}, usage {usage}"
            );
        }
        fake.finished("t", 0, 0, 0);
        std::fs::write(fake.root.join("cpu/proffer/t/cgroup.procs"), "4242\n").expect("write");
        assert!(!clean(&mem, &observed(&mem)), "a process is still inside");
        // What the task's end read is used as it is (the files are not read again): only the
        // usage comes from the file.
        fake.finished("t", 0, 0, 0);
        let end = |empty, oom_kill, failcnt| EndState {
            empty,
            oom_kill,
            failcnt,
        };
        assert!(clean(&mem, &end(true, Some(0), Some(0))));
        assert!(!clean(&mem, &end(false, Some(0), Some(0))));
        assert!(!clean(&mem, &end(true, Some(1), Some(0))));
        assert!(!clean(&mem, &end(true, Some(0), Some(2))));
        assert!(
            !clean(&mem, &end(true, None, Some(0))),
            "unreadable counters"
        );
    }

    #[test]
    fn the_oom_verdict_falls_back_to_the_limit_hits_without_a_kill_count() {
        let end = |oom_kill, failcnt| EndState {
            empty: true,
            oom_kill,
            failcnt,
        };
        assert!(!end(Some(0), Some(5)).oom_killed(), "hits, but no kill");
        assert!(end(Some(1), Some(0)).oom_killed());
        assert!(end(None, Some(1)).oom_killed(), "an old kernel: hits count");
        assert!(!end(None, None).oom_killed());
    }

    #[test]
    fn a_full_or_disabled_pool_keeps_nothing_and_drain_empties_it() {
        let fake = Fake::new();
        // No memory hierarchy and no limits: the fake directories stay empty, so removing
        // them works as on cgroupfs.
        let bare = |name: &str| CgroupSpec {
            parents: ["cpu", "cpuacct"]
                .iter()
                .map(|c| (c.to_string(), fake.root.join(c).join("proffer")))
                .collect(),
            cpu_shares: None,
            memory_bytes: None,
            ..fake.spec(name, 0)
        };
        let full: Shared = Mutex::new(Some(Pool::new(0)));
        let off: Shared = Mutex::new(None);
        for (pool, name) in [(&full, "a"), (&off, "b")] {
            let cg = acquire_in(pool, &bare(name)).expect("create");
            assert_eq!(fake.names("cpu"), [name]);
            release_in(pool, &cg, &observed(&cg.spec));
            assert!(fake.names("cpu").is_empty(), "{name}: removed, not kept");
            assert_eq!(idle(pool), 0);
        }
        // Drain removes the idle cgroups and turns reuse off.
        let pool: Shared = Mutex::new(Some(Pool::new(4)));
        let cg = acquire_in(&pool, &bare("c")).expect("create");
        release_in(&pool, &cg, &observed(&cg.spec));
        assert_eq!(idle(&pool), 1);
        assert_eq!(fake.names("cpuacct").len(), 1);
        drain_in(&pool);
        assert!(lock(&pool).is_none());
        assert!(fake.names("cpu").is_empty() && fake.names("cpuacct").is_empty());
        // A release after the drain removes.
        let late = acquire_in(&pool, &bare("d")).expect("create");
        release_in(&pool, &late, &observed(&late.spec));
        assert!(fake.names("cpu").is_empty());
    }

    #[test]
    fn orphans_of_dead_owners_are_removed_and_others_left() {
        let fake = Fake::new();
        let parent = fake.root.join("cpu/proffer");
        for name in [
            "pool-111-1",
            "pool-111-2",
            "pool-222-1",
            "pool-x-1",
            "task-1",
            "pool-333",
        ] {
            std::fs::create_dir(parent.join(name)).expect("mkdir");
        }
        let removed = remove_orphans([parent.as_path()], |pid| pid == 222);
        assert_eq!(removed, 2);
        assert_eq!(
            fake.names("cpu"),
            ["pool-222-1", "pool-333", "pool-x-1", "task-1"]
        );
        assert_eq!(owner("pool-42-7"), Some(42));
        assert_eq!(owner("pool-42"), None);
        assert_eq!(owner("task-42-7"), None);
    }
}
