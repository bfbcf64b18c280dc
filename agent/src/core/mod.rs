//! The agent's pure core: a state machine that takes inputs with a timestamp and returns
//! effects, as the master's core does. No clock, no I/O, no randomness: the tokio shell
//! (`agent.rs` and `agent/*`) carries the effects out and feeds their results back as inputs,
//! and the tests in `core/tests/` drive it on virtual time.
//!
//! What is in the core (see `docs/agent-core.md`):
//! - the status update stream ([`updates`]): per-task FIFO, one update in flight per task,
//!   retries with backoff until acknowledged, re-sending every head after (re)registering;
//! - write-ahead ordering (group commit): an update is never sent before the checkpoint that
//!   holds it is durable, and an update never overtakes the checkpoint of an earlier one;
//! - what an acknowledgement does: the next update goes out; a task whose terminal update is
//!   acknowledged and whose executor is gone is forgotten;
//! - the task state machine: every state the agent gives a task goes through the shared
//!   transition table ([`proffer_proto::task_state`]); an executor's report after the task's
//!   end changes nothing;
//! - kill decisions (signal the executor, end a task that never started, report an unknown
//!   task lost) and the task-group policy (one task of a group fails: the rest are killed).
//!
//! What is still in the shell: checking a task before it is accepted (ids, draining, command,
//! checks, isolation, user, resources left), building its executor spec and cgroup settings,
//! writing its files, the executors themselves, the session to the master, recovery's reading
//! of checkpoints, the HTTP view and garbage collection.
//!
//! # Contract with the shell
//! [`Core::handle`] returns effects in order. The shell carries them out in that order, with
//! one rule for checkpoints: every [`Effect::Checkpoint`] with `durable: true` before an
//! [`Effect::Send`] must be durable before that update is sent (consecutive checkpoints may be
//! written concurrently: that is the group commit). The shell sends [`Input::Commit`] at the end
//! of each batch of inputs; the effects it returns are the batch's checkpoints, then its
//! updates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proffer_proto::v1::{StatusUpdate, StatusUpdateAck, TaskState};

use crate::executor::protocol::ExecutorEvent;

mod admit;
mod stream;
pub(crate) mod tasks;
pub mod updates;

pub use admit::{Host, Need, Refusal};
pub use updates::{AckOutcome, StatusUpdateManager, TaskKey};

