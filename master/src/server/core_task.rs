//! The task that owns the [`Master`]: it receives commands from the connection handlers, feeds
//! them to the core with the current time, ticks the core and dispatches its outputs to the
//! connections' channels.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proffer_proto::v1;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::mesos_operator::{Published, Publisher, Snapshots};
use crate::core::{ConnId, Input, Master, MasterError, Output, Timestamp};

/// Sender half of a framework's event stream.
pub(crate) type EventTx = mpsc::Sender<Result<v1::Event, tonic::Status>>;
/// Sender half of an agent's outbound session stream.
pub(crate) type AgentTx = mpsc::Sender<Result<v1::MasterMessage, tonic::Status>>;

/// Events queued per framework stream before the stream counts as stuck and is dropped.
pub(crate) const FRAMEWORK_QUEUE: usize = 1024;
/// Messages queued per agent session before the session counts as stuck and is dropped.
pub(crate) const AGENT_QUEUE: usize = 1024;
/// Commands handled in one batch before the core is ticked and its outputs dispatched.
const MAX_BATCH: usize = 256;

/// The reply to an input: the core's verdict.
type Reply = oneshot::Sender<Result<(), MasterError>>;

/// A request to the core task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Feed an input and report the core's verdict.
    Input { input: Input, reply: Reply },
    /// Register a framework stream and subscribe it; on error the stream is forgotten again.
    Subscribe {
        conn: ConnId,
        info: v1::FrameworkInfo,
        tx: EventTx,
        reply: Reply,
    },
    /// Register an agent session; `closed` is cancelled when the core ends the session.
    OpenAgent {
        /// The session's tracing span (its `agent_id` is recorded on registration).
        span: tracing::Span,
        conn: ConnId,
        tx: AgentTx,
        closed: CancellationToken,
    },
    /// A framework stream was dropped by its client.
    FrameworkGone { conn: ConnId },
    /// An agent session's inbound half ended.
    AgentGone { conn: ConnId },
    /// Run an operator request against the core (quota, weights, roles, explanations).
    Run(MasterFn),
    /// The registry writer committed persist batch `seq` (and every earlier one).
    Persisted { seq: u64 },
}

/// Sends a reply; run at once, or once the registry holds what the reply reports.
type Thunk = Box<dyn FnOnce() + Send>;

/// The boxed function inside a [`MasterFn`]: it works on the master and returns the thunk that
/// sends its reply.
type BoxedMasterFn = Box<dyn FnOnce(&mut Master, Timestamp) -> Thunk + Send>;

/// A function run on the core task with the master and the current time.
pub(crate) struct MasterFn(BoxedMasterFn);

impl std::fmt::Debug for MasterFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterFn")
    }
}

/// The core task has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the master is shutting down")]
pub(crate) struct CoreGone;

/// The core's verdict on a queued input (an error if the core stopped first).
pub(crate) type Verdict = oneshot::Receiver<Result<(), MasterError>>;

/// A cloneable handle to the core task.
#[derive(Debug, Clone)]
pub(crate) struct CoreHandle {
    tx: mpsc::UnboundedSender<Command>,
    next_conn: Arc<AtomicU64>,
    /// The snapshots the core publishes (every read is served from them).
    snapshots: Snapshots,
}

/// What the core task reads: the commands, and the snapshots it publishes.
#[derive(Debug)]
pub(crate) struct Inbox {
    commands: mpsc::UnboundedReceiver<Command>,
    snapshots: Snapshots,
}

impl CoreHandle {
    /// A handle and the receiver the core task reads.
    pub(crate) fn new() -> (CoreHandle, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let snapshots = Snapshots::new();
        (
            CoreHandle {
                tx,
                next_conn: Arc::new(AtomicU64::new(1)),
                snapshots: snapshots.clone(),
            },
            Inbox {
                commands: rx,
                snapshots,
            },
        )
    }

