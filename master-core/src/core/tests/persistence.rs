//! Persistence and recovery on virtual time: outputs wait for their registry batch; a master
//! recovered from what was written has its roles, frameworks, agents (awaiting
//! re-registration), reservations and removals; reconciliation says nothing about tasks on
//! agents that may still come back.

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event, master_message::Msg as AOut};

use super::harness::{H, res, task};
use crate::core::{Call, Input, MasterConfig, MasterError, Output, Timestamp};
use crate::registry::{Stored, Table};

const A1: u64 = 1;
const F1: u64 = 101;
const AGENT: &str = "cpus:4;mem:4096;disk:1000";

fn config() -> MasterConfig {
    MasterConfig {
        agent_reregister_timeout_ms: 60_000,
        ..MasterConfig::default()
    }
}

/// The framework in role `web` of these tests (`id` empty: a new one).
fn web_framework(id: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        id: id.into(),
        name: "web".into(),
        roles: vec!["web".into()],
        failover_timeout: 3600.0,
        ..Default::default()
    }
}

fn running(fw: &str, id: &str, res: &str) -> v1::RunningTask {
    v1::RunningTask {
        framework_id: fw.into(),
        task: Some(task(id, res)),
        state: TaskState::TaskRunning as i32,
    }
}

#[test]
fn outputs_wait_for_their_batch() {
    let mut h = H::persistent(config(), Stored::default(), 1_000);
    h.hold_writes = true;
    h.input(Input::Subscribe {
        conn: F1,
        info: Box::new(v1::FrameworkInfo {
            name: "fw".into(),
            ..Default::default()
        }),
    })
    .expect("subscribe");
    assert!(h.events(F1).is_empty(), "SUBSCRIBED waits for the registry");
    assert_eq!(h.unwritten.len(), 1);
    let keys: Vec<(Table, String)> = h.unwritten[0]
        .1
        .iter()
        .map(|o| (o.table, o.key.clone()))
        .collect();
    assert!(
        keys.iter().any(|(t, _)| *t == Table::Frameworks),
        "{keys:?}"
    );
    assert!(h.m.persist_barrier() > 0);
    // Written: the event goes out.
    h.write_held();
    assert!(
        h.events(F1)
            .iter()
            .any(|e| matches!(e, Event::Subscribed(_)))
    );
    assert_eq!(h.m.persist_barrier(), 0);
    // Without persistence nothing is held.
    let mut plain = H::new();
    plain.subscribe(F1, "fw", 0.0);
    assert!(
        plain
            .out
            .iter()
            .all(|o| !matches!(o, Output::Persist { .. }))
    );
}

/// A cluster's life before the "crash": weight, quota, a dynamic reservation, a framework with
/// running tasks, a drained agent, a removed framework.
fn before_crash() -> (H, String, String, String) {
    let mut h = H::persistent(config(), Stored::default(), 1_000);
    h.m.set_weight("web", 3.0).expect("weight");
    h.m.set_quota("web", Resources::parse("cpus:1;mem:512").expect("q"), None)
        .expect("quota");
    h.pump();
    let agent = h.register_agent(A1, "host1", AGENT);
    let spare = h.register_agent(2, "host2", AGENT);
    h.m.reserve_resources(
        &agent,
        &Resources::parse("cpus(web,dynamic=ops):1").expect("r"),
    )
    .expect("reserve");
    h.m.drain_agent(&spare, "maintenance").expect("drain");
    h.pump();
    let fw = h.subscribe_with(F1, web_framework(""));
    let gone = h.subscribe(102, "short-lived", 0.0);
    h.input(Input::FrameworkDisconnected { conn: 102 })
        .expect("disconnect");
    h.advance(1_000);
    let offer = h
        .offers(F1)
        .into_iter()
        .find(|o| o.agent_id == agent)
        .expect("offer on the agent");
    assert!(
        res(&offer).to_string().contains("cpus(web"),
        "{}",
        res(&offer)
    );
    h.launch(
        &fw,
        &[&offer.id],
        vec![
            task("t1", "cpus(web,dynamic=ops):1;mem:128"),
            task("t2", "cpus:1;mem:128"),
        ],
    )
    .expect("launch");
    h.drain();
    (h, agent, fw.framework_id, gone.framework_id)
}

