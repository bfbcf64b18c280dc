//! The core's task decisions: launch steps, executor events into statuses, kills, the task
//! group policy, drain and shutdown.

use proffer_proto::v1::{StatusSource, StatusUpdate, TaskState, TaskStatus};

use super::{Core, Effect, TaskKey, Timestamp};
use crate::executor::protocol::ExecutorEvent;

/// A status the core makes, before it is stamped (uuid, time, agent id).
struct Made<'a> {
    state: TaskState,
    reason: &'a str,
    message: String,
    source: StatusSource,
}

impl<'a> Made<'a> {
    fn agent(state: TaskState, reason: &'a str, message: String) -> Self {
        Made {
            state,
            reason,
            message,
            source: StatusSource::SourceAgent,
        }
    }

    fn executor(state: TaskState, reason: &'a str, message: String) -> Self {
        Made {
            state,
            reason,
            message,
            source: StatusSource::SourceExecutor,
        }
    }
}

/// The uuid of the status numbered `n`: a version 4 UUID (its version and variant bits set on
/// `n`'s bytes; the count is in the low bytes, so consecutive statuses never collide).
pub(crate) fn status_uuid(n: u128) -> Vec<u8> {
    uuid::Builder::from_random_bytes(n.to_be_bytes())
        .into_uuid()
        .as_bytes()
        .to_vec()
}

impl Core {
    /// The status `m` of `key`, stamped with the next uuid, `now` and the agent id.
    fn stamp(&mut self, now: Timestamp, key: &TaskKey, m: Made<'_>) -> TaskStatus {
        self.made += 1;
        let n = self.config.uuid_seed.wrapping_add(u128::from(self.made));
        let uuid = status_uuid(n);
        TaskStatus {
            task_id: key.task_id.clone(),
            state: m.state as i32,
            message: m.message,
            reason: m.reason.to_string(),
            source: m.source as i32,
            agent_id: self.config.agent_id.clone().unwrap_or_default(),
            uuid,
            timestamp_ms: now.0,
            exit_code: None,
            healthy: None,
            ready: None,
        }
    }

    fn report_status(&mut self, now: Timestamp, key: &TaskKey, status: TaskStatus) {
        tracing::info!(agent_id = self.agent_id().unwrap_or(""), framework_id = %key.framework_id,
            task_id = %key.task_id,
            state = TaskState::try_from(status.state).map_or("?", |s| s.as_str_name()),
            reason = %status.reason, message = %status.message, "status update");
        let update = StatusUpdate {
            framework_id: key.framework_id.clone(),
            latest_state: None,
            status: Some(status),
        };
        self.report(now, update);
    }

    fn make(&mut self, now: Timestamp, key: &TaskKey, m: Made<'_>) {
        let s = self.stamp(now, key, m);
        self.report_status(now, key, s);
    }

    /// Starts tracking a task: `extra` is its own kill grace (ms) and what it holds.
    pub(super) fn track(
        &mut self,
        key: TaskKey,
        state: TaskState,
        group: Option<String>,
        live: bool,
        extra: (u64, super::Need),
    ) {
        let (kill_grace_ms, need) = extra;
        let record = super::TaskRecord {
            state,
            group,
            live,
            kill_grace_ms,
            need,
        };
        self.tasks.insert(key, record);
    }

    /// ShutdownFramework: every task of the framework is killed (its own grace period).
    pub(super) fn shutdown_framework(&mut self, now: Timestamp, fw: &str, out: &mut Vec<Effect>) {
        let keys: Vec<TaskKey> = self
            .tasks
            .keys()
            .filter(|k| k.framework_id == fw)
            .cloned()
            .collect();
        for k in keys {
            self.kill(now, &k, 0, out);
        }
    }

    /// A task the shell refused ends with the refusal.
    pub(super) fn refuse(&mut self, now: Timestamp, key: &TaskKey, r: super::Refusal) {
        let m = Made::agent(r.state, r.reason, r.message);
        self.make(now, key, m);
    }

    /// The files are written: start the task unless it was killed meanwhile.
    pub(super) fn prepared(
        &mut self,
        now: Timestamp,
        key: TaskKey,
        result: Result<(), String>,
        out: &mut Vec<Effect>,
    ) {
        // A task killed while its files were being written is not started.
        if self.state(&key) != Some(TaskState::TaskStaging) {
            return;
        }
        match result {
            Ok(()) => out.push(Effect::Start(key)),
            Err(m) => {
                let f = Made::agent(TaskState::TaskFailed, "REASON_CONTAINER_LAUNCH_FAILED", m);
                self.make(now, &key, f);
            }
        }
    }

