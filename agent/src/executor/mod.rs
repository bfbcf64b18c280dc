//! The per-task executor (`proffer executor --run-dir DIR`): fetches the task's URIs, creates
//! its cgroups, starts its command, runs its checks, kills it on request (SIGTERM to the
//! executor) and records everything in the run directory's event log (see [`protocol`]).
//!
//! As a process it calls `setsid` first, so it survives the agent (even `kill -9`) and a
//! terminal's signals; a restarted agent re-attaches by reading the event log. The same
//! [`supervise`] function also runs inside the agent process when no executor binary is
//! usable (then tasks do not survive an agent restart; the agent says so at start).

pub mod container;
pub mod group_ns;
pub mod protocol;
pub mod supervisor;

mod guards;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use proffer_proto::v1::{TaskInfo, TaskState};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cgroups::{Cgroup, pool};
use crate::checks::{CheckConfig, HealthAction, HealthTracker};
use crate::fetcher;
use crate::process::{self, Termination};
use guards::{CgroupGuard, ContainerGuard, TreeGuard};
use protocol::{EventLog, ExecutorEvent, ExecutorSpec};

/// Writes a line to the executor's log (its stderr: a file next to its tasks' run
/// directories). Not `eprintln!`, which panics when the line cannot be written (a full disk);
/// the executor goes on without the line.
pub(crate) fn log_line(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// How the executor was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorMode {
    /// Print [`protocol::PROBE_REPLY`] and exit.
    Probe,
    /// Supervise the task of this run directory.
    Run(PathBuf),
    /// Supervise the tasks the agent names on stdin ([`supervisor`]).
    Supervisor,
}

/// Parses executor arguments (after the program name; a leading `executor` is skipped, and
/// `--oci-runtime PATH`, read by [`oci_runtime_arg`], may come before the mode).
pub fn parse_args(args: &[String]) -> Result<ExecutorMode, String> {
    let mut it = args.iter().map(String::as_str).peekable();
    if it.peek() == Some(&"executor") {
        it.next();
    }
    while it.peek() == Some(&"--oci-runtime") {
        it.next();
        it.next();
    }
    match (it.next(), it.next(), it.next()) {
        (Some("--probe"), None, None) => Ok(ExecutorMode::Probe),
        (Some("--run-dir"), Some(dir), None) => Ok(ExecutorMode::Run(PathBuf::from(dir))),
        (Some("--supervisor"), None, None) => Ok(ExecutorMode::Supervisor),
        _ => Err(
            "usage: executor [--oci-runtime PATH] (--probe | --run-dir DIR | --supervisor)".into(),
        ),
    }
}

/// The `--oci-runtime PATH` of executor arguments: the OCI runtime for tasks in containers
/// (give it to [`container::set_runtime_override`]).
pub fn oci_runtime_arg(args: &[String]) -> Option<PathBuf> {
    args.iter()
        .position(|a| a == "--oci-runtime")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
}

/// Runs the executor process: `setsid`, SIGTERM → kill request (grace from the `kill` file),
/// supervise the task, and nudge the agent on stdout after every event. Returns the process
/// exit code (0 once the task's end is recorded).
pub async fn run_process(mode: ExecutorMode) -> i32 {
    let run_dir = match mode {
        ExecutorMode::Probe => {
            println!("{}", protocol::PROBE_REPLY);
            return 0;
        }
        ExecutorMode::Run(dir) => dir,
        ExecutorMode::Supervisor => return supervisor::run_supervisor().await,
    };
    // Leave the agent's session and process group: signals aimed at the agent's terminal or
    // group do not reach the task, and the agent's death does not either.
    let _ = nix::unistd::setsid();
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let kill_file = run_dir.join(protocol::KILL_FILE);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::spawn(async move {
                while term.recv().await.is_some() {
                    let grace = std::fs::read_to_string(&kill_file)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_millis);
                    if kill_tx.send(grace).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => log_line(format_args!("executor: cannot handle SIGTERM: {e}")),
    }
    let mut stdout = tokio::io::stdout();
    let (nudge_tx, mut nudge_rx) = mpsc::unbounded_channel::<()>();
    let agent = AgentLink::default();
    let (link, dir) = (agent.clone(), run_dir.clone());
    let nudger = tokio::spawn(async move {
        while nudge_rx.recv().await.is_some() {
            // The agent may be gone (EPIPE): the event log is the record, this is a hint.
            let written = stdout.write_all(b"\n").await;
            if written.is_err() || stdout.flush().await.is_err() {
                link.lost_off_runtime(dir.clone()).await;
            }
        }
    });
    let result = supervise_dir(&run_dir, kill_rx, Nudge::unit(nudge_tx, agent)).await;
    let _ = nudger.await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            log_line(format_args!("executor: {e}"));
            1
        }
    }
}

