//! Scenario tests: one behaviour each, driven with virtual time.

use proffer_proto::v1::{
    self, TaskState, agent_message::Msg as AIn, event::Event, master_message::Msg as AOut,
};

use super::harness::{H, agent_info, res, task};
use crate::core::{
    Call, DEFAULT_OFFER_COALESCE_MS, ErrorKind, Input, MasterConfig, MasterError, Output,
};

pub(super) const A1: u64 = 1;
pub(super) const A2: u64 = 2;
pub(super) const F1: u64 = 101;
pub(super) const F2: u64 = 102;

/// One agent, one framework, first offer in hand.
pub(super) fn one_offer() -> (H, String, v1::CallHeader, v1::Offer) {
    let mut h = H::new();
    let agent = h.register_agent(A1, "host1", "cpus:4;mem:4096;ports:[31000-31009]");
    let fw = h.subscribe(F1, "fw", 0.0);
    h.advance(1);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1, "one agent → one offer");
    (h, agent, fw, offers[0].clone())
}

#[test]
fn registration_assigns_distinct_ids_and_pings() {
    let mut h = H::new();
    let a = h.register_agent(A1, "host1", "cpus:1;mem:128");
    let b = h.register_agent(A2, "host2", "cpus:1;mem:128");
    assert_ne!(a, b);
    assert!(a.starts_with(h.m.master_id()));
    h.advance(15_000);
    let pings: Vec<_> = h
        .agent_msgs(A1)
        .into_iter()
        .filter(|m| matches!(m, AOut::Ping(_)))
        .collect();
    assert_eq!(pings.len(), 1, "one ping per interval");
}

#[test]
fn offer_covers_the_whole_free_agent() {
    let (_, agent, fw, offer) = one_offer();
    assert_eq!(offer.agent_id, agent);
    assert_eq!(offer.framework_id, fw.framework_id);
    assert_eq!(
        res(&offer).to_string(),
        "cpus:4;mem:4096;ports:[31000-31009]"
    );
}

#[test]
fn launch_runs_task_and_returns_the_rest_with_a_filter() {
    let (mut h, _agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:1024")])
        .expect("launch");
    let msgs = h.agent_msgs(A1);
    assert!(
        matches!(&msgs[..], [AOut::RunTask(r)] if r.task.as_ref().map(|t| t.task_id.as_str()) == Some("t1"))
    );
    // The rest is filtered for the default 5 s.
    h.advance(4_000);
    assert!(h.offers(F1).is_empty(), "filtered for 5 s");
    h.advance(1_001);
    let again = h.offers(F1);
    assert_eq!(again.len(), 1);
    assert_eq!(
        res(&again[0]).to_string(),
        "cpus:3;mem:3072;ports:[31000-31009]"
    );
}

#[test]
fn status_updates_are_forwarded_and_acks_reach_the_agent() {
    let (mut h, agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:4;mem:4096")])
        .expect("launch");
    h.drain();
    for (state, uuid) in [
        (TaskState::TaskStarting, b"u1"),
        (TaskState::TaskRunning, b"u2"),
        (TaskState::TaskFinished, b"u3"),
    ] {
        h.status(A1, &fw.framework_id, "t1", state, uuid)
            .expect("status");
    }
    let ups = h.updates(F1);
    let states: Vec<i32> = ups.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            TaskState::TaskStarting as i32,
            TaskState::TaskRunning as i32,
            TaskState::TaskFinished as i32
        ]
    );
    assert!(ups.iter().all(|s| s.agent_id == agent));
    // Terminal but not yet acknowledged: still listed; resources already recovered.
    assert_eq!(h.m.snapshot(Default::default()).tasks.len(), 1);
    h.call(Call::Acknowledge(v1::AcknowledgeRequest {
        header: Some(fw.clone()),
        agent_id: agent.clone(),
        task_id: "t1".into(),
        uuid: b"u3".to_vec(),
    }))
    .expect("ack");
    let acks = h.agent_msgs(A1);
    assert!(matches!(&acks[..], [AOut::Ack(a)] if a.uuid == b"u3" && a.task_id == "t1"));
    let snap = h.m.snapshot(Default::default());
    assert!(snap.tasks.is_empty());
    assert_eq!(snap.completed_tasks.len(), 1);
    assert_eq!(snap.completed_tasks[0].state, "TASK_FINISHED");
    // Freed resources are offered again once the coalescing window has passed.
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    assert_eq!(
        res(&h.offers(F1)[0]).to_string(),
        "cpus:4;mem:4096;ports:[31000-31009]"
    );
}

