//! The core's task decisions on virtual time: the launch steps, executor events into statuses,
//! kills and grace periods, the task-group policy, drain, framework shutdown.

use std::time::Duration;

use proffer_proto::v1::{StatusSource, TaskState as S};

use super::harness::{Eff::*, FW, core, key, registered, run, track, track_live};
use crate::core::tasks::status_uuid;
use crate::core::{Effect, Input, Need, TaskKey, Timestamp};
use crate::executor::protocol::ExecutorEvent;

fn prepared(task: &str, result: Result<(), &str>) -> Input {
    Input::Prepared {
        key: key(task),
        result: result.map_err(str::to_string),
    }
}

fn started(task: &str, result: Result<(), &str>) -> Input {
    Input::Started {
        key: key(task),
        result: result.map_err(str::to_string),
    }
}

fn event(task: &str, event: ExecutorEvent) -> Input {
    Input::Executor {
        key: key(task),
        event,
    }
}

fn exited(task: &str, state: &str) -> Input {
    event(
        task,
        ExecutorEvent::Exited {
            state: state.into(),
            reason: "REASON_COMMAND_EXITED".into(),
            message: "exited".into(),
            exit_code: Some(0),
            healthy: None,
        },
    )
}

fn kill(task: &str, grace_ms: u64) -> Input {
    Input::Kill {
        key: key(task),
        grace_ms,
    }
}

fn in_group(task: &str, group: &str) -> Input {
    Input::Track {
        key: key(task),
        state: S::TaskRunning,
        group: Some(group.into()),
        live: true,
        kill_grace_ms: 0,
        need: Need::default(),
    }
}

#[test]
fn a_task_goes_staging_starting_running_finished_and_is_forgotten() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            (0, track("t"), vec![]),
            (0, prepared("t", Ok(())), vec![Start("t")]),
            (0, started("t", Ok(())), vec![]),
            (
                0,
                Input::Commit,
                vec![Cp("t", S::TaskStarting, 1, true), Send("t", 1)],
            ),
            (0, event("t", ExecutorEvent::Started { pid: 42 }), vec![]),
            (0, exited("t", "TASK_FINISHED"), vec![]),
            // Both are checkpointed together; STARTING is still in flight.
            (0, Input::Commit, vec![Cp("t", S::TaskFinished, 3, true)]),
        ],
    );
    // The core's uuids count up from the seed: 1 STARTING, 2 RUNNING, 3 FINISHED.
    let uuid = status_uuid;
    let ack_of = |n: u128| {
        Input::Ack(proffer_proto::v1::StatusUpdateAck {
            framework_id: FW.into(),
            task_id: "t".into(),
            uuid: uuid(n),
        })
    };
    let effects = c.handle(Timestamp(5_000), ack_of(1));
    assert!(matches!(
        &effects[..],
        [Effect::Checkpoint { .. }, Effect::Send(_)]
    ));
    let Some(Effect::Send(running)) = effects.get(1) else {
        panic!("RUNNING is sent: {effects:?}");
    };
    let s = running.status.clone().unwrap_or_default();
    assert_eq!(s.state, S::TaskRunning as i32);
    assert_eq!(s.source, StatusSource::SourceExecutor as i32);
    assert_eq!(s.agent_id, "agent-1");
    assert_eq!(s.uuid, status_uuid(2));
    assert_eq!(
        uuid::Uuid::from_slice(&s.uuid)
            .map(|u| u.get_version_num())
            .ok(),
        Some(4)
    );
    // The statuses are stamped with the time of the input that made them.
    assert_eq!(s.timestamp_ms, 0);
    assert_eq!(
        c.handle(Timestamp(6_000), ack_of(1)).len(),
        0,
        "already acked"
    );
    let effects = c.handle(Timestamp(6_000), ack_of(2));
    assert!(
        matches!(effects.last(), Some(Effect::Send(_))),
        "{effects:?}"
    );
    // FINISHED acknowledged and the executor gone: forgotten.
    let effects = c.handle(Timestamp(7_000), ack_of(3));
    assert_eq!(effects, vec![Effect::Forget(key("t"))]);
    assert!(c.task(&key("t")).is_none());
}

#[test]
fn launch_failures_end_the_task_with_the_reason() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, track("a"), vec![]),
            (0, track("b"), vec![]),
            (0, prepared("a", Err("creating sandbox: no space")), vec![]),
            (0, prepared("b", Ok(())), vec![Start("b")]),
            (0, started("b", Err("no such program")), vec![]),
            (
                0,
                Input::Commit,
                vec![
                    Cp("a", S::TaskFailed, 1, true),
                    Cp("b", S::TaskFailed, 1, true),
                ],
            ),
        ],
    );
    let reasons: Vec<(String, String)> = ["a", "b"]
        .iter()
        .flat_map(|t| c.queued(&key(t)))
        .filter_map(|u| u.status)
        .map(|s| (s.reason, s.message))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "REASON_CONTAINER_LAUNCH_FAILED".to_string(),
                "creating sandbox: no space".to_string()
            ),
            (
                "REASON_EXECUTOR_TERMINATED".to_string(),
                "failed to start the executor: no such program".to_string()
            ),
        ]
    );
}

