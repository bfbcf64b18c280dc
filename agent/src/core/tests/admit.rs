//! Admission: which tasks the core refuses, with which state, reason and message.

use proffer_proto::Resources;
use proffer_proto::v1::{CommandInfo, HealthCheck, TaskInfo, TaskState as S};

use super::harness::{core, key};
use crate::core::{Host, Input, Need, Refusal};

const HOST: Host<'static> = Host {
    pids_limit: false,
    isolation: "posix",
    cpus_milli: 2_000,
    mem_milli: 1_024_000,
};

fn task(id: &str, resources: &str) -> TaskInfo {
    TaskInfo {
        task_id: id.into(),
        command: Some(CommandInfo {
            value: "true".into(),
            shell: true,
            ..Default::default()
        }),
        resources: Resources::parse(resources)
            .map(|r| r.to_proto())
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn refusal(r: Result<(), Refusal>) -> Option<(S, &'static str, String)> {
    r.err().map(|r| (r.state, r.reason, r.message))
}

#[test]
fn bad_tasks_are_refused_with_a_reason() {
    let c = core();
    let ok = task("t", "cpus:0.5;mem:64");
    let no_command = TaskInfo {
        command: None,
        ..ok.clone()
    };
    let empty_command = TaskInfo {
        command: Some(CommandInfo::default()),
        ..ok.clone()
    };
    let bad_check = TaskInfo {
        health_check: Some(HealthCheck::default()),
        ..ok.clone()
    };
    let pids = TaskInfo {
        pids_limit: 10,
        ..ok.clone()
    };
    let invalid = |m: &str| Some((S::TaskError, "REASON_TASK_INVALID", m.to_string()));
    assert_eq!(refusal(c.admit("fw", &ok, &HOST)), None);
    assert_eq!(
        refusal(c.admit("fw", &task("../x", "cpus:0.1"), &HOST)).map(|r| r.1),
        Some("REASON_TASK_INVALID")
    );
    assert_eq!(
        refusal(c.admit("", &ok, &HOST)),
        invalid("framework id is empty")
    );
    assert_eq!(
        refusal(c.admit("fw", &no_command, &HOST)),
        invalid("task has no command")
    );
    assert_eq!(
        refusal(c.admit("fw", &empty_command, &HOST)),
        invalid("command value is empty")
    );
    let check = refusal(c.admit("fw", &bad_check, &HOST));
    assert!(
        check
            .as_ref()
            .is_some_and(|r| r.1 == "REASON_TASK_INVALID" && r.2.starts_with("health check: ")),
        "{check:?}"
    );
    assert_eq!(
        refusal(c.admit("fw", &pids, &HOST)),
        Some((
            S::TaskFailed,
            "REASON_CONTAINER_LAUNCH_FAILED",
            "the task asks for a pids limit but this agent cannot enforce one (posix)".into()
        ))
    );
    let with_pids = Host {
        pids_limit: true,
        ..HOST
    };
    assert_eq!(refusal(c.admit("fw", &pids, &with_pids)), None);
}

#[test]
fn a_launch_storm_is_refused_task_by_task_and_ended_tasks_free_their_share() {
    let mut c = core();
    let t = task("t", "cpus:0.5;mem:64");
    for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
        assert_eq!(refusal(c.admit("fw", &t, &HOST)), None, "task {i}");
        c.handle(
            crate::core::Timestamp::ZERO,
            Input::Launch {
                key: key(name),
                group: None,
                kill_grace_ms: 0,
                need: Need::of(&t),
            },
        );
    }
    // Four of half a cpu fill the two cpus.
    assert_eq!(
        refusal(c.admit("fw", &t, &HOST)),
        Some((
            S::TaskError,
            "REASON_INVALID_OFFERS",
            "not enough free resources on this agent: the task needs cpus 0.5 and mem 64 MB, \
             its live tasks leave cpus 0 and mem 768 MB of cpus 2 and mem 1024 MB"
                .into()
        ))
    );
    // One ends: its share is free again.
    c.handle(
        crate::core::Timestamp::ZERO,
        super::harness::report("a", S::TaskFinished, 1),
    );
    assert_eq!(refusal(c.admit("fw", &t, &HOST)), None);
    // Draining refuses everything.
    c.handle(crate::core::Timestamp::ZERO, Input::Drain);
    assert_eq!(
        refusal(c.admit("fw", &t, &HOST)),
        Some((
            S::TaskLost,
            "REASON_AGENT_DRAINING",
            "the agent is draining and accepts no new tasks".into()
        ))
    );
}

#[test]
fn a_refusal_ends_the_task_and_a_group_is_refused_whole() {
    use super::harness::{Eff::*, run};
    let mut c = core();
    let why = Refusal::unavailable("no such user \"nobody2\"".into());
    let group = why.for_group("b");
    assert_eq!(
        (group.state, group.reason, group.message.as_str()),
        (
            S::TaskError,
            "REASON_TASK_GROUP_INVALID",
            "task group refused: task \"b\": no such user \"nobody2\""
        )
    );
    run(
        &mut c,
        vec![
            (0, super::harness::registered(), vec![]),
            (
                0,
                Input::Refuse {
                    key: key("a"),
                    refusal: group.clone(),
                },
                vec![],
            ),
            (
                0,
                Input::Refuse {
                    key: key("b"),
                    refusal: group,
                },
                vec![],
            ),
            // Not tracked: sent, nothing to checkpoint.
            (0, Input::Commit, vec![Send("a", 1), Send("b", 2)]),
        ],
    );
    let s = c
        .queued(&key("b"))
        .first()
        .and_then(|u| u.status.clone())
        .unwrap_or_default();
    assert_eq!(
        (s.state, s.reason.as_str(), s.agent_id.as_str()),
        (S::TaskError as i32, "REASON_TASK_GROUP_INVALID", "agent-1")
    );
}
