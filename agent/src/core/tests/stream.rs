//! The status update stream of the core on virtual time: write-ahead commits, one update in
//! flight per task, retries, re-registration, acknowledgements, forgetting, the state table.

use proffer_proto::v1::TaskState as S;

use super::harness::{Eff::*, ack, core, key, registered, report, run, track, track_live};
use crate::core::{Input, Timestamp};

#[test]
fn an_update_is_sent_only_after_its_checkpoint_and_only_the_head_is_in_flight() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track("t"), vec![]),
            (0, report("t", S::TaskStarting, 1), vec![]),
            (0, report("t", S::TaskRunning, 2), vec![]),
            // One durable checkpoint with both updates, then only the head goes out.
            (
                0,
                Input::Commit,
                vec![Cp("t", S::TaskRunning, 2, true), Send("t", 1)],
            ),
            (0, Input::Commit, vec![]),
            // Acknowledging the head: checkpoint (no fsync needed) and the next one goes out.
            (
                1,
                ack("t", 1),
                vec![Cp("t", S::TaskRunning, 1, false), Send("t", 2)],
            ),
            // An acknowledgement of something not in flight changes nothing.
            (1, ack("t", 1), vec![]),
            (1, ack("t", 9), vec![]),
            (2, ack("t", 2), vec![Cp("t", S::TaskRunning, 0, false)]),
        ],
    );
    assert!(!c.has_pending_updates());
    assert_eq!(c.next_deadline(), None);
}

#[test]
fn the_next_update_waits_for_a_pending_commit() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track("a"), vec![]),
            (0, track("b"), vec![]),
            (0, report("a", S::TaskRunning, 1), vec![]),
            (0, report("a", S::TaskFinished, 2), vec![]),
            (
                0,
                Input::Commit,
                vec![Cp("a", S::TaskFinished, 2, true), Send("a", 1)],
            ),
            // b's update is not yet durable: a's next update is held behind its commit.
            (1, report("b", S::TaskRunning, 3), vec![]),
            (1, ack("a", 1), vec![Cp("a", S::TaskFinished, 1, false)]),
            (
                1,
                Input::Commit,
                vec![Cp("b", S::TaskRunning, 1, true), Send("b", 3), Send("a", 2)],
            ),
        ],
    );
}

#[test]
fn nothing_is_sent_before_registration_and_every_head_goes_out_on_it() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, track("a"), vec![]),
            (0, track("b"), vec![]),
            (0, report("a", S::TaskStarting, 1), vec![]),
            (0, report("a", S::TaskRunning, 2), vec![]),
            (0, report("b", S::TaskFailed, 3), vec![]),
            (
                0,
                Input::Commit,
                vec![
                    Cp("a", S::TaskRunning, 2, true),
                    Cp("b", S::TaskFailed, 1, true),
                ],
            ),
            // No retries while not registered.
            (100, Input::Tick, vec![]),
            (101, registered(), vec![Send("a", 1), Send("b", 3)]),
        ],
    );
    assert_eq!(
        c.next_deadline(),
        Some(Timestamp::ZERO + std::time::Duration::from_secs(111))
    );
}

#[test]
fn retries_back_off_and_stop_while_disconnected() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track("t"), vec![]),
            (0, report("t", S::TaskRunning, 1), vec![]),
            (
                0,
                Input::Commit,
                vec![Cp("t", S::TaskRunning, 1, true), Send("t", 1)],
            ),
            (9, Input::Tick, vec![]),
            (10, Input::Tick, vec![Send("t", 1)]),
            (29, Input::Tick, vec![]),
            (30, Input::Tick, vec![Send("t", 1)]),
            (70, Input::Tick, vec![Send("t", 1)]),
            (110, Input::Tick, vec![Send("t", 1)]),
            (111, Input::Disconnected, vec![]),
            (200, Input::Tick, vec![]),
            // Re-registering sends the head at once and restarts the backoff.
            (201, registered(), vec![Send("t", 1)]),
            (211, Input::Tick, vec![Send("t", 1)]),
            (212, ack("t", 1), vec![Cp("t", S::TaskRunning, 0, false)]),
            (1000, Input::Tick, vec![]),
        ],
    );
    assert_eq!(c.next_deadline(), None);
}

#[test]
fn an_ended_task_is_forgotten_once_its_end_is_acknowledged_and_its_executor_gone() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track_live("a"), vec![]),
            (0, report("a", S::TaskFinished, 1), vec![]),
            (
                0,
                Input::Commit,
                vec![Cp("a", S::TaskFinished, 1, true), Send("a", 1)],
            ),
            // The executor still runs: the task is kept.
            (1, ack("a", 1), vec![Cp("a", S::TaskFinished, 0, false)]),
            (1, track("b"), vec![]),
            (1, report("b", S::TaskFailed, 2), vec![]),
            (
                1,
                Input::Commit,
                vec![Cp("b", S::TaskFailed, 1, true), Send("b", 2)],
            ),
            (2, ack("b", 2), vec![Forget("b")]),
        ],
    );
    assert!(c.task(&key("b")).is_none());
    assert_eq!(c.state(&key("a")), Some(S::TaskFinished));
}

#[test]
fn the_shared_table_keeps_an_end_and_the_report_is_still_delivered() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track_live("t"), vec![]),
            (0, report("t", S::TaskRunning, 1), vec![]),
            (0, report("t", S::TaskKilled, 2), vec![]),
            // A late report after the end (an executor's event read after a kill).
            (0, report("t", S::TaskRunning, 3), vec![]),
            (
                0,
                Input::Commit,
                vec![Cp("t", S::TaskKilled, 3, true), Send("t", 1)],
            ),
        ],
    );
    assert_eq!(c.state(&key("t")), Some(S::TaskKilled));
    // An update of a task the core does not track (refused before it was tracked) is sent but
    // has no checkpoint.
    run(
        &mut c,
        vec![
            (1, report("c", S::TaskError, 4), vec![]),
            (1, Input::Commit, vec![Send("c", 4)]),
            (2, ack("c", 4), vec![]),
        ],
    );
}

#[test]
fn shutting_the_agent_down_forgets_every_task_and_update() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track_live("a"), vec![]),
            (0, track("b"), vec![]),
            (0, report("a", S::TaskRunning, 1), vec![]),
            (0, report("b", S::TaskFailed, 2), vec![]),
            (
                0,
                Input::Commit,
                vec![
                    Cp("a", S::TaskRunning, 1, true),
                    Cp("b", S::TaskFailed, 1, true),
                    Send("a", 1),
                    Send("b", 2),
                ],
            ),
            (1, report("a", S::TaskKilled, 3), vec![]),
            (
                2,
                Input::ShutdownAgent,
                vec![
                    Signal("a", 0),
                    KillNow("a"),
                    Forget("a"),
                    KillNow("b"),
                    Forget("b"),
                ],
            ),
            // Nothing held or pending is sent any more.
            (2, Input::Commit, vec![]),
            (100, Input::Tick, vec![]),
        ],
    );
    assert!(c.tasks().next().is_none());
    assert!(!c.has_pending_updates());
    assert_eq!(c.agent_id(), None);
}
