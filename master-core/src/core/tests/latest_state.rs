//! An agent's status update carrying the task's latest state (Mesos's `latest_state`): the
//! master frees a task's resources as soon as the latest state is terminal, while the
//! framework still gets every update the agent sends, in the agent's order.

use proffer_proto::v1::{self, TaskState, event::Event, master_message::Msg as AOut};

use super::harness::{H, res, task};
use super::partition::aware_info;
use super::scenarios::{A1, F1, one_offer};
use crate::core::{Call, DEFAULT_OFFER_COALESCE_MS, ErrorKind, Input, MasterConfig, MasterError};

/// An agent update of `task` in `state` (uuid `uuid`) whose latest state is `latest`.
fn update(
    h: &mut H,
    fw: &str,
    task: &str,
    state: TaskState,
    uuid: &[u8],
    latest: Option<i32>,
) -> Result<(), MasterError> {
    h.status_latest(A1, fw, task, state, uuid, latest)
}

fn ack(h: &mut H, fw: &v1::CallHeader, agent: &str, uuid: &[u8]) {
    h.call(Call::Acknowledge(v1::AcknowledgeRequest {
        header: Some(fw.clone()),
        agent_id: agent.into(),
        task_id: "t1".into(),
        uuid: uuid.to_vec(),
    }))
    .expect("ack");
}

fn states(ups: &[v1::TaskStatus]) -> Vec<TaskState> {
    ups.iter()
        .map(|s| TaskState::try_from(s.state).unwrap_or(TaskState::Unspecified))
        .collect()
}

const ALL: &str = "cpus:4;mem:4096;ports:[31000-31009]";

/// Launches `t1` (the whole agent) from `offer` and reports it RUNNING (uuid `u1`) with
/// FINISHED as its latest state: freed early, its end not forwarded yet. Returns the
/// framework id.
fn launch_freed_early(h: &mut H, fw: &v1::CallHeader, offer: &v1::Offer) -> String {
    let id = fw.framework_id.clone();
    h.launch(fw, &[&offer.id], vec![task("t1", "cpus:4;mem:4096")])
        .expect("launch");
    h.drain();
    let finished = Some(TaskState::TaskFinished as i32);
    update(h, &id, "t1", TaskState::TaskRunning, b"u1", finished).expect("running");
    id
}

/// Framework `info`'s task `t1` is freed early (RUNNING forwarded, FINISHED latest), then its
/// agent disconnects and misses its pings for a second.
fn freed_early_then_lost(info: v1::FrameworkInfo) -> H {
    let mut h = H::with(MasterConfig {
        agent_ping_interval_ms: 100,
        agent_max_missed_pings: 3,
        ..Default::default()
    });
    h.register_agent(A1, "host1", ALL);
    let fw = h.subscribe_with(F1, info);
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    let offer = h.offers(F1).remove(0);
    launch_freed_early(&mut h, &fw, &offer);
    h.drain();
    h.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    for _ in 0..10 {
        h.advance(100);
    }
    h
}

#[test]
fn a_terminal_latest_state_frees_the_task_before_its_end_is_forwarded() {
    let (mut h, agent, fw, offer) = one_offer();
    // RUNNING is in flight; the task already finished on the agent.
    let id = launch_freed_early(&mut h, &fw, &offer);
    assert_eq!(
        states(&h.updates(F1)),
        [TaskState::TaskRunning],
        "only the update itself goes to the framework"
    );
    // Its resources are offered again at once (after the coalescing window), not after a
    // master → framework → master → agent round trip.
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1);
    assert_eq!(res(&offers[0]).to_string(), ALL);
    h.m.check_accounting().expect("books balance");
    // The framework still sees the task as running; operators see its latest state with the
    // state of the update forwarded beside it (Mesos's `state` and `status_update_state`).
    let snap = h.m.snapshot(Default::default());
    assert_eq!(snap.tasks.len(), 1);
    assert_eq!(snap.tasks[0].state, "TASK_FINISHED");
    assert_eq!(snap.tasks[0].status_update_state, "TASK_RUNNING");
    assert_eq!(snap.tasks[0].ended_ms, 0, "its end is not forwarded yet");
    // Acknowledging RUNNING does not retire the task: its end is still to come.
    ack(&mut h, &fw, &agent, b"u1");
    assert!(matches!(&h.agent_msgs(A1)[..], [AOut::Ack(a)] if a.uuid == b"u1"));
    assert_eq!(h.m.snapshot(Default::default()).tasks.len(), 1);
    // The end comes: forwarded once; its resources are not given back a second time.
    let finished = Some(TaskState::TaskFinished as i32);
    update(&mut h, &id, "t1", TaskState::TaskFinished, b"u2", finished).expect("finished");
    assert_eq!(states(&h.updates(F1)), [TaskState::TaskFinished]);
    h.m.check_accounting().expect("books balance");
    ack(&mut h, &fw, &agent, b"u2");
    let snap = h.m.snapshot(Default::default());
    assert!(snap.tasks.is_empty());
    assert_eq!(snap.completed_tasks.len(), 1);
    assert_eq!(snap.completed_tasks[0].state, "TASK_FINISHED");
    assert_eq!(snap.completed_tasks[0].status_update_state, "TASK_FINISHED");
    h.m.check_accounting().expect("books balance");
}

