//! Helpers on the task state enum, and the one task state machine shared by agent and master:
//! [`TaskState::transition`] says what a report of a state does to a task in another state.
//!
//! # The transition table
//!
//! The live states are ordered STAGING → STARTING → RUNNING → KILLING; every terminal state
//! (FINISHED, FAILED, KILLED, LOST, ERROR, DROPPED, GONE, GONE_BY_OPERATOR) ends a task.
//! UNREACHABLE and UNKNOWN say the task may still run somewhere the master cannot see.
//!
//! | from \ to                   | later live state, any end, UNREACHABLE/UNKNOWN | same live state | earlier live state | UNSPECIFIED |
//! |-----------------------------|-----------------------------------------------|-----------------|--------------------|-------------|
//! | UNSPECIFIED (no state yet)  | [`Transition::Advance`]                       | –               | –                  | `Invalid`   |
//! | a live state                | `Advance`                                     | `Repeat`        | `Regress`          | `Invalid`   |
//! | UNREACHABLE / UNKNOWN       | `Advance` (the agent came back and said how the task is) | `Repeat` | –            | `Invalid`   |
//! | a terminal state            | `AfterEnd` (terminal is terminal)             | `AfterEnd`      | `AfterEnd`         | `Invalid`   |
//!
//! What each verdict does to the task's state: [`Transition::accepted`]. An agent only ever
//! makes `Advance` or `Repeat` moves itself ([`Transition::is_move`]); the master takes the
//! agent's report unless it comes after the end (`AfterEnd`) or names no state (`Invalid`).

use crate::v1::TaskState;

/// What a report of a task state does to a task in a given state (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A move forward: a later live state, an end, or UNREACHABLE/UNKNOWN (from a live state),
    /// or any state from UNREACHABLE/UNKNOWN/no state. The task takes the new state.
    Advance,
    /// The same non-terminal state again (a health or readiness change, a re-sent update):
    /// the state stays; the report (its health, readiness, message) is the latest.
    Repeat,
    /// An earlier live state after a later one (RUNNING, then STARTING): a report that was
    /// overtaken, e.g. re-sent after a master failover that learnt the later state from the
    /// agent's re-registration. The latest report wins (as in Mesos): the task takes it.
    Regress,
    /// Any report once the task ended: the task stays in its terminal state; the update is
    /// still delivered and acknowledged, it changes nothing.
    AfterEnd,
    /// A report naming no state (TASK_STATE_UNSPECIFIED): refused, the state stays.
    Invalid,
}

impl Transition {
    /// True when the task takes the reported state and status (`Advance`, `Repeat`,
    /// `Regress`); false when the report changes nothing (`AfterEnd`, `Invalid`).
    pub fn accepted(self) -> bool {
        matches!(
            self,
            Transition::Advance | Transition::Repeat | Transition::Regress
        )
    }

    /// True for a move a task's own runner (the agent) may make: `Advance` or `Repeat`.
    pub fn is_move(self) -> bool {
        matches!(self, Transition::Advance | Transition::Repeat)
    }
}

/// The position of a live state in the lifecycle; `None` for the others.
fn live_rank(s: TaskState) -> Option<u8> {
    match s {
        TaskState::TaskStaging => Some(0),
        TaskState::TaskStarting => Some(1),
        TaskState::TaskRunning => Some(2),
        TaskState::TaskKilling => Some(3),
        _ => None,
    }
}

impl TaskState {
    /// What a report of `to` does to a task in state `self`: the one transition table.
    pub fn transition(self, to: TaskState) -> Transition {
        if to == TaskState::Unspecified {
            return Transition::Invalid;
        }
        if self.is_terminal() {
            return Transition::AfterEnd;
        }
        if self == to {
            return Transition::Repeat;
        }
        match (live_rank(self), live_rank(to)) {
            (Some(from), Some(to)) if to < from => Transition::Regress,
            _ => Transition::Advance,
        }
    }

    /// The state of a task in state `self` after a report of `to`: `to` when the report is
    /// [`accepted`](Transition::accepted), else `self`.
    pub fn after_report(self, to: TaskState) -> TaskState {
        if self.transition(to).accepted() {
            to
        } else {
            self
        }
    }

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
    use proptest::prelude::*;

    const ALL: [TaskState; 15] = [
        TaskState::Unspecified,
        TaskState::TaskStaging,
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskKilling,
        TaskState::TaskFinished,
        TaskState::TaskFailed,
        TaskState::TaskKilled,
        TaskState::TaskLost,
        TaskState::TaskError,
        TaskState::TaskDropped,
        TaskState::TaskUnreachable,
        TaskState::TaskGone,
        TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown,
    ];

