//! The supervising executor (`executor --supervisor`): one process per framework per agent that
//! runs many tasks, instead of one executor process per task (as Mesos's default executor).
//!
//! Each task is still described by its run directory and recorded in its own event log
//! ([`super::protocol`]), by the same [`super::supervise`] as a per-task executor, so a
//! restarted agent re-attaches to it the same way. The protocol with the agent:
//! - stdin: one line per task to start, `launch <json>` ([`launch_line`]: the run directory,
//!   the `TaskInfo` and the executor spec, so nothing per task is read from files), or
//!   `run <run dir>` for a run directory holding `task.pb` and `spec.json`; end of stdin means
//!   the agent is gone (or needs no more tasks here): the supervisor exits once its last task
//!   has ended;
//! - stdout: the run directory of a task after each event recorded (a nudge to read its log),
//!   or `!` and JSON naming a task it gave up on before its end was recorded, and why (its event
//!   log could not be created or written, e.g. a full disk): [`Notice`];
//! - SIGTERM: kill every task whose run directory holds a `kill` file (its grace period),
//!   as the agent asks after writing the file. Nothing else kills its tasks.
//!
//! It calls `setsid` first, so it survives the agent (even `kill -9`) and a terminal's signals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use base64::Engine as _;
use proffer_proto::v1::TaskInfo;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::protocol::{self, ExecutorSpec};

/// What a line on the supervisor's stdin asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Start the task of this run directory (its launch files are in it).
    Run(PathBuf),
    /// Start this task, whose run directory is given.
    Launch(Box<Launch>),
}

/// A task to start, with all it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// Its run directory (event log, kill file).
    pub run_dir: PathBuf,
    /// The task.
    pub task: TaskInfo,
    /// What the agent decided for it.
    pub spec: ExecutorSpec,
}

/// The JSON of a `launch` line.
#[derive(Serialize, Deserialize)]
struct LaunchLine {
    run_dir: PathBuf,
    /// The `TaskInfo`, protobuf in base64.
    task: String,
    spec: ExecutorSpec,
}

/// Parses one line of the supervisor's stdin.
pub fn parse_request(line: &str) -> Result<Request, String> {
    match line.split_once(' ') {
        Some(("run", dir)) if !dir.trim().is_empty() => Ok(Request::Run(PathBuf::from(dir))),
        Some(("launch", json)) => {
            let l: LaunchLine =
                serde_json::from_str(json).map_err(|e| format!("bad launch request: {e}"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&l.task)
                .map_err(|e| format!("bad launch request: task: {e}"))?;
            let task = TaskInfo::decode(bytes.as_slice())
                .map_err(|e| format!("bad launch request: task: {e}"))?;
            Ok(Request::Launch(Box::new(Launch {
                run_dir: l.run_dir,
                task,
                spec: l.spec,
            })))
        }
        _ => Err(format!(
            "unknown request {line:?} (expected `launch JSON` or `run DIR`)"
        )),
    }
}

/// The line asking a supervisor to run the task of `run_dir` (from its launch files).
pub fn run_line(run_dir: &Path) -> String {
    format!("run {}\n", run_dir.display())
}

/// The line asking a supervisor to run `task` with `spec`, its run directory `run_dir`; an
/// error when it cannot be written as JSON (a path that is not UTF-8).
pub fn launch_line(run_dir: &Path, task: &TaskInfo, spec: &ExecutorSpec) -> Result<String, String> {
    let l = LaunchLine {
        run_dir: run_dir.to_path_buf(),
        task: base64::engine::general_purpose::STANDARD.encode(task.encode_to_vec()),
        spec: spec.clone(),
    };
    // JSON has no raw newline: the request stays one line.
    let json =
        serde_json::to_string(&l).map_err(|e| format!("encoding the launch request: {e}"))?;
    Ok(format!("launch {json}\n"))
}

/// What the supervisor tells the agent about a task: one line each on its stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// New events are in the task's log (the line is its run directory; run directories are
    /// absolute paths, so they never start with `!`).
    Events(PathBuf),
    /// The supervisor gave up on the task before its end was recorded, and why: its event log
    /// could not be opened or written (a full disk, a broken run directory), or its launch files
    /// could not be read. Nothing of the task is left running. `!` then JSON.
    GaveUp {
        /// The task's run directory.
        run_dir: PathBuf,
        /// What went wrong.
        error: String,
    },
}

