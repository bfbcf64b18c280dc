//! Every update the core sends carries its task's latest state (Mesos's `latest_state`), taken
//! when it is sent: the head of a task's stream tells the master the task already ended while
//! an older update still waits for its acknowledgement.

use std::time::Duration;

use proffer_proto::v1::TaskState as S;

use super::harness::{ack, core, registered, report, track};
use crate::core::{Core, Effect, Input, Timestamp};

/// (task, uuid byte, latest state) of every update sent by one input.
fn sent(c: &mut Core, secs: u64, input: Input) -> Vec<(String, u8, Option<S>)> {
    c.handle(Timestamp::ZERO + Duration::from_secs(secs), input)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send(u) => {
                let s = u.status.unwrap_or_default();
                let latest = u.latest_state.and_then(|l| S::try_from(l).ok());
                Some((s.task_id, s.uuid.last().copied().unwrap_or(0), latest))
            }
            _ => None,
        })
        .collect()
}

fn one(task: &str, uuid: u8, latest: S) -> Vec<(String, u8, Option<S>)> {
    vec![(task.to_string(), uuid, Some(latest))]
}

#[test]
fn an_update_sent_with_a_later_one_queued_carries_the_later_state() {
    let mut c = core();
    c.handle(Timestamp::ZERO, registered());
    c.handle(Timestamp::ZERO, track("t"));
    c.handle(Timestamp::ZERO, report("t", S::TaskRunning, 1));
    c.handle(Timestamp::ZERO, report("t", S::TaskFinished, 2));
    // RUNNING goes out first (one in flight), saying the task already finished.
    assert_eq!(sent(&mut c, 0, Input::Commit), one("t", 1, S::TaskFinished));
    assert_eq!(sent(&mut c, 1, ack("t", 1)), one("t", 2, S::TaskFinished));
}

#[test]
fn the_latest_state_is_taken_when_sent_not_when_reported() {
    let mut c = core();
    c.handle(Timestamp::ZERO, registered());
    c.handle(Timestamp::ZERO, track("t"));
    c.handle(Timestamp::ZERO, report("t", S::TaskRunning, 1));
    assert_eq!(sent(&mut c, 0, Input::Commit), one("t", 1, S::TaskRunning));
    // The task ends while RUNNING waits for its acknowledgement: the end is queued behind it.
    c.handle(Timestamp::ZERO, report("t", S::TaskFinished, 2));
    assert_eq!(sent(&mut c, 0, Input::Commit), vec![]);
    // The retry of RUNNING tells the master the task finished.
    assert_eq!(sent(&mut c, 10, Input::Tick), one("t", 1, S::TaskFinished));
    // So does every head re-sent on re-registration.
    c.handle(
        Timestamp::ZERO + Duration::from_secs(11),
        Input::Disconnected,
    );
    assert_eq!(sent(&mut c, 12, registered()), one("t", 1, S::TaskFinished));
}

#[test]
fn a_live_task_s_update_carries_its_own_state() {
    let mut c = core();
    c.handle(Timestamp::ZERO, registered());
    c.handle(Timestamp::ZERO, track("t"));
    c.handle(Timestamp::ZERO, report("t", S::TaskStarting, 1));
    assert_eq!(sent(&mut c, 0, Input::Commit), one("t", 1, S::TaskStarting));
    c.handle(Timestamp::ZERO, report("t", S::TaskRunning, 2));
    c.handle(Timestamp::ZERO, Input::Commit);
    assert_eq!(sent(&mut c, 1, ack("t", 1)), one("t", 2, S::TaskRunning));
}