    #[test]
    fn transition_table() {
        use TaskState as S;
        use Transition as T;
        let table = [
            (S::Unspecified, S::TaskStaging, T::Advance),
            (S::Unspecified, S::TaskRunning, T::Advance),
            (S::TaskStaging, S::TaskStarting, T::Advance),
            (S::TaskStaging, S::TaskRunning, T::Advance),
            (S::TaskStaging, S::TaskKilled, T::Advance),
            (S::TaskStaging, S::TaskError, T::Advance),
            (S::TaskStarting, S::TaskRunning, T::Advance),
            (S::TaskStarting, S::TaskFailed, T::Advance),
            (S::TaskRunning, S::TaskRunning, T::Repeat),
            (S::TaskRunning, S::TaskKilling, T::Advance),
            (S::TaskRunning, S::TaskFinished, T::Advance),
            (S::TaskRunning, S::TaskUnreachable, T::Advance),
            (S::TaskRunning, S::TaskUnknown, T::Advance),
            (S::TaskKilling, S::TaskKilled, T::Advance),
            (S::TaskRunning, S::TaskStarting, T::Regress),
            (S::TaskRunning, S::TaskStaging, T::Regress),
            (S::TaskKilling, S::TaskRunning, T::Regress),
            (S::TaskUnreachable, S::TaskRunning, T::Advance),
            (S::TaskUnreachable, S::TaskStaging, T::Advance),
            (S::TaskUnreachable, S::TaskGone, T::Advance),
            (S::TaskUnreachable, S::TaskUnreachable, T::Repeat),
            (S::TaskUnknown, S::TaskRunning, T::Advance),
            (S::TaskFinished, S::TaskRunning, T::AfterEnd),
            (S::TaskFinished, S::TaskFinished, T::AfterEnd),
            (S::TaskLost, S::TaskFinished, T::AfterEnd),
            (S::TaskGone, S::TaskRunning, T::AfterEnd),
            (S::TaskKilled, S::TaskUnreachable, T::AfterEnd),
            (S::TaskRunning, S::Unspecified, T::Invalid),
            (S::TaskFinished, S::Unspecified, T::Invalid),
        ];
        for (from, to, want) in table {
            assert_eq!(from.transition(to), want, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn verdicts_accept_and_move() {
        use Transition as T;
        let table = [
            (T::Advance, true, true),
            (T::Repeat, true, true),
            (T::Regress, true, false),
            (T::AfterEnd, false, false),
            (T::Invalid, false, false),
        ];
        for (t, accepted, is_move) in table {
            assert_eq!(t.accepted(), accepted, "{t:?}");
            assert_eq!(t.is_move(), is_move, "{t:?}");
        }
    }

    fn any_state() -> impl Strategy<Value = TaskState> {
        proptest::sample::select(ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(21), ..ProptestConfig::default() })]

        /// Any sequence of reports: once a task ends it keeps that end; no report of
        /// UNSPECIFIED is ever taken; a report the table refuses changes nothing.
        #[test]
        fn terminal_is_terminal_and_nothing_illegal_is_taken(
            start in any_state(),
            reports in proptest::collection::vec(any_state(), 0..24),
        ) {
            let mut state = start;
            let mut ended: Option<TaskState> = state.is_terminal().then_some(state);
            for to in reports {
                let next = state.after_report(to);
                // A report the table refuses leaves the state as it was.
                if !state.transition(to).accepted() {
                    prop_assert_eq!(next, state);
                }
                if let Some(end) = ended {
                    prop_assert_eq!(next, end, "{:?} left its end after {:?}", end, to);
                }
                if to == TaskState::Unspecified {
                    prop_assert_eq!(next, state);
                }
                if next.is_terminal() && ended.is_none() {
                    ended = Some(next);
                }
                state = next;
            }
        }

        /// A move the agent may make never goes back, never leaves an end, never names no
        /// state.
        #[test]
        fn moves_only_go_forward(from in any_state(), to in any_state()) {
            if from.transition(to).is_move() {
                prop_assert!(!from.is_terminal());
                prop_assert_ne!(to, TaskState::Unspecified);
                if let (Some(a), Some(b)) = (live_rank(from), live_rank(to)) {
                    prop_assert!(a <= b);
                }
            }
        }
    }

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
