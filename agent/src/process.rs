//! Task processes: building the command and environment, spawning it in its own process
//! group inside the sandbox, killing the group (SIGTERM, then SIGKILL after a grace period)
//! and turning its exit into a task state.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::Signal;
use proffer_proto::Resources;
use proffer_proto::v1::{TaskInfo, TaskState};

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

/// Shell builtins and keywords that have no program of their own, or whose meaning differs
/// from a program of the same name: a command starting with one keeps its shell.
const SHELL_ONLY: [&str; 30] = [
    ".", ":", "alias", "bg", "break", "cd", "command", "continue", "eval", "exec", "exit",
    "export", "fg", "getopts", "hash", "jobs", "local", "read", "readonly", "return", "set",
    "shift", "source", "times", "trap", "type", "ulimit", "umask", "unset", "wait",
];

/// The argv of a shell command that means the same without a shell: words of plain
/// characters (letters, digits, `-_./:,+@%=`) separated by blanks, the first neither a
/// shell-only builtin nor an assignment. `None` when the shell is needed (quotes, `$`,
/// globs, redirections, pipes, `;`, `~`, …): then `/bin/sh -c` runs it as before.
pub fn direct_argv(value: &str) -> Option<Vec<String>> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:,+@%=".contains(c);
    if !value.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let argv: Vec<String> = value
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let first = argv.first()?;
    if first.contains('=') || SHELL_ONLY.contains(&first.as_str()) {
        return None;
    }
    Some(argv)
}

