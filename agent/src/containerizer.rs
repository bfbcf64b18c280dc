//! The agent's side of executors: launching tasks under a supervising executor process (one
//! per framework: [`Supervisors`], [`crate::executor::supervisor`]), or inside the agent when no
//! executor binary is usable; watching each task's event log, asking for kills, and
//! re-attaching to them after an agent restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::ExecutorLauncher;
use crate::executor::protocol::{self, ExecutorEvent};
use crate::executor::supervisor::Notice;
use crate::status_updates::TaskKey;

/// How executors are started, once resolved at agent start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// `program args… --run-dir DIR`.
    Binary {
        /// The program.
        program: PathBuf,
        /// Arguments before `--run-dir`.
        args: Vec<String>,
    },
    /// Inside the agent process.
    InProcess,
}

/// Resolves the configured launcher; `Auto` probes the agent's own binary
/// (`executor --probe`). Returns a warning to log when executors will run in-process.
pub fn resolve(launcher: &ExecutorLauncher) -> (Resolved, Option<String>) {
    match launcher {
        ExecutorLauncher::InProcess => (
            Resolved::InProcess,
            Some("executors run inside the agent (configured): tasks will not survive an agent restart".into()),
        ),
        ExecutorLauncher::Binary { program, args } => (
            Resolved::Binary {
                program: program.clone(),
                args: args.clone(),
            },
            None,
        ),
        ExecutorLauncher::Auto => {
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => return (Resolved::InProcess, Some(format!("cannot find the agent's binary ({e}); executors run inside the agent: tasks will not survive an agent restart"))),
            };
            let args = vec!["executor".to_string()];
            match probe(&exe, &args) {
                Ok(()) => (Resolved::Binary { program: exe, args }, None),
                Err(why) => (
                    Resolved::InProcess,
                    Some(format!("{} cannot act as an executor ({why}); executors run inside the agent: tasks will not survive an agent restart", exe.display())),
                ),
            }
        }
    }
}

/// Runs `program args… --probe` and checks its answer.
pub fn probe(program: &Path, args: &[String]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .arg("--probe")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running it: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == protocol::PROBE_REPLY {
        Ok(())
    } else {
        Err(format!(
            "`--probe` answered {:?} ({})",
            stdout.trim(),
            out.status
        ))
    }
}

/// Which executor runs a task, as checkpointed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRef {
    /// The executor process (absent for in-process executors).
    pub pid: Option<u32>,
    /// Its start time in clock ticks since boot (guards against pid reuse).
    pub start_ticks: Option<u64>,
    /// It ran inside the agent process.
    pub in_process: bool,
}

/// Something a watcher saw.
#[derive(Debug)]
pub enum EventKind {
    /// An event from the log; `offset` is just past it.
    Executor {
        /// The event.
        event: ExecutorEvent,
        /// Log offset after it.
        offset: u64,
    },
    /// A log line that does not parse (skipped).
    Garbled {
        /// Why.
        message: String,
        /// Log offset after it.
        offset: u64,
    },
    /// The executor ended without recording the task's end.
    ExecutorGone {
        /// What happened to it.
        message: String,
    },
}

/// A watcher's report to the agent loop.
#[derive(Debug)]
pub struct ContainerEvent {
    /// The task.
    pub key: TaskKey,
    /// The launch instance.
    pub instance: u64,
    /// What happened.
    pub kind: EventKind,
}