#[test]
fn decline_filters_then_reoffers() {
    let (mut h, _a, fw, offer) = one_offer();
    h.call(Call::Decline(v1::DeclineRequest {
        header: Some(fw.clone()),
        offer_ids: vec![offer.id.clone()],
        filters: Some(v1::Filters {
            refuse_seconds: Some(10.0),
        }),
    }))
    .expect("decline");
    h.advance(9_999);
    assert!(h.offers(F1).is_empty());
    // The filter has expired; the next batch allocation offers again.
    h.advance(1_001);
    assert_eq!(h.offers(F1).len(), 1);
}

#[test]
fn declined_resources_go_to_the_other_framework() {
    let (mut h, _a, fw, offer) = one_offer();
    let _fw2 = h.subscribe(F2, "fw2", 0.0);
    h.call(Call::Decline(v1::DeclineRequest {
        header: Some(fw),
        offer_ids: vec![offer.id],
        filters: None,
    }))
    .expect("decline");
    h.advance(1_000);
    assert!(h.offers(F1).is_empty());
    assert_eq!(h.offers(F2).len(), 1);
}

#[test]
fn suppress_stops_offers_until_revive() {
    let mut h = H::new();
    let fw = h.subscribe(F1, "fw", 0.0);
    h.call(Call::Suppress(v1::SuppressRequest {
        header: Some(fw.clone()),
        roles: vec![],
    }))
    .expect("suppress");
    h.register_agent(A1, "host1", "cpus:1;mem:128");
    h.advance(5_000);
    assert!(h.offers(F1).is_empty());
    assert!(h.m.snapshot(Default::default()).frameworks[0].suppressed);
    h.call(Call::Revive(v1::ReviveRequest {
        header: Some(fw),
        roles: vec![],
    }))
    .expect("revive");
    h.advance(DEFAULT_OFFER_COALESCE_MS);
    assert_eq!(h.offers(F1).len(), 1);
}

#[test]
fn drf_splits_agents_between_frameworks() {
    let mut h = H::new();
    for c in 0..4 {
        h.register_agent(10 + c, &format!("h{c}"), "cpus:2;mem:2048");
    }
    h.subscribe(F1, "a", 0.0);
    h.subscribe(F2, "b", 0.0);
    h.advance(1);
    assert_eq!(h.offers(F1).len(), 2);
    assert_eq!(h.offers(F2).len(), 2);
}

#[test]
fn ping_timeout_removes_agent_and_loses_its_tasks() {
    let cfg = MasterConfig {
        agent_ping_interval_ms: 100,
        agent_max_missed_pings: 3,
        ..Default::default()
    };
    let mut h = H::with(cfg);
    let agent = h.register_agent(A1, "host1", "cpus:2;mem:1024");
    let fw = h.subscribe(F1, "fw", 0.0);
    h.advance(1);
    let offer = h.offers(F1).remove(0);
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    h.advance(299);
    assert!(h.updates(F1).is_empty(), "not yet");
    h.advance(2);
    let events = h.events(F1);
    let lost: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Update(u) => u.status.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].state, TaskState::TaskLost as i32);
    assert_eq!(lost[0].reason, "REASON_AGENT_UNREACHABLE");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Failure(f) if f.agent_id == agent))
    );
    let snap = h.m.snapshot(Default::default());
    assert_eq!(snap.agents.len(), 1);
    assert_eq!(snap.agents[0].state, "unreachable");
    assert_eq!(snap.completed_tasks[0].state, "TASK_LOST");
    // It comes back with the task: registered again, and the task its framework was told was
    // lost is killed; the kill's update is acknowledged by the master, not forwarded.
    let running = v1::RunningTask {
        framework_id: fw.framework_id.clone(),
        task: Some(task("t1", "cpus:1;mem:128")),
        state: TaskState::TaskRunning as i32,
    };
    h.reregister(9, &agent, "cpus:2;mem:1024", vec![running]);
    let msgs = h.agent_msgs(9);
    assert!(matches!(&msgs[0], AOut::Registered(_)), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| matches!(m, AOut::KillTask(k) if k.task_id == "t1")),
        "{msgs:?}"
    );
    h.status(9, &fw.framework_id, "t1", TaskState::TaskKilled, b"k1")
        .expect("killed");
    assert!(h.updates(F1).is_empty(), "the framework already heard LOST");
    assert!(h.agent_msgs(9).iter().any(|m| matches!(m, AOut::Ack(_))));
    assert_eq!(h.m.snapshot(Default::default()).agents[0].state, "active");
    h.m.check_accounting().expect("books balance");
}

