//! A fake master for agent integration tests: a tiny tonic `Agent` service on 127.0.0.1:0
//! that records every message the agent sends and lets the test send `MasterMessage`s.

#![allow(dead_code)]

// The shared reserved-port helper (this crate cannot depend on `proffer-tests`, which
// depends on it).
#[path = "../../../tests/src/ports.rs"]
mod ports;
#[allow(unused_imports)] // used by some of the test binaries that include this module
pub use ports::free_port as reserved_port;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_agent::AgentConfig;
use proffer_proto::Resources;
use proffer_proto::v1::agent_server::{Agent, AgentServer};
use proffer_proto::v1::{
    AgentMessage, AgentRegistered, CommandInfo, MasterMessage, Ping, RunTask, StatusUpdate,
    StatusUpdateAck, TaskInfo, TaskState, agent_message, master_message,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Bound on every wait in the tests: generous, because a loaded CI machine can take seconds
/// to spawn an executor; every wait ends as soon as what it waits for happens.
pub const WAIT: Duration = Duration::from_secs(60);

type Outbox = mpsc::UnboundedSender<Result<MasterMessage, Status>>;

struct Shared {
    /// Sender of the current session's response stream.
    outbox: Mutex<Option<Outbox>>,
    /// Number of sessions opened so far.
    sessions: Mutex<u64>,
    inbox: mpsc::UnboundedSender<(u64, AgentMessage)>,
}

struct Svc(Arc<Shared>);

#[tonic::async_trait]
impl Agent for Svc {
    type SessionStream = UnboundedReceiverStream<Result<MasterMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let n = {
            let mut s = self
                .0
                .sessions
                .lock()
                .map_err(|_| Status::internal("poisoned"))?;
            *s += 1;
            *s
        };
        let (tx, rx) = mpsc::unbounded_channel();
        *self
            .0
            .outbox
            .lock()
            .map_err(|_| Status::internal("poisoned"))? = Some(tx);
        let mut inbound = request.into_inner();
        let inbox = self.0.inbox.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if inbox.send((n, m)).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

/// A fake master plus one agent under test.
pub struct Harness {
    pub addr: SocketAddr,
    pub work_dir: tempfile::TempDir,
    shared: Arc<Shared>,
    inbox: mpsc::UnboundedReceiver<(u64, AgentMessage)>,
    server: JoinHandle<()>,
    cancel: CancellationToken,
    agent: Option<JoinHandle<Result<(), proffer_agent::AgentError>>>,
    /// The agent when it runs as a separate `proffer-agent agent` process.
    process: Option<std::process::Child>,
    /// Extra flags of the agent process (kept for restarts).
    process_args: Vec<String>,
    /// The agent process's file size limit (`ulimit -f`, 512-byte blocks, SIGXFSZ ignored):
    /// writes past it fail with EFBIG, as writes to a full disk fail with ENOSPC.
    pub file_size_blocks: Option<u64>,
    next_ping: u64,
}

impl Harness {
    /// Starts the fake master and an agent configured for tests (fast retries), with
    /// `tweak` applied to the configuration.
    pub async fn start(tweak: impl FnOnce(&mut AgentConfig)) -> Result<Self> {
        Self::start_inner(0, Some(tweak), Vec::new(), None).await
    }

    /// Like [`Harness::start`], but the fake master hangs up on the agent's first `failed`
    /// connections (accepted and closed at once, before any gRPC), so those dials fail and
    /// the agent has to retry. Counting the failed dials (rather than waiting a fixed time
    /// before listening) makes them happen however slowly the agent starts.
    pub async fn start_failing_first_dials(
        failed: usize,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Result<Self> {
        Self::start_inner(failed, Some(tweak), Vec::new(), None).await
    }

    /// Starts the fake master and the agent as a separate `proffer-agent agent` process
    /// (with `extra` flags), so that a test can SIGKILL it and start it again.
    pub async fn start_process(extra: &[&str]) -> Result<Self> {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Self::start_inner(0, None::<fn(&mut AgentConfig)>, extra, None).await
    }

    /// Like [`Harness::start_process`], with the agent's writes limited to files of
    /// `blocks` × 512 bytes ([`Harness::file_size_blocks`]).
    pub async fn start_process_with_file_limit(extra: &[&str], blocks: u64) -> Result<Self> {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Self::start_inner(0, None::<fn(&mut AgentConfig)>, extra, Some(blocks)).await
    }

    async fn start_inner(
        failed_dials: usize,
        tweak: Option<impl FnOnce(&mut AgentConfig)>,
        process_args: Vec<String>,
        file_size_blocks: Option<u64>,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            outbox: Mutex::new(None),
            sessions: Mutex::new(0),
            inbox: inbox_tx,
        });
        let svc = AgentServer::new(Svc(shared.clone()));
        let server = tokio::spawn(async move {
            for _ in 0..failed_dials {
                match listener.accept().await {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => return,
                }
            }
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        let work_dir = tempfile::tempdir()?;
        let mut config = AgentConfig::new(addr.to_string(), work_dir.path());
        config.resources = Some(Resources::parse(
            "cpus:2;mem:1024;disk:1024;ports:[31000-32000]",
        )?);
        config.reconnect_initial = Duration::from_millis(50);
        config.reconnect_max = Duration::from_millis(500);
        config.executor = executor_launcher();
        // No sandbox collection because the disk is full: on a machine whose disk is more than
        // 90% used, the agent's first collection (which can run after the test has created a
        // task's sandbox, e.g. the health marker of checks.rs, on a slow machine) removed it,
        // and finished tasks' sandboxes could go before the test read them.
        config.gc_max_disk_fraction = 1.0;
        let cancel = CancellationToken::new();
        let mut h = Harness {
            addr,
            work_dir,
            shared,
            inbox,
            server,
            cancel: cancel.clone(),
            agent: None,
            process: None,
            process_args,
            file_size_blocks,
            next_ping: 1000,
        };
        match tweak {
            Some(tweak) => {
                tweak(&mut config);
                h.agent = Some(tokio::spawn(proffer_agent::run(config, cancel)));
            }
            None => h.spawn_process()?,
        }
        Ok(h)
    }

    /// Starts the agent process (again) on the same work directory.
    pub fn spawn_process(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work_dir.path().join("agent.log"))?;
        let agent = env!("CARGO_BIN_EXE_proffer-agent");
        let mut cmd = match self.file_size_blocks {
            Some(blocks) => {
                let mut sh = std::process::Command::new("sh");
                sh.args([
                    "-c",
                    "trap '' XFSZ; ulimit -f \"$1\"; shift; exec \"$@\"",
                    "sh",
                ])
                .arg(blocks.to_string())
                .arg(agent)
                // Its log (a file too) stays far below the limit.
                .env("RUST_LOG", "warn");
                sh
            }
            None => std::process::Command::new(agent),
        };
        let child = cmd
            .arg("agent")
            .arg("--master")
            .arg(self.addr.to_string())
            .arg("--work-dir")
            .arg(self.work_dir.path())
            .args([
                "--resources",
                "cpus:8;mem:4096;disk:1024;ports:[31000-32000]",
            ])
            .args(&self.process_args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        self.process = Some(child);
        Ok(())
    }

    /// Takes the agent process (the caller stops it).
    pub fn take_process(&mut self) -> Option<std::process::Child> {
        self.process.take()
    }

    /// SIGKILLs the agent process and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.process.take().context("no agent process")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// The next message from the agent, with the session number it came on.
    pub async fn recv(&mut self) -> Result<(u64, AgentMessage)> {
        tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .context("timed out waiting for a message from the agent")?
            .context("fake master inbox closed")
    }

    /// The next message body from the agent.
    pub async fn recv_msg(&mut self) -> Result<agent_message::Msg> {
        let (_, m) = self.recv().await?;
        m.msg.context("empty AgentMessage")
    }

    /// Sends a message on the current session.
    pub fn send(&self, msg: master_message::Msg) -> Result<()> {
        let guard = self
            .shared
            .outbox
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let tx = guard.as_ref().context("no session open")?;
        tx.send(Ok(MasterMessage { msg: Some(msg) }))
            .map_err(|_| anyhow::anyhow!("session closed"))
    }

    /// Ends the current session from the master side (the response stream closes).
    pub fn drop_session(&self) -> Result<()> {
        let mut guard = self
            .shared
            .outbox
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        guard.take().context("no session open")?;
        Ok(())
    }

    /// Expects a fresh Register and accepts it with `agent_id`, as a master that takes one
    /// update per message.
    pub async fn register(&mut self, agent_id: &str) -> Result<()> {
        self.register_as(agent_id, false).await
    }

    /// Expects a fresh Register and accepts it with `agent_id`, saying whether this master
    /// takes several updates in one message.
    pub async fn register_as(&mut self, agent_id: &str, takes_update_batches: bool) -> Result<()> {
        match self.recv_msg().await? {
            agent_message::Msg::Register(r) => {
                let info = r.info.context("Register without info")?;
                if !info.id.is_empty() {
                    bail!("fresh Register carries id {:?}", info.id);
                }
            }
            other => bail!("expected Register, got {other:?}"),
        }
        self.send_registered(agent_id, takes_update_batches)
    }

    /// Tells the agent it is registered as `agent_id` (after its Register or Reregister).
    pub fn send_registered(&self, agent_id: &str, takes_update_batches: bool) -> Result<()> {
        self.send(master_message::Msg::Registered(AgentRegistered {
            agent_id: agent_id.into(),
            master_id: "fake-master".into(),
            ping_interval_ms: 15_000,
            takes_update_batches,
        }))
    }

    /// Sends a Ping and returns every message received before the matching Pong: once it
    /// returns, the agent has handled everything sent before.
    pub async fn barrier(&mut self) -> Result<Vec<agent_message::Msg>> {
        self.next_ping += 1;
        let seq = self.next_ping;
        self.send(master_message::Msg::Ping(Ping { seq }))?;
        let mut before = Vec::new();
        loop {
            match self.recv_msg().await? {
                agent_message::Msg::Pong(p) if p.seq == seq => return Ok(before),
                other => before.push(other),
            }
        }
    }

    /// The next message, which must be a status update.
    pub async fn next_update(&mut self) -> Result<StatusUpdate> {
        match self.recv_msg().await? {
            agent_message::Msg::StatusUpdate(u) => Ok(u),
            other => bail!("expected a status update, got {other:?}"),
        }
    }

    /// The next status update, which must be in `state`; it is acknowledged.
    pub async fn expect_state(&mut self, state: TaskState) -> Result<StatusUpdate> {
        let u = self.next_update().await?;
        let got = state_of(&u);
        if got != state {
            bail!("expected {}, got {} ({u:?})", state.name(), got.name());
        }
        self.ack(&u)?;
        Ok(u)
    }

    /// The next updates, in `states` in this order, each acknowledged; returns the last.
    pub async fn expect_states(&mut self, states: &[TaskState]) -> Result<StatusUpdate> {
        let mut last = None;
        for &state in states {
            last = Some(self.expect_state(state).await?);
        }
        last.context("no state to expect")
    }

    /// Acknowledges every update until `n` tasks have finished; any state but STARTING,
    /// RUNNING and FINISHED is an error.
    pub async fn until_finished(&mut self, n: usize) -> Result<()> {
        let mut done = 0;
        while done < n {
            let u = self.next_update().await?;
            self.ack(&u)?;
            match state_of(&u) {
                TaskState::TaskFinished => done += 1,
                TaskState::TaskStarting | TaskState::TaskRunning => {}
                other => bail!("unexpected {}: {u:?}", other.as_str_name()),
            }
        }
        Ok(())
    }

    /// Sends KillTask for `task_id` of `framework_id` with a grace period.
    pub fn kill(&self, framework_id: &str, task_id: &str, grace_ms: u64) -> Result<()> {
        self.send(master_message::Msg::KillTask(proffer_proto::v1::KillTask {
            framework_id: framework_id.into(),
            task_id: task_id.into(),
            kill_grace_period_ms: grace_ms,
        }))
    }

    /// Acknowledges an update.
    pub fn ack(&self, u: &StatusUpdate) -> Result<()> {
        let s = u.status.as_ref().context("update without status")?;
        self.send(master_message::Msg::Ack(StatusUpdateAck {
            framework_id: u.framework_id.clone(),
            task_id: s.task_id.clone(),
            uuid: s.uuid.clone(),
        }))
    }

    /// Sends RunTask for a task.
    pub fn run(&self, framework_id: &str, task: TaskInfo) -> Result<()> {
        self.send(master_message::Msg::RunTask(RunTask {
            framework_id: framework_id.into(),
            task: Some(Box::new(task)),
        }))
    }

    /// Sends RunTask for a shell command.
    pub fn run_shell(&self, framework_id: &str, task_id: &str, command: &str) -> Result<()> {
        self.send(master_message::Msg::RunTask(RunTask {
            framework_id: framework_id.into(),
            task: Some(Box::new(shell_task(task_id, command))),
        }))
    }

    /// Sandbox of a task.
    pub fn sandbox(&self, framework_id: &str, task_id: &str) -> std::path::PathBuf {
        self.work_dir
            .path()
            .join("sandboxes")
            .join(framework_id)
            .join(task_id)
    }

    /// Number of sessions the agent opened.
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.lock().map(|s| *s).unwrap_or(0)
    }

    /// Cancels the agent and waits for `run` to return.
    pub async fn stop(mut self) -> Result<()> {
        self.cancel.cancel();
        if let Some(mut child) = self.process.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
            let deadline = std::time::Instant::now() + WAIT;
            while child.try_wait()?.is_none() {
                if std::time::Instant::now() > deadline {
                    child.kill()?;
                    bail!("agent process did not stop on SIGTERM");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(agent) = self.agent.take() {
            tokio::time::timeout(WAIT, agent)
                .await
                .context("agent did not stop")???;
        }
        self.server.abort();
        Ok(())
    }
}

impl Drop for Harness {
    /// A failed test must not leave an agent process (and its tasks) behind: SIGTERM makes it
    /// kill its tasks; SIGKILL after 10 s.
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            if let Ok(raw) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The task id of an update (empty when it has no status).
pub fn task_id_of(u: &StatusUpdate) -> String {
    u.status
        .as_ref()
        .map(|s| s.task_id.clone())
        .unwrap_or_default()
}

/// Executors are this crate's `proffer-agent executor` binary.
pub fn executor_launcher() -> proffer_agent::ExecutorLauncher {
    proffer_agent::ExecutorLauncher::Binary {
        program: env!("CARGO_BIN_EXE_proffer-agent").into(),
        args: vec!["executor".into()],
    }
}

/// A shell task.
pub fn shell_task(task_id: &str, command: &str) -> TaskInfo {
    TaskInfo {
        name: task_id.into(),
        task_id: task_id.into(),
        resources: Resources::parse("cpus:0.1;mem:32")
            .map(|r| r.to_proto())
            .unwrap_or_default(),
        command: Some(CommandInfo {
            value: command.into(),
            shell: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Why cgroup tests cannot run here (not root, or no writable cpu and memory controllers).
pub fn cgroups_unavailable() -> Option<String> {
    if !proffer_agent::process::is_root() {
        return Some("not running as root".into());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let s =
        proffer_agent::cgroups::detect(&proffer_agent::cgroups::parse_mounts(&mounts), "proffer");
    if s.has("cpu") && s.has("memory") {
        None
    } else {
        Some(format!("cgroups unusable: {}", s.summary()))
    }
}

/// The spec the agent wrote for a task.
pub fn spec_of(
    h: &Harness,
    fw: &str,
    task: &str,
) -> Result<proffer_agent::executor::protocol::ExecutorSpec> {
    let mut journal = proffer_agent::journal::read_all(h.work_dir.path())?;
    let launched = journal
        .remove(&proffer_agent::core::TaskKey::new(fw, task))
        .and_then(|r| r.launch);
    Ok(launched
        .context("the task's launch is not in the journal")?
        .1)
}

/// The state of an update.
pub fn state_of(u: &StatusUpdate) -> TaskState {
    u.status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::Unspecified)
}

/// Polls until `path` exists and contains `needle` (bounded by [`WAIT`]).
pub async fn wait_for_file_containing(path: &std::path::Path, needle: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.contains(needle)
        {
            return Ok(text);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{} never contained {needle:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tiny HTTP/1.0 server on 127.0.0.1: `respond(path)` gives (status, body); returns the
/// port and a counter of requests served.
pub async fn http_server(
    respond: impl Fn(&str) -> (u16, Vec<u8>) + Send + Sync + 'static,
) -> Result<(u16, Arc<std::sync::atomic::AtomicUsize>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let respond = respond.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(r) => n += r,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (code, body) = respond(&path);
                let head = format!(
                    "HTTP/1.0 {code} X\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    Ok((port, count))
}

/// Sends one HTTP/1.0 request to `127.0.0.1:port`; returns (status, body).
pub async fn http_request(port: u16, method: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad status line")?;
    Ok((code, body.to_string()))
}