#[test]
fn a_live_latest_state_frees_nothing() {
    let (mut h, _agent, fw, offer) = one_offer();
    let id = fw.framework_id.clone();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:4;mem:4096")])
        .expect("launch");
    h.drain();
    let running = Some(TaskState::TaskRunning as i32);
    update(&mut h, &id, "t1", TaskState::TaskStarting, b"u1", running).expect("starting");
    let shown = |h: &H| {
        let t = h.m.snapshot(Default::default()).tasks.remove(0);
        (t.state, t.status_update_state)
    };
    assert_eq!(shown(&h), ("TASK_RUNNING".into(), "TASK_STARTING".into()));
    // Absent (an agent that predates the field): the update alone counts, as before.
    update(&mut h, &id, "t1", TaskState::TaskRunning, b"u2", None).expect("running");
    assert_eq!(shown(&h), ("TASK_RUNNING".into(), "TASK_RUNNING".into()));
    assert_eq!(
        states(&h.updates(F1)),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    h.advance(10_000);
    assert!(h.offers(F1).is_empty(), "the task still holds the agent");
    h.m.check_accounting().expect("books balance");
}

#[test]
fn a_stale_resend_after_the_end_is_still_forwarded_and_changes_nothing() {
    // As in Mesos, every update the agent sends is forwarded: a RUNNING re-sent after the end
    // (a duplicate that was overtaken on the wire) reaches the framework, whose
    // acknowledgement the agent ignores; the task stays finished, its resources free once.
    let (mut h, agent, fw, offer) = one_offer();
    let id = launch_freed_early(&mut h, &fw, &offer);
    let finished = Some(TaskState::TaskFinished as i32);
    update(&mut h, &id, "t1", TaskState::TaskFinished, b"u2", finished).expect("finished");
    update(&mut h, &id, "t1", TaskState::TaskRunning, b"u1", finished).expect("re-sent");
    assert_eq!(
        states(&h.updates(F1)),
        [
            TaskState::TaskRunning,
            TaskState::TaskFinished,
            TaskState::TaskRunning
        ]
    );
    let snap = h.m.snapshot(Default::default());
    assert_eq!(snap.tasks[0].state, "TASK_FINISHED");
    h.m.check_accounting().expect("books balance");
    ack(&mut h, &fw, &agent, b"u2");
    assert!(h.m.snapshot(Default::default()).tasks.is_empty());
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    assert_eq!(res(&h.offers(F1)[0]).to_string(), ALL);
    h.m.check_accounting().expect("books balance");
}

#[test]
fn a_task_freed_early_still_gets_an_end_when_its_agent_is_lost() {
    // The master freed the task on its latest state, but the framework only heard RUNNING:
    // when the agent is removed the framework is told the task is lost (it must hear an end),
    // and the resources are not counted back twice.
    let mut h = freed_early_then_lost(v1::FrameworkInfo {
        name: "fw".into(),
        ..Default::default()
    });
    let ends: Vec<v1::TaskStatus> = h
        .events(F1)
        .into_iter()
        .filter_map(|e| match e {
            Event::Update(u) => u.status,
            _ => None,
        })
        .collect();
    assert_eq!(states(&ends), [TaskState::TaskLost]);
    // Operators see the end the framework was told, not the agent's last word.
    let snap = h.m.snapshot(Default::default());
    let t = snap
        .tasks
        .iter()
        .chain(&snap.completed_tasks)
        .next()
        .expect("the task");
    assert_eq!(
        (t.state.as_str(), t.status_update_state.as_str()),
        ("TASK_LOST", "TASK_LOST")
    );
    h.m.check_accounting().expect("books balance");
}

#[test]
fn a_task_freed_early_shows_the_unreachable_its_framework_was_told() {
    // A master-made update speaks for the task: the agent's last word (FINISHED, its RUNNING
    // unacknowledged) no longer shows once the framework is told the agent is unreachable.
    let mut h = freed_early_then_lost(aware_info());
    assert_eq!(states(&h.updates(F1)), [TaskState::TaskUnreachable]);
    let snap = h.m.snapshot(Default::default());
    let t = &snap.tasks[0];
    assert_eq!(
        (t.state.as_str(), t.status_update_state.as_str()),
        ("TASK_UNREACHABLE", "TASK_UNREACHABLE")
    );
    h.m.check_accounting().expect("books balance");
}

#[test]
fn a_latest_state_naming_no_state_is_refused() {
    let (mut h, _agent, fw, offer) = one_offer();
    let id = fw.framework_id.clone();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:4;mem:4096")])
        .expect("launch");
    h.drain();
    for bad in [0, 999] {
        let err = update(&mut h, &id, "t1", TaskState::TaskRunning, b"u1", Some(bad))
            .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("latest_state"), "{err}");
    }
    assert!(h.updates(F1).is_empty(), "nothing forwarded");
    h.m.check_accounting().expect("books balance");
}
