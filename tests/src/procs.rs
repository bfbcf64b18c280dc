//! Running the real `proffer` binary in tests: a master and agents as child processes that are
//! killed when their guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The `proffer` binary next to the running test (target/<profile>/proffer); built with cargo
/// once if it is missing (e.g. when only this package's tests were asked for).
pub fn proffer_bin() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/debug/deps/<test> → target/debug/proffer
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?;
            let bin = dir.join("proffer");
            if !bin.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-p", "proffer-cli", "--bin", "proffer"])
                    .status()
                    .map_err(|e| format!("cargo build: {e}"))?;
                if !status.success() || !bin.exists() {
                    return Err(format!("could not build {}", bin.display()));
                }
            }
            Ok(bin)
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

pub use crate::ports::free_port;

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Starts `proffer ARGS…` with stdout/stderr going to `log_dir/<name>.log`.
    pub fn start(name: &str, args: &[&str], log_dir: &Path) -> Result<Proc> {
        let mut cmd = Command::new(proffer_bin()?);
        cmd.args(args);
        Proc::spawn(name, cmd, log_dir)
    }

    /// Starts `proffer ARGS…` inside network namespace `netns` (`ip netns exec`, which execs
    /// the binary: the child is proffer itself), logging as [`Proc::start`].
    pub fn start_in_netns(name: &str, netns: &str, args: &[&str], log_dir: &Path) -> Result<Proc> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(proffer_bin()?)
            .args(args);
        Proc::spawn(name, cmd, log_dir)
    }

    fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Proc> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL now (as `kill -9`) and reap.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `proffer ARGS…` to completion and returns its output.
pub fn run(args: &[&str]) -> Result<Output> {
    Command::new(proffer_bin()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run proffer")
}

/// Runs `proffer ARGS…` and fails (with its stderr) unless it exits successfully.
pub fn run_ok(args: &[&str]) -> Result<Output> {
    let out = run(args)?;
    if !out.status.success() {
        bail!(
            "proffer {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `proffer` as a command with its stdout and stderr discarded, to start as a child.
pub fn proffer_quiet() -> Result<Command> {
    let mut c = Command::new(proffer_bin()?);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    Ok(c)
}

/// Polls `f` every 200 ms until it returns `true` or `limit` passes; an error from `f` ends
/// the wait with that error.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out waiting for {what}")
}

/// Polls `f` every 50 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET of `path` on `addr` (`HOST:PORT`): (status line, body).
pub fn http_get(addr: &str, path: &str) -> Result<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of the HTTP head")?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// The master's state as JSON, through `proffer state --json`.
pub fn state_json(master: &str) -> Result<serde_json::Value> {
    let out = run(&["state", "--json", "--master", master])?;
    if !out.status.success() {
        bail!(
            "proffer state failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Starts agent `i` (`agent{i}`: its work dir in `dir`, log `dir/agent{i}.log`) for `master`
/// (one address or a comma-separated list), offering `resources`.
pub fn start_agent(i: usize, master: &str, resources: &str, dir: &Path) -> Result<Proc> {
    let work = dir.join(format!("agent{i}"));
    std::fs::create_dir_all(&work)?;
    let work = work.to_string_lossy().to_string();
    let host = format!("agent{i}");
    let args = [
        "agent",
        "--master",
        master,
        "--work-dir",
        &work,
        "--resources",
        resources,
        "--hostname",
        &host,
        // Tests read finished tasks' sandboxes: never remove them for a full disk.
        "--gc-max-disk-fraction",
        "1",
    ];
    Proc::start(&format!("agent{i}"), &args, dir)
}

/// A master plus `n` agents on loopback, each agent with `resources`; torn down on drop.
#[derive(Debug)]
pub struct Cluster {
    /// `127.0.0.1:PORT` of the master.
    pub master: String,
    /// The master process.
    pub master_proc: Proc,
    /// The agent processes.
    pub agents: Vec<Proc>,
    /// Work and log directory.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the master with `master_args` (extra flags) and `n` agents.
    pub fn start(n: usize, resources: &str, master_args: &[&str]) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let master = format!("127.0.0.1:{port}");
        let master_dir = dir.path().join("master");
        let master_dir = master_dir.to_string_lossy().to_string();
        let mut args = vec!["master", "--listen", &master, "--work-dir", &master_dir];
        args.extend_from_slice(master_args);
        let master_proc = Proc::start("master", &args, dir.path())?;
        wait_for("master /state", Duration::from_secs(30), || {
            state_json(&master).ok()
        })?;
        let agents = (0..n)
            .map(|i| start_agent(i, &master, resources, dir.path()))
            .collect::<Result<Vec<_>>>()?;
        wait_for("agents to register", Duration::from_secs(30), || {
            let s = state_json(&master).ok()?;
            let connected = s["agents"]
                .as_array()?
                .iter()
                .filter(|a| a["connected"] == true)
                .count();
            (connected == n).then_some(())
        })?;
        Ok(Cluster {
            master,
            master_proc,
            agents,
            dir,
        })
    }

    /// The contents of a process's log, for failure messages.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    /// The agents first (so that no framework is told of a task's end and starts another),
    /// then the tasks they leave running, then (as the fields drop) the master.
    fn drop(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.kill9();
        }
        crate::leftovers::kill_under(self.dir.path());
    }
}