#[test]
fn pongs_keep_an_agent_alive() {
    let cfg = MasterConfig {
        agent_ping_interval_ms: 100,
        agent_max_missed_pings: 3,
        ..Default::default()
    };
    let mut h = H::with(cfg);
    h.register_agent(A1, "host1", "cpus:2;mem:1024");
    for _ in 0..20 {
        h.advance(100);
        h.input(Input::Agent {
            conn: A1,
            msg: v1::AgentMessage {
                msg: Some(AIn::Pong(v1::Pong { seq: 1 })),
            },
        })
        .expect("pong");
    }
    assert_eq!(h.m.snapshot(Default::default()).agents.len(), 1);
}

#[test]
fn agent_reregistration_keeps_reported_tasks_and_loses_the_rest() {
    let (mut h, agent, fw, offer) = one_offer();
    h.launch(
        &fw,
        &[&offer.id],
        vec![
            task("keep", "cpus:1;mem:128"),
            task("gone", "cpus:1;mem:128"),
        ],
    )
    .expect("launch");
    h.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    h.drain();
    let running = v1::RunningTask {
        framework_id: fw.framework_id.clone(),
        task: Some(task("keep", "cpus:1;mem:128")),
        state: TaskState::TaskRunning as i32,
    };
    h.reregister(
        7,
        &agent,
        "cpus:4;mem:4096;ports:[31000-31009]",
        vec![running],
    );
    // Registered, then the drain state (not drained: reactivate).
    assert!(
        matches!(&h.agent_msgs(7)[..], [AOut::Registered(r), AOut::Reactivate(_), AOut::CheckpointResources(_)] if r.agent_id == agent)
    );
    let ups = h.updates(F1);
    assert_eq!(ups.len(), 1);
    assert_eq!(
        (ups[0].task_id.as_str(), ups[0].state),
        ("gone", TaskState::TaskLost as i32)
    );
    let snap = h.m.snapshot(Default::default());
    assert_eq!(snap.tasks.len(), 1);
    assert_eq!(snap.agents[0].active_tasks, 1);
}