    /// The snapshots the core publishes.
    pub(crate) fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// A fresh connection id.
    pub(crate) fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Feeds `input` and waits for the core's verdict.
    pub(crate) async fn input(&self, input: Input) -> Result<Result<(), MasterError>, CoreGone> {
        self.queue_input(input)?.await.map_err(|_| CoreGone)
    }

    /// Queues `input` now (inputs reach the core in the order they are queued) and returns
    /// where the core's verdict will arrive.
    pub(crate) fn queue_input(&self, input: Input) -> Result<Verdict, CoreGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Input { input, reply })?;
        Ok(rx)
    }

    /// Registers framework stream `conn` and subscribes it.
    pub(crate) async fn subscribe(
        &self,
        conn: ConnId,
        info: v1::FrameworkInfo,
        tx: EventTx,
    ) -> Result<Result<(), MasterError>, CoreGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Subscribe {
            conn,
            info,
            tx,
            reply,
        })?;
        rx.await.map_err(|_| CoreGone)
    }

    /// Registers agent session `conn`.
    pub(crate) fn open_agent(
        &self,
        conn: ConnId,
        tx: AgentTx,
        closed: CancellationToken,
        span: tracing::Span,
    ) -> Result<(), CoreGone> {
        self.send(Command::OpenAgent {
            span,
            conn,
            tx,
            closed,
        })
    }

    /// Reports that framework stream `conn` was dropped (callable from `Drop`).
    pub(crate) fn framework_gone(&self, conn: ConnId) {
        // If the core is gone there is nobody left to tell.
        let _ = self.send(Command::FrameworkGone { conn });
    }

    /// Reports that agent session `conn` ended.
    pub(crate) fn agent_gone(&self, conn: ConnId) {
        let _ = self.send(Command::AgentGone { conn });
    }

    /// A snapshot of the master's state that includes every change made before the call,
    /// from the published snapshots (see `mesos_operator::snapshots`).
    pub(crate) async fn snapshot(&self) -> Result<v1::StateSnapshot, CoreGone> {
        Ok(self.published().await?.state.clone())
    }

    /// The published snapshot that includes every change made before the call.
    pub(crate) async fn published(&self) -> Result<Arc<Published>, CoreGone> {
        if self.tx.is_closed() {
            return Err(CoreGone);
        }
        Ok(self.snapshots.fresh().await)
    }

    /// Runs `f` on the core task with the master and the current time, and returns its result.
    /// The core is ticked right after, so changes (a quota, a weight) take effect at once.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Master, Timestamp) -> T + Send + 'static,
    ) -> Result<T, CoreGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Run(MasterFn(Box::new(move |master, now| {
            let result = f(master, now);
            Box::new(move || {
                let _ = reply.send(result);
            })
        }))))?;
        rx.await.map_err(|_| CoreGone)
    }

    /// Reports that the registry committed batch `seq` (from the registry writer thread).
    pub(crate) fn persisted(&self, seq: u64) -> Result<(), CoreGone> {
        self.send(Command::Persisted { seq })
    }

    fn send(&self, cmd: Command) -> Result<(), CoreGone> {
        self.tx.send(cmd).map_err(|_| CoreGone)
    }
}

/// A registered agent session.
struct AgentConn {
    tx: AgentTx,
    closed: CancellationToken,
    span: tracing::Span,
}

/// The state of the core task.
struct CoreLoop {
    master: Master,
    start: Instant,
    /// The clock's reading at `start` (Unix ms): the core's time is wall-clock time, so what
    /// the registry stores stays meaningful across restarts.
    start_ms: u64,
    /// Where persist batches go (None: persistence is off and no batch is ever made).
    persist: Option<std::sync::mpsc::Sender<super::registry_writer::Batch>>,
    /// Replies waiting for a persist batch, in order: (batch, reply).
    deferred: std::collections::VecDeque<(u64, Thunk)>,
    /// The registry's status, shown in snapshots.
    registry: Option<Arc<super::registry_writer::RegistryStatus>>,
    frameworks: HashMap<ConnId, EventTx>,
    agents: HashMap<ConnId, AgentConn>,
    /// Outputs being sent (kept to reuse its allocation across dispatches).
    outputs: Vec<Output>,
    /// Publishes read snapshots.
    publisher: Publisher,
    /// Whether anything was sent since the last change was counted, and when that was.
    sent_any: bool,
    last_change: Timestamp,
}

