use std::time::Duration;

use crate::core::Timestamp;
use crate::core::updates::*;
use proffer_proto::v1::TaskStatus;
use proffer_proto::v1::{StatusUpdate, TaskState};

const S: Duration = Duration::from_secs(1);

fn update(fw: &str, task: &str, state: TaskState, uuid: u8) -> StatusUpdate {
    StatusUpdate {
        framework_id: fw.into(),
        latest_state: None,
        status: Some(TaskStatus {
            task_id: task.into(),
            state: state as i32,
            uuid: vec![uuid; 16],
            ..Default::default()
        }),
    }
}

fn state(u: &StatusUpdate) -> TaskState {
    u.status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::Unspecified)
}

fn mgr() -> StatusUpdateManager {
    StatusUpdateManager::new(10 * S, 40 * S)
}

#[test]
fn only_head_in_flight_and_ack_pops_in_order() {
    let t0 = Timestamp::ZERO;
    let mut m = mgr();
    let sent = m.push(t0, update("f", "t", TaskState::TaskStarting, 1));
    assert_eq!(sent.as_ref().map(state), Some(TaskState::TaskStarting));
    assert!(
        m.push(t0, update("f", "t", TaskState::TaskRunning, 2))
            .is_none()
    );
    assert!(
        m.push(t0, update("f", "t", TaskState::TaskFinished, 3))
            .is_none()
    );
    assert_eq!(m.pending(&TaskKey::new("f", "t")), 3);

    // Acking a queued-but-not-in-flight update does nothing.
    assert_eq!(m.ack(t0, "f", "t", &[2; 16]), AckOutcome::Ignored);

    let AckOutcome::Acked { terminal, next } = m.ack(t0 + S, "f", "t", &[1; 16]) else {
        panic!("ack of head must pop");
    };
    assert!(!terminal);
    assert_eq!(next.as_deref().map(state), Some(TaskState::TaskRunning));
    let AckOutcome::Acked { terminal, next } = m.ack(t0 + S, "f", "t", &[2; 16]) else {
        panic!("ack of head must pop");
    };
    assert!(!terminal);
    assert_eq!(next.as_deref().map(state), Some(TaskState::TaskFinished));
    let AckOutcome::Acked { terminal, next } = m.ack(t0 + S, "f", "t", &[3; 16]) else {
        panic!("ack of head must pop");
    };
    assert!(terminal);
    assert!(next.is_none());
    assert!(m.is_empty());
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn tasks_are_independent() {
    let t0 = Timestamp::ZERO;
    let mut m = mgr();
    assert!(
        m.push(t0, update("f", "a", TaskState::TaskRunning, 1))
            .is_some()
    );
    assert!(
        m.push(t0, update("f", "b", TaskState::TaskRunning, 2))
            .is_some()
    );
    assert!(
        m.push(t0, update("g", "a", TaskState::TaskRunning, 3))
            .is_some()
    );
    // Same task id, different framework: a different queue, and uuids must match per task.
    assert_eq!(m.ack(t0, "g", "a", &[1; 16]), AckOutcome::Ignored);
    assert!(matches!(
        m.ack(t0, "g", "a", &[3; 16]),
        AckOutcome::Acked { .. }
    ));
    assert_eq!(m.pending(&TaskKey::new("f", "a")), 1);
    assert_eq!(m.pending(&TaskKey::new("g", "a")), 0);
}

#[test]
fn retry_backoff_doubles_up_to_max() {
    let t0 = Timestamp::ZERO;
    let mut m = mgr();
    m.push(t0, update("f", "t", TaskState::TaskRunning, 1));
    assert_eq!(m.next_deadline(), Some(t0 + 10 * S));
    assert!(m.due(t0 + 9 * S).is_empty());

    let mut now = t0 + 10 * S;
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let sent = m.due(now);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].status.as_ref().map(|s| s.uuid.clone()),
            Some(vec![1; 16])
        );
        let next = m.next_deadline().expect("still pending");
        gaps.push(next - now);
        // Nothing more is due before the deadline.
        assert!(m.due(next - Duration::from_millis(1)).is_empty());
        now = next;
    }
    assert_eq!(gaps, vec![20 * S, 40 * S, 40 * S, 40 * S, 40 * S]);
}

#[test]
fn ack_stops_retries_and_next_head_starts_fresh() {
    let t0 = Timestamp::ZERO;
    let mut m = mgr();
    m.push(t0, update("f", "t", TaskState::TaskRunning, 1));
    m.push(t0, update("f", "t", TaskState::TaskFailed, 2));
    assert_eq!(m.due(t0 + 10 * S).len(), 1);
    assert_eq!(m.due(t0 + 30 * S).len(), 1);
    let AckOutcome::Acked { next, .. } = m.ack(t0 + 31 * S, "f", "t", &[1; 16]) else {
        panic!("must pop");
    };
    assert!(next.is_some());
    // The new head is retried after the initial interval again.
    assert_eq!(m.next_deadline(), Some(t0 + 41 * S));
    let sent = m.due(t0 + 41 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(state(&sent[0]), TaskState::TaskFailed);
    assert!(matches!(
        m.ack(t0 + 42 * S, "f", "t", &[2; 16]),
        AckOutcome::Acked {
            terminal: true,
            next: None
        }
    ));
    assert!(m.due(t0 + 1000 * S).is_empty());
}

#[test]
fn wrong_uuid_or_unknown_task_is_ignored() {
    let t0 = Timestamp::ZERO;
    let mut m = mgr();
    m.push(t0, update("f", "t", TaskState::TaskRunning, 1));
    assert_eq!(m.ack(t0, "f", "t", &[9; 16]), AckOutcome::Ignored);
    assert_eq!(m.ack(t0, "f", "t", &[]), AckOutcome::Ignored);
    assert_eq!(m.ack(t0, "f", "other", &[1; 16]), AckOutcome::Ignored);
    assert_eq!(m.ack(t0, "other", "t", &[1; 16]), AckOutcome::Ignored);
    assert_eq!(m.pending(&TaskKey::new("f", "t")), 1);
    assert_eq!(m.due(t0 + 10 * S).len(), 1);
}

#[test]
fn resend_all_on_reconnect() {
    let t0 = Timestamp::ZERO;
    let mut m = mgr();
    m.push(t0, update("f", "a", TaskState::TaskStarting, 1));
    m.push(t0, update("f", "a", TaskState::TaskRunning, 2));
    m.push(t0, update("f", "b", TaskState::TaskRunning, 3));
    // Backoff grew while disconnected.
    m.due(t0 + 10 * S);
    m.due(t0 + 30 * S);
    let now = t0 + 35 * S;
    let mut sent: Vec<Vec<u8>> = m
        .resend_all(now)
        .iter()
        .filter_map(|u| u.status.as_ref().map(|s| s.uuid.clone()))
        .collect();
    sent.sort();
    assert_eq!(sent, vec![vec![1; 16], vec![3; 16]], "heads only");
    // Timers restart at the initial interval.
    assert_eq!(m.next_deadline(), Some(now + 10 * S));
    assert_eq!(m.due(now + 10 * S).len(), 2);
    assert_eq!(m.next_deadline(), Some(now + 30 * S));
    m.clear();
    assert!(m.is_empty());
}
