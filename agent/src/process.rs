//! Task processes: building the command and environment, spawning it in its own process
//! group inside the sandbox, killing the group (SIGTERM, then SIGKILL after a grace period)
//! and turning its exit into a task state.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use proffer_proto::Resources;
use proffer_proto::v1::{TaskInfo, TaskState};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

use crate::status_updates::TaskKey;

/// At most this many ports are exported as `PORT0..PORTn` / `PORTS`.
const MAX_EXPORTED_PORTS: usize = 1024;

/// How a task ended: the state and details of its terminal status update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// FINISHED, FAILED or KILLED.
    pub state: TaskState,
    /// Machine-readable reason (`REASON_COMMAND_EXITED`, `REASON_TASK_KILLED`, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The exit code, when the process exited normally.
    pub exit_code: Option<i32>,
}

/// Maps a process's exit status to a task state. `killed` says a kill was requested.
pub fn classify(status: ExitStatus, killed: bool) -> Termination {
    let detail = describe(status);
    let exit_code = status.code();
    if killed {
        return Termination {
            state: TaskState::TaskKilled,
            reason: "REASON_TASK_KILLED",
            message: format!("task killed: {detail}"),
            exit_code,
        };
    }
    let state = if exit_code == Some(0) {
        TaskState::TaskFinished
    } else {
        TaskState::TaskFailed
    };
    Termination {
        state,
        reason: "REASON_COMMAND_EXITED",
        message: detail,
        exit_code,
    }
}

/// "command exited with status N" or "command terminated by signal SIGxxx".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("command exited with status {code}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string());
            format!("command terminated by signal {name}")
        }
        (None, None) => format!("command ended: {status}"),
    }
}

/// The environment of a task: its own `command.environment`, then the agent's variables
/// (`PROFFER_SANDBOX`, `PROFFER_TASK_ID`, `PROFFER_FRAMEWORK_ID`, `PROFFER_AGENT_ID`,
/// `MESOS_SANDBOX`, and `PORT`/`PORT0..`/`PORTS` from the task's `ports` resources).
pub fn task_env(
    task: &TaskInfo,
    framework_id: &str,
    agent_id: &str,
    sandbox: &Path,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = task
        .command
        .as_ref()
        .map(|c| {
            let mut v: Vec<_> = c
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let sandbox = sandbox.to_string_lossy().into_owned();
    env.push(("PROFFER_SANDBOX".into(), sandbox.clone()));
    env.push(("MESOS_SANDBOX".into(), sandbox));
    env.push(("PROFFER_TASK_ID".into(), task.task_id.clone()));
    env.push(("PROFFER_FRAMEWORK_ID".into(), framework_id.to_string()));
    env.push(("PROFFER_AGENT_ID".into(), agent_id.to_string()));
    let resources = Resources::from_proto(&task.resources)
        .map_err(|e| format!("invalid task resources: {e}"))?;
    let ports: Vec<u64> = resources
        .ranges("ports")
        .ranges()
        .iter()
        .flat_map(|&(b, e)| b..=e)
        .take(MAX_EXPORTED_PORTS)
        .collect();
    if let Some(first) = ports.first() {
        env.push(("PORT".into(), first.to_string()));
    }
    for (i, p) in ports.iter().enumerate() {
        env.push((format!("PORT{i}"), p.to_string()));
    }
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(u64::to_string).collect();
        env.push(("PORTS".into(), list.join(",")));
    }
    Ok(env)
}

/// Builds the command of a task: `/bin/sh -c value` for shell commands, else `value` with
/// `arguments[1..]` (and `arguments[0]` as argv\[0\]). Runs in `sandbox`, in a new process group,
/// with stdout and stderr going to `sandbox/stdout` and `sandbox/stderr`.
pub fn build_command(
    task: &TaskInfo,
    env: &[(String, String)],
    sandbox: &Path,
) -> std::io::Result<tokio::process::Command> {
    let command = task.command.clone().unwrap_or_default();
    let mut cmd = if command.shell {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(&command.value);
        c
    } else {
        let mut c = tokio::process::Command::new(&command.value);
        if let Some(arg0) = command.arguments.first() {
            c.arg0(arg0);
        }
        c.args(command.arguments.iter().skip(1));
        c
    };
    let stdout = std::fs::File::create(sandbox.join("stdout"))?;
    let stderr = std::fs::File::create(sandbox.join("stderr"))?;
    cmd.current_dir(sandbox)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    Ok(cmd)
}

/// A task's process has ended.
#[derive(Debug)]
pub struct Exited {
    /// Which task.
    pub key: TaskKey,
    /// The launch instance (distinguishes a relaunch under the same id).
    pub instance: u64,
    /// How it ended.
    pub termination: Termination,
}

/// Controls a running task process.
#[derive(Debug)]
pub struct ProcessHandle {
    kill_tx: mpsc::UnboundedSender<Duration>,
    /// The process id (also its process group id).
    pub pid: u32,
}

impl ProcessHandle {
    /// Asks for the process group to be killed: SIGTERM now, SIGKILL after `grace`.
    /// Only the first request counts.
    pub fn kill(&self, grace: Duration) {
        // The supervisor may have just ended; then there is nothing to kill.
        let _ = self.kill_tx.send(grace);
    }
}

/// Spawns `cmd` and supervises it on the tokio runtime; reports its end on `exits`.
pub fn spawn(
    mut cmd: tokio::process::Command,
    key: TaskKey,
    instance: u64,
    exits: mpsc::UnboundedSender<Exited>,
) -> std::io::Result<ProcessHandle> {
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("spawned process has no pid"))?;
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let span = info_span!("task", framework_id = %key.framework_id, task_id = %key.task_id, pid);
    tokio::spawn(
        async move {
            let termination = supervise(child, pid, kill_rx).await;
            debug!(state = termination.state.name(), message = %termination.message, "process ended");
            let _ = exits.send(Exited {
                key,
                instance,
                termination,
            });
        }
        .instrument(span),
    );
    Ok(ProcessHandle { kill_tx, pid })
}

fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => warn!(pid, %signal, error = %e, "killpg failed"),
    }
}

async fn supervise(
    mut child: tokio::process::Child,
    pid: u32,
    mut kill_rx: mpsc::UnboundedReceiver<Duration>,
) -> Termination {
    let mut killed = false;
    let waited = tokio::select! {
        r = child.wait() => r,
        Some(grace) = kill_rx.recv() => {
            killed = true;
            debug!(grace_ms = grace.as_millis() as u64, "SIGTERM to process group");
            signal_group(pid, Signal::SIGTERM);
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(r) => r,
                Err(_) => {
                    debug!("grace period over: SIGKILL to process group");
                    signal_group(pid, Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Whatever the leader did, nothing of the task may outlive it.
    signal_group(pid, Signal::SIGKILL);
    match waited {
        Ok(status) => classify(status, killed),
        Err(e) => Termination {
            state: if killed {
                TaskState::TaskKilled
            } else {
                TaskState::TaskFailed
            },
            reason: if killed {
                "REASON_TASK_KILLED"
            } else {
                "REASON_COMMAND_EXECUTOR_FAILED"
            },
            message: format!("waiting for the command failed: {e}"),
            exit_code: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proffer_proto::v1::CommandInfo;

    fn raw(code: Option<i32>, signal: Option<i32>) -> ExitStatus {
        match (code, signal) {
            (Some(c), _) => ExitStatus::from_raw(c << 8),
            (None, Some(s)) => ExitStatus::from_raw(s),
            (None, None) => ExitStatus::from_raw(0),
        }
    }

    #[test]
    fn classification_table() {
        let t = classify(raw(Some(0), None), false);
        assert_eq!(
            (t.state, t.reason, t.exit_code),
            (TaskState::TaskFinished, "REASON_COMMAND_EXITED", Some(0))
        );
        let t = classify(raw(Some(3), None), false);
        assert_eq!((t.state, t.exit_code), (TaskState::TaskFailed, Some(3)));
        assert_eq!(t.message, "command exited with status 3");
        let t = classify(raw(None, Some(11)), false);
        assert_eq!(t.state, TaskState::TaskFailed);
        assert!(t.message.contains("SIGSEGV"), "{}", t.message);
        let t = classify(raw(None, Some(9)), true);
        assert_eq!(
            (t.state, t.reason),
            (TaskState::TaskKilled, "REASON_TASK_KILLED")
        );
        assert!(t.message.contains("SIGKILL"), "{}", t.message);
        let t = classify(raw(Some(143), None), true);
        assert_eq!(t.state, TaskState::TaskKilled);
    }

    #[test]
    fn environment_includes_ids_sandbox_and_ports() {
        let task = TaskInfo {
            task_id: "t1".into(),
            resources: Resources::parse("cpus:1;ports:[31000-31001,31005-31005]")
                .expect("resources")
                .to_proto(),
            command: Some(CommandInfo {
                value: "true".into(),
                shell: true,
                environment: [("FOO".to_string(), "bar".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = task_env(&task, "fw", "ag", Path::new("/w/s")).expect("env");
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("FOO"), Some("bar"));
        assert_eq!(get("PROFFER_TASK_ID"), Some("t1"));
        assert_eq!(get("PROFFER_FRAMEWORK_ID"), Some("fw"));
        assert_eq!(get("PROFFER_AGENT_ID"), Some("ag"));
        assert_eq!(get("PROFFER_SANDBOX"), Some("/w/s"));
        assert_eq!(get("MESOS_SANDBOX"), Some("/w/s"));
        assert_eq!(get("PORT"), Some("31000"));
        assert_eq!(get("PORT0"), Some("31000"));
        assert_eq!(get("PORT2"), Some("31005"));
        assert_eq!(get("PORT3"), None);
        assert_eq!(get("PORTS"), Some("31000,31001,31005"));
    }
}