/// A point in time in milliseconds: the wall clock (since the Unix epoch) in the agent, from
/// zero in tests. It stamps the statuses the core makes and times the retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The start of the clock.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The time `d` after the start of the clock.
    pub fn after(d: Duration) -> Self {
        Timestamp(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The time since the start of the clock.
    pub fn since_start(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl std::ops::Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// The core's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// First retry of an unacknowledged update.
    pub retry_initial: Duration,
    /// Longest interval between retries (the interval doubles up to it).
    pub retry_max: Duration,
    /// Kill grace period of a task that names none.
    pub default_kill_grace: Duration,
    /// The agent's id, if it has one (from its checkpoint).
    pub agent_id: Option<String>,
    /// Seed of the status uuids (random in the agent, fixed in tests); every status gets the
    /// next one.
    pub uuid_seed: u128,
}

/// Something that happened, given to [`Core::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A task was accepted (checked by the shell) and its files are being prepared: it is
    /// STAGING until [`Input::Prepared`].
    Launch {
        /// The task.
        key: TaskKey,
        /// The task group it belongs to, if any.
        group: Option<String>,
        /// The task's own kill grace period (0: the agent's default).
        kill_grace_ms: u64,
        /// The cpus and memory it holds while it lives.
        need: Need,
    },
    /// A task recovered from its checkpoint.
    Track {
        /// The task.
        key: TaskKey,
        /// Its checkpointed state.
        state: TaskState,
        /// The task group it belongs to, if any.
        group: Option<String>,
        /// Its executor is (re-)attached.
        live: bool,
        /// The task's own kill grace period (0: the agent's default).
        kill_grace_ms: u64,
        /// The cpus and memory it holds while it lives.
        need: Need,
    },
    /// The task's files were written (`Ok`) or could not be (the reason).
    Prepared {
        /// The task.
        key: TaskKey,
        /// What the write did.
        result: Result<(), String>,
    },
    /// The shell tried to hand the task to its executor ([`Effect::Start`]).
    Started {
        /// The task.
        key: TaskKey,
        /// `Ok` once the executor has it, else why not.
        result: Result<(), String>,
    },
    /// An event from the task's executor (its log).
    Executor {
        /// The task.
        key: TaskKey,
        /// What the executor said.
        event: ExecutorEvent,
    },
    /// The task's executor is gone (it may have left no end for the task).
    ExecutorGone {
        /// The task.
        key: TaskKey,
        /// What the shell saw.
        message: String,
    },
    /// The master asks to kill a task (`grace_ms` 0: the task's own grace period).
    Kill {
        /// The task.
        key: TaskKey,
        /// The grace period asked for.
        grace_ms: u64,
    },
    /// The master shuts a framework down on this agent: every task of it is killed.
    ShutdownFramework(String),
    /// Drain: no new tasks; every live task is killed with its grace period.
    Drain,
    /// The end of a drain: new tasks are accepted again.
    Reactivate,
    /// Every live task is killed with its grace period (the agent is stopping).
    KillAll,
    /// The master shut this agent down: every task is killed at once and forgotten, with its
    /// pending updates and the agent id; the agent registers afresh.
    ShutdownAgent,
    /// The shell refused a task (admission, its user, its launch spec): the core reports it
    /// ended with the refusal's state, reason and message.
    Refuse {
        /// The task.
        key: TaskKey,
        /// Why.
        refusal: Refusal,
    },
    /// A status built outside the core (tests, tools). The update is queued, checkpointed at
    /// the next commit and sent after that when it heads its task's queue; a state the table
    /// accepts becomes the task's state. The core's own statuses go the same way.
    Report(StatusUpdate),
    /// A pending update read back from a task's checkpoint on recovery (already durable).
    Recovered(StatusUpdate),
    /// The master accepted the registration (AgentRegistered) under this id.
    Registered {
        /// The agent's id.
        agent_id: String,
    },
    /// The session to the master is gone (or a new one is being opened).
    Disconnected,
    /// An acknowledgement from the master.
    Ack(StatusUpdateAck),
    /// The timer the shell set from [`Core::next_deadline`] fired.
    Tick,
    /// The end of a batch of inputs: write the batch's checkpoints, then send its updates.
    Commit,
}

/// Something for the shell to do, returned by [`Core::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write the task's checkpoint: its state and these unacknowledged updates (oldest first).
    /// `durable`: fsync'ed before any later [`Effect::Send`] (see the module's contract).
    Checkpoint {
        /// The task.
        key: TaskKey,
        /// Its state now.
        state: TaskState,
        /// Its unacknowledged updates.
        updates: Vec<StatusUpdate>,
        /// Must be durable before the next send.
        durable: bool,
    },
    /// Send this status update to the master.
    Send(StatusUpdate),
    /// Hand the task (its files are written) to its executor; answer with [`Input::Started`].
    Start(TaskKey),
    /// Ask the task's executor to kill it: SIGTERM, SIGKILL after `grace`.
    Signal {
        /// The task.
        key: TaskKey,
        /// Its grace period.
        grace: Duration,
    },
    /// Kill the task's process group and cgroup at once (its executor is gone or it is being
    /// forgotten).
    KillNow(TaskKey),
    /// The task is done with (its terminal update acknowledged and its executor gone, or the
    /// agent was shut down): remove its run directory; the core has forgotten it.
    Forget(TaskKey),
}

/// What the core knows of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Its state, as the transition table allowed it.
    pub state: TaskState,
    /// Its task group, if launched in one.
    pub group: Option<String>,
    /// Its executor runs.
    pub live: bool,
    /// Its own kill grace period in ms (0: the agent's default).
    pub kill_grace_ms: u64,
    /// The cpus and memory it holds while it lives.
    pub need: Need,
}

/// The agent's pure state machine (see the module documentation).
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    updates: StatusUpdateManager,
    tasks: BTreeMap<TaskKey, TaskRecord>,
    registered: bool,
    draining: bool,
    /// Statuses made so far (the uuid counter).
    made: u64,
    /// Tasks whose checkpoint is written at the next commit.
    dirty: BTreeSet<TaskKey>,
    /// Updates sent after the next commit, in order.
    held: Vec<StatusUpdate>,
}

