//! The agent loop: owns the connection to the master, the running tasks and the status
//! update manager, and reacts to master messages, process exits and timers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proffer_proto::Resources;
use proffer_proto::v1::{
    self, AgentInfo, AgentMessage, Attribute, MasterMessage, RegisterAgent, ReregisterAgent,
    RunningTask, StatusSource, StatusUpdate, TaskInfo, TaskState, TaskStatus, agent_message,
    master_message,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::checkpoint;
use crate::process::{self, Exited, ProcessHandle, Termination};
use crate::sandbox;
use crate::session::{SessionEvent, run_session};
use crate::status_updates::{AckOutcome, StatusUpdateManager, TaskKey};
use crate::{AgentConfig, AgentError};

/// A task known to the agent: running, or ended with its terminal update not yet acknowledged.
#[derive(Debug)]
struct TaskEntry {
    info: TaskInfo,
    state: TaskState,
    instance: u64,
    /// Present while the process runs.
    process: Option<ProcessHandle>,
}

/// The connection to the master.
#[derive(Debug)]
enum Conn {
    /// No session; dial again at `retry_at`.
    Down { retry_at: Instant },
    /// Session `id` is open (or being opened); `registered` once AgentRegistered arrived.
    Up {
        id: u64,
        tx: mpsc::UnboundedSender<AgentMessage>,
        registered: bool,
        task: JoinHandle<()>,
        /// When the session was opened (for the registration timeout).
        opened: Instant,
    },
}

/// A session that has not seen AgentRegistered after this long is dropped and re-dialed.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// All of the agent's state.
pub(crate) struct Agent {
    config: AgentConfig,
    resources: Resources,
    agent_id: Option<String>,
    tasks: BTreeMap<TaskKey, TaskEntry>,
    updates: StatusUpdateManager,
    next_instance: u64,
    exits_tx: mpsc::UnboundedSender<Exited>,
    exits_rx: mpsc::UnboundedReceiver<Exited>,
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    events_rx: mpsc::UnboundedReceiver<SessionEvent>,
    conn: Conn,
    next_session: u64,
    backoff: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn msg(m: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(m) }
}

impl Agent {
    /// Prepares the work directory, resources and saved id.
    pub(crate) fn new(config: AgentConfig) -> Result<Self, AgentError> {
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| AgentError::io("creating work dir", &config.work_dir, e))?;
        let resources = match &config.resources {
            Some(r) => r.clone(),
            None => crate::detect_resources(&config.work_dir)?,
        };
        let agent_id = checkpoint::read_agent_id(&config.work_dir)?;
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Agent {
            updates: StatusUpdateManager::new(config.status_retry_initial, config.status_retry_max),
            backoff: config.reconnect_initial,
            conn: Conn::Down {
                retry_at: Instant::now(),
            },
            config,
            resources,
            agent_id,
            tasks: BTreeMap::new(),
            next_instance: 0,
            exits_tx,
            exits_rx,
            events_tx,
            events_rx,
            next_session: 0,
        })
    }

    fn id_str(&self) -> &str {
        self.agent_id.as_deref().unwrap_or("")
    }

    /// Runs until `cancel` fires, then kills every task and returns.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        info!(master = %self.config.master, resources = %self.resources, agent_id = self.id_str(), "agent starting");
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(ev) = self.events_rx.recv() => self.on_session_event(ev),
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit),
                () = tokio::time::sleep_until(wake) => self.on_timer(),
            }
        }
        self.shutdown().await;
    }

    fn next_wakeup(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        match &self.conn {
            Conn::Down { retry_at } => *retry_at,
            Conn::Up {
                registered: true, ..
            } => self.updates.next_deadline().map_or(far, Instant::from_std),
            Conn::Up { opened, .. } => *opened + REGISTRATION_TIMEOUT,
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        match &self.conn {
            Conn::Down { retry_at } if *retry_at <= now => self.connect(),
            Conn::Up {
                registered: true, ..
            } => {
                for u in self.updates.due(now.into_std()) {
                    debug!(
                        agent_id = self.id_str(),
                        "re-sending unacknowledged status update"
                    );
                    self.send(msg(agent_message::Msg::StatusUpdate(u)));
                }
            }
            Conn::Up {
                registered: false,
                opened,
                ..
            } if *opened + REGISTRATION_TIMEOUT <= now => {
                self.reconnect_later("no AgentRegistered from the master in time");
            }
            _ => {}
        }
    }

    /// Opens a new session and queues Register or Reregister on it.
    fn connect(&mut self) {
        self.drop_session();
        self.next_session += 1;
        let id = self.next_session;
        let (tx, rx) = mpsc::unbounded_channel();
        let first = self.registration();
        let _ = tx.send(first);
        let task = tokio::spawn(run_session(
            id,
            self.config.master.clone(),
            rx,
            self.events_tx.clone(),
        ));
        debug!(session = id, master = %self.config.master, "connecting");
        self.conn = Conn::Up {
            id,
            tx,
            registered: false,
            task,
            opened: Instant::now(),
        };
    }

    fn registration(&self) -> AgentMessage {
        let info = AgentInfo {
            id: self.id_str().to_string(),
            hostname: self.config.hostname.clone(),
            port: self.config.port,
            resources: self.resources.to_proto(),
            attributes: self
                .config
                .attributes
                .iter()
                .map(|(name, value)| Attribute {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if self.agent_id.is_none() {
            return msg(agent_message::Msg::Register(RegisterAgent {
                info: Some(info),
            }));
        }
        // Running tasks, and also ended ones whose terminal update is not yet acknowledged
        // (with their terminal state, as Mesos does) so the master does not mark them lost
        // before the re-sent terminal update arrives.
        let tasks = self
            .tasks
            .iter()
            .map(|(k, t)| RunningTask {
                framework_id: k.framework_id.clone(),
                task: Some(t.info.clone()),
                state: t.state as i32,
            })
            .collect();
        msg(agent_message::Msg::Reregister(ReregisterAgent {
            info: Some(info),
            tasks,
        }))
    }

    /// Closes the current session, if any (no reconnect is scheduled).
    fn drop_session(&mut self) {
        if let Conn::Up { task, .. } = &self.conn {
            task.abort();
        }
        self.conn = Conn::Down {
            retry_at: Instant::now(),
        };
    }

    /// Closes the current session and schedules a reconnect after the backoff.
    fn reconnect_later(&mut self, reason: &str) {
        self.drop_session();
        let delay = self.backoff;
        self.backoff =
            (self.backoff * 2).min(self.config.reconnect_max.max(self.config.reconnect_initial));
        warn!(
            agent_id = self.id_str(),
            reason,
            retry_in_ms = delay.as_millis() as u64,
            "disconnected from master"
        );
        self.conn = Conn::Down {
            retry_at: Instant::now() + delay,
        };
    }

    fn registered(&self) -> bool {
        matches!(
            self.conn,
            Conn::Up {
                registered: true,
                ..
            }
        )
    }

    fn send(&self, m: AgentMessage) {
        if let Conn::Up { tx, .. } = &self.conn {
            // A closed channel means the session is ending; its Closed event will follow.
            let _ = tx.send(m);
        }
    }

    fn on_session_event(&mut self, ev: SessionEvent) {
        let current = match &self.conn {
            Conn::Up { id, .. } => Some(*id),
            Conn::Down { .. } => None,
        };
        match ev {
            SessionEvent::Closed { id, reason } if Some(id) == current => {
                self.reconnect_later(&reason);
            }
            SessionEvent::Message { id, msg } if Some(id) == current => self.on_master(*msg),
            _ => debug!("event from an old session ignored"),
        }
    }

    fn on_master(&mut self, m: MasterMessage) {
        let Some(m) = m.msg else {
            warn!("empty message from master");
            return;
        };
        match m {
            master_message::Msg::Registered(r) => self.on_registered(r),
            master_message::Msg::Ping(p) => {
                self.send(msg(agent_message::Msg::Pong(v1::Pong { seq: p.seq })));
            }
            master_message::Msg::RunTask(r) => match r.task {
                Some(task) => self.run_task(r.framework_id, task),
                None => warn!(framework_id = %r.framework_id, "RunTask without a task ignored"),
            },
            master_message::Msg::KillTask(k) => {
                self.kill_task(&k.framework_id, &k.task_id, k.kill_grace_period_ms);
            }
            master_message::Msg::Ack(a) => self.on_ack(&a),
            master_message::Msg::Shutdown(s) => self.on_shutdown_agent(&s.reason),
            master_message::Msg::ShutdownFramework(f) => {
                info!(agent_id = self.id_str(), framework_id = %f.framework_id, "shutting down framework");
                let keys: Vec<TaskKey> = self
                    .tasks
                    .keys()
                    .filter(|k| k.framework_id == f.framework_id)
                    .cloned()
                    .collect();
                for k in keys {
                    self.kill_task(&k.framework_id, &k.task_id, 0);
                }
            }
            master_message::Msg::Error(e) => {
                error!(agent_id = self.id_str(), fatal = e.fatal, message = %e.message, "master reported an error");
                if e.fatal {
                    self.reconnect_later("fatal error from master");
                }
            }
        }
    }

    fn on_registered(&mut self, r: v1::AgentRegistered) {
        if let Some(old) = &self.agent_id
            && *old != r.agent_id
        {
            warn!(old = %old, new = %r.agent_id, "master assigned a different agent id");
        }
        if let Err(e) = checkpoint::write_agent_id(&self.config.work_dir, &r.agent_id) {
            error!(error = %e, "could not persist the agent id");
        }
        self.agent_id = Some(r.agent_id);
        self.backoff = self.config.reconnect_initial;
        if let Conn::Up { registered, .. } = &mut self.conn {
            *registered = true;
        }
        info!(agent_id = self.id_str(), master_id = %r.master_id, ping_interval_ms = r.ping_interval_ms, "registered with master");
        for u in self.updates.resend_all(std::time::Instant::now()) {
            self.send(msg(agent_message::Msg::StatusUpdate(u)));
        }
    }

    /// Creates and queues a status update (sent at once when it heads its task's queue).
    fn emit(
        &mut self,
        key: &TaskKey,
        state: TaskState,
        reason: &str,
        message: String,
        exit_code: Option<i32>,
    ) {
        info!(agent_id = self.id_str(), framework_id = %key.framework_id, task_id = %key.task_id,
              state = state.name(), reason, message = %message, "status update");
        let update = StatusUpdate {
            framework_id: key.framework_id.clone(),
            status: Some(TaskStatus {
                task_id: key.task_id.clone(),
                state: state as i32,
                message,
                reason: reason.to_string(),
                source: StatusSource::SourceAgent as i32,
                agent_id: self.id_str().to_string(),
                uuid: uuid::Uuid::new_v4().as_bytes().to_vec(),
                timestamp_ms: now_ms(),
                exit_code,
                healthy: None,
            }),
        };
        if let Some(u) = self.updates.push(std::time::Instant::now(), update)
            && self.registered()
        {
            self.send(msg(agent_message::Msg::StatusUpdate(u)));
        }
    }

    fn run_task(&mut self, framework_id: String, task: TaskInfo) {
        let key = TaskKey::new(framework_id.clone(), task.task_id.clone());
        if self.tasks.contains_key(&key) {
            warn!(agent_id = self.id_str(), framework_id = %key.framework_id, task_id = %key.task_id,
                  "duplicate RunTask for a known task ignored");
            return;
        }
        if let Err(reason) = sandbox::validate_id("framework", &framework_id)
            .and_then(|()| sandbox::validate_id("task", &task.task_id))
        {
            self.emit(
                &key,
                TaskState::TaskError,
                "REASON_TASK_INVALID",
                reason,
                None,
            );
            return;
        }
        self.next_instance += 1;
        self.tasks.insert(
            key.clone(),
            TaskEntry {
                info: task.clone(),
                state: TaskState::TaskStaging,
                instance: self.next_instance,
                process: None,
            },
        );
        if let Err((state, reason, message)) = self.launch(&key, &task) {
            self.set_state(&key, state);
            self.emit(&key, state, reason, message, None);
        }
    }

    /// Launches a task; on failure returns the terminal state, reason and message to report.
    fn launch(
        &mut self,
        key: &TaskKey,
        task: &TaskInfo,
    ) -> Result<(), (TaskState, &'static str, String)> {
        let invalid = |m: String| (TaskState::TaskError, "REASON_TASK_INVALID", m);
        match &task.command {
            Some(c) if !c.value.is_empty() => {}
            Some(_) => return Err(invalid("command value is empty".into())),
            None => return Err(invalid("task has no command".into())),
        }
        let dir = sandbox::sandbox_dir(&self.config.work_dir, &key.framework_id, &key.task_id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            let m = format!("creating sandbox {}: {e}", dir.display());
            (TaskState::TaskFailed, "REASON_CONTAINER_LAUNCH_FAILED", m)
        })?;
        let env =
            process::task_env(task, &key.framework_id, self.id_str(), &dir).map_err(invalid)?;
        self.set_state(key, TaskState::TaskStarting);
        self.emit(key, TaskState::TaskStarting, "", String::new(), None);
        let failed = |e: std::io::Error| {
            (
                TaskState::TaskFailed,
                "REASON_COMMAND_EXECUTOR_FAILED",
                format!("failed to launch command: {e}"),
            )
        };
        let cmd = process::build_command(task, &env, &dir).map_err(failed)?;
        let instance = self.tasks.get(key).map_or(0, |t| t.instance);
        let handle =
            process::spawn(cmd, key.clone(), instance, self.exits_tx.clone()).map_err(failed)?;
        debug!(framework_id = %key.framework_id, task_id = %key.task_id, pid = handle.pid, sandbox = %dir.display(), "task process started");
        if let Some(t) = self.tasks.get_mut(key) {
            t.process = Some(handle);
            t.state = TaskState::TaskRunning;
        }
        self.emit(key, TaskState::TaskRunning, "", String::new(), None);
        Ok(())
    }

    fn set_state(&mut self, key: &TaskKey, state: TaskState) {
        if let Some(t) = self.tasks.get_mut(key) {
            t.state = state;
        }
    }

    fn kill_grace(&self, requested_ms: u64, task: &TaskInfo) -> Duration {
        if requested_ms > 0 {
            Duration::from_millis(requested_ms)
        } else if task.kill_grace_period_ms > 0 {
            Duration::from_millis(task.kill_grace_period_ms)
        } else {
            self.config.default_kill_grace
        }
    }

    fn kill_task(&mut self, framework_id: &str, task_id: &str, grace_ms: u64) {
        let key = TaskKey::new(framework_id, task_id);
        match self.tasks.get(&key) {
            Some(TaskEntry {
                process: Some(p),
                info,
                ..
            }) => {
                let grace = self.kill_grace(grace_ms, info);
                info!(
                    agent_id = self.id_str(),
                    framework_id,
                    task_id,
                    grace_ms = grace.as_millis() as u64,
                    "killing task"
                );
                p.kill(grace);
            }
            Some(_) => debug!(
                framework_id,
                task_id, "kill of a task that already ended ignored"
            ),
            None => {
                let m = "task is unknown to the agent".to_string();
                self.emit(&key, TaskState::TaskLost, "REASON_TASK_UNKNOWN", m, None);
            }
        }
    }

    fn on_exit(&mut self, exit: Exited) {
        let Some(t) = self.tasks.get_mut(&exit.key) else {
            debug!(framework_id = %exit.key.framework_id, task_id = %exit.key.task_id, "exit of a forgotten task");
            return;
        };
        if t.instance != exit.instance {
            return;
        }
        let Termination {
            state,
            reason,
            message,
            exit_code,
        } = exit.termination;
        t.process = None;
        t.state = state;
        self.emit(&exit.key, state, reason, message, exit_code);
    }

    fn on_ack(&mut self, a: &v1::StatusUpdateAck) {
        match self.updates.ack(
            std::time::Instant::now(),
            &a.framework_id,
            &a.task_id,
            &a.uuid,
        ) {
            AckOutcome::Ignored => {
                debug!(framework_id = %a.framework_id, task_id = %a.task_id, "acknowledgement for no in-flight update ignored");
            }
            AckOutcome::Acked { terminal, next } => {
                if terminal {
                    let key = TaskKey::new(a.framework_id.clone(), a.task_id.clone());
                    if self.tasks.get(&key).is_some_and(|t| t.process.is_none()) {
                        debug!(framework_id = %key.framework_id, task_id = %key.task_id, "terminal update acknowledged; task forgotten");
                        self.tasks.remove(&key);
                    }
                }
                if let Some(u) = next
                    && self.registered()
                {
                    self.send(msg(agent_message::Msg::StatusUpdate(u)));
                }
            }
        }
    }

    /// ShutdownAgent: kill everything, forget the id and pending updates, register afresh.
    fn on_shutdown_agent(&mut self, reason: &str) {
        warn!(
            agent_id = self.id_str(),
            reason, "master shut this agent down; killing all tasks and registering afresh"
        );
        self.kill_all();
        self.tasks.clear();
        self.updates.clear();
        if let Err(e) = checkpoint::delete_agent_id(&self.config.work_dir) {
            error!(error = %e, "could not delete the agent id");
        }
        self.agent_id = None;
        self.backoff = self.config.reconnect_initial;
        self.connect();
    }

    fn kill_all(&self) {
        for t in self.tasks.values() {
            if let Some(p) = &t.process {
                p.kill(self.kill_grace(0, &t.info));
            }
        }
    }

    /// On cancel: kill every task, wait (bounded) for the processes to end, send what we can.
    async fn shutdown(&mut self) {
        self.kill_all();
        let longest = self
            .tasks
            .values()
            .filter(|t| t.process.is_some())
            .map(|t| self.kill_grace(0, &t.info))
            .max()
            .unwrap_or_default();
        let deadline = Instant::now() + longest + Duration::from_secs(5);
        while self.tasks.values().any(|t| t.process.is_some()) {
            match tokio::time::timeout_at(deadline, self.exits_rx.recv()).await {
                Ok(Some(exit)) => self.on_exit(exit),
                _ => {
                    warn!("tasks did not end in time after being killed");
                    break;
                }
            }
        }
        // Close the outbound stream so queued messages are flushed, then give up on the session.
        let conn = std::mem::replace(
            &mut self.conn,
            Conn::Down {
                retry_at: Instant::now(),
            },
        );
        if let Conn::Up { tx, mut task, .. } = conn {
            drop(tx);
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        info!(agent_id = self.id_str(), "agent stopped");
    }
}