#[test]
fn a_recovered_master_keeps_what_operators_and_frameworks_set() {
    let (h, agent, fw, gone) = before_crash();
    let store = h.store.clone().expect("store");
    // The "crash": a new master from what was written.
    let mut h = H::persistent(config(), store, 50_000);
    let snap = h.m.snapshot(Timestamp(h.now));
    assert_ne!(snap.master_id, h.m.master_id().to_string() + "x");
    assert_eq!(h.m.allocator().weight("web"), 3.0);
    assert!(h.m.allocator().quota("web").is_some());
    let states: Vec<(&str, &str)> = snap
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.state.as_str()))
        .collect();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(_, s)| *s == "recovering"), "{states:?}");
    assert_eq!(
        snap.frameworks.len(),
        1,
        "the removed framework stays removed"
    );
    assert!(!snap.frameworks[0].connected);
    // The removed framework may not come back.
    let back = v1::FrameworkInfo {
        id: gone.clone(),
        name: "short-lived".into(),
        ..Default::default()
    };
    assert!(matches!(
        h.input(Input::Subscribe {
            conn: 300,
            info: Box::new(back)
        }),
        Err(MasterError::FrameworkRemoved { .. })
    ));
    // The framework re-subscribes first and reconciles: nothing is said about t1 or t2 while
    // their agent may still come back.
    let header = h.subscribe_with(F1, web_framework(&fw));
    h.call(Call::Reconcile(v1::ReconcileRequest {
        header: Some(header.clone()),
        tasks: vec![
            v1::ReconcileTask {
                task_id: "t1".into(),
                agent_id: agent.clone(),
            },
            v1::ReconcileTask {
                task_id: "t2".into(),
                agent_id: String::new(),
            },
        ],
    }))
    .expect("reconcile");
    assert!(
        h.updates(F1).is_empty(),
        "no LOST for tasks that may still run"
    );
    h.advance(2_000);
    assert!(h.offers(F1).is_empty(), "agents not back: nothing offered");
    // The agent comes back with its tasks, reporting its plain resources (it does not
    // checkpoint reservations): the master re-applies the stored reservation.
    h.reregister(
        7,
        &agent,
        AGENT,
        vec![
            running(&fw, "t1", "cpus(web,dynamic=ops):1;mem:128"),
            running(&fw, "t2", "cpus:1;mem:128"),
        ],
    );
    let snap = h.m.snapshot(Timestamp(h.now));
    let a = snap.agents.iter().find(|a| a.id == agent).expect("agent");
    assert_eq!(a.state, "active");
    assert!(a.total.contains("cpus(web,dynamic=ops):1"), "{}", a.total);
    assert_eq!(a.active_tasks, 2);
    h.m.check_accounting()
        .expect("books balance after re-registration");
    // The framework is offered what is left, never the reserved cpu twice.
    h.advance(2_000);
    // (The quota stage may chop the agent: count what is offered in all.)
    let offered: i64 = h.offers(F1).iter().map(|o| res(o).cpus_milli()).sum();
    assert_eq!(offered, 2_000, "4 cpus less the 2 in use");
    // The drained agent comes back drained and is told so.
    let spare = states
        .iter()
        .map(|(id, _)| id.to_string())
        .find(|id| *id != agent)
        .expect("spare");
    h.reregister(8, &spare, AGENT, Vec::new());
    assert!(h.agent_msgs(8).iter().any(|m| matches!(m, AOut::Drain(_))));
    h.m.check_accounting().expect("books balance");
}

#[test]
fn agents_that_do_not_come_back_in_time_become_unreachable() {
    let (h, agent, fw, _) = before_crash();
    let mut h = H::persistent(config(), h.store.clone().expect("store"), 50_000);
    let header = h.subscribe_with(F1, web_framework(&fw));
    h.advance(61_000);
    let snap = h.m.snapshot(Timestamp(h.now));
    assert_eq!(snap.agents.len(), 2);
    assert!(
        snap.agents.iter().all(|a| a.state == "unreachable"),
        "{:?}",
        snap.agents
    );
    // Now reconciliation answers (LOST: the framework is not partition-aware).
    h.call(Call::Reconcile(v1::ReconcileRequest {
        header: Some(header),
        tasks: vec![v1::ReconcileTask {
            task_id: "t1".into(),
            agent_id: agent.clone(),
        }],
    }))
    .expect("reconcile");
    let ups = h.updates(F1);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].state, TaskState::TaskLost as i32);
    // The unreachable state survives another restart; the agent may still come back.
    let mut h = H::persistent(config(), h.store.clone().expect("store"), 200_000);
    let snap = h.m.snapshot(Timestamp(h.now));
    assert!(snap.agents.iter().all(|a| a.state == "unreachable"));
    h.reregister(9, &agent, AGENT, Vec::new());
    assert!(matches!(h.agent_msgs(9).first(), Some(AOut::Registered(_))));
    // An operator marks the other gone: it may never come back, even after a restart.
    let other = snap
        .agents
        .iter()
        .find(|a| a.id != agent)
        .expect("other")
        .id
        .clone();
    h.m.mark_agent_gone(Timestamp(h.now), &other).expect("gone");
    h.pump();
    let mut h = H::persistent(config(), h.store.clone().expect("store"), 300_000);
    assert_eq!(h.m.snapshot(Timestamp(h.now)).gone_agents, 1);
    h.reregister(10, &other, AGENT, Vec::new());
    assert!(
        h.agent_msgs(10)
            .iter()
            .any(|m| matches!(m, AOut::Shutdown(_)))
    );
}