/// A running executor, from the agent's side.
#[derive(Debug)]
pub struct Container {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The checkpointed reference.
    pub executor: ExecutorRef,
    kill_tx: Option<mpsc::UnboundedSender<Option<Duration>>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Container {
    /// Asks the executor to kill the task: SIGTERM now, SIGKILL after `grace`.
    pub fn kill(&self, grace: Duration) {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = protocol::write_atomic(
            &self.run_dir.join(protocol::KILL_FILE),
            ms.to_string().as_bytes(),
        ) {
            warn!(run_dir = %self.run_dir.display(), error = %e, "cannot write the kill file");
        }
        if let Some(tx) = &self.kill_tx {
            let _ = tx.send(Some(grace));
        } else if let Some(pid) = self.executor.pid
            && alive(pid, self.executor.start_ticks)
            && let Ok(raw) = i32::try_from(pid)
        {
            let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        }
    }

    /// Stops watching (the executor itself is left alone).
    pub fn detach(&self) {
        self.watcher.abort();
    }
}

/// Where a supervisor's nudges go: the watcher of each task, by run directory.
type Routes = Arc<Mutex<HashMap<PathBuf, mpsc::UnboundedSender<Woken>>>>;

/// The supervising executors this agent started, one per framework.
#[derive(Debug, Default)]
pub struct Supervisors {
    by_framework: HashMap<String, Supervisor>,
    /// `run` lines held until the tasks' checkpoints are durable ([`Supervisors::flush`]).
    held: Vec<(String, String)>,
}

/// A supervising executor process, from the agent's side.
#[derive(Debug)]
struct Supervisor {
    pid: u32,
    start_ticks: Option<u64>,
    /// Lines for its stdin.
    requests: mpsc::UnboundedSender<String>,
    routes: Routes,
}

impl Supervisor {
    /// Starts `program args… --supervisor`, its stderr appended to `log`.
    fn start(program: &Path, args: &[String], log: &Path) -> std::io::Result<Supervisor> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .arg("--supervisor")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(false)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("supervising executor has no pid"))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(std::io::Error::other("supervising executor has no pipes")),
        };
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(stdin, rx));
        let routes: Routes = Arc::default();
        tokio::spawn(route_nudges(stdout, routes.clone()));
        // Reaped here once it exits; its tasks' watchers see it gone through its pid.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        debug!(pid, "supervising executor started");
        Ok(Supervisor {
            pid,
            start_ticks: start_ticks(pid),
            requests,
            routes,
        })
    }

    fn usable(&self) -> bool {
        !self.requests.is_closed() && alive(self.pid, self.start_ticks)
    }
}

async fn write_requests(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    while let Some(first) = rx.recv().await {
        let mut buf = first.into_bytes();
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(more.as_bytes());
        }
        if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

async fn route_nudges(stdout: tokio::process::ChildStdout, routes: Routes) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (dir, woken) = match Notice::parse(&line) {
            Ok(Notice::Events(dir)) => (dir, Woken::Nudged),
            Ok(Notice::GaveUp { run_dir, error }) => (run_dir, Woken::GaveUp(error)),
            Err(e) => {
                warn!(error = %e, "a line from a supervising executor ignored");
                continue;
            }
        };
        let Ok(mut r) = routes.lock() else { return };
        if let Some(tx) = r.get(&dir)
            && tx.send(woken).is_err()
        {
            r.remove(&dir);
        }
    }
    // The supervisor is gone: its watchers fall back to polling, and notice.
    if let Ok(mut r) = routes.lock() {
        r.clear();
    }
}