/// The JSON after the `!` of a [`Notice::GaveUp`] line.
#[derive(Deserialize)]
struct GaveUpLine {
    run_dir: PathBuf,
    error: String,
}

impl Notice {
    /// Appends the notice's line (with its newline) to `buf`.
    fn push_line(&self, buf: &mut Vec<u8>) {
        match self {
            Notice::Events(dir) => buf.extend_from_slice(dir.as_os_str().as_encoded_bytes()),
            Notice::GaveUp { run_dir, error } => {
                // A run directory that is not UTF-8 goes under a lossy name (the agent cannot
                // route it, but the line is not lost); the fields are [`GaveUpLine`]'s.
                let json =
                    serde_json::json!({"run_dir": run_dir.to_string_lossy(), "error": error});
                buf.push(b'!');
                buf.extend_from_slice(json.to_string().as_bytes());
            }
        }
        buf.push(b'\n');
    }

    /// Parses one line of the supervisor's stdout (without its newline).
    pub fn parse(line: &str) -> Result<Notice, String> {
        match line.strip_prefix('!') {
            Some(json) => {
                let l: GaveUpLine = serde_json::from_str(json)
                    .map_err(|e| format!("bad notice from the supervising executor: {e}"))?;
                Ok(Notice::GaveUp {
                    run_dir: l.run_dir,
                    error: l.error,
                })
            }
            None => Ok(Notice::Events(PathBuf::from(line))),
        }
    }
}

/// A task being supervised: where its kill requests go.
struct Running {
    kills: mpsc::UnboundedSender<Option<Duration>>,
    kill_sent: bool,
}

/// The most idle sets of task cgroups a supervisor keeps for reuse.
const IDLE_CGROUPS: usize = 64;

/// Runs the supervisor process until stdin is closed and every task has ended; returns the exit
/// code.
pub async fn run_supervisor() -> i32 {
    // Leave the agent's session and process group (see the module doc).
    let _ = nix::unistd::setsid();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => Some(t),
        Err(e) => {
            super::log_line(format_args!(
                "executor supervisor: cannot handle SIGTERM: {e}"
            ));
            None
        }
    };
    // Finished tasks' cgroups serve the next tasks with the same limits (v1).
    crate::cgroups::pool::enable(IDLE_CGROUPS);
    let (nudge_tx, nudge_rx) = mpsc::unbounded_channel::<Notice>();
    let agent = super::AgentLink::default();
    // Nudges go through tokio's stdout, which writes on a blocking-pool thread: while one
    // write is under way, the next nudges gather into one write. Writing them on the runtime
    // (a non-blocking pipe) delivered them sooner but one by one, and the agent then did
    // twice the work per task in smaller batches (1,011–1,053 against 1,146–1,190 tasks/s,
    // agent CPU 0.19–0.20 against 0.11 ms per task).
    let nudger = tokio::spawn(write_nudges(nudge_rx, tokio::io::stdout(), agent.clone()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut lines = tokio::io::BufReader::new(requests_in()).lines();
    let mut stdin_open = true;
    let mut tasks: HashMap<PathBuf, Running> = HashMap::new();
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => match parse_request(&line) {
                    Ok(req) => {
                        let (dir, launch) = match req {
                            Request::Run(dir) => (dir, None),
                            Request::Launch(l) => (l.run_dir.clone(), Some(l)),
                        };
                        if let std::collections::hash_map::Entry::Vacant(e) = tasks.entry(dir) {
                            let dir = e.key().clone();
                            let kills = start(dir.clone(), launch, nudge_tx.clone(), done_tx.clone(), agent.clone());
                            // A kill asked before the task reached us is not lost.
                            let t = e.insert(Running { kills, kill_sent: false });
                            kill_if_requested(&dir, t);
                        }
                    }
                    Err(e) => super::log_line(format_args!("executor supervisor: {e}")),
                },
                Ok(None) | Err(_) => stdin_open = false,
            },
            Some(dir) = done_rx.recv() => {
                tasks.remove(&dir);
            }
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {
                kill_requested(&mut tasks);
            }
        }
        if !stdin_open && tasks.is_empty() {
            break;
        }
    }
    drop(nudge_tx);
    let _ = nudger.await;
    crate::cgroups::pool::drain();
    0
}

