//! Partition awareness: unreachable agents, PARTITION_AWARE frameworks, agents marked gone,
//! reconciliation answers, registry GC of unreachable agents.

use proffer_proto::v1::{self, TaskState, event::Event, master_message::Msg as AOut};

use super::harness::{H, task};
use crate::core::{Call, DEFAULT_OFFER_COALESCE_MS, Input, MasterConfig, Timestamp};

const A1: u64 = 1;
const AWARE: u64 = 101;
const PLAIN: u64 = 102;
const AGENT: &str = "cpus:4;mem:4096";

fn config() -> MasterConfig {
    MasterConfig {
        agent_ping_interval_ms: 100,
        agent_max_missed_pings: 3,
        registry_max_agent_age_ms: 3_600_000,
        ..MasterConfig::default()
    }
}

/// A partition-aware framework (`aware`, failover timeout one hour).
pub(super) fn aware_info() -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        name: "aware".into(),
        failover_timeout: 3600.0,
        capabilities: vec!["PARTITION_AWARE".into()],
        ..Default::default()
    }
}

/// An agent running `pa-1` (partition-aware framework) and `plain-1` (the other).
fn setup() -> (H, String, v1::CallHeader, v1::CallHeader) {
    let mut h = H::with(config());
    let agent = h.register_agent(A1, "host1", AGENT);
    let aware = h.subscribe_with(AWARE, aware_info());
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    let offer = h.offers(AWARE).remove(0);
    h.launch(&aware, &[&offer.id], vec![task("pa-1", "cpus:1;mem:128")])
        .expect("launch");
    let plain = h.subscribe(PLAIN, "plain", 3600.0);
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    let offer = h.offers(PLAIN).remove(0);
    h.launch(
        &plain,
        &[&offer.id],
        vec![task("plain-1", "cpus:1;mem:128")],
    )
    .expect("launch");
    h.drain();
    (h, agent, aware, plain)
}

fn statuses(h: &mut H, conn: u64) -> Vec<(String, i32)> {
    h.updates(conn)
        .into_iter()
        .map(|s| (s.task_id, s.state))
        .collect()
}

fn reconcile(h: &mut H, header: &v1::CallHeader, task_id: &str, agent_id: &str) {
    h.call(Call::Reconcile(v1::ReconcileRequest {
        header: Some(header.clone()),
        tasks: vec![v1::ReconcileTask {
            task_id: task_id.into(),
            agent_id: agent_id.into(),
        }],
    }))
    .expect("reconcile");
}

fn silence(h: &mut H) {
    h.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    h.advance(400);
}