/// Builds the command of a task: `/bin/sh -c value` for shell commands (or the words of
/// `value` run directly when it needs no shell: [`direct_argv`]), else `value` with
/// `arguments[1..]` (and `arguments[0]` as argv\[0\]). Runs in `sandbox`, in a new process group,
/// with stdout and stderr appended to `sandbox/stdout` and `sandbox/stderr`.
///
/// With `wait_for_go`, the command is wrapped in `/bin/sh -c 'read -r _ && exec "$@" </dev/null'`
/// and its stdin is a pipe: it starts only once the supervisor wrote a line, which lets the
/// supervisor move it into its cgroups before it can fork (no unsafe `pre_exec` needed).
/// `user` (uid, gid) runs it as another user; `pid_namespace` runs it under
/// [`PID_NAMESPACE_PREFIX`] (own PID and mount namespaces).
pub fn build_command(
    task: &TaskInfo,
    env: &[(String, String)],
    sandbox: &Path,
    wait_for_go: bool,
    user: Option<(u32, u32)>,
    pid_namespace: bool,
    program: Option<&Path>,
) -> std::io::Result<tokio::process::Command> {
    let command = task.command.clone().unwrap_or_default();
    let direct = command.shell.then(|| direct_argv(&command.value)).flatten();
    let mut argv: Vec<String> = if let Some(argv) = direct.clone() {
        argv
    } else if command.shell {
        vec!["/bin/sh".into(), "-c".into(), command.value.clone()]
    } else {
        std::iter::once(command.value.clone())
            .chain(command.arguments.iter().skip(1).cloned())
            .collect()
    };
    if pid_namespace {
        let mut prefixed: Vec<String> =
            PID_NAMESPACE_PREFIX.iter().map(|s| s.to_string()).collect();
        prefixed.append(&mut argv);
        argv = prefixed;
    }
    let mut cmd = if wait_for_go {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg(r#"read -r _ || exit 70; exec "$@" </dev/null"#)
            .arg("proffer-task")
            .args(&argv);
        c
    } else {
        // Found already ([`find_program`]), the program is run by its path: one `execve`, not
        // one per `PATH` entry in the spawned child (`unshare` is looked up as before).
        let found = program.filter(|_| !pid_namespace);
        let mut c = tokio::process::Command::new(found.unwrap_or(Path::new(&argv[0])));
        let explicit_arg0 = (!command.shell && direct.is_none() && !pid_namespace)
            .then(|| command.arguments.first())
            .flatten();
        // The task sees the name it was given as `argv[0]`, not the path found.
        if let Some(arg0) = explicit_arg0.or(found.map(|_| &argv[0])) {
            c.arg0(arg0);
        }
        c.args(&argv[1..]);
        c
    };
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.join(name))
    };
    let stdout = open("stdout")?;
    let stderr = open("stderr")?;
    cmd.current_dir(sandbox)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if wait_for_go {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// The command prefix giving a task its own PID and mount namespaces (with its own `/proc`);
/// the task is killed when `unshare` dies.
pub const PID_NAMESPACE_PREFIX: [&str; 6] = [
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child=SIGTERM",
    "--",
];

/// Checks that [`PID_NAMESPACE_PREFIX`] works on this host.
pub fn check_pid_namespace() -> Result<(), String> {
    let out = std::process::Command::new(PID_NAMESPACE_PREFIX[0])
        .args(&PID_NAMESPACE_PREFIX[1..])
        .args(["/bin/sh", "-c", "echo $$"])
        .output()
        .map_err(|e| format!("running unshare: {e}"))?;
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && pid == "1" {
        Ok(())
    } else {
        Err(format!(
            "unshare does not give a PID namespace here ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Finds the program a non-shell command runs: a path (relative to `cwd`) or a name looked up
/// in the task's `PATH` (or the executor's), as `execvp` would.
pub fn find_program(
    program: &str,
    env: &[(String, String)],
    cwd: &Path,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let not_found = || std::io::Error::from_raw_os_error(libc::ENOENT);
    if program.contains('/') {
        let p = cwd.join(program);
        return if runnable(&p) {
            Ok(p)
        } else if p.exists() {
            // There, but not an executable file (as execve answers).
            Err(std::io::Error::from_raw_os_error(libc::EACCES))
        } else {
            Err(not_found())
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    // Relative entries (`.`, an empty one, `bin`) are relative to where the task runs.
    path.split(':')
        .map(|d| cwd.join(if d.is_empty() { "." } else { d }).join(program))
        .find(|p| runnable(p))
        .ok_or_else(not_found)
}

/// The program a task runs without a shell, if any: a non-shell command's value, or the first
/// word of a shell command that needs no shell.
pub fn direct_program(task: &TaskInfo) -> Option<String> {
    let c = task.command.as_ref()?;
    if c.shell {
        direct_argv(&c.value)?.into_iter().next()
    } else {
        Some(c.value.clone())
    }
}

/// An I/O error with its errno's name first (`ENOENT: No such file or directory (os error 2)`).
pub fn describe_io_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}: {e}", nix::errno::Errno::from_raw(code)),
        None => e.to_string(),
    }
}

/// Whether this process's effective uid is 0 (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Looks a user name up in `/etc/passwd`: (uid, gid).
pub fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let text =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    parse_passwd(&text, name).ok_or_else(|| format!("user {name:?} does not exist"))
}

fn parse_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
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
    fn plain_shell_commands_run_without_a_shell() {
        let v = |s: &[&str]| Some(s.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(direct_argv("true"), v(&["true"]));
        assert_eq!(direct_argv("  sleep\t0.5 "), v(&["sleep", "0.5"]));
        assert_eq!(
            direct_argv("/usr/bin/env A=b prog --x=1,2 user@host:9"),
            v(&["/usr/bin/env", "A=b", "prog", "--x=1,2", "user@host:9"])
        );
        for shell in [
            "",
            "   ",
            "echo $HOME",
            "echo hi > out",
            "a | b",
            "a; b",
            "a && b",
            "echo 'x'",
            "echo \"x\"",
            "ls *.txt",
            "cat ~/x",
            "exit 3",
            "cd /tmp",
            "FOO=1 prog",
            "sleep 1 &",
            "echo a\\b",
            "echo `id`",
            "(true)",
            "echo # comment",
            "echo\nfalse",
        ] {
            assert_eq!(direct_argv(shell), None, "{shell:?} needs a shell");
        }
    }

    #[test]
    fn programs_are_found_on_the_tasks_path_relative_entries_in_its_sandbox() {
        use std::os::unix::fs::PermissionsExt;
        let sandbox = tempfile::tempdir().expect("tempdir");
        let bin = sandbox.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("tool");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let plain = bin.join("plain");
        std::fs::write(&plain, "").expect("plain");
        let env = |path: &str| vec![("PATH".to_string(), path.to_string())];
        let found = |name: &str, path: &str| find_program(name, &env(path), sandbox.path());
        assert_eq!(found("tool", "/nonexistent:bin").ok(), Some(tool.clone()));
        assert_eq!(
            found("./bin/tool", "").ok(),
            Some(sandbox.path().join("./bin/tool"))
        );
        let errno = |r: std::io::Result<std::path::PathBuf>| r.err().and_then(|e| e.raw_os_error());
        assert_eq!(errno(found("tool", "/nonexistent")), Some(libc::ENOENT));
        assert_eq!(
            errno(found("plain", "bin")),
            Some(libc::ENOENT),
            "not executable: skipped"
        );
        assert_eq!(errno(found("bin/plain", "")), Some(libc::EACCES));
        let sh = found("sh", "/usr/bin:/bin").expect("sh on the PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
    }

    #[test]
    fn passwd_lookup() {
        let text =
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:n:/:/bin/false\nbad:x:a:b\n";
        assert_eq!(parse_passwd(text, "nobody"), Some((65534, 65534)));
        assert_eq!(parse_passwd(text, "root"), Some((0, 0)));
        assert_eq!(parse_passwd(text, "bad"), None);
        assert_eq!(parse_passwd(text, "ghost"), None);
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