/// Sends a kill to every task whose run directory holds a kill file (once per task).
fn kill_requested(tasks: &mut HashMap<PathBuf, Running>) {
    for (dir, t) in tasks.iter_mut() {
        kill_if_requested(dir, t);
    }
}

/// Sends a kill to the task of `dir` if its kill file is there and no kill was sent yet.
fn kill_if_requested(dir: &Path, t: &mut Running) {
    if t.kill_sent {
        return;
    }
    let Ok(text) = std::fs::read_to_string(dir.join(protocol::KILL_FILE)) else {
        return;
    };
    let grace = text.trim().parse::<u64>().ok().map(Duration::from_millis);
    t.kill_sent = t.kills.send(grace).is_ok();
}

/// Supervises the task of `dir` (described by `launch`, else by its launch files) on its own
/// tokio task; returns where its kills go.
fn start(
    dir: PathBuf,
    launch: Option<Box<Launch>>,
    nudges: mpsc::UnboundedSender<Notice>,
    done: mpsc::UnboundedSender<PathBuf>,
    agent: super::AgentLink,
) -> mpsc::UnboundedSender<Option<Duration>> {
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let nudge = super::Nudge::dir(nudges.clone(), dir.clone(), agent);
        let supervised = match launch {
            Some(l) => super::supervise(&dir, l.task, l.spec, kill_rx, nudge).await,
            None => super::supervise_dir(&dir, kill_rx, nudge).await,
        };
        if let Err(error) = supervised {
            super::log_line(format_args!(
                "executor supervisor: {}: {error}",
                dir.display()
            ));
            // Its end is not in its log: the agent would wait for it for ever.
            let _ = nudges.send(Notice::GaveUp {
                run_dir: dir.clone(),
                error,
            });
        }
        let _ = done.send(dir);
    });
    kill_tx
}

/// Writes each notice as a line to `out` (stdout). The agent may be gone: then `agent` is told
/// ([`super::AgentLink::lost`]), and the notices go on being tried.
async fn write_nudges<W: tokio::io::AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Notice>,
    mut out: W,
    agent: super::AgentLink,
) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        first.push_line(&mut buf);
        while let Ok(more) = rx.try_recv() {
            more.push_line(&mut buf);
        }
        let written = out.write_all(&buf).await;
        if written.is_err() || out.flush().await.is_err() {
            let dir = match first {
                Notice::Events(dir) | Notice::GaveUp { run_dir: dir, .. } => dir,
            };
            agent.lost_off_runtime(dir).await;
        }
    }
}