#[test]
fn an_unreachable_agent_is_unreachable_for_aware_frameworks_and_lost_for_others() {
    let (mut h, agent, aware, plain) = setup();
    silence(&mut h);
    assert_eq!(
        statuses(&mut h, AWARE),
        vec![("pa-1".to_string(), TaskState::TaskUnreachable as i32)]
    );
    assert_eq!(
        statuses(&mut h, PLAIN),
        vec![("plain-1".to_string(), TaskState::TaskLost as i32)]
    );
    h.m.check_accounting().expect("books balance");
    // Reconciliation: known task → UNREACHABLE; unknown on that agent → UNREACHABLE; unknown
    // without an agent → UNKNOWN; for the other framework → LOST.
    reconcile(&mut h, &aware, "pa-1", "");
    reconcile(&mut h, &aware, "nope", &agent);
    reconcile(&mut h, &aware, "nope", "");
    reconcile(&mut h, &plain, "nope", &agent);
    let got: Vec<i32> = statuses(&mut h, AWARE).into_iter().map(|s| s.1).collect();
    assert_eq!(
        got,
        vec![
            TaskState::TaskUnreachable as i32,
            TaskState::TaskUnreachable as i32,
            TaskState::TaskUnknown as i32
        ]
    );
    assert_eq!(statuses(&mut h, PLAIN)[0].1, TaskState::TaskLost as i32);
    // The agent comes back with both tasks.
    let running = |fw: &v1::CallHeader, id: &str| v1::RunningTask {
        framework_id: fw.framework_id.clone(),
        task: Some(task(id, "cpus:1;mem:128")),
        state: TaskState::TaskRunning as i32,
    };
    h.reregister(
        7,
        &agent,
        AGENT,
        vec![running(&aware, "pa-1"), running(&plain, "plain-1")],
    );
    assert_eq!(
        statuses(&mut h, AWARE),
        vec![("pa-1".to_string(), TaskState::TaskRunning as i32)]
    );
    let kills: Vec<String> = h
        .agent_msgs(7)
        .into_iter()
        .filter_map(|m| match m {
            AOut::KillTask(k) => Some(k.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(kills, vec!["plain-1".to_string()]);
    let snap = h.m.snapshot(Timestamp(h.now));
    assert_eq!(snap.agents[0].state, "active");
    assert_eq!(snap.agents[0].active_tasks, 1);
    h.m.check_accounting()
        .expect("the returning task counts again");
}

#[test]
fn an_agent_marked_gone_ends_its_tasks_and_never_returns() {
    let (mut h, agent, aware, plain) = setup();
    silence(&mut h);
    h.drain();
    h.m.mark_agent_gone(Timestamp(h.now), &agent).expect("gone");
    h.pump();
    assert_eq!(
        statuses(&mut h, AWARE),
        vec![("pa-1".to_string(), TaskState::TaskGoneByOperator as i32)]
    );
    assert!(statuses(&mut h, PLAIN).is_empty(), "already told LOST");
    reconcile(&mut h, &aware, "nope", &agent);
    assert_eq!(statuses(&mut h, AWARE)[0].1, TaskState::TaskGone as i32);
    reconcile(&mut h, &plain, "plain-1", &agent);
    assert_eq!(statuses(&mut h, PLAIN)[0].1, TaskState::TaskLost as i32);
    // Marking again is harmless; an unknown id is refused.
    h.m.mark_agent_gone(Timestamp(h.now), &agent)
        .expect("again");
    assert!(h.m.mark_agent_gone(Timestamp(h.now), "nope").is_err());
    h.reregister(8, &agent, AGENT, Vec::new());
    assert!(matches!(&h.agent_msgs(8)[..], [AOut::Shutdown(_)]));
    h.m.check_accounting().expect("books balance");
}

#[test]
fn unreachable_agents_are_forgotten_after_the_maximum_age() {
    let (mut h, _agent, _, _) = setup();
    silence(&mut h);
    assert_eq!(
        h.m.snapshot(Timestamp(h.now)).agents[0].state,
        "unreachable"
    );
    h.drain();
    h.advance(3_600_000);
    let snap = h.m.snapshot(Timestamp(h.now));
    assert!(snap.agents.is_empty());
    assert_eq!(snap.gone_agents, 1);
    // The partition-aware framework's task, unreachable until now, is gone; the other
    // framework heard LOST long ago and hears nothing more.
    assert_eq!(
        statuses(&mut h, AWARE),
        vec![("pa-1".to_string(), TaskState::TaskGone as i32)]
    );
    let events = h.events(PLAIN);
    assert!(
        events.iter().all(|e| !matches!(e, Event::Update(_))),
        "{events:?}"
    );
}

#[test]
fn summaries_carry_start_end_and_the_sandbox() {
    let (mut h, _agent, aware, plain) = setup();
    for (fw, id) in [(&aware, "pa-1"), (&plain, "plain-1")] {
        h.input(Input::Agent {
            conn: A1,
            msg: v1::AgentMessage {
                msg: Some(v1::agent_message::Msg::StatusUpdate(v1::StatusUpdate {
                    framework_id: fw.framework_id.clone(),
                    latest_state: None,
                    status: Some(v1::TaskStatus {
                        task_id: id.into(),
                        state: TaskState::TaskRunning as i32,
                        uuid: vec![1],
                        source: v1::StatusSource::SourceAgent as i32,
                        timestamp_ms: 1,
                        ..Default::default()
                    }),
                })),
            },
        })
        .expect("running");
    }
    let now = Timestamp(h.now);
    let live = h.m.snapshot(now);
    let pa = live.tasks.iter().find(|t| t.id == "pa-1").expect("pa-1");
    assert_eq!((pa.started_ms, pa.ended_ms), (1, 0));
    assert_eq!(
        pa.sandbox,
        format!("/w/sandboxes/{}/pa-1", aware.framework_id)
    );
    // The master's own LOST (the agent went silent) ends the task; its agent is no longer
    // registered, so where its sandbox was is not shown.
    silence(&mut h);
    let after = h.m.snapshot(Timestamp(h.now));
    let plain_task = after
        .tasks
        .iter()
        .chain(&after.completed_tasks)
        .find(|t| t.id == "plain-1")
        .expect("plain-1");
    assert_eq!(plain_task.state, "TASK_LOST");
    assert_eq!(plain_task.sandbox, "");
    assert_eq!(plain_task.started_ms, 1);
    assert!(plain_task.ended_ms > 1, "{plain_task:?}");
    let pa = after.tasks.iter().find(|t| t.id == "pa-1").expect("pa-1");
    assert_eq!(pa.state, "TASK_UNREACHABLE");
}