#[test]
fn framework_without_failover_is_removed_on_disconnect() {
    let (mut h, _agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.drain();
    h.input(Input::FrameworkDisconnected { conn: F1 })
        .expect("disconnect");
    assert!(
        matches!(&h.agent_msgs(A1)[..], [AOut::ShutdownFramework(s)] if s.framework_id == fw.framework_id)
    );
    let snap = h.m.snapshot(Default::default());
    assert!(snap.frameworks.is_empty());
    assert_eq!(snap.completed_tasks[0].state, "TASK_KILLED");
    // The removed id cannot come back.
    let info = v1::FrameworkInfo {
        id: fw.framework_id.clone(),
        name: "fw".into(),
        ..Default::default()
    };
    let err = h
        .input(Input::Subscribe {
            conn: 200,
            info: Box::new(info),
        })
        .expect_err("removed");
    assert!(matches!(err, MasterError::FrameworkRemoved { .. }));
}

#[test]
fn framework_failover_within_timeout_keeps_tasks() {
    let mut h = H::new();
    h.register_agent(A1, "host1", "cpus:2;mem:1024");
    let fw = h.subscribe(F1, "fw", 60.0);
    h.advance(1);
    let offer = h.offers(F1).remove(0);
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.input(Input::FrameworkDisconnected { conn: F1 })
        .expect("disconnect");
    h.advance(59_000);
    let info = v1::FrameworkInfo {
        id: fw.framework_id.clone(),
        name: "fw".into(),
        failover_timeout: 60.0,
        ..Default::default()
    };
    h.input(Input::Subscribe {
        conn: F2,
        info: Box::new(info),
    })
    .expect("resubscribe");
    let sub = h.events(F2);
    assert!(
        matches!(&sub[0], Event::Subscribed(s) if s.framework_id == fw.framework_id && s.stream_id != fw.stream_id)
    );
    // Past the original failover deadline (60 s after the disconnect): still there.
    h.advance(10_000);
    let snap = h.m.snapshot(Default::default());
    assert_eq!(snap.frameworks.len(), 1);
    assert_eq!(snap.tasks.len(), 1);
    // The old stream id no longer authenticates.
    let err = h
        .call(Call::Revive(v1::ReviveRequest {
            header: Some(fw),
            roles: vec![],
        }))
        .expect_err("old stream");
    assert!(matches!(err, MasterError::WrongStream { .. }));
}

#[test]
fn failover_timeout_expiry_removes_framework() {
    let mut h = H::new();
    h.subscribe(F1, "fw", 2.0);
    h.input(Input::FrameworkDisconnected { conn: F1 })
        .expect("disconnect");
    h.advance(1_999);
    assert_eq!(h.m.snapshot(Default::default()).frameworks.len(), 1);
    h.advance(1);
    assert!(h.m.snapshot(Default::default()).frameworks.is_empty());
}

#[test]
fn kill_goes_to_the_agent_with_grace() {
    let (mut h, _agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.drain();
    h.call(Call::Kill(v1::KillRequest {
        header: Some(fw.clone()),
        task_id: "t1".into(),
        agent_id: String::new(),
        kill_grace_period_ms: Some(500),
    }))
    .expect("kill");
    assert!(
        matches!(&h.agent_msgs(A1)[..], [AOut::KillTask(k)] if k.task_id == "t1" && k.kill_grace_period_ms == 500)
    );
    let err = h
        .call(Call::Kill(v1::KillRequest {
            header: Some(fw),
            task_id: "nope".into(),
            ..Default::default()
        }))
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn reconcile_explicit_and_implicit() {
    let (mut h, _agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.status(A1, &fw.framework_id, "t1", TaskState::TaskRunning, b"u")
        .expect("status");
    h.drain();
    h.call(Call::Reconcile(v1::ReconcileRequest {
        header: Some(fw.clone()),
        tasks: vec![],
    }))
    .expect("implicit");
    let ups = h.updates(F1);
    assert_eq!(ups.len(), 1);
    assert_eq!(
        (ups[0].state, ups[0].reason.as_str()),
        (TaskState::TaskRunning as i32, "REASON_RECONCILIATION")
    );
    assert!(ups[0].uuid.is_empty());
    let tasks = vec![
        v1::ReconcileTask {
            task_id: "t1".into(),
            agent_id: String::new(),
        },
        v1::ReconcileTask {
            task_id: "ghost".into(),
            agent_id: String::new(),
        },
    ];
    h.call(Call::Reconcile(v1::ReconcileRequest {
        header: Some(fw),
        tasks,
    }))
    .expect("explicit");
    let states: Vec<(String, i32)> = h
        .updates(F1)
        .into_iter()
        .map(|s| (s.task_id, s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("t1".into(), TaskState::TaskRunning as i32),
            ("ghost".into(), TaskState::TaskLost as i32)
        ]
    );
}

#[test]
fn offer_timeout_rescinds() {
    let cfg = MasterConfig {
        offer_timeout_ms: Some(2_000),
        ..Default::default()
    };
    let mut h = H::with(cfg);
    h.register_agent(A1, "host1", "cpus:1;mem:128");
    h.subscribe(F1, "fw", 0.0);
    h.advance(1);
    let offer = h.offers(F1).remove(0);
    h.advance(2_000);
    let events = h.events(F1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Rescind(r) if r.offer_id == offer.id))
    );
}

#[test]
fn teardown_closes_the_stream_and_kills_tasks() {
    let (mut h, _agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.drain();
    h.call(Call::Teardown(v1::TeardownRequest { header: Some(fw) }))
        .expect("teardown");
    let out = h.drain();
    assert!(out.contains(&Output::CloseFramework { conn: F1 }));
    assert!(out.iter().any(|o| matches!(o, Output::ToAgent { msg, .. } if matches!(msg.msg, Some(AOut::ShutdownFramework(_))))));
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut h = H::new();
        for c in 0..5 {
            h.register_agent(c, &format!("h{c}"), "cpus:2;mem:2048");
        }
        h.subscribe(F1, "a", 0.0);
        h.subscribe(F2, "b", 0.0);
        h.advance(1);
        h.drain()
    };
    assert_eq!(run(), run());
}

#[test]
fn draining_an_agent_rescinds_offers_and_stops_new_ones() {
    let (mut h, agent, _fw, offer) = one_offer();
    h.m.drain_agent(&agent, "kernel upgrade").expect("drain");
    h.out.extend(h.m.take_outbox());
    let events = h.events(F1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Rescind(r) if r.offer_id == offer.id))
    );
    assert!(matches!(&h.agent_msgs(A1)[..], [AOut::Drain(d)] if d.reason == "kernel upgrade"));
    h.advance(10_000);
    assert!(h.offers(F1).is_empty(), "no offers from a draining agent");
    h.m.reactivate_agent(&agent).expect("reactivate");
    h.advance(1);
    assert_eq!(h.offers(F1).len(), 1);
    assert!(matches!(
        h.m.drain_agent("nope", "x"),
        Err(MasterError::UnknownAgent { .. })
    ));
}