    /// The executor has the task (STARTING is written ahead of sending), or failed to start.
    pub(super) fn started(&mut self, now: Timestamp, key: &TaskKey, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if let Some(t) = self.tasks.get_mut(key) {
                    t.live = true;
                }
                let m = Made::agent(TaskState::TaskStarting, "", String::new());
                self.make(now, key, m);
            }
            Err(e) => {
                let m = format!("failed to start the executor: {e}");
                let f = Made::agent(TaskState::TaskFailed, "REASON_EXECUTOR_TERMINATED", m);
                self.make(now, key, f);
            }
        }
    }

    /// An executor's event becomes a status update; a task of a group that failed or was
    /// killed takes the rest of its group down.
    pub(super) fn executor_event(
        &mut self,
        now: Timestamp,
        key: &TaskKey,
        event: ExecutorEvent,
        out: &mut Vec<Effect>,
    ) {
        if !self.tasks.contains_key(key) {
            return;
        }
        let s = match event {
            ExecutorEvent::Started { .. } => {
                let m = Made::executor(TaskState::TaskRunning, "", String::new());
                self.stamp(now, key, m)
            }
            ExecutorEvent::Health { healthy, message } => {
                let reason = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED";
                let m = Made::executor(TaskState::TaskRunning, reason, message);
                let mut s = self.stamp(now, key, m);
                s.healthy = Some(healthy);
                s
            }
            ExecutorEvent::Ready { message } => {
                // `ready` is the field; reason and "ready: " message stay for older readers.
                let reason = "REASON_TASK_CHECK_STATUS_UPDATED";
                let m = Made::executor(TaskState::TaskRunning, reason, format!("ready: {message}"));
                let mut s = self.stamp(now, key, m);
                s.ready = Some(true);
                s
            }
            ExecutorEvent::Exited {
                state,
                reason,
                message,
                exit_code,
                healthy,
            } => {
                let state = TaskState::from_str_name(&state).unwrap_or(TaskState::TaskFailed);
                if let Some(t) = self.tasks.get_mut(key) {
                    t.live = false;
                }
                let mut s = self.stamp(now, key, Made::executor(state, &reason, message));
                s.exit_code = exit_code;
                s.healthy = healthy;
                s
            }
        };
        let state = TaskState::try_from(s.state).unwrap_or(TaskState::TaskFailed);
        let failed = state.is_terminal() && state != TaskState::TaskFinished;
        self.report_status(now, key, s);
        if failed {
            self.fail_group(now, key, out);
        }
    }

    /// The executor is gone: a task that had not ended is killed at once and fails.
    pub(super) fn executor_gone(
        &mut self,
        now: Timestamp,
        key: &TaskKey,
        message: &str,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        t.live = false;
        if t.state.is_terminal() {
            return;
        }
        // The task must not outlive its executor.
        out.push(Effect::KillNow(key.clone()));
        let m = format!("the executor stopped supervising the task before it ended: {message}");
        let f = Made::agent(TaskState::TaskFailed, "REASON_EXECUTOR_TERMINATED", m);
        self.make(now, key, f);
        self.fail_group(now, key, out);
    }

    /// The master's kill: the executor kills a live task; a task still being prepared is
    /// never started; an unknown task is reported lost.
    pub(super) fn kill(
        &mut self,
        now: Timestamp,
        key: &TaskKey,
        grace_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        match self.tasks.get(key) {
            Some(t) if t.live => {
                let grace = self.kill_grace(grace_ms, t.kill_grace_ms);
                tracing::info!(agent_id = self.agent_id().unwrap_or(""),
                    framework_id = %key.framework_id, task_id = %key.task_id,
                    grace_ms = grace.as_millis() as u64, "killing task");
                out.push(Effect::Signal {
                    key: key.clone(),
                    grace,
                });
            }
            Some(t) if t.state == TaskState::TaskStaging => {
                // Its files are being written: it is never started.
                let m = "task killed before it started".to_string();
                let k = Made::agent(TaskState::TaskKilled, "REASON_TASK_KILLED", m);
                self.make(now, key, k);
            }
            Some(_) => tracing::debug!(framework_id = %key.framework_id, task_id = %key.task_id,
                "kill of a task that already ended ignored"),
            None => {
                let m = "task is unknown to the agent".to_string();
                let l = Made::agent(TaskState::TaskLost, "REASON_TASK_UNKNOWN", m);
                self.make(now, key, l);
            }
        }
    }

    /// Every live task is killed with its grace period.
    pub(super) fn kill_all(&mut self, out: &mut Vec<Effect>) {
        for (key, t) in &self.tasks {
            if t.live {
                out.push(Effect::Signal {
                    key: key.clone(),
                    grace: self.kill_grace(0, t.kill_grace_ms),
                });
            }
        }
    }

    /// ShutdownAgent: every task killed at once and forgotten (no grace, and no kill file to
    /// wait for: its run directory goes away with it), with every pending update and the id.
    pub(super) fn shutdown_agent(&mut self, out: &mut Vec<Effect>) {
        for (key, t) in std::mem::take(&mut self.tasks) {
            if t.live {
                out.push(Effect::Signal {
                    key: key.clone(),
                    grace: std::time::Duration::ZERO,
                });
            }
            out.push(Effect::KillNow(key.clone()));
            out.push(Effect::Forget(key));
        }
        self.updates.clear();
        self.dirty.clear();
        self.held.clear();
        self.config.agent_id = None;
    }

    /// A task of a group failed or was killed: kill the rest of its group (Mesos's default
    /// group policy).
    fn fail_group(&mut self, now: Timestamp, key: &TaskKey, out: &mut Vec<Effect>) {
        let Some(group) = self.tasks.get(key).and_then(|t| t.group.clone()) else {
            return;
        };
        let others: Vec<TaskKey> = self
            .tasks
            .iter()
            .filter(|(k, t)| *k != key && t.group.as_ref() == Some(&group) && t.live)
            .map(|(k, _)| k.clone())
            .collect();
        for k in others {
            tracing::info!(task_id = %k.task_id, group = %group, "killing the rest of a task group");
            self.kill(now, &k, 0, out);
        }
    }
}
