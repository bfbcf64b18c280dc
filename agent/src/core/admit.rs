//! Admission: whether a task the master sent can run on this agent, and if not, the terminal
//! state, reason and message it is refused with. Pure: the host's facts come in [`Host`].
//! (The task's user is checked by the shell afterwards: that needs the password database.)

use proffer_proto::v1::{self, TaskInfo, TaskState};

use super::Core;
use crate::checks::CheckConfig;
use crate::sandbox;

/// Why a task cannot run here: it ends at once in `state` with `reason` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The terminal state reported.
    pub state: TaskState,
    /// The machine-readable reason.
    pub reason: &'static str,
    /// What was wrong, for people.
    pub message: String,
}

impl Refusal {
    fn invalid(message: String) -> Self {
        Refusal {
            state: TaskState::TaskError,
            reason: "REASON_TASK_INVALID",
            message,
        }
    }

    /// What every member of a LAUNCH_GROUP gets when member `bad` is refused with `self`
    /// (a group is launched whole or not at all).
    pub fn for_group(&self, bad: &str) -> Self {
        Refusal {
            state: TaskState::TaskError,
            reason: "REASON_TASK_GROUP_INVALID",
            message: format!("task group refused: task {bad:?}: {}", self.message),
        }
    }

    /// A task this agent cannot run as asked (`TASK_FAILED`, container launch failed).
    pub fn unavailable(message: String) -> Self {
        Refusal {
            state: TaskState::TaskFailed,
            reason: "REASON_CONTAINER_LAUNCH_FAILED",
            message,
        }
    }
}

/// What admission needs to know of the host.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    /// A pids limit can be enforced (the pids cgroup controller is usable).
    pub pids_limit: bool,
    /// The isolation in use, to name in refusals.
    pub isolation: &'a str,
    /// The agent's cpus, in thousandths.
    pub cpus_milli: i64,
    /// The agent's memory in MB, in thousandths.
    pub mem_milli: i64,
}

/// The cpus and memory a task holds while it lives (thousandths).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// Thousandths of a cpu.
    pub cpus_milli: i64,
    /// Thousandths of a MB.
    pub mem_milli: i64,
}

impl Need {
    /// What `task` asks for.
    pub fn of(task: &TaskInfo) -> Self {
        Need {
            cpus_milli: scalar_milli(&task.resources, "cpus"),
            mem_milli: scalar_milli(&task.resources, "mem"),
        }
    }
}

/// The sum of the scalar resources called `name` in `resources` (milli-units), any role.
fn scalar_milli(resources: &[v1::Resource], name: &str) -> i64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| match r.value {
            Some(v1::resource::Value::ScalarMilli(m)) => Some(m),
            _ => None,
        })
        .fold(0i64, i64::saturating_add)
}

impl Core {
    /// Whether `task` of `framework_id` can run here: ids, draining, command, checks, pids
    /// limit, and the cpus and memory its live tasks leave (a launch storm beyond the agent's
    /// resources is refused task by task).
    pub fn admit(
        &self,
        framework_id: &str,
        task: &TaskInfo,
        host: &Host<'_>,
    ) -> Result<(), Refusal> {
        sandbox::validate_id("framework", framework_id)
            .and_then(|()| sandbox::validate_id("task", &task.task_id))
            .map_err(Refusal::invalid)?;
        if self.draining {
            return Err(Refusal {
                state: TaskState::TaskLost,
                reason: "REASON_AGENT_DRAINING",
                message: "the agent is draining and accepts no new tasks".into(),
            });
        }
        match &task.command {
            Some(c) if !c.value.is_empty() => {}
            Some(_) => return Err(Refusal::invalid("command value is empty".into())),
            None => return Err(Refusal::invalid("task has no command".into())),
        }
        for (what, c) in [
            ("health", &task.health_check),
            ("readiness", &task.readiness_check),
        ] {
            if let Some(c) = c {
                CheckConfig::from_proto(c)
                    .map_err(|e| Refusal::invalid(format!("{what} check: {e}")))?;
            }
        }
        if task.pids_limit > 0 && !host.pids_limit {
            return Err(Refusal::unavailable(format!(
                "the task asks for a pids limit but this agent cannot enforce one ({})",
                host.isolation
            )));
        }
        self.resources_left_for(task, host)
    }

    fn resources_left_for(&self, task: &TaskInfo, host: &Host<'_>) -> Result<(), Refusal> {
        let (mut cpus, mut mem) = (0i64, 0i64);
        for t in self.tasks.values().filter(|t| !t.state.is_terminal()) {
            cpus = cpus.saturating_add(t.need.cpus_milli);
            mem = mem.saturating_add(t.need.mem_milli);
        }
        let need = Need::of(task);
        let total = (host.cpus_milli, host.mem_milli);
        let free = (total.0 - cpus, total.1 - mem);
        if need.cpus_milli <= free.0 && need.mem_milli <= free.1 {
            return Ok(());
        }
        let f = proffer_proto::resources::format_milli;
        Err(Refusal {
            state: TaskState::TaskError,
            reason: "REASON_INVALID_OFFERS",
            message: format!(
                "not enough free resources on this agent: the task needs cpus {} and mem {} MB, \
                 its live tasks leave cpus {} and mem {} MB of cpus {} and mem {} MB",
                f(need.cpus_milli),
                f(need.mem_milli),
                f(free.0.max(0)),
                f(free.1.max(0)),
                f(total.0),
                f(total.1)
            ),
        })
    }
}