/// Whether the agent still reads this executor's nudges.
///
/// While it does, a task's end is appended to its event log without an fsync: the agent reads
/// it within milliseconds and makes it durable in its own journal's group commit before it
/// sends the update (one fsync for a batch of tasks instead of one per task; Mesos's executors
/// fsync nothing). Once a nudge cannot be written (the agent is gone, so nobody makes the ends
/// durable), [`AgentLink::lost`] syncs the file system once, and every later end is fsync'ed by
/// its [`Recorder`]: a power loss while the agent is down still keeps the exit codes.
#[derive(Clone, Debug, Default)]
pub struct AgentLink(Arc<AtomicBool>);

impl AgentLink {
    /// Whether a nudge could not be written.
    pub fn gone(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// A nudge about `run_dir` could not be written: marks the agent gone and, the first time,
    /// syncs the file system of `run_dir` (every end appended before this is then on disk; an
    /// end appended after sees [`AgentLink::gone`] and syncs itself).
    pub fn lost(&self, run_dir: &Path) {
        if self.0.swap(true, Ordering::SeqCst) {
            return;
        }
        let synced = std::fs::File::open(run_dir)
            .and_then(|d| rustix::fs::syncfs(&d).map_err(std::io::Error::from));
        if let Err(e) = synced {
            log_line(format_args!(
                "executor: the agent is gone and syncing {} failed: {e}",
                run_dir.display()
            ));
        }
    }

    /// [`AgentLink::lost`] on the blocking pool (the sync may take long), for a nudge writer
    /// on the runtime.
    pub async fn lost_off_runtime(&self, run_dir: PathBuf) {
        let link = self.clone();
        let _ = tokio::task::spawn_blocking(move || link.lost(&run_dir)).await;
    }
}

/// How a supervised task tells the agent of its new events, and whether the agent still reads
/// them.
#[derive(Clone, Debug)]
pub struct Nudge {
    to: NudgeTo,
    agent: AgentLink,
}

#[derive(Clone, Debug)]
enum NudgeTo {
    /// One unit per event (a per-task executor's stdout, the in-process executor's watcher).
    Unit(mpsc::UnboundedSender<()>),
    /// The task's run directory per event (the supervisor's one writer for all its tasks).
    Dir(mpsc::UnboundedSender<supervisor::Notice>, PathBuf),
}

impl Nudge {
    /// A unit on `tx` per event.
    pub fn unit(tx: mpsc::UnboundedSender<()>, agent: AgentLink) -> Self {
        Nudge {
            to: NudgeTo::Unit(tx),
            agent,
        }
    }

    /// `run_dir` on `tx` per event.
    pub fn dir(
        tx: mpsc::UnboundedSender<supervisor::Notice>,
        run_dir: PathBuf,
        agent: AgentLink,
    ) -> Self {
        Nudge {
            to: NudgeTo::Dir(tx, run_dir),
            agent,
        }
    }

    /// Tells of a new event (the receiver may be gone: the event log is the record).
    fn send(&self) {
        match &self.to {
            NudgeTo::Unit(tx) => {
                let _ = tx.send(());
            }
            NudgeTo::Dir(tx, dir) => {
                let _ = tx.send(supervisor::Notice::Events(dir.clone()));
            }
        }
    }
}

/// Records events and nudges the agent. Every event is one small append to the page cache,
/// written in place; the task's end is also fsync'ed when the agent is gone ([`AgentLink`]),
/// on the blocking pool, so a supervisor with many tasks keeps them all moving.
struct Recorder {
    log: Arc<std::sync::Mutex<EventLog>>,
    nudge: Nudge,
}

impl Recorder {
    async fn record(&mut self, e: &ExecutorEvent) -> Result<(), String> {
        let log_err = |err: std::io::Error| format!("recording {e:?}: {err}");
        {
            let mut log = self
                .log
                .lock()
                .map_err(|_| "the event log lock is poisoned".to_string())?;
            log.append(e).map_err(log_err)?;
        }
        // Checked after the append: either this sees the agent gone, or `lost` runs later and
        // its sync covers the append.
        if e.needs_sync() && self.nudge.agent.gone() {
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || match log.lock() {
                Ok(log) => log.sync(),
                Err(_) => Err(std::io::Error::other("the event log lock is poisoned")),
            })
            .await
            .map_err(|err| format!("recording {e:?}: {err}"))?
            .map_err(log_err)?;
        }
        self.nudge.send();
        Ok(())
    }