impl Supervisors {
    /// Prepares to run the task of `run_dir` (`line` asks for it) under the supervisor of
    /// `framework_id` (started if there is none, or it is gone; the task itself starts at
    /// [`Supervisors::flush`]); returns the supervisor's pid, its start time and the task's
    /// nudges.
    fn run(
        &mut self,
        program: &Path,
        args: &[String],
        framework_id: &str,
        run_dir: &Path,
        line: String,
    ) -> std::io::Result<(u32, Option<u64>, mpsc::UnboundedReceiver<Woken>)> {
        let fresh = match self.by_framework.get(framework_id) {
            Some(s) => !s.usable(),
            None => true,
        };
        if fresh {
            let log = run_dir
                .parent()
                .unwrap_or(run_dir)
                .join(protocol::SUPERVISOR_LOG_FILE);
            let s = Supervisor::start(program, args, &log)?;
            self.by_framework.insert(framework_id.to_string(), s);
        }
        let s = self
            .by_framework
            .get(framework_id)
            .ok_or_else(|| std::io::Error::other("no supervising executor"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut r) = s.routes.lock() {
            if r.len() >= 1024 {
                r.retain(|_, t| !t.is_closed());
            }
            r.insert(run_dir.to_path_buf(), tx);
        }
        self.held.push((framework_id.to_string(), line));
        Ok((s.pid, s.start_ticks, rx))
    }

    /// Lets the supervisors of frameworks that are not `busy` (no task on this agent) end:
    /// their stdin is closed, so each exits once its last task ended, removing its idle
    /// cgroups; the framework's next task starts a new one. Returns the frameworks retired.
    pub fn retire_idle(&mut self, busy: &std::collections::HashSet<&str>) -> Vec<String> {
        let held: std::collections::HashSet<&str> =
            self.held.iter().map(|(fw, _)| fw.as_str()).collect();
        let idle: Vec<String> = self
            .by_framework
            .keys()
            .filter(|fw| !busy.contains(fw.as_str()) && !held.contains(fw.as_str()))
            .cloned()
            .collect();
        for fw in &idle {
            // Dropping its request sender ends the writer task, which closes the stdin.
            self.by_framework.remove(fw);
        }
        idle
    }

    /// Hands the held tasks to their supervisors. Called once their checkpoints (naming the
    /// supervisor) are durable: a task never starts before the agent can find it again after a
    /// crash. A task whose supervisor is gone is reported by its watcher (the pid is dead).
    pub fn flush(&mut self) {
        for (framework_id, line) in self.held.drain(..) {
            let sent = self
                .by_framework
                .get(&framework_id)
                .is_some_and(|s| s.requests.send(line).is_ok());
            if !sent {
                warn!(%framework_id, "the supervising executor is gone; its new task will be reported failed");
            }
        }
    }
}

/// What a task to start is: its run directory (event log, kill file), `TaskInfo` and spec.
#[derive(Debug, Clone)]
pub struct ToLaunch {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The task.
    pub task: proffer_proto::v1::TaskInfo,
    /// What the agent decided for it.
    pub spec: crate::executor::protocol::ExecutorSpec,
}

/// Starts a task under its framework's supervising executor, or inside the agent.
pub fn launch(
    how: &Resolved,
    supervisors: &mut Supervisors,
    what: ToLaunch,
    key: TaskKey,
    instance: u64,
    tx: mpsc::UnboundedSender<ContainerEvent>,
) -> std::io::Result<Container> {
    let run_dir = what.run_dir.as_path();
    match how {
        Resolved::Binary { program, args } => {
            let line = crate::executor::supervisor::launch_line(run_dir, &what.task, &what.spec)
                .map_err(std::io::Error::other)?;
            let (pid, start_ticks, nudges) =
                supervisors.run(program, args, &key.framework_id, run_dir, line)?;
            let executor = ExecutorRef {
                pid: Some(pid),
                start_ticks,
                in_process: false,
            };
            let watcher = tokio::spawn(watch(
                run_dir.to_path_buf(),
                key,
                instance,
                0,
                Liveness::Pid { pid, start_ticks },
                Nudges::Supervisor(nudges),
                tx,
            ));
            Ok(Container {
                run_dir: run_dir.to_path_buf(),
                executor,
                kill_tx: None,
                watcher,
            })
        }
        Resolved::InProcess => {
            let (kill_tx, kill_rx) = mpsc::unbounded_channel();
            let (nudge_tx, nudge_rx) = mpsc::unbounded_channel();
            let dir = run_dir.to_path_buf();
            let (info, spec) = (what.task, what.spec);
            let task = tokio::spawn(async move {
                let nudge = crate::executor::Nudge::unit(nudge_tx, Default::default());
                let supervised = crate::executor::supervise(&dir, info, spec, kill_rx, nudge).await;
                if let Err(e) = &supervised {
                    warn!(run_dir = %dir.display(), error = %e, "in-process executor failed");
                }
                supervised
            });
            let watcher = tokio::spawn(watch(
                run_dir.to_path_buf(),
                key,
                instance,
                0,
                Liveness::Task(task),
                Nudges::Unit(nudge_rx),
                tx,
            ));
            Ok(Container {
                run_dir: run_dir.to_path_buf(),
                executor: ExecutorRef {
                    pid: None,
                    start_ticks: None,
                    in_process: true,
                },
                kill_tx: Some(kill_tx),
                watcher,
            })
        }
    }
}

/// Re-attaches to the executor of a recovered task, reading its log from `offset`.
pub fn recover(
    run_dir: &Path,
    executor: ExecutorRef,
    key: TaskKey,
    instance: u64,
    offset: u64,
    tx: mpsc::UnboundedSender<ContainerEvent>,
) -> Container {
    let live = match (executor.in_process, executor.pid) {
        // A supervisor that never started the task (the agent stopped before handing it over)
        // has no event log for it: such a task is given up after a while, not waited on forever.
        (false, Some(pid)) if !run_dir.join(protocol::EVENTS_FILE).exists() => {
            Liveness::Unstarted {
                pid,
                start_ticks: executor.start_ticks,
                run_dir: run_dir.to_path_buf(),
                give_up: std::time::Instant::now() + HANDOVER_WAIT,
            }
        }
        (false, Some(pid)) => Liveness::Pid {
            pid,
            start_ticks: executor.start_ticks,
        },
        (true, _) => {
            Liveness::Gone("the executor ran inside the previous agent process, which ended".into())
        }
        (false, None) => Liveness::Gone("the agent stopped before the executor started".into()),
    };
    let watcher = tokio::spawn(watch(
        run_dir.to_path_buf(),
        key,
        instance,
        offset,
        live,
        Nudges::None,
        tx,
    ));
    Container {
        run_dir: run_dir.to_path_buf(),
        executor,
        kill_tx: None,
        watcher,
    }
}

/// The start time (clock ticks since boot) of a process, from `/proc/PID/stat`.
pub fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    // One open and one or two reads: `read_to_string` would stat the file and probe with
    // small reads (proc files have no size).
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match std::io::Read::read(&mut f, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(19)?.parse().ok()?;
    Some((state, ticks))
}

/// Whether process `pid` runs (not a zombie) and, if given, started at `ticks`.
pub fn alive(pid: u32, ticks: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some((state, t)) => state != 'Z' && state != 'X' && ticks.is_none_or(|w| w == t),
        None => false,
    }
}