#[test]
fn tasks_of_frameworks_the_master_never_knew_are_killed() {
    let (h, agent, _, _) = before_crash();
    let mut h = H::persistent(config(), h.store.clone().expect("store"), 50_000);
    h.reregister(
        7,
        &agent,
        AGENT,
        vec![running("stranger-0001", "x1", "cpus:1;mem:64")],
    );
    let msgs = h.agent_msgs(7);
    assert!(
        msgs.iter()
            .any(|m| matches!(m, AOut::ShutdownFramework(s) if s.framework_id == "stranger-0001")),
        "{msgs:?}"
    );
    h.m.check_accounting().expect("books balance");
}

#[test]
fn ids_stay_unique_across_restarts() {
    let (h, _, fw, _) = before_crash();
    let first_id = h.m.master_id().to_string();
    let mut h = H::persistent(config(), h.store.clone().expect("store"), 50_000);
    assert_ne!(h.m.master_id(), first_id, "a new master id per recovery");
    let newer = h.subscribe(103, "newer", 0.0);
    assert_ne!(newer.framework_id, fw);
    let id = h.register_agent(5, "host5", AGENT);
    assert!(!id.is_empty());
    let store = h.store.clone().expect("store");
    let agents: Vec<&String> = store.table(Table::Agents).map(|(k, _)| k).collect();
    assert_eq!(agents.len(), 3, "{agents:?}");
}

#[test]
fn corrupt_records_fail_the_recovery_naming_them() {
    let (h, agent, _, _) = before_crash();
    let mut store = h.store.clone().expect("store");
    store.apply(&[crate::registry::RegistryOp {
        table: Table::Agents,
        key: agent.clone(),
        value: Some(vec![0xff, 0xff, 0xff]),
    }]);
    let err = crate::core::Master::recover(config(), 1, &store, Timestamp(0))
        .expect_err("corrupt record");
    let text = err.to_string();
    assert!(text.contains("agents") && text.contains(&agent), "{text}");
}

#[test]
fn agents_checkpoint_what_the_master_knows_and_missed_destroys_are_replayed() {
    let (mut h, agent, _, _) = before_crash();
    // After a RESERVE the agent is told its total, for it to checkpoint.
    h.m.reserve_resources(
        &agent,
        &Resources::parse("mem(web,dynamic=ops):64").expect("r"),
    )
    .expect("reserve");
    h.pump();
    let told: Vec<String> = h
        .agent_msgs(A1)
        .into_iter()
        .filter_map(|m| match m {
            AOut::CheckpointResources(c) => Some(
                proffer_proto::Resources::from_proto(&c.total)
                    .ok()?
                    .to_string(),
            ),
            _ => None,
        })
        .collect();
    assert!(
        told.iter().any(|t| t.contains("cpus(web,dynamic=ops):1")),
        "{told:?}"
    );
    // The agent comes back reporting its checkpoint (the reservation, and a volume the master
    // destroyed while it was away): the reservation is not counted twice, the volume goes.
    h.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    h.drain();
    let reported =
        "cpus:3;cpus(web,dynamic=ops):1;mem:4096;disk:900;disk(web,dynamic=ops)[old:data]:100";
    h.reregister(7, &agent, reported, Vec::new());
    let msgs = h.agent_msgs(7);
    assert!(
        msgs.iter().any(
            |m| matches!(m, AOut::DestroyVolumes(d) if d.volume_ids == vec!["old".to_string()])
        ),
        "{msgs:?}"
    );
    let snap = h.m.snapshot(Timestamp(h.now));
    let a = snap.agents.iter().find(|a| a.id == agent).expect("agent");
    let total = Resources::parse(&a.total).expect("total");
    assert_eq!(total.cpus_milli(), 4_000, "{total}");
    assert!(a.total.contains("cpus(web,dynamic=ops):1"), "{}", a.total);
    assert!(!a.total.contains("[old"), "{}", a.total);
    h.m.check_accounting().expect("books balance");
}