    async fn exited(&mut self, t: &Termination, healthy: Option<bool>) -> Result<(), String> {
        self.record(&ExecutorEvent::Exited {
            state: t.state.as_str_name().to_string(),
            reason: t.reason.to_string(),
            message: t.message.clone(),
            exit_code: t.exit_code,
            healthy,
        })
        .await
    }
}

fn failed(reason: &'static str, message: String) -> Termination {
    Termination {
        state: TaskState::TaskFailed,
        reason,
        message,
        exit_code: None,
    }
}

/// Spawns a loop running one check every interval after its delay; results go to `tx`.
fn spawn_check(
    cfg: CheckConfig,
    sandbox: PathBuf,
    env: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Result<String, String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(cfg.delay).await;
        loop {
            let r = crate::checks::run_once(&cfg.kind, cfg.timeout, &sandbox, &env).await;
            if tx.send(r).is_err() {
                return;
            }
            tokio::time::sleep(cfg.interval).await;
        }
    })
}

fn signal_tree(pid: u32, cgroup: Option<&Cgroup>, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
    if let Some(cg) = cgroup {
        for p in cg.procs() {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), signal);
        }
    }
}

/// [`supervise`] of the task whose launch files (`task.pb`, `spec.json`) are in `run_dir`.
pub async fn supervise_dir(
    run_dir: &Path,
    kills: mpsc::UnboundedReceiver<Option<Duration>>,
    nudge: Nudge,
) -> Result<(), String> {
    let spec = protocol::read_spec(run_dir)
        .map_err(|e| format!("reading spec in {}: {e}", run_dir.display()))?;
    let task = protocol::read_task(run_dir)
        .map_err(|e| format!("reading task in {}: {e}", run_dir.display()))?;
    supervise(run_dir, task, spec, kills, nudge).await
}

/// Supervises `task` (its event log and kill file in `run_dir`) until it ends and its end is
/// recorded. `kills` carries kill requests (a grace period, or `None` for the task's default);
/// `nudge` is told after each event.
pub async fn supervise(
    run_dir: &Path,
    task: TaskInfo,
    spec: ExecutorSpec,
    mut kills: mpsc::UnboundedReceiver<Option<Duration>>,
    nudge: Nudge,
) -> Result<(), String> {
    let log = EventLog::open(run_dir)
        .map_err(|e| format!("opening event log in {}: {e}", run_dir.display()))?;
    let mut rec = Recorder {
        log: Arc::new(std::sync::Mutex::new(log)),
        nudge,
    };
    let prepared = if slow_to_prepare(&spec, &task) {
        // Downloads, image unpacking and user lookups may take long: off the runtime.
        let (s, t, dir) = (spec.clone(), task.clone(), run_dir.to_path_buf());
        tokio::task::spawn_blocking(move || prepare_and_spawn(&s, &t, &dir))
            .await
            .map_err(|e| format!("preparing the task panicked: {e}"))?
    } else {
        // A plain command: a few hundred microseconds of cgroup set-up and a spawn, cheaper
        // in place than two thread hops (a busy supervisor then launches without sleeping).
        prepare_and_spawn(&spec, &task, run_dir)
    };
    match prepared {
        Ok(p) => run_task(&spec, &task, p, &mut kills, &mut rec).await,
        Err(t) => rec.exited(&t, None).await,
    }
}

/// Whether preparing `task` may block for long (URIs to fetch, an image to unpack, a user to
/// look up through NSS), so it runs on the blocking pool rather than on the runtime.
fn slow_to_prepare(spec: &ExecutorSpec, task: &TaskInfo) -> bool {
    let has_uris = task.command.as_ref().is_some_and(|c| !c.uris.is_empty());
    let has_image = task.container.as_ref().is_some_and(|c| !c.image.is_empty());
    has_uris || has_image || spec.user.is_some()
}