/// How long a recovered task that its supervisor had not started yet may take to start.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

enum Liveness {
    /// The in-process executor: why it gave up on the task, if it did, once it has ended.
    Task(tokio::task::JoinHandle<Result<(), String>>),
    Pid {
        pid: u32,
        start_ticks: Option<u64>,
    },
    /// Recovered with no event log: its supervisor may not have been handed the task.
    Unstarted {
        pid: u32,
        start_ticks: Option<u64>,
        run_dir: PathBuf,
        give_up: std::time::Instant,
    },
    Gone(String),
}

impl Liveness {
    /// Why the executor is no longer running, if it is not.
    fn ended(&mut self) -> Option<String> {
        match self {
            Liveness::Task(h) => {
                if !h.is_finished() {
                    return None;
                }
                // Finished, so ready; polled once only (the handle is replaced).
                let why = match futures::FutureExt::now_or_never(h) {
                    Some(Ok(Err(e))) => e,
                    Some(Err(e)) => format!("in-process executor panicked: {e}"),
                    Some(Ok(Ok(()))) | None => "in-process executor ended".to_string(),
                };
                *self = Liveness::Gone(why.clone());
                Some(why)
            }
            Liveness::Pid { pid, start_ticks } => {
                (!alive(*pid, *start_ticks)).then(|| format!("executor process {pid} is gone"))
            }
            Liveness::Unstarted {
                pid,
                start_ticks,
                run_dir,
                give_up,
            } => {
                if !alive(*pid, *start_ticks) {
                    return Some(format!("executor process {pid} is gone"));
                }
                if run_dir.join(protocol::EVENTS_FILE).exists() {
                    *self = Liveness::Pid {
                        pid: *pid,
                        start_ticks: *start_ticks,
                    };
                    return None;
                }
                if std::time::Instant::now() < *give_up {
                    return None;
                }
                // Should the request still arrive, the supervisor kills the task at once.
                let _ = protocol::write_atomic(&run_dir.join(protocol::KILL_FILE), b"0");
                if let Ok(raw) = i32::try_from(*pid) {
                    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
                }
                Some("the agent stopped before handing the task to its executor".into())
            }
            Liveness::Gone(why) => Some(why.clone()),
        }
    }
}

