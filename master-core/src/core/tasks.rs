//! Task bookkeeping shared by agent and framework handlers: applying status updates,
//! recovering resources, and retiring terminal tasks.

use proffer_proto::task_state::Transition;
use proffer_proto::v1;
use proffer_proto::v1::TaskState;

use super::{Master, Timestamp};

/// A status update made by the master itself (no uuid: nothing to acknowledge).
pub(crate) fn master_status(
    task_id: &str,
    agent_id: &str,
    state: TaskState,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task_id.to_string(),
        state: state as i32,
        message: message.to_string(),
        reason: reason.to_string(),
        source: v1::StatusSource::SourceMaster as i32,
        agent_id: agent_id.to_string(),
        uuid: Vec::new(),
        timestamp_ms: now.0,
        exit_code: None,
        healthy: None,
        ready: None,
    }
}

impl Master {
    /// Records `status` for a task: updates its state, recovers its resources when it becomes
    /// terminal, and retires it when nothing more needs acknowledging. Returns false if the task
    /// is unknown.
    pub(crate) fn apply_status(&mut self, framework_id: &str, status: &v1::TaskStatus) -> bool {
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::Unspecified);
        let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(&status.task_id))
        else {
            return false;
        };
        // The shared transition table: a terminal task never leaves its terminal state.
        if task.state.transition(state).accepted() {
            task.forward(state, status.clone());
            if state == TaskState::TaskRunning && task.started_ms == 0 {
                task.started_ms = status.timestamp_ms.max(1);
            }
        }
        // Only a task that just ended gives its resources back.
        let ended = task.state;
        self.recover_ended(framework_id, &status.task_id, ended);
        // Updates without a uuid need no acknowledgement: a terminal one retires the task now.
        if status.uuid.is_empty() && state.is_terminal() {
            self.retire_task(framework_id, &status.task_id);
        }
        true
    }

    /// Takes in the task's latest state on its agent (an agent update's `latest_state`, which
    /// may be later than the update itself while older updates wait for acknowledgements): a
    /// terminal one gives the task's resources back now, as Mesos's master does. Operators see
    /// it as the task's state (`TaskSummary.state`, as Mesos's `Task.state`); the task's
    /// forwarded state and status stay those of the updates forwarded to its framework
    /// (`status_update_state`), so kills, acknowledgements, reconciliation and the loss of its
    /// agent treat it as the framework sees it until its end is forwarded.
    pub(crate) fn apply_latest_state(
        &mut self,
        framework_id: &str,
        task_id: &str,
        latest: TaskState,
    ) {
        if let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(task_id))
        {
            // Only a state later than the forwarded one (the shared transition table: never
            // the same, an earlier one, or anything over an end the framework was told).
            let later = task.state.transition(latest) == Transition::Advance;
            task.latest_state = later.then_some(latest);
        }
        self.recover_ended(framework_id, task_id, latest);
    }

    /// Gives a task's resources back to the allocator once, when `state` (its state, or its
    /// latest state on the agent) is terminal; counts the end under that state's name.
    fn recover_ended(&mut self, framework_id: &str, task_id: &str, state: TaskState) {
        if !state.is_terminal() {
            return;
        }
        let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(task_id))
            .filter(|t| !t.resources_recovered)
        else {
            return;
        };
        task.resources_recovered = true;
        let (agent_id, resources) = (task.agent_id.clone(), task.resources.clone());
        *self
            .counters
            .tasks_terminal
            .entry(state.name())
            .or_default() += 1;
        self.allocator
            .recover(framework_id, &agent_id, &resources, None);
        self.allocation_pending = true;
        if let Some(a) = self.agents.get_mut(&agent_id) {
            a.tasks
                .remove(&(framework_id.to_string(), task_id.to_string()));
        }
    }

    /// Moves a terminal task to the completed list.
    pub(crate) fn retire_task(&mut self, framework_id: &str, task_id: &str) {
        let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.swap_remove(task_id))
        else {
            return;
        };
        if !task.resources_recovered {
            self.allocator
                .recover(framework_id, &task.agent_id, &task.resources, None);
            self.allocation_pending = true;
        }
        if let Some(a) = self.agents.get_mut(&task.agent_id) {
            a.tasks
                .remove(&(framework_id.to_string(), task_id.to_string()));
        }
        self.completed_tasks
            .push_back((framework_id.to_string(), task_id.to_string(), task));
        while self.completed_tasks.len() > self.config.max_completed_tasks {
            self.completed_tasks.pop_front();
        }
    }

    /// Ends a task by the master's own decision (agent removed, framework removed, …): records a
    /// terminal status, tells the framework, and retires the task.
    pub(crate) fn end_task(
        &mut self,
        now: Timestamp,
        framework_id: &str,
        task_id: &str,
        state: TaskState,
        reason: &str,
        message: &str,
    ) {
        let Some(agent_id) = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.tasks.get(task_id))
            .map(|t| t.agent_id.clone())
        else {
            return;
        };
        let status = master_status(task_id, &agent_id, state, reason, message, now);
        self.apply_status(framework_id, &status);
        self.send_event(
            framework_id,
            v1::event::Event::Update(v1::Update {
                status: Some(status),
            }),
        );
    }

    /// The operator view of a task.
    pub(crate) fn summarize(
        &self,
        framework_id: &str,
        task_id: &str,
        t: &super::state::TaskRecord,
    ) -> v1::TaskSummary {
        let sandbox = self
            .agents
            .get(&t.agent_id)
            .filter(|a| !a.info.sandboxes_dir.is_empty())
            .map(|a| format!("{}/{framework_id}/{task_id}", a.info.sandboxes_dir))
            .unwrap_or_default();
        v1::TaskSummary {
            id: task_id.to_string(),
            name: t.name.clone(),
            framework_id: framework_id.to_string(),
            agent_id: t.agent_id.clone(),
            state: t.latest_state.unwrap_or(t.state).name().to_string(),
            status_update_state: t.state.name().to_string(),
            resources: t.resources.to_string(),
            reason: t.status.reason.clone(),
            message: t.status.message.clone(),
            started_ms: t.started_ms,
            ended_ms: if t.state.is_terminal() {
                t.status.timestamp_ms
            } else {
                0
            },
            sandbox,
            user: t.user.clone(),
            image: t
                .container
                .as_ref()
                .map(|c| c.image.clone())
                .unwrap_or_default(),
            image_sha256: t
                .container
                .as_ref()
                .map(|c| c.image_sha256.clone())
                .unwrap_or_default(),
        }
    }
}