/// A task ready to start: its command, cgroups and container (when it runs in one).
struct Prepared {
    cmd: tokio::process::Command,
    cgroup: Option<Cgroup>,
    container: Option<container::Launch>,
    /// The command, already spawned inside its v1 cgroups on the thread that prepared it
    /// (one thread hop per task fewer), or why entering them failed.
    spawned: Option<Result<std::io::Result<tokio::process::Child>, String>>,
}

/// [`prepare`], then, where the task's cgroups can be entered by a thread (v1), the spawn
/// from inside them on the same blocking thread.
fn prepare_and_spawn(
    spec: &ExecutorSpec,
    task: &TaskInfo,
    run_dir: &Path,
) -> Result<Prepared, Termination> {
    let mut p = prepare(spec, task, run_dir)?;
    if let Some(cg) = p.cgroup.as_ref().filter(|c| c.per_thread()) {
        let cmd = &mut p.cmd;
        p.spawned = Some(cg.enter_thread().map(|inside| {
            let child = cmd.spawn();
            drop(inside);
            child
        }));
    }
    Ok(p)
}

/// Fetches URIs and creates the cgroups; on failure returns the task's terminal state.
fn prepare(spec: &ExecutorSpec, task: &TaskInfo, run_dir: &Path) -> Result<Prepared, Termination> {
    let uris = task
        .command
        .as_ref()
        .map(|c| c.uris.clone())
        .unwrap_or_default();
    if !uris.is_empty() {
        let cache = spec.fetch_cache.as_ref().map(|(dir, max)| fetcher::Cache {
            dir: dir.clone(),
            max_bytes: *max,
        });
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.sandbox.join("stderr"))
            .map_err(|e| {
                failed(
                    "REASON_FETCHER_FAILED",
                    format!("opening sandbox stderr: {e}"),
                )
            })?;
        if let Err(e) = fetcher::fetch_all(&uris, &spec.sandbox, cache.as_ref(), &mut log) {
            let _ = writeln!(log, "fetcher: {e}");
            return Err(failed("REASON_FETCHER_FAILED", e));
        }
    }
    let launch_failed = |e: String| {
        failed(
            "REASON_COMMAND_EXECUTOR_FAILED",
            format!("failed to launch command: {e}"),
        )
    };
    if let Some(info) = task.container.as_ref().filter(|c| !c.image.is_empty()) {
        return prepare_container(spec, task, info, run_dir);
    }
    let user = match &spec.user {
        Some(u) => {
            Some(process::lookup_user(u).map_err(|e| failed("REASON_CONTAINER_LAUNCH_FAILED", e))?)
        }
        None => None,
    };
    if let Some((uid, gid)) = user {
        // The sandbox belongs to the task's user (as Mesos does), so the task can write in it.
        std::os::unix::fs::chown(&spec.sandbox, Some(uid), Some(gid)).map_err(|e| {
            failed(
                "REASON_CONTAINER_LAUNCH_FAILED",
                format!("chown of the sandbox: {e}"),
            )
        })?;
    }
    // Found here, the program is spawned by its path (one `execve`), and a missing one is
    // named with its errno (a cgroup wrapper would report it only as exit status 127).
    let program = match process::direct_program(task) {
        Some(name) => Some(
            process::find_program(&name, &spec.env, &spec.sandbox).map_err(|e| {
                launch_failed(format!("`{name}`: {}", process::describe_io_error(&e)))
            })?,
        ),
        None => None,
    };
    let cgroup = match &spec.cgroup {
        Some(c) => Some(
            pool::acquire(c)
                .map_err(|e| failed("REASON_CONTAINER_LAUNCH_FAILED", format!("cgroups: {e}")))?,
        ),
        None => None,
    };
    match process::build_command(
        task,
        &spec.env,
        &spec.sandbox,
        // A v1 cgroup is entered by the spawning thread: no wrapper shell is needed.
        cgroup.as_ref().is_some_and(|c| !c.per_thread()),
        user,
        spec.pid_namespace,
        program.as_deref(),
    ) {
        Ok(cmd) => Ok(Prepared {
            cmd,
            cgroup,
            container: None,
            spawned: None,
        }),
        Err(e) => {
            if let Some(cg) = &cgroup {
                pool::release(cg, &cg.finish());
            }
            Err(launch_failed(e.to_string()))
        }
    }
}