/// Where the agent's requests come from: its pipe, read by the runtime itself (tokio's
/// `stdin()` hands every read to a blocking-pool thread); anything but a pipe through
/// `stdin()`.
fn requests_in() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdin()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_named() {
        let dir = Path::new("/w/meta/tasks/fw/t 1");
        let line = run_line(dir);
        assert_eq!(
            parse_request(line.trim_end_matches('\n')),
            Ok(Request::Run(dir.to_path_buf()))
        );
        for junk in ["", "run", "run ", "kill /x", "hello world"] {
            let err = parse_request(junk).expect_err(junk);
            assert!(err.contains("unknown request"), "{err}");
        }
        let task = TaskInfo {
            task_id: "t\n1".into(),
            ..Default::default()
        };
        let spec = ExecutorSpec::example(Path::new("/w/sandboxes/fw/t"), &[("A", "line\nbreak")]);
        // A run directory that is not UTF-8 cannot go into JSON: an error, not a broken line.
        let bad =
            Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/w/\xff"));
        let err = launch_line(bad, &task, &spec).expect_err("not UTF-8");
        assert!(err.contains("encoding the launch request"), "{err}");
        let line = launch_line(dir, &task, &spec).expect("launch line");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        assert_eq!(
            parse_request(line.trim_end_matches('\n')),
            Ok(Request::Launch(Box::new(Launch {
                run_dir: dir.to_path_buf(),
                task,
                spec
            })))
        );
        for junk in [
            "launch ",
            "launch {}",
            "launch {\"run_dir\":\"/x\",\"task\":\"!!\",\"spec\":{}}",
        ] {
            let err = parse_request(junk).expect_err(junk);
            assert!(err.contains("bad launch request"), "{err}");
        }
    }

    #[test]
    fn notices_round_trip_as_lines_and_junk_is_named() {
        let notices = [
            Notice::Events(PathBuf::from("/w/meta/tasks/fw/t 1")),
            Notice::GaveUp {
                run_dir: PathBuf::from("/w/meta/tasks/fw/!t"),
                error: "opening event log in /w: No space left on device\nand more".into(),
            },
        ];
        let mut buf = Vec::new();
        for n in &notices {
            n.push_line(&mut buf);
        }
        let text = String::from_utf8(buf).expect("UTF-8");
        let parsed: Vec<Notice> = text
            .lines()
            .map(|l| Notice::parse(l).expect("a notice"))
            .collect();
        assert_eq!(parsed, notices, "one line each: {text:?}");
        let err = Notice::parse("!{not json").expect_err("junk");
        assert!(err.contains("bad notice"), "{err}");
    }

    #[tokio::test]
    async fn nudges_are_lines_and_a_closed_agent_pipe_marks_the_agent_gone() {
        let root = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::unbounded_channel();
        let (near, mut far) = tokio::io::duplex(1024);
        let agent = crate::executor::AgentLink::default();
        let writer = tokio::spawn(write_nudges(rx, near, agent.clone()));
        tx.send(Notice::Events(root.path().join("a")))
            .expect("send");
        let mut got = vec![0u8; 64];
        let n = tokio::io::AsyncReadExt::read(&mut far, &mut got)
            .await
            .expect("read");
        let want = format!("{}\n", root.path().join("a").display());
        assert_eq!(String::from_utf8_lossy(&got[..n]), want);
        assert!(!agent.gone(), "the agent reads its nudges");
        drop(far);
        tx.send(Notice::Events(root.path().join("b")))
            .expect("send");
        drop(tx);
        writer.await.expect("writer");
        assert!(
            agent.gone(),
            "a nudge that cannot be written means the agent is gone"
        );
    }

    #[test]
    fn only_tasks_with_a_kill_file_are_killed_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        std::fs::write(a.join(protocol::KILL_FILE), "250").expect("kill file");
        let (ta, mut ra) = mpsc::unbounded_channel();
        let (tb, mut rb) = mpsc::unbounded_channel();
        let mut tasks: HashMap<PathBuf, Running> = HashMap::new();
        tasks.insert(
            a,
            Running {
                kills: ta,
                kill_sent: false,
            },
        );
        tasks.insert(
            b,
            Running {
                kills: tb,
                kill_sent: false,
            },
        );
        kill_requested(&mut tasks);
        kill_requested(&mut tasks);
        assert_eq!(ra.try_recv().ok(), Some(Some(Duration::from_millis(250))));
        assert!(ra.try_recv().is_err(), "killed once");
        assert!(rb.try_recv().is_err(), "no kill file, no kill");
    }
}