#[test]
fn launch_group_sends_the_tasks_together_or_not_at_all() {
    let (mut h, _agent, fw, offer) = one_offer();
    let group = |tasks: Vec<v1::TaskInfo>| v1::Operation {
        op: Some(v1::operation::Op::LaunchGroup(v1::LaunchGroup { tasks })),
    };
    let accept = |ops: Vec<v1::Operation>, offer: &v1::Offer| {
        Call::Accept(v1::AcceptRequest {
            header: Some(fw.clone()),
            offer_ids: vec![offer.id.clone()],
            operations: ops,
            filters: None,
        })
    };
    let err = h
        .call(accept(vec![group(vec![])], &offer))
        .expect_err("empty group");
    assert!(err.to_string().contains("at least one task"), "{err}");
    let too_big = vec![task("g1", "cpus:3;mem:128"), task("g2", "cpus:3;mem:128")];
    let err = h
        .call(accept(vec![group(too_big)], &offer))
        .expect_err("too big");
    assert!(
        matches!(err, MasterError::ResourcesNotInOffer { .. }),
        "{err}"
    );
    assert!(
        h.m.snapshot(Default::default()).tasks.is_empty(),
        "nothing launched"
    );
    let ok = vec![task("g1", "cpus:1;mem:128"), task("g2", "cpus:1;mem:128")];
    h.call(accept(vec![group(ok)], &offer)).expect("group");
    let msgs = h.agent_msgs(A1);
    match &msgs[..] {
        [AOut::RunTaskGroup(g)] => {
            let ids: Vec<&str> = g.tasks.iter().map(|t| t.task_id.as_str()).collect();
            assert_eq!(ids, ["g1", "g2"]);
            assert!(g.tasks.iter().all(|t| !t.agent_id.is_empty()));
        }
        other => panic!("expected one RunTaskGroup, got {other:?}"),
    }
    assert_eq!(h.m.snapshot(Default::default()).tasks.len(), 2);
}

#[test]
fn reregistration_keeps_dynamic_reservations_and_does_not_over_offer() {
    let reserved = "cpus(web,dynamic):2;mem(web,dynamic):1024";
    let reserve = v1::Operation {
        op: Some(v1::operation::Op::Reserve(v1::Reserve {
            resources: proffer_proto::Resources::parse(reserved)
                .expect("parse")
                .to_proto(),
        })),
    };
    let t = task("t1", reserved);
    let launch = v1::Operation {
        op: Some(v1::operation::Op::Launch(v1::Launch {
            tasks: vec![t.clone()],
        })),
    };
    // The framework must be in role `web` to reserve for it.
    let mut h2 = H::new();
    let agent2 = h2.register_agent(A1, "host1", "cpus:4;mem:4096");
    let info = v1::FrameworkInfo {
        name: "web".into(),
        roles: vec!["web".into()],
        failover_timeout: 60.0,
        ..Default::default()
    };
    let hdr = h2.subscribe_with(F1, info);
    h2.advance(1);
    let o = h2.offers(F1).remove(0);
    h2.call(Call::Accept(v1::AcceptRequest {
        header: Some(hdr.clone()),
        offer_ids: vec![o.id],
        operations: vec![reserve, launch],
        filters: Some(v1::Filters {
            refuse_seconds: Some(0.0),
        }),
    }))
    .expect("reserve + launch");
    h2.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    let running = v1::RunningTask {
        framework_id: hdr.framework_id.clone(),
        task: Some(t),
        state: TaskState::TaskRunning as i32,
    };
    h2.input(Input::Agent {
        conn: 7,
        msg: v1::AgentMessage {
            msg: Some(AIn::Reregister(v1::ReregisterAgent {
                info: Some(Box::new(agent_info(&agent2, "host1", "cpus:4;mem:4096"))),
                tasks: vec![running],
            })),
        },
    })
    .expect("reregister");
    h2.drain();
    h2.advance(1_000);
    let offered: Vec<String> = h2.offers(F1).iter().map(|o| res(o).to_string()).collect();
    assert_eq!(
        offered,
        ["cpus:2;mem:3072"],
        "only what the task does not use is offered"
    );
    let snap = h2.m.snapshot(Default::default());
    assert!(
        snap.agents[0].total.contains("cpus(web,dynamic"),
        "{}",
        snap.agents[0].total
    );
}