/// Creates the task's cgroups and prepares its container (the runtime's process starts in
/// the cgroups; the container's own cgroup nests below them).
fn prepare_container(
    spec: &ExecutorSpec,
    task: &TaskInfo,
    info: &proffer_proto::v1::ContainerInfo,
    run_dir: &Path,
) -> Result<Prepared, Termination> {
    let cgroup = match &spec.cgroup {
        Some(c) => Some(
            Cgroup::create(c)
                .map_err(|e| failed("REASON_CONTAINER_LAUNCH_FAILED", format!("cgroups: {e}")))?,
        ),
        None => None,
    };
    let wait_for_go = cgroup.as_ref().is_some_and(|c| !c.per_thread());
    match container::prepare(spec, task, info, run_dir, wait_for_go) {
        Ok((cmd, launch)) => Ok(Prepared {
            cmd,
            cgroup,
            container: Some(launch),
            spawned: None,
        }),
        Err(t) => {
            if let Some(cg) = &cgroup {
                cg.destroy();
            }
            Err(t)
        }
    }
}

async fn run_task(
    spec: &ExecutorSpec,
    task: &TaskInfo,
    prepared: Prepared,
    kills: &mut mpsc::UnboundedReceiver<Option<Duration>>,
    rec: &mut Recorder,
) -> Result<(), String> {
    let Prepared {
        mut cmd,
        cgroup,
        container,
        spawned,
    } = prepared;
    // However this function ends, nothing of the task survives and its cgroups are removed
    // (the container, deleted first, has its cgroup below them).
    let mut guard = CgroupGuard::new(cgroup.as_ref());
    let mut container = ContainerGuard(container);
    // With v1 cgroups the command was spawned from inside them by the thread that prepared
    // it ([`prepare_and_spawn`]); otherwise (no cgroups, or v2, where a wrapper waits to be
    // moved in below) it is spawned here.
    let spawned = spawned.unwrap_or_else(|| Ok(cmd.spawn()));
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => {
            return rec
                .exited(
                    &failed("REASON_CONTAINER_LAUNCH_FAILED", format!("cgroups: {e}")),
                    None,
                )
                .await;
        }
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let program = process::direct_program(task).unwrap_or_else(|| "/bin/sh".into());
            return rec
                .exited(
                    &failed(
                        "REASON_COMMAND_EXECUTOR_FAILED",
                        format!(
                            "failed to launch command `{program}`: {}",
                            process::describe_io_error(&e)
                        ),
                    ),
                    None,
                )
                .await;
        }
    };
    let Some(pid) = child.id() else {
        return rec
            .exited(
                &failed(
                    "REASON_COMMAND_EXECUTOR_FAILED",
                    "spawned process has no pid".into(),
                ),
                None,
            )
            .await;
    };
    if let Some(cg) = cgroup.as_ref().filter(|c| !c.per_thread()) {
        // The command waits on its stdin (see process::build_command) until it is inside.
        let joined = cg.add(pid);
        let mut stdin = child.stdin.take();
        if let Err(e) = joined {
            drop(stdin);
            signal_tree(pid, Some(cg), Signal::SIGKILL);
            let _ = child.wait().await;
            return rec
                .exited(
                    &failed("REASON_CONTAINER_LAUNCH_FAILED", format!("cgroups: {e}")),
                    None,
                )
                .await;
        }
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(b"go\n").await;
        }
        drop(stdin);
    }
    // An event that cannot be recorded ends supervision early (`?` below): the task is
    // killed then, not left running unwatched.
    let mut tree = TreeGuard(Some(pid));
    rec.record(&ExecutorEvent::Started { pid }).await?;
    let started = Instant::now();

    let health_cfg = task
        .health_check
        .as_ref()
        .map(CheckConfig::from_proto)
        .transpose();
    let ready_cfg = task
        .readiness_check
        .as_ref()
        .map(CheckConfig::from_proto)
        .transpose();
    let (health_tx, mut health_rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut checkers = Vec::new();
    let health_cfg = match health_cfg {
        Ok(c) => c,
        Err(e) => {
            log_line(format_args!("executor: health check ignored: {e}"));
            None
        }
    };
    // A task in a container is checked inside it.
    let inside = |c: &CheckConfig| match &container.0 {
        Some(l) => l.in_container(c.clone()),
        None => c.clone(),
    };
    if let Some(c) = &health_cfg {
        checkers.push(spawn_check(
            inside(c),
            spec.sandbox.clone(),
            spec.env.clone(),
            health_tx,
        ));
    }
    if let Ok(Some(c)) = &ready_cfg {
        checkers.push(spawn_check(
            inside(c),
            spec.sandbox.clone(),
            spec.env.clone(),
            ready_tx,
        ));
    }
    let mut tracker = HealthTracker::default();
    let mut kill_deadline: Option<Instant> = None;
    let mut unhealthy_kill: Option<String> = None;
    let mut ready_seen = false;
    let default_grace = Duration::from_millis(spec.default_kill_grace_ms);

    let waited = loop {
        let deadline = kill_deadline;
        tokio::select! {
            r = child.wait() => break r,
            Some(grace) = kills.recv(), if kill_deadline.is_none() => {
                let grace = grace.unwrap_or(default_grace);
                signal_tree(pid, cgroup.as_ref(), Signal::SIGTERM);
                kill_deadline = Some(Instant::now() + grace);
            }
            () = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } else { std::future::pending().await } } => {
                signal_tree(pid, cgroup.as_ref(), Signal::SIGKILL);
                if let Some(c) = &container.0 {
                    c.signal("KILL");
                }
                kill_deadline = Some(Instant::now() + Duration::from_secs(3600));
            }
            Some(r) = health_rx.recv() => {
                let Some(cfg) = &health_cfg else { continue };
                let message = match &r { Ok(m) | Err(m) => m.clone() };
                let before = tracker.healthy();
                match tracker.record(r.is_ok(), started.elapsed(), cfg) {
                    HealthAction::None => {}
                    HealthAction::Report(healthy) => rec.record(&ExecutorEvent::Health { healthy, message }).await?,
                    HealthAction::Kill => {
                        if kill_deadline.is_none() {
                            unhealthy_kill = Some(format!("health check failed {} times in a row: {message}", cfg.consecutive_failures));
                            if before != Some(false) {
                                rec.record(&ExecutorEvent::Health { healthy: false, message }).await?;
                            }
                            signal_tree(pid, cgroup.as_ref(), Signal::SIGTERM);
                            kill_deadline = Some(Instant::now() + default_grace);
                        }
                    }
                }
            }
            Some(r) = ready_rx.recv(), if !ready_seen => {
                if let Ok(message) = r {
                    ready_seen = true;
                    rec.record(&ExecutorEvent::Ready { message }).await?;
                }
            }
        }
    };
    for c in checkers {
        c.abort();
    }
    // Whatever the leader did, nothing of the task may outlive it.
    tree.kill();
    let cgroup_oom = guard.empty();
    let killed = kill_deadline.is_some();
    let mut t = match waited {
        Ok(status) => process::classify(status, killed),
        Err(e) => failed(
            "REASON_COMMAND_EXECUTOR_FAILED",
            format!("waiting for the command failed: {e}"),
        ),
    };
    let oom = cgroup_oom
        || (container.0.is_some() && container::oom_killed(spec.cgroup.as_ref(), t.exit_code));
    container.finish().await;
    let mut healthy = tracker.healthy();
    if let Some(why) = unhealthy_kill {
        t.state = TaskState::TaskKilled;
        t.reason = "REASON_TASK_UNHEALTHY";
        t.message = format!("{why} ({})", t.message);
        healthy = Some(false);
    } else if oom && !killed {
        let limit = spec
            .cgroup
            .as_ref()
            .and_then(|c| c.memory_bytes)
            .unwrap_or(0)
            >> 20;
        t.state = TaskState::TaskFailed;
        t.reason = "REASON_CONTAINER_LIMITATION_MEMORY";
        t.message = format!(
            "memory limit of {limit} MB exceeded: the OOM killer ended the task ({})",
            t.message
        );
    }
    rec.exited(&t, healthy).await
}

#[cfg(test)]
mod tests;
