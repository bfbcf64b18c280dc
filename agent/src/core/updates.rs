//! The status update manager: reliable, ordered delivery of task status updates.
//!
//! Pure logic (no clock, no I/O): every call gets `now` (a [`Timestamp`] on the shell's clock). Per task there is a FIFO of updates;
//! only the head is in flight. The head is re-sent after `initial`, then after twice that, and
//! so on up to `max`, until a [`StatusUpdateAck`](proffer_proto::v1::StatusUpdateAck) with the
//! same framework id, task id and uuid arrives; then the next update becomes the head and is
//! sent. After a reconnect all heads are sent again at once ([`StatusUpdateManager::resend_all`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use proffer_proto::v1::{StatusUpdate, TaskState};

use super::Timestamp;

/// Identifies a task on this agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    /// The framework owning the task.
    pub framework_id: String,
    /// The task id (unique within its framework).
    pub task_id: String,
}

impl TaskKey {
    /// Builds a key.
    pub fn new(framework_id: impl Into<String>, task_id: impl Into<String>) -> Self {
        TaskKey {
            framework_id: framework_id.into(),
            task_id: task_id.into(),
        }
    }

    /// The key an update belongs to.
    pub fn of(update: &StatusUpdate) -> Self {
        let task_id = update
            .status
            .as_ref()
            .map(|s| s.task_id.clone())
            .unwrap_or_default();
        TaskKey::new(update.framework_id.clone(), task_id)
    }
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// No such task, or the uuid is not the in-flight update's: nothing changed.
    Ignored,
    /// The head was acknowledged and removed.
    Acked {
        /// The acknowledged update was terminal: the task may now be forgotten.
        terminal: bool,
        /// The next update of the task, now in flight: send it.
        next: Option<Box<StatusUpdate>>,
    },
}

#[derive(Debug)]
struct Queue {
    updates: VecDeque<StatusUpdate>,
    /// When the head is to be sent again.
    retry_at: Timestamp,
    /// The interval that will follow the next resend.
    interval: Duration,
}

/// Keeps every unacknowledged update and says when to (re)send which.
#[derive(Debug)]
pub struct StatusUpdateManager {
    initial: Duration,
    max: Duration,
    queues: BTreeMap<TaskKey, Queue>,
}

fn uuid_of(update: &StatusUpdate) -> &[u8] {
    update
        .status
        .as_ref()
        .map(|s| s.uuid.as_slice())
        .unwrap_or(&[])
}

fn is_terminal(update: &StatusUpdate) -> bool {
    update
        .status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .is_some_and(TaskState::is_terminal)
}

impl StatusUpdateManager {
    /// A manager retrying after `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        StatusUpdateManager {
            initial,
            max: max.max(initial),
            queues: BTreeMap::new(),
        }
    }

    /// Queues an update. Returns it when it is now the task's head and must be sent at once.
    pub fn push(&mut self, now: Timestamp, update: StatusUpdate) -> Option<StatusUpdate> {
        let key = TaskKey::of(&update);
        match self.queues.get_mut(&key) {
            Some(q) => {
                q.updates.push_back(update);
                None
            }
            None => {
                let mut updates = VecDeque::new();
                updates.push_back(update.clone());
                self.queues.insert(
                    key,
                    Queue {
                        updates,
                        retry_at: now + self.initial,
                        interval: self.next_interval(self.initial),
                    },
                );
                Some(update)
            }
        }
    }

    /// Handles an acknowledgement; only the in-flight update of the task can be acknowledged.
    pub fn ack(
        &mut self,
        now: Timestamp,
        framework_id: &str,
        task_id: &str,
        uuid: &[u8],
    ) -> AckOutcome {
        let key = TaskKey::new(framework_id, task_id);
        let Some(q) = self.queues.get_mut(&key) else {
            return AckOutcome::Ignored;
        };
        let matches = q.updates.front().is_some_and(|h| uuid_of(h) == uuid);
        if !matches {
            return AckOutcome::Ignored;
        }
        let terminal = q.updates.pop_front().as_ref().is_some_and(is_terminal);
        let next = q.updates.front().cloned().map(Box::new);
        if next.is_some() {
            q.retry_at = now + self.initial;
            q.interval = (self.initial * 2).min(self.max);
        } else {
            self.queues.remove(&key);
        }
        AckOutcome::Acked { terminal, next }
    }

    /// The heads whose retry time has come; each is rescheduled with a doubled interval.
    pub fn due(&mut self, now: Timestamp) -> Vec<StatusUpdate> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            if q.retry_at <= now
                && let Some(head) = q.updates.front()
            {
                out.push(head.clone());
                q.retry_at = now + q.interval;
                q.interval = (q.interval * 2).min(self.max);
            }
        }
        out
    }

    /// Every head, to send right after (re)registering; retry timers restart at `initial`.
    pub fn resend_all(&mut self, now: Timestamp) -> Vec<StatusUpdate> {
        let initial = self.initial;
        let second = self.next_interval(initial);
        self.queues
            .values_mut()
            .filter_map(|q| {
                q.retry_at = now + initial;
                q.interval = second;
                q.updates.front().cloned()
            })
            .collect()
    }

    /// The earliest retry time, if any update is pending.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.queues.values().map(|q| q.retry_at).min()
    }

    /// How many updates of a task are not yet acknowledged.
    pub fn pending(&self, key: &TaskKey) -> usize {
        self.queues.get(key).map_or(0, |q| q.updates.len())
    }

    /// The unacknowledged updates of a task, oldest (in flight) first.
    pub fn queued(&self, key: &TaskKey) -> Vec<StatusUpdate> {
        self.queues
            .get(key)
            .map(|q| q.updates.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a task's pending updates.
    pub fn remove(&mut self, key: &TaskKey) {
        self.queues.remove(key);
    }

    /// True when nothing awaits acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Drops every pending update (the agent was removed and starts afresh).
    pub fn clear(&mut self) {
        self.queues.clear();
    }

    fn next_interval(&self, d: Duration) -> Duration {
        (d * 2).min(self.max)
    }
}
