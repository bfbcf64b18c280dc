//! The agent loop: owns the connection to the master, the running tasks and the status
//! update manager, and reacts to master messages, process exits and timers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proffer_proto::Resources;
use proffer_proto::leader::MasterList;
use proffer_proto::v1::{
    self, AgentInfo, AgentMessage, Attribute, MasterMessage, RegisterAgent, ReregisterAgent,
    RunningTask, TaskInfo, TaskState, agent_message, master_message,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::cgroups::CgroupSupport;
use crate::checkpoint::{self, TaskCheckpoint};
use crate::containerizer::{self, Container, ContainerEvent, Resolved};
use crate::core::{Core, CoreConfig, Effect, Input, TaskKey, Timestamp};
use crate::session::{SessionEvent, run_session};
use crate::{AgentConfig, AgentError};

mod housekeeping;
mod launch_files;
mod tasks;
mod volumes;

/// A task known to the agent: running, or ended with its terminal update not yet acknowledged.
/// Its state is the core's ([`Core::state`]).
#[derive(Debug)]
struct TaskEntry {
    info: TaskInfo,
    instance: u64,
    /// Present while the executor runs.
    container: Option<Container>,
    /// `work_dir/meta/tasks/<framework>/<task>`.
    run_dir: std::path::PathBuf,
    /// What its executor runs it with (once built).
    spec: Option<crate::executor::protocol::ExecutorSpec>,
    /// What is persisted in the journal (kept in sync by `persist`).
    cp: TaskCheckpoint,
    /// The task group it belongs to (tasks of one LAUNCH_GROUP live and die together).
    group: Option<String>,
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

/// A session that has not seen AgentRegistered after this long is dropped and re-dialed (the
/// next master is tried). A master that accepts the connection and then says nothing (hung)
/// is dropped sooner by the session's HTTP/2 keep-alive, within 10 s.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The most queued inputs handled together before one group commit of checkpoints.
const READY_BATCH: usize = 512;

/// All of the agent's state.
pub(crate) struct Agent {
    config: AgentConfig,
    resources: Resources,
    tasks: BTreeMap<TaskKey, TaskEntry>,
    /// The pure core: task states and decisions, the status update stream, write-ahead
    /// commits, the agent id.
    core: Core,
    next_instance: u64,
    containers_tx: mpsc::UnboundedSender<ContainerEvent>,
    containers_rx: mpsc::UnboundedReceiver<ContainerEvent>,
    /// How executors are started.
    launcher: Resolved,
    /// What cgroups the host allows.
    cgroups: CgroupSupport,
    /// Shared with the HTTP endpoint.
    view: crate::http::SharedView,
    /// The user this agent runs as (tasks naming no user run as it).
    own_user: String,
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    events_rx: mpsc::UnboundedReceiver<SessionEvent>,
    conn: Conn,
    next_session: u64,
    backoff: Duration,
    /// The master of the current session takes several updates in one message
    /// (`AgentRegistered.takes_update_batches`).
    batch_updates: bool,
    /// The masters (from `config.master`) and the one being talked to.
    masters: MasterList,
    /// The supervising executors, one per framework.
    supervisors: containerizer::Supervisors,
    /// Tasks whose files are written at the next commit.
    launches: Vec<launch_files::LaunchFiles>,
    /// Checkpoints in the last group commit: the commit window applies only while they are
    /// many (a busy agent), so a lightly loaded one keeps its latency.
    last_batch: usize,
    /// The checkpoint journal ([`crate::journal`]).
    journal: crate::journal::Journal,
    /// The journal's tasks when the agent started, until `recover` takes them.
    replayed: BTreeMap<TaskKey, crate::journal::Replayed>,
    /// The first error writing the journal: from then on nothing is sent or started, and the
    /// agent stops at the end of its loop turn ([`Agent::journal_broke`]).
    journal_failed: Option<AgentError>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn msg(m: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(m) }
}

/// The resources to report: the checkpointed total (with the dynamic reservations and volumes
/// the master told this agent about) when it matches `configured` once those are taken out;
/// otherwise `configured` (the configuration changed: the master re-applies what it knows).
fn checkpointed_resources(
    work_dir: &std::path::Path,
    configured: Resources,
) -> Result<Resources, AgentError> {
    let Some(saved) = checkpoint::read_resources(work_dir)? else {
        return Ok(configured);
    };
    let base = saved.without_operations();
    if base.contains(&configured) && configured.contains(&base) {
        info!(resources = %saved, "using the checkpointed resources");
        Ok(saved)
    } else {
        warn!(checkpointed = %saved, configured = %configured,
            "the configured resources differ from the checkpointed ones; reporting the configured ones");
        Ok(configured)
    }
}

impl Agent {
    /// Prepares the work directory, resources and saved id.
    pub(crate) fn new(config: AgentConfig) -> Result<Self, AgentError> {
        let masters = MasterList::parse(&config.master).map_err(|e| AgentError::InvalidMaster {
            address: config.master.clone(),
            reason: e.to_string(),
        })?;
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| AgentError::io("creating work dir", &config.work_dir, e))?;
        let resources = match &config.resources {
            Some(r) => r.clone(),
            None => crate::detect_resources(&config.work_dir)?,
        };
        let agent_id = checkpoint::read_agent_id(&config.work_dir)?;
        let resources = match agent_id {
            Some(_) => checkpointed_resources(&config.work_dir, resources)?,
            None => resources,
        };
        let (containers_tx, containers_rx) = mpsc::unbounded_channel();
        let (launcher, launcher_warning) = containerizer::resolve(&config.executor);
        if let Some(w) = launcher_warning {
            warn!("{w}");
        }
        let cgroups = tasks::detect_isolation(&config)?;
        let (journal, replay) = crate::journal::Journal::open(&config.work_dir)?;
        if replay.cut_bytes > 0 {
            warn!(
                bytes = replay.cut_bytes,
                "the checkpoint journal ended in a torn or corrupt record, which was cut off"
            );
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Agent {
            core: Core::new(CoreConfig {
                retry_initial: config.status_retry_initial,
                retry_max: config.status_retry_max,
                default_kill_grace: config.default_kill_grace,
                agent_id,
                uuid_seed: uuid::Uuid::new_v4().as_u128(),
            }),
            backoff: config.reconnect_initial,
            batch_updates: false,
            conn: Conn::Down {
                retry_at: Instant::now(),
            },
            config,
            resources,
            tasks: BTreeMap::new(),
            next_instance: 0,
            containers_tx,
            containers_rx,
            launcher,
            cgroups,
            view: crate::http::SharedView::default(),
            own_user: crate::http_auth::current_user(),
            events_tx,
            events_rx,
            next_session: 0,
            masters,
            supervisors: containerizer::Supervisors::default(),
            launches: Vec::new(),
            last_batch: 0,
            journal,
            replayed: replay.tasks,
            journal_failed: None,
        })
    }

    fn id_str(&self) -> &str {
        self.core.agent_id().unwrap_or("")
    }

    /// Runs until `cancel` fires, then kills every task and returns; or until its journal
    /// cannot be written, then leaves its tasks running and returns the error.
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), AgentError> {
        info!(master = %self.config.master, resources = %self.resources, agent_id = self.id_str(),
              isolation = %self.cgroups.summary(), executor = ?self.launcher, "agent starting");
        self.recover();
        self.commit().await;
        let http = match self.start_http().await {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "agent HTTP endpoint not started");
                None
            }
        };
        // Garbage collection runs every minute, or more often when the delay is shorter.
        let gc_every =
            (self.config.gc_delay / 2).clamp(Duration::from_millis(50), Duration::from_secs(60));
        let mut gc = tokio::time::interval(gc_every);
        gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        while self.journal_failed.is_none() {
            let wake = self.next_wakeup();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(ev) = self.events_rx.recv() => self.on_session_event(ev),
                Some(ev) = self.containers_rx.recv() => self.on_container(ev),
                () = tokio::time::sleep_until(wake) => self.on_timer(),
                _ = gc.tick() => {
                    self.collect_garbage();
                    self.retire_idle_supervisors();
                }
            }
            self.handle_ready(READY_BATCH);
            self.gather_until_window(last_commit).await;
            self.commit().await;
            last_commit = Instant::now();
            self.publish_view();
        }
        let stopped = match self.journal_failed.take() {
            Some(e) => {
                self.stop_on_journal_failure().await;
                Err(AgentError::JournalFailed(Box::new(e)))
            }
            None => {
                self.shutdown().await;
                Ok(())
            }
        };
        if let Some(h) = http {
            h.abort();
        }
        stopped
    }

    fn next_wakeup(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        match &self.conn {
            Conn::Down { retry_at } => *retry_at,
            Conn::Up {
                registered: true, ..
            } => self.core.next_deadline().map_or(far, |t| {
                Instant::now() + Duration::from_millis(t.0.saturating_sub(now_ms()))
            }),
            Conn::Up { opened, .. } => *opened + REGISTRATION_TIMEOUT,
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        match &self.conn {
            Conn::Down { retry_at } if *retry_at <= now => self.connect(),
            Conn::Up {
                registered: true, ..
            } => self.feed(Input::Tick),
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
        // Until this session's master says it takes batches.
        self.batch_updates = false;
        self.next_session += 1;
        let id = self.next_session;
        let (tx, rx) = mpsc::unbounded_channel();
        let first = self.registration();
        let _ = tx.send(first);
        let master = self.masters.current().to_string();
        info!(session = id, master = %master, agent_id = self.id_str(), "connecting to master");
        let task = tokio::spawn(run_session(
            id,
            master,
            self.config.credential.clone(),
            self.config.master_tls.clone(),
            rx,
            self.events_tx.clone(),
        ));
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
            isolation: self.cgroups.summary(),
            sandboxes_dir: std::path::absolute(self.config.work_dir.join("sandboxes"))
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            // Set by the master from the session's authenticated principal.
            principal: String::new(),
        };
        if self.core.agent_id().is_none() {
            return msg(agent_message::Msg::Register(RegisterAgent {
                info: Some(Box::new(info)),
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
                state: self.core.state(k).unwrap_or(TaskState::TaskStaging) as i32,
            })
            .collect();
        msg(agent_message::Msg::Reregister(ReregisterAgent {
            info: Some(Box::new(info)),
            tasks,
        }))
    }

    /// Closes the current session, if any (no reconnect is scheduled).
    fn drop_session(&mut self) {
        if let Conn::Up { task, .. } = &self.conn {
            task.abort();
        }
        self.feed(Input::Disconnected);
        self.conn = Conn::Down {
            retry_at: Instant::now(),
        };
    }

    /// Closes the current session and schedules a reconnect, to the next master, after the
    /// backoff.
    fn reconnect_later(&mut self, reason: &str) {
        self.drop_session();
        let delay = self.backoff;
        self.backoff =
            (self.backoff * 2).min(self.config.reconnect_max.max(self.config.reconnect_initial));
        let from = self.masters.current().to_string();
        let next = self.masters.advance().to_string();
        warn!(
            agent_id = self.id_str(),
            reason,
            master = %from,
            next = %next,
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
            SessionEvent::Closed { id, reason, leader } if Some(id) == current => {
                let from = self.masters.current().to_string();
                match leader {
                    Some(leader) if self.masters.follow_address(&leader) => {
                        info!(agent_id = self.id_str(), standby = %from, leader = %leader,
                              "a standby master named the leader; following it");
                        self.connect();
                    }
                    _ => self.reconnect_later(&reason),
                }
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
                Some(task) => self.run_task(r.framework_id, *task),
                None => warn!(framework_id = %r.framework_id, "RunTask without a task ignored"),
            },
            master_message::Msg::KillTask(k) => {
                self.kill_task(&k.framework_id, &k.task_id, k.kill_grace_period_ms);
            }
            master_message::Msg::Ack(a) => self.on_ack(&a),
            master_message::Msg::Shutdown(s) => self.on_shutdown_agent(&s.reason),
            master_message::Msg::ShutdownFramework(f) => {
                info!(agent_id = self.id_str(), framework_id = %f.framework_id, "shutting down framework");
                self.feed(Input::ShutdownFramework(f.framework_id));
            }
            master_message::Msg::Drain(d) => {
                info!(reason = %d.reason, "the master drains this agent");
                self.drain();
            }
            master_message::Msg::Reactivate(_) => self.reactivate(),
            master_message::Msg::CheckpointResources(c) => self.checkpoint_resources(&c.total),
            master_message::Msg::RunTaskGroup(g) => self.run_task_group(g.framework_id, g.tasks),
            master_message::Msg::DestroyVolumes(d) => {
                self.destroy_volumes(&d.volume_ids);
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
        if let Some(old) = self.core.agent_id()
            && *old != r.agent_id
        {
            warn!(old = %old, new = %r.agent_id, "master assigned a different agent id");
        }
        if let Err(e) = checkpoint::write_agent_id(&self.config.work_dir, &r.agent_id) {
            error!(error = %e, "could not persist the agent id");
        }
        let agent_id = r.agent_id;
        self.batch_updates = r.takes_update_batches;
        self.backoff = self.config.reconnect_initial;
        self.masters.settled();
        if let Conn::Up { registered, .. } = &mut self.conn {
            *registered = true;
        }
        info!(agent_id = %agent_id, master = %self.masters.current(), master_id = %r.master_id,
              ping_interval_ms = r.ping_interval_ms, "registered with master");
        self.feed(Input::Registered { agent_id });
    }

    /// The core's clock now (the wall clock).
    fn now(&self) -> Timestamp {
        Timestamp(now_ms())
    }

    /// Gives the core an input and carries out its effects (none of which needs a durable
    /// checkpoint outside [`Input::Commit`], which `commit` handles).
    fn feed(&mut self, input: Input) {
        let effects = self.core.handle(self.now(), input);
        self.apply(effects);
    }

    /// Carries out effects in order; the checkpoints among them are written at the end.
    fn apply(&mut self, effects: Vec<Effect>) {
        let checkpoints = effects
            .iter()
            .any(|e| matches!(e, Effect::Checkpoint { .. } | Effect::Forget(_)));
        self.apply_each(effects);
        if checkpoints {
            self.journal_write();
        }
    }

    fn apply_each(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Checkpoint {
                    key,
                    state,
                    updates,
                    durable,
                } => {
                    self.journal_checkpoint(&key, state, &updates, durable);
                    // Durable checkpoints come from `Input::Commit`; one from elsewhere is
                    // written (and synced) here, before any update that follows it.
                    if durable {
                        self.journal_write();
                    }
                }
                Effect::Send(u) => self.send(msg(agent_message::Msg::StatusUpdate(u))),
                Effect::Start(key) => self.start_prepared(&key),
                Effect::Signal { key, grace } => {
                    if let Some(c) = self.tasks.get(&key).and_then(|t| t.container.as_ref()) {
                        c.kill(grace);
                    }
                }
                Effect::KillNow(key) => {
                    if let Some(t) = self.tasks.get(&key) {
                        tasks::kill_now(t);
                    }
                }
                Effect::Forget(key) => {
                    // Its run directory is removed with its sandbox, by the garbage collector
                    // (as Mesos does with an executor's meta directory).
                    if self.tasks.remove(&key).is_some()
                        && let Err(e) = self.journal.forget(&key)
                    {
                        self.journal_broke(e);
                    }
                }
            }
        }
    }

    /// Writes what the journal holds in memory now, on this thread (a small append, synced
    /// only if a durable record is among it): an acknowledgement's checkpoint reaches the page
    /// cache before the agent answers anything else, so a killed agent does not send an
    /// acknowledged update again.
    fn journal_write(&mut self) {
        if let Err(e) = self.journal.commit_now() {
            self.journal_broke(e);
        }
    }

    /// The journal could not be written. Write-ahead no longer holds: an update sent now could
    /// be forgotten by a restarted agent, and a task started now could run twice. So from here
    /// on nothing is sent or started, and the agent stops at the end of this loop turn (as
    /// Mesos's agent aborts when a checkpoint fails; after a failed `fsync` the page cache
    /// cannot be trusted either, so retrying is not safe).
    pub(super) fn journal_broke(&mut self, e: AgentError) {
        error!(error = %e, "writing the checkpoint journal failed: the agent stops, leaving its tasks running");
        self.journal_failed.get_or_insert(e);
    }

    /// Records the task's checkpoint (the core's state and pending updates, kept in its
    /// entry) in the journal; `durable`: the next commit makes it durable.
    fn journal_checkpoint(
        &mut self,
        key: &TaskKey,
        state: TaskState,
        updates: &[v1::StatusUpdate],
        durable: bool,
    ) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        t.cp.state = state as i32;
        t.cp.set_updates(updates);
        debug!(task_id = %key.task_id, state = t.cp.state, offset = t.cp.offset,
               updates = t.cp.updates.len(), durable, "checkpoint");
        if let Err(e) = self.journal.checkpoint(key, &t.cp, durable) {
            self.journal_broke(e);
        }
    }

    /// Closes the outbound stream so queued messages are flushed, then gives up on the session.
    async fn close_session(&mut self) {
        let conn = std::mem::replace(
            &mut self.conn,
            Conn::Down {
                retry_at: Instant::now(),
            },
        );
        self.feed(Input::Disconnected);
        if let Conn::Up { tx, mut task, .. } = conn {
            drop(tx);
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}