/// Records written before today's limits (or by hand) that break them are refused at
/// recovery, naming the record and the limit — the master does not start on them.
#[test]
fn over_limit_records_fail_the_recovery_naming_the_limit() {
    use prost::Message;
    let (h, _, fw, _) = before_crash();
    let store = h.store.clone().expect("store");
    let long_role = "r".repeat(300);

    let mut framework_store = store.clone();
    let bytes = framework_store
        .get(Table::Frameworks, &fw)
        .expect("framework record")
        .clone();
    let mut record = v1::RegistryFramework::decode(bytes.as_slice()).expect("decode");
    if let Some(info) = record.info.as_mut() {
        info.roles = vec![long_role.clone()];
    }
    framework_store.apply(&[crate::registry::RegistryOp {
        table: Table::Frameworks,
        key: fw.clone(),
        value: Some(record.encode_to_vec()),
    }]);
    let err = crate::core::Master::recover(config(), 1, &framework_store, Timestamp(0))
        .expect_err("over-limit role");
    let text = err.to_string();
    assert!(
        text.contains("frameworks") && text.contains(&fw) && text.contains("256"),
        "{text}"
    );

    let mut roles_store = store;
    let role = v1::RegistryRole {
        weight: 2.0,
        ..Default::default()
    };
    roles_store.apply(&[crate::registry::RegistryOp {
        table: Table::Roles,
        key: long_role.clone(),
        value: Some(role.encode_to_vec()),
    }]);
    let err = crate::core::Master::recover(config(), 1, &roles_store, Timestamp(0))
        .expect_err("over-limit role name");
    let text = err.to_string();
    assert!(text.contains("roles") && text.contains("256"), "{text}");
}

/// Short tasks cost the registry nothing: as in Mesos, whose registry holds agents,
/// frameworks, quotas, weights and maintenance but no task, an ACCEPT that launches, the
/// agent's RUNNING and FINISHED and their acknowledgements record no registry op, so nothing
/// of the launch path waits for a registry commit (the RunTask, the updates, the acks and the
/// ACCEPT's reply all go out at once), while registry writes are held.
#[test]
fn the_launch_path_waits_for_no_registry_write() {
    let mut h = H::persistent(config(), Stored::default(), 1_000);
    let agent = h.register_agent(A1, "host1", AGENT);
    let fw = h.subscribe_with(F1, web_framework(""));
    h.advance(1_000);
    h.hold_writes = true;
    for round in 0..3 {
        let offer = h.offers(F1).remove(0);
        let id = format!("t{round}");
        h.launch(&fw, &[&offer.id], vec![task(&id, "cpus:4;mem:4096")])
            .expect("launch");
        assert_eq!(
            h.m.persist_barrier(),
            0,
            "the ACCEPT's reply waits for nothing"
        );
        assert!(
            h.agent_msgs(A1)
                .iter()
                .any(|m| matches!(m, AOut::RunTask(_))),
            "the RunTask goes out at once"
        );
        for (state, uuid) in [
            (TaskState::TaskRunning, "r"),
            (TaskState::TaskFinished, "f"),
        ] {
            let uuid = format!("{id}-{uuid}");
            h.status(A1, &fw.framework_id, &id, state, uuid.as_bytes())
                .expect("status");
            assert_eq!(h.updates(F1).len(), 1, "the update is forwarded at once");
            h.call(Call::Acknowledge(v1::AcknowledgeRequest {
                header: Some(fw.clone()),
                agent_id: agent.clone(),
                task_id: id.clone(),
                uuid: uuid.into_bytes(),
            }))
            .expect("ack");
            assert!(
                h.agent_msgs(A1).iter().any(|m| matches!(m, AOut::Ack(_))),
                "the acknowledgement reaches the agent at once"
            );
        }
        h.advance(10);
    }
    assert!(
        h.unwritten.is_empty(),
        "no registry batch: {:?}",
        h.unwritten
    );
    assert_eq!(h.m.persist_backlog(), (0, 0));
}
