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

pub mod updates;

pub use updates::{AckOutcome, StatusUpdateManager, TaskKey};

/// A point on the shell's clock, in milliseconds (the shell counts from its start; tests from
/// zero).
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
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    /// First retry of an unacknowledged update.
    pub retry_initial: Duration,
    /// Longest interval between retries (the interval doubles up to it).
    pub retry_max: Duration,
}

/// Something that happened, given to [`Core::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The shell learnt of a task (a launch accepted for preparation, or recovered from its
    /// checkpoint): the core tracks its state from now on.
    Track {
        /// The task.
        key: TaskKey,
        /// Its state (STAGING for a new launch; the checkpointed one on recovery).
        state: TaskState,
        /// The task group it belongs to, if any.
        group: Option<String>,
        /// Its executor is running (recovered tasks that are still live).
        live: bool,
    },
    /// The agent reports a task status (built by the shell: uuid, time, agent id). The update is
    /// queued, checkpointed at the next commit and sent after that when it heads its task's
    /// queue. A terminal state, or any other state the table accepts, becomes the task's state.
    Report(StatusUpdate),
    /// A pending update read back from a task's checkpoint on recovery (already durable).
    Recovered(StatusUpdate),
    /// The task's executor was started (`true`) or is gone (`false`).
    Executor {
        /// The task.
        key: TaskKey,
        /// Whether an executor now runs it.
        live: bool,
    },
    /// The master accepted the registration (AgentRegistered).
    Registered,
    /// The session to the master is gone (or a new one is being opened).
    Disconnected,
    /// An acknowledgement from the master.
    Ack(StatusUpdateAck),
    /// The timer the shell set from [`Core::next_deadline`] fired.
    Tick,
    /// The end of a batch of inputs: write the batch's checkpoints, then send its updates.
    Commit,
    /// The task is forgotten by the shell's own decision (the agent was shut down by the
    /// master): its pending updates are dropped.
    Forget(TaskKey),
    /// Everything is forgotten (ShutdownAgent: the agent registers afresh).
    ForgetAll,
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
    /// The task is done with (its terminal update acknowledged, its executor gone): remove its
    /// run directory; the core has forgotten it.
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
}

/// The agent's pure state machine (see the module documentation).
#[derive(Debug)]
pub struct Core {
    updates: StatusUpdateManager,
    tasks: BTreeMap<TaskKey, TaskRecord>,
    registered: bool,
    /// Tasks whose checkpoint is written at the next commit.
    dirty: BTreeSet<TaskKey>,
    /// Updates sent after the next commit, in order.
    held: Vec<StatusUpdate>,
}

fn state_of(update: &StatusUpdate) -> TaskState {
    update
        .status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::Unspecified)
}

impl Core {
    /// A core with nothing known.
    pub fn new(config: CoreConfig) -> Self {
        Core {
            updates: StatusUpdateManager::new(config.retry_initial, config.retry_max),
            tasks: BTreeMap::new(),
            registered: false,
            dirty: BTreeSet::new(),
            held: Vec::new(),
        }
    }

    /// Handles one input; returns what the shell is to do, in order.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Track {
                key,
                state,
                group,
                live,
            } => {
                self.tasks.insert(key, TaskRecord { state, group, live });
            }
            Input::Report(update) => self.report(now, update),
            Input::Recovered(update) => {
                let _ = self.updates.push(now, update);
            }
            Input::Executor { key, live } => {
                if let Some(t) = self.tasks.get_mut(&key) {
                    t.live = live;
                }
            }
            Input::Registered => {
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
            Input::Forget(key) => {
                self.tasks.remove(&key);
                self.updates.remove(&key);
                self.dirty.remove(&key);
                self.held.retain(|u| TaskKey::of(u) != key);
            }
            Input::ForgetAll => {
                self.tasks.clear();
                self.updates.clear();
                self.dirty.clear();
                self.held.clear();
            }
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

    fn report(&mut self, now: Timestamp, update: StatusUpdate) {
        let key = TaskKey::of(&update);
        let to = state_of(&update);
        if let Some(t) = self.tasks.get_mut(&key) {
            let verdict = t.state.transition(to);
            if !verdict.is_move() {
                tracing::debug!(framework_id = %key.framework_id, task_id = %key.task_id,
                    from = t.state.name(), to = to.name(), ?verdict, "task state kept");
            }
            t.state = t.state.after_report(to);
        }
        let head = self.updates.push(now, update);
        // Write-ahead: the update is on disk before anyone can see it.
        self.dirty.insert(key);
        if let Some(u) = head
            && self.registered
        {
            self.held.push(u);
        }
    }

    /// Sends at once, or after the pending commit if there is one (an update never overtakes
    /// the checkpoint of an update reported before it).
    fn send(&mut self, u: StatusUpdate, out: &mut Vec<Effect>) {
        if self.is_clean() {
            out.push(Effect::Send(u));
        } else {
            self.held.push(u);
        }
    }

    fn ack(&mut self, now: Timestamp, a: &StatusUpdateAck, out: &mut Vec<Effect>) {
        match self.updates.ack(now, &a.framework_id, &a.task_id, &a.uuid) {
            AckOutcome::Ignored => {
                tracing::debug!(framework_id = %a.framework_id, task_id = %a.task_id,
                    "acknowledgement for no in-flight update ignored");
            }
            AckOutcome::Acked { terminal, next } => {
                let key = TaskKey::new(a.framework_id.clone(), a.task_id.clone());
                let done = terminal && self.tasks.get(&key).is_some_and(|t| !t.live);
                if done {
                    tracing::debug!(framework_id = %key.framework_id, task_id = %key.task_id,
                        "terminal update acknowledged; task forgotten");
                    self.tasks.remove(&key);
                    self.updates.remove(&key);
                    self.dirty.remove(&key);
                    out.push(Effect::Forget(key));
                } else if let Some(t) = self.tasks.get(&key) {
                    out.push(Effect::Checkpoint {
                        state: t.state,
                        updates: self.updates.queued(&key),
                        key,
                        durable: false,
                    });
                }
                if let Some(u) = next
                    && self.registered
                {
                    self.send(*u, out);
                }
            }
        }
    }

    fn commit(&mut self, out: &mut Vec<Effect>) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(t) = self.tasks.get(&key) {
                out.push(Effect::Checkpoint {
                    state: t.state,
                    updates: self.updates.queued(&key),
                    key,
                    durable: true,
                });
            }
        }
        out.extend(std::mem::take(&mut self.held).into_iter().map(Effect::Send));
    }
}

#[cfg(test)]
mod tests;
