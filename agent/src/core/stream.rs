//! The core's status update stream: reports are queued per task, checkpointed at the next
//! commit and sent after it (write-ahead), one in flight per task, each stamped with its task's
//! latest state when it goes out; acknowledgements send the next one or let an ended task be
//! forgotten.

use proffer_proto::v1::{StatusUpdate, StatusUpdateAck, TaskState};

use super::{AckOutcome, Core, Effect, TaskKey, Timestamp};

fn state_of(update: &StatusUpdate) -> TaskState {
    update
        .status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::Unspecified)
}

impl Core {
    /// Queues an update: the task takes its state if the transition table accepts it; the
    /// checkpoint is written at the next commit, and the update sent after it if it heads its
    /// task's queue.
    pub(super) fn report(&mut self, now: Timestamp, update: StatusUpdate) {
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
    pub(super) fn send(&mut self, u: StatusUpdate, out: &mut Vec<Effect>) {
        if self.is_clean() {
            out.push(Effect::Send(self.with_latest_state(u)));
        } else {
            self.held.push(u);
        }
    }

    pub(super) fn ack(&mut self, now: Timestamp, a: &StatusUpdateAck, out: &mut Vec<Effect>) {
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
                    self.forget(&key);
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

    /// The batch's checkpoints (durable), then its held updates.
    pub(super) fn commit(&mut self, out: &mut Vec<Effect>) {
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
        let held = std::mem::take(&mut self.held);
        out.extend(
            held.into_iter()
                .map(|u| Effect::Send(self.with_latest_state(u))),
        );
    }

    /// Stamps an update going out with its task's state now (Mesos's `latest_state`): later
    /// than the update's own while newer updates wait behind it, so the master can free an
    /// ended task's resources without waiting for the older update's acknowledgement.
    fn with_latest_state(&self, mut u: StatusUpdate) -> StatusUpdate {
        u.latest_state = self.tasks.get(&TaskKey::of(&u)).map(|t| t.state as i32);
        u
    }

    /// Drops everything known of a task.
    pub(super) fn forget(&mut self, key: &TaskKey) {
        self.tasks.remove(key);
        self.updates.remove(key);
        self.dirty.remove(key);
        self.held.retain(|u| TaskKey::of(u) != *key);
    }
}