/// Runs the core until `cancel` fires or every handle is dropped. On exit all stream senders are
/// dropped, so every framework stream and agent session ends.
pub(crate) async fn run(master: Master, inbox: Inbox, clock: Clock, cancel: CancellationToken) {
    let Inbox {
        mut commands,
        snapshots,
    } = inbox;
    let publisher = Publisher::new(snapshots.clone(), Publisher::DEFAULT_MIN_INTERVAL_MS);
    let wake = publisher.wake();
    // The operator event stream's diff task (it does its work off the core task).
    let events_stop = cancel.child_token();
    let events = tokio::spawn(super::mesos_operator::events::run(
        snapshots,
        events_stop.clone(),
    ));
    let mut core = CoreLoop {
        master,
        start: clock.start,
        start_ms: clock.start_ms,
        persist: clock.persist,
        deferred: Default::default(),
        registry: clock.registry,
        frameworks: HashMap::new(),
        agents: HashMap::new(),
        outputs: Vec::new(),
        publisher,
        sent_any: false,
        last_change: Timestamp(clock.start_ms),
    };
    let mut ticker = tokio::time::interval(clock.tick_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // A pending allocation's coalescing window may end before the next tick.
        let wake_at = core.wake_at();
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                if lease_expired(clock.lease.as_deref(), &cancel) {
                    break;
                }
                let now = core.now();
                core.command(now, cmd);
                let mut handled = 1;
                while handled < MAX_BATCH {
                    let Ok(cmd) = commands.try_recv() else { break };
                    core.command(now, cmd);
                    handled += 1;
                }
                core.tick(now);
                core.publish(now);
            }
            () = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
                let now = core.now();
                core.tick(now);
                core.publish(now);
            }
            _ = ticker.tick() => {
                if lease_expired(clock.lease.as_deref(), &cancel) {
                    break;
                }
                let now = core.now();
                core.tick(now);
                core.publish(now);
            }
            () = wake.notified() => {
                let now = core.now();
                core.publish(now);
            }
        }
    }
    events_stop.cancel();
    let _ = events.await;
    for conn in core.agents.values() {
        conn.closed.cancel();
    }
    tracing::debug!(
        frameworks = core.frameworks.len(),
        agents = core.agents.len(),
        "core task stopped; closing all streams"
    );
}

/// How the core task keeps time, and where it sends persist batches.
pub(crate) struct Clock {
    /// How often the core's timers run.
    pub tick_interval: Duration,
    /// The monotonic instant of `start_ms`.
    pub start: Instant,
    /// Wall-clock time (Unix ms) at `start`.
    pub start_ms: u64,
    /// The registry writer, if the master persists.
    pub persist: Option<std::sync::mpsc::Sender<super::registry_writer::Batch>>,
    /// The registry's status, shown in snapshots.
    pub registry: Option<Arc<super::registry_writer::RegistryStatus>>,
    /// The leader lease this master acts under (None: it leads alone, without an election).
    pub lease: Option<Arc<crate::etcd::election::LeaseClock>>,
}

/// Whether the leader lease ran out (then `cancel` is fired: the master stops at once, before
/// acting on anything more, so it never acts when another master may lead).
fn lease_expired(
    lease: Option<&crate::etcd::election::LeaseClock>,
    cancel: &CancellationToken,
) -> bool {
    match lease {
        Some(l) if !l.is_valid() => {
            tracing::error!(
                "the leader lease ran out: stopping at once (no more offers, streams closed)"
            );
            cancel.cancel();
            true
        }
        _ => false,
    }
}