impl Core {
    /// A core with no task.
    pub fn new(config: CoreConfig) -> Self {
        Core {
            updates: StatusUpdateManager::new(config.retry_initial, config.retry_max),
            config,
            tasks: BTreeMap::new(),
            registered: false,
            draining: false,
            made: 0,
            dirty: BTreeSet::new(),
            held: Vec::new(),
        }
    }

    /// Handles one input; returns what the shell is to do, in order.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Launch {
                key,
                group,
                kill_grace_ms,
                need,
            } => self.track(
                key,
                TaskState::TaskStaging,
                group,
                false,
                (kill_grace_ms, need),
            ),
            Input::Track {
                key,
                state,
                group,
                live,
                kill_grace_ms,
                need,
            } => self.track(key, state, group, live, (kill_grace_ms, need)),
            Input::Prepared { key, result } => self.prepared(now, key, result, &mut out),
            Input::Started { key, result } => self.started(now, &key, result),
            Input::Executor { key, event } => self.executor_event(now, &key, event, &mut out),
            Input::ExecutorGone { key, message } => {
                self.executor_gone(now, &key, &message, &mut out);
            }
            Input::Kill { key, grace_ms } => self.kill(now, &key, grace_ms, &mut out),
            Input::ShutdownFramework(fw) => self.shutdown_framework(now, &fw, &mut out),
            Input::Drain => {
                self.draining = true;
                self.kill_all(&mut out);
            }
            Input::Reactivate => self.draining = false,
            Input::KillAll => self.kill_all(&mut out),
            Input::ShutdownAgent => self.shutdown_agent(&mut out),
            Input::Refuse { key, refusal } => self.refuse(now, &key, refusal),
            Input::Report(update) => self.report(now, update),
            Input::Recovered(update) => {
                let _ = self.updates.push(now, update);
            }
            Input::Registered { agent_id } => {
                self.config.agent_id = Some(agent_id);
                self.registered = true;
                for u in self.updates.resend_all(now) {
                    self.send(u, &mut out);
                }
            }
            Input::Disconnected => self.registered = false,
            Input::Ack(a) => self.ack(now, &a, &mut out),
            Input::Tick => {
                if self.registered {
                    for u in self.updates.due(now) {
                        tracing::debug!("re-sending an unacknowledged status update");
                        self.send(u, &mut out);
                    }
                }
            }
            Input::Commit => self.commit(&mut out),
        }
        out
    }

    /// When [`Input::Tick`] is next due: the earliest retry, while registered.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.registered {
            self.updates.next_deadline()
        } else {
            None
        }
    }

    /// True while registered with a master.
    pub fn registered(&self) -> bool {
        self.registered
    }

    /// True while draining (no new tasks).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// The agent's id, once it has one.
    pub fn agent_id(&self) -> Option<&str> {
        self.config.agent_id.as_deref()
    }

    /// What the core knows of a task.
    pub fn task(&self, key: &TaskKey) -> Option<&TaskRecord> {
        self.tasks.get(key)
    }

    /// Every task the core knows.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskKey, &TaskRecord)> {
        self.tasks.iter()
    }

    /// The task's state, if known.
    pub fn state(&self, key: &TaskKey) -> Option<TaskState> {
        self.tasks.get(key).map(|t| t.state)
    }

    /// The kill grace period of a task: the one asked for, else the task's own, else the
    /// agent's default.
    pub fn kill_grace(&self, requested_ms: u64, task_ms: u64) -> Duration {
        if requested_ms > 0 {
            Duration::from_millis(requested_ms)
        } else if task_ms > 0 {
            Duration::from_millis(task_ms)
        } else {
            self.config.default_kill_grace
        }
    }

    /// Nothing waits for a commit.
    pub fn is_clean(&self) -> bool {
        self.dirty.is_empty() && self.held.is_empty()
    }

    /// The unacknowledged updates of a task, oldest first.
    pub fn queued(&self, key: &TaskKey) -> Vec<StatusUpdate> {
        self.updates.queued(key)
    }

    /// True when some update awaits acknowledgement.
    pub fn has_pending_updates(&self) -> bool {
        !self.updates.is_empty()
    }
}

#[cfg(test)]
mod tests;