/// Where a task's watcher hears of new events.
enum Nudges {
    /// One unit per event (a per-task executor's stdout, the in-process executor).
    Unit(mpsc::UnboundedReceiver<()>),
    /// The task's notices from its supervising executor (routed by run directory).
    Supervisor(mpsc::UnboundedReceiver<Woken>),
    /// Nobody: the log is polled.
    None,
}

/// What a wait on a task's nudges gave.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Woken {
    /// New events are in the log.
    Nudged,
    /// The poll interval passed without a nudge.
    Polled,
    /// The supervising executor gave up on the task, and why ([`Notice::GaveUp`]).
    GaveUp(String),
}

impl Nudges {
    /// Waits for a nudge or `poll`, whichever comes first.
    async fn wait(&mut self, poll: Duration) -> Woken {
        let next = async {
            match self {
                Nudges::Unit(rx) => Some(rx.recv().await.map(|()| Woken::Nudged)),
                Nudges::Supervisor(rx) => Some(rx.recv().await),
                Nudges::None => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            got = next => got,
            () = tokio::time::sleep(poll) => None,
        };
        match got {
            Some(Some(woken)) => woken,
            None => Woken::Polled,
            Some(None) => {
                // The sender is gone (the executor's stdout closed): poll from now on.
                *self = Nudges::None;
                Woken::Polled
            }
        }
    }
}

/// Forwards new log events; returns true once the task's end was forwarded (or the agent
/// loop is gone).
fn drain(
    log: &mut protocol::EventReader,
    key: &TaskKey,
    instance: u64,
    tx: &mpsc::UnboundedSender<ContainerEvent>,
) -> bool {
    let events = match log.read_new() {
        Ok(e) => e,
        Err(e) => {
            debug!(task_id = %key.task_id, error = %e, "reading the executor's events");
            return false;
        }
    };
    for (event, end) in events {
        let exited = matches!(event, Ok(ExecutorEvent::Exited { .. }));
        let kind = match event {
            Ok(event) => EventKind::Executor { event, offset: end },
            Err(message) => EventKind::Garbled {
                message,
                offset: end,
            },
        };
        if tx
            .send(ContainerEvent {
                key: key.clone(),
                instance,
                kind,
            })
            .is_err()
            || exited
        {
            return true;
        }
    }
    false
}

async fn watch(
    run_dir: PathBuf,
    key: TaskKey,
    instance: u64,
    offset: u64,
    mut live: Liveness,
    mut nudges: Nudges,
    tx: mpsc::UnboundedSender<ContainerEvent>,
) {
    let mut log = protocol::EventReader::new(&run_dir, offset);
    // A nudge means the executor has just written an event: its liveness (a read of
    // `/proc`) is checked when a poll passes without one. A task just handed to a live
    // supervisor starts as nudged: its first check waits for the first poll.
    let mut nudged = !matches!(nudges, Nudges::None);
    loop {
        if drain(&mut log, &key, instance, &tx) {
            return;
        }
        if let Some(message) = (!nudged).then(|| live.ended()).flatten() {
            if drain(&mut log, &key, instance, &tx) {
                return;
            }
            let _ = tx.send(ContainerEvent {
                key,
                instance,
                kind: EventKind::ExecutorGone { message },
            });
            return;
        }
        let poll = if matches!(nudges, Nudges::None) {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(500)
        };
        match nudges.wait(poll).await {
            Woken::Nudged => nudged = true,
            Woken::Polled => {
                nudged = false;
                // A quiet task (or one whose executor went away) holds no open log.
                log.close();
            }
            Woken::GaveUp(message) => {
                // Its end is not in its log (what is there comes first).
                if !drain(&mut log, &key, instance, &tx) {
                    let _ = tx.send(ContainerEvent {
                        key,
                        instance,
                        kind: EventKind::ExecutorGone { message },
                    });
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