impl CoreLoop {
    fn now(&self) -> Timestamp {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.start_ms.saturating_add(elapsed))
    }

    /// When the core wants a tick before its next periodic one (see `Master::next_wakeup`).
    fn wake_at(&self) -> Option<Instant> {
        let due = self.master.next_wakeup()?;
        Some(self.start + Duration::from_millis(due.0.saturating_sub(self.start_ms)))
    }

    /// Counts a change for the snapshot readers; a tick counts when it sent anything (or
    /// once a second, for what time alone changes).
    fn note_tick(&mut self, now: Timestamp) {
        if self.sent_any || now.0.saturating_sub(self.last_change.0) >= 1_000 {
            self.sent_any = false;
            self.last_change = now;
            self.publisher.changed();
        }
    }

    /// Publishes a read snapshot if one is due (see `mesos_operator::snapshots`).
    fn publish(&mut self, now: Timestamp) {
        self.note_tick(now);
        if self.publisher.due(now.0) {
            let (master, registry) = (&self.master, self.registry.as_deref());
            let start_ms = self.start_ms;
            self.publisher.publish(now.0, || Published {
                version: 0,
                state: snapshot_of(master, registry, start_ms, now),
                roles: master.role_summaries(),
                stats: master.stats(),
            });
        }
    }

    /// Sends a reply now, or once the registry holds what the core just did.
    fn reply_after_persist(&mut self, thunk: Thunk) {
        match self.master.persist_barrier() {
            0 => thunk(),
            seq => self.deferred.push_back((seq, thunk)),
        }
    }

    fn command(&mut self, now: Timestamp, cmd: Command) {
        // Counted before any reply goes out: a read after the reply sees the change.
        self.publisher.changed();
        self.last_change = now;
        match cmd {
            Command::Input { input, reply } => {
                let result = match &input {
                    // The session was already ended by the core: do not feed stale messages.
                    Input::Agent { conn, .. } if !self.agents.contains_key(conn) => {
                        Err(MasterError::NotRegistered { conn: *conn })
                    }
                    _ => self.master.handle(now, input),
                };
                self.reply_after_persist(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Command::Subscribe {
                conn,
                info,
                tx,
                reply,
            } => {
                self.frameworks.insert(conn, tx);
                let result = self.master.handle(
                    now,
                    Input::Subscribe {
                        conn,
                        info: Box::new(info),
                    },
                );
                if result.is_err() {
                    self.frameworks.remove(&conn);
                }
                self.reply_after_persist(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Command::OpenAgent {
                span,
                conn,
                tx,
                closed,
            } => {
                self.agents.insert(conn, AgentConn { tx, closed, span });
            }
            Command::FrameworkGone { conn } => {
                if self.frameworks.remove(&conn).is_some() {
                    self.feed_disconnect(now, Input::FrameworkDisconnected { conn });
                }
            }
            Command::AgentGone { conn } => {
                if let Some(agent) = self.agents.remove(&conn) {
                    agent.closed.cancel();
                    self.feed_disconnect(now, Input::AgentDisconnected { conn });
                }
            }
            Command::Run(MasterFn(f)) => {
                let thunk = f(&mut self.master, now);
                self.reply_after_persist(thunk);
            }
            Command::Persisted { seq } => {
                let _ = self.master.handle(now, Input::Persisted { seq });
                while self.deferred.front().is_some_and(|(s, _)| *s <= seq) {
                    if let Some((_, thunk)) = self.deferred.pop_front() {
                        thunk();
                    }
                }
            }
        }
    }

    fn feed_disconnect(&mut self, now: Timestamp, input: Input) {
        if let Err(err) = self.master.handle(now, input.clone()) {
            tracing::debug!(?input, %err, "core refused a disconnect");
        }
    }

    /// Runs the core's timers and dispatches everything it queued.
    fn tick(&mut self, now: Timestamp) {
        self.master.tick(now);
        self.dispatch(now);
    }

    /// Sends queued outputs until the outbox stays empty (a dead stream found while sending is
    /// fed back as a disconnect, which may queue more outputs).
    fn dispatch(&mut self, now: Timestamp) {
        let mut outputs = std::mem::take(&mut self.outputs);
        loop {
            self.master.take_outbox_into(&mut outputs);
            if outputs.is_empty() {
                break;
            }
            for output in outputs.drain(..) {
                self.output(now, output);
            }
        }
        self.outputs = outputs;
    }

    fn output(&mut self, now: Timestamp, output: Output) {
        self.sent_any = true;
        match output {
            Output::ToFramework { conn, event } => {
                let Some(tx) = self.frameworks.get(&conn) else {
                    tracing::debug!(conn, "event for a closed framework stream dropped");
                    return;
                };
                if let Some(v1::event::Event::Subscribed(sub)) = &event.event {
                    tracing::info!(conn, framework_id = %sub.framework_id, "framework stream subscribed");
                }
                if let Err(err) = tx.try_send(Ok(event)) {
                    tracing::warn!(conn, reason = %err, "framework stream full or closed; dropping it");
                    self.frameworks.remove(&conn);
                    self.feed_disconnect(now, Input::FrameworkDisconnected { conn });
                }
            }
            Output::CloseFramework { conn } => {
                self.frameworks.remove(&conn);
            }
            Output::ToAgent { conn, msg } => {
                let Some(agent) = self.agents.get(&conn) else {
                    tracing::debug!(conn, "message for a closed agent session dropped");
                    return;
                };
                if let Some(v1::master_message::Msg::Registered(reg)) = &msg.msg {
                    agent.span.record("agent_id", reg.agent_id.as_str());
                    agent.span.in_scope(|| tracing::info!("agent registered"));
                }
                if let Err(err) = agent.tx.try_send(Ok(msg)) {
                    tracing::warn!(conn, reason = %err, "agent session full or closed; dropping it");
                    if let Some(agent) = self.agents.remove(&conn) {
                        agent.closed.cancel();
                    }
                    self.feed_disconnect(now, Input::AgentDisconnected { conn });
                }
            }
            Output::CloseAgent { conn } => {
                if let Some(agent) = self.agents.remove(&conn) {
                    agent.closed.cancel();
                }
            }
            Output::Persist { seq, ops } => {
                let sent = self
                    .persist
                    .as_ref()
                    .is_some_and(|tx| tx.send((seq, ops)).is_ok());
                if !sent {
                    // No writer (persistence off, or the writer stopped at shutdown): nothing
                    // can be written, so nothing may wait for it.
                    tracing::warn!(
                        seq,
                        "persist batch with no registry writer; acknowledging it"
                    );
                    let _ = self.master.handle(now, Input::Persisted { seq });
                }
            }
        }
    }
}

/// `master`'s snapshot plus the registry's status (`start_ms`: when this process started).
fn snapshot_of(
    master: &Master,
    registry: Option<&super::registry_writer::RegistryStatus>,
    start_ms: u64,
    now: Timestamp,
) -> v1::StateSnapshot {
    let mut snap = master.snapshot(now);
    snap.uptime_ms = now.0.saturating_sub(start_ms);
    if let Some(st) = registry {
        let (in_flight, held) = master.persist_backlog();
        snap.registry = Some(v1::RegistrySummary {
            backend: st.info.backend.clone(),
            location: st.info.location.clone(),
            last_write_unix_ms: st.last_write_unix_ms().unwrap_or(0),
            error: st.error().unwrap_or_default(),
            recoveries: st.recoveries,
            batches_in_flight: in_flight,
            outputs_held: held as u64,
        });
    }
    snap
}
