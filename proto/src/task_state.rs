//! Helpers on the task state enum.

use crate::v1::TaskState;

impl TaskState {
    /// True for states a task never leaves (FINISHED, FAILED, KILLED, LOST, ERROR, DROPPED,
    /// GONE, GONE_BY_OPERATOR). UNREACHABLE and UNKNOWN are not terminal: the task may still
    /// run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::TaskFinished
                | TaskState::TaskFailed
                | TaskState::TaskKilled
                | TaskState::TaskLost
                | TaskState::TaskError
                | TaskState::TaskDropped
                | TaskState::TaskGone
                | TaskState::TaskGoneByOperator
        )
    }

    /// The Mesos-style name, e.g. `TASK_RUNNING`.
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }

    /// Parses a Mesos-style name (`TASK_RUNNING`) or a short one (`running`).
    pub fn parse_name(s: &str) -> Option<Self> {
        let upper = s.trim().to_ascii_uppercase();
        Self::from_str_name(&upper).or_else(|| Self::from_str_name(&format!("TASK_{upper}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states() {
        let table = [
            (TaskState::TaskStaging, false),
            (TaskState::TaskStarting, false),
            (TaskState::TaskRunning, false),
            (TaskState::TaskKilling, false),
            (TaskState::TaskFinished, true),
            (TaskState::TaskFailed, true),
            (TaskState::TaskKilled, true),
            (TaskState::TaskLost, true),
            (TaskState::TaskError, true),
            (TaskState::TaskDropped, true),
            (TaskState::TaskUnreachable, false),
            (TaskState::TaskGone, true),
            (TaskState::TaskGoneByOperator, true),
            (TaskState::TaskUnknown, false),
        ];
        for (state, terminal) in table {
            assert_eq!(state.is_terminal(), terminal, "{state:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(TaskState::TaskRunning.name(), "TASK_RUNNING");
        assert_eq!(
            TaskState::parse_name("running"),
            Some(TaskState::TaskRunning)
        );
        assert_eq!(
            TaskState::parse_name("TASK_LOST"),
            Some(TaskState::TaskLost)
        );
        assert_eq!(TaskState::parse_name("nope"), None);
    }
}