#[test]
fn kills_by_state() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, registered(), vec![]),
            // Being prepared: KILLED at once, and never started.
            (0, track("a"), vec![]),
            (0, kill("a", 0), vec![]),
            (0, prepared("a", Ok(())), vec![]),
            // Live: its executor kills it, with the grace asked for, else its own, else the
            // agent's default.
            (0, track_live("b"), vec![]),
            (0, kill("b", 500), vec![Signal("b", 500)]),
            (0, kill("b", 0), vec![Signal("b", 3_000)]),
            (
                0,
                Input::Track {
                    key: key("c"),
                    state: S::TaskRunning,
                    group: None,
                    live: true,
                    kill_grace_ms: 1_500,
                    need: Need::default(),
                },
                vec![],
            ),
            (0, kill("c", 0), vec![Signal("c", 1_500)]),
            // Unknown: reported lost (no checkpoint: there is no task).
            (0, kill("x", 0), vec![]),
            (
                0,
                Input::Commit,
                vec![Cp("a", S::TaskKilled, 1, true), Send("a", 1), Send("x", 2)],
            ),
        ],
    );
    // Ended: nothing to do.
    run(&mut c, vec![(1, kill("a", 0), vec![])]);
    let lost = c.queued(&key("x"));
    let s = lost
        .first()
        .and_then(|u| u.status.clone())
        .unwrap_or_default();
    assert_eq!(
        (s.state, s.reason.as_str()),
        (S::TaskLost as i32, "REASON_TASK_UNKNOWN")
    );
}

#[test]
fn a_lost_executor_fails_its_task_and_takes_its_group_down() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, in_group("a", "g1"), vec![]),
            (0, in_group("b", "g1"), vec![]),
            (0, in_group("c", "g2"), vec![]),
            (
                0,
                Input::ExecutorGone {
                    key: key("a"),
                    message: "pid 7 gone".into(),
                },
                vec![KillNow("a"), Signal("b", 3_000)],
            ),
            // Gone again after the end: nothing more.
            (
                0,
                Input::ExecutorGone {
                    key: key("a"),
                    message: "again".into(),
                },
                vec![],
            ),
            // A group member that finished takes nobody down; one that failed does.
            (1, exited("c", "TASK_FINISHED"), vec![]),
            (1, exited("b", "TASK_KILLED"), vec![]),
        ],
    );
    assert_eq!(c.state(&key("a")), Some(S::TaskFailed));
    assert_eq!(c.state(&key("b")), Some(S::TaskKilled));
    assert_eq!(c.state(&key("c")), Some(S::TaskFinished));
    let lost = c.queued(&key("a"));
    let s = lost
        .first()
        .and_then(|u| u.status.clone())
        .unwrap_or_default();
    assert_eq!(s.reason, "REASON_EXECUTOR_TERMINATED");
    assert_eq!(
        s.message,
        "the executor stopped supervising the task before it ended: pid 7 gone"
    );
}

#[test]
fn health_and_readiness_are_running_updates_and_a_late_report_keeps_the_end() {
    let mut c = core();
    run(
        &mut c,
        vec![
            (0, track_live("t"), vec![]),
            (
                0,
                event(
                    "t",
                    ExecutorEvent::Health {
                        healthy: false,
                        message: "503".into(),
                    },
                ),
                vec![],
            ),
            (
                0,
                event(
                    "t",
                    ExecutorEvent::Ready {
                        message: "200".into(),
                    },
                ),
                vec![],
            ),
            (0, exited("t", "TASK_KILLED"), vec![]),
            (0, event("t", ExecutorEvent::Started { pid: 9 }), vec![]),
        ],
    );
    assert_eq!(c.state(&key("t")), Some(S::TaskKilled));
    let q = c.queued(&key("t"));
    let got: Vec<(i32, Option<bool>, Option<bool>, String)> = q
        .iter()
        .filter_map(|u| u.status.clone())
        .map(|s| (s.state, s.healthy, s.ready, s.message))
        .collect();
    assert_eq!(
        got,
        vec![
            (S::TaskRunning as i32, Some(false), None, "503".into()),
            (S::TaskRunning as i32, None, Some(true), "ready: 200".into()),
            (S::TaskKilled as i32, None, None, "exited".into()),
            (S::TaskRunning as i32, None, None, String::new()),
        ]
    );
}

#[test]
fn drain_kills_every_live_task_and_framework_shutdown_only_its_own() {
    let mut c = core();
    let other = TaskKey::new("other", "x");
    run(
        &mut c,
        vec![
            (0, track_live("a"), vec![]),
            (0, track("b"), vec![]),
            (
                0,
                Input::Track {
                    key: other.clone(),
                    state: S::TaskRunning,
                    group: None,
                    live: true,
                    kill_grace_ms: 0,
                    need: Need::default(),
                },
                vec![],
            ),
            (
                0,
                Input::ShutdownFramework(FW.into()),
                vec![Signal("a", 3_000)],
            ),
        ],
    );
    assert_eq!(c.state(&key("b")), Some(S::TaskKilled));
    assert!(!c.draining());
    run(
        &mut c,
        vec![(
            1,
            Input::Drain,
            vec![Signal("a", 3_000), Signal("x", 3_000)],
        )],
    );
    assert!(c.draining());
    run(&mut c, vec![(2, Input::Reactivate, vec![])]);
    assert!(!c.draining());
    assert_eq!(c.kill_grace(0, 0), Duration::from_secs(3));
}
