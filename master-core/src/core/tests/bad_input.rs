//! Bad input: every malformed or out-of-place call and message gets a clear error naming what
//! was wrong, and nothing changes.

use proffer_proto::v1::{self, TaskState, agent_message::Msg as AIn, master_message::Msg as AOut};

use super::harness::{H, agent_info, task};
use super::scenarios::{A1, A2, F1, F2, one_offer};
use crate::core::{Input, MasterError, Output};

// ───────────────────────────── bad input ─────────────────────────────

#[test]
fn bad_calls_get_clear_errors_and_change_nothing() {
    let (mut h, agent, fw, offer) = one_offer();
    let other = h.register_agent(A2, "host2", "cpus:1;mem:128");
    let _ = other;
    let no_sub = v1::CallHeader {
        framework_id: "nobody".into(),
        stream_id: "x".into(),
    };
    let wrong_stream = v1::CallHeader {
        framework_id: fw.framework_id.clone(),
        stream_id: "x".into(),
    };
    let mut bad_res = task("t1", "cpus:1;mem:128");
    bad_res.resources[0].value = Some(v1::resource::Value::ScalarMilli(-1));
    let mut no_cmd = task("t1", "cpus:1;mem:128");
    no_cmd.command = None;
    let mut wrong_agent = task("t1", "cpus:1;mem:128");
    wrong_agent.agent_id = "elsewhere".into();
    type Case = (
        &'static str,
        v1::CallHeader,
        Vec<&'static str>,
        Vec<v1::TaskInfo>,
        &'static str,
    );
    let oid: &'static str = Box::leak(offer.id.clone().into_boxed_str());
    let cases: Vec<Case> = vec![
        (
            "no subscription",
            no_sub,
            vec![oid],
            vec![task("t1", "cpus:1;mem:128")],
            "is not subscribed",
        ),
        (
            "wrong stream",
            wrong_stream,
            vec![oid],
            vec![task("t1", "cpus:1;mem:128")],
            "is not the current subscription",
        ),
        (
            "unknown offer",
            fw.clone(),
            vec!["nope"],
            vec![task("t1", "cpus:1;mem:128")],
            "unknown offer `nope`",
        ),
        (
            "no offers",
            fw.clone(),
            vec![],
            vec![task("t1", "cpus:1;mem:128")],
            "at least one offer",
        ),
        (
            "twice",
            fw.clone(),
            vec![oid, oid],
            vec![task("t1", "cpus:1;mem:128")],
            "listed twice",
        ),
        (
            "too big",
            fw.clone(),
            vec![oid],
            vec![task("t1", "cpus:5;mem:128")],
            "needs cpus:5;mem:128 but the accepted offers have only",
        ),
        (
            "ports not offered",
            fw.clone(),
            vec![oid],
            vec![task("t1", "cpus:1;mem:128;ports:[80-80]")],
            "needs",
        ),
        (
            "zero cpus",
            fw.clone(),
            vec![oid],
            vec![task("t1", "mem:128")],
            "cpus must be greater than 0",
        ),
        (
            "zero mem",
            fw.clone(),
            vec![oid],
            vec![task("t1", "cpus:1")],
            "mem must be greater than 0",
        ),
        ("negative", fw.clone(), vec![oid], vec![bad_res], "negative"),
        (
            "no command",
            fw.clone(),
            vec![oid],
            vec![no_cmd],
            "command.value",
        ),
        (
            "bad id",
            fw.clone(),
            vec![oid],
            vec![task("a/b", "cpus:1;mem:128")],
            "not allowed",
        ),
        (
            "dup in call",
            fw.clone(),
            vec![oid],
            vec![task("t1", "cpus:1;mem:128"), task("t1", "cpus:1;mem:128")],
            "already in use",
        ),
        (
            "wrong agent",
            fw.clone(),
            vec![oid],
            vec![wrong_agent],
            "differs from the offers' agent",
        ),
    ];
    for (name, header, offers, tasks, want) in cases {
        let err = h
            .launch(&header, &offers, tasks)
            .expect_err(name)
            .to_string();
        assert!(
            err.contains(want),
            "{name}: `{err}` should contain `{want}`"
        );
    }
    // Nothing changed: the offer is still valid and usable.
    assert!(
        h.drain()
            .iter()
            .all(|o| !matches!(o, Output::ToAgent { .. }))
    );
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("valid launch after errors");
    assert_eq!(h.m.snapshot(Default::default()).tasks.len(), 1);
    // A second launch with the same id (new offer) is refused as a duplicate.
    h.advance(6_000);
    let offers = h.offers(F1);
    let on_agent = offers
        .iter()
        .find(|o| o.agent_id == agent)
        .expect("offer on agent");
    let err = h
        .launch(&fw, &[&on_agent.id], vec![task("t1", "cpus:1;mem:128")])
        .expect_err("dup");
    assert!(matches!(err, MasterError::DuplicateTaskId { .. }), "{err}");
    // Another framework's offer looks unknown.
    let fw2 = h.subscribe(F2, "fw2", 0.0);
    let err = h
        .launch(&fw2, &[&on_agent.id], vec![task("x", "cpus:1;mem:128")])
        .expect_err("not yours");
    assert!(matches!(err, MasterError::UnknownOffer { .. }));
}

#[test]
fn agent_claiming_another_agents_id_is_refused() {
    let mut h = H::new();
    let a = h.register_agent(A1, "host1", "cpus:1;mem:128");
    let msg = v1::AgentMessage {
        msg: Some(AIn::Reregister(v1::ReregisterAgent {
            info: Some(Box::new(agent_info(&a, "impostor", "cpus:64;mem:128"))),
            tasks: vec![],
        })),
    };
    let err = h
        .input(Input::Agent { conn: A2, msg })
        .expect_err("conflict");
    assert!(matches!(err, MasterError::AgentIdConflict { .. }), "{err}");
    assert!(err.to_string().contains("host1:5051"));
    let out = h.drain();
    assert!(out.contains(&Output::CloseAgent { conn: A2 }));
    let snap = h.m.snapshot(Default::default());
    assert_eq!(snap.agents[0].hostname, "host1");
    assert_eq!(snap.agents[0].total, "cpus:1;mem:128");
}

#[test]
fn bad_agent_messages_are_refused() {
    let mut h = H::new();
    // Status update before registering.
    let err = h
        .status(A1, "f", "t", TaskState::TaskRunning, b"u")
        .expect_err("unregistered");
    assert!(matches!(err, MasterError::NotRegistered { .. }));
    // Malformed resources and empty hostname.
    let mut info = agent_info("", "h", "cpus:1;mem:1");
    info.resources[0].value = Some(v1::resource::Value::ScalarMilli(-5));
    let reg = |info| v1::AgentMessage {
        msg: Some(AIn::Register(v1::RegisterAgent {
            info: Some(Box::new(info)),
        })),
    };
    let err = h
        .input(Input::Agent {
            conn: A1,
            msg: reg(info),
        })
        .expect_err("negative");
    assert!(err.to_string().contains("negative"), "{err}");
    let err = h
        .input(Input::Agent {
            conn: A1,
            msg: reg(agent_info("", " ", "cpus:1;mem:1")),
        })
        .expect_err("host");
    assert!(err.to_string().contains("hostname"), "{err}");
    let err = h
        .input(Input::Agent {
            conn: A1,
            msg: v1::AgentMessage { msg: None },
        })
        .expect_err("empty");
    assert!(err.to_string().contains("empty message"));
    // The errors were reported to the agent too.
    let errors = h
        .agent_msgs(A1)
        .into_iter()
        .filter(|m| matches!(m, AOut::Error(_)))
        .count();
    assert_eq!(errors, 4);
    assert!(h.m.snapshot(Default::default()).agents.is_empty());
}

#[test]
fn bad_subscriptions_are_refused() {
    let mut h = H::new();
    let err = h
        .input(Input::Subscribe {
            conn: F1,
            info: Box::default(),
        })
        .expect_err("no name");
    assert!(err.to_string().contains("framework_info.name"));
    let info = v1::FrameworkInfo {
        name: "x".into(),
        roles: vec!["bad role".into()],
        ..Default::default()
    };
    let err = h
        .input(Input::Subscribe {
            conn: F1,
            info: Box::new(info),
        })
        .expect_err("role");
    assert!(err.to_string().contains("roles[0]"));
    assert!(h.drain().is_empty());
}

/// Found by the core's fuzz target: an agent re-registering with a running task the master did
/// not know, whose resources are not in its total (here reserved for `db`, on an agent with
/// none), was adopted, and the master held more than the agent has. The task is killed instead.
#[test]
fn regression_reported_task_beyond_the_agents_total_is_killed_not_adopted() {
    let mut h = H::new();
    let agent = h.register_agent(A1, "host1", "cpus:4;mem:4096;disk:1000");
    h.reregister(
        A2,
        &agent,
        "cpus:4;mem:4096;disk:1000",
        vec![
            v1::RunningTask {
                framework_id: "fw".into(),
                task: Some(task("beyond", "cpus(db):0.75;mem(db):256")),
                state: TaskState::TaskRunning as i32,
            },
            v1::RunningTask {
                framework_id: "fw".into(),
                task: Some(task("fits", "cpus:1;mem:256")),
                state: TaskState::TaskRunning as i32,
            },
            v1::RunningTask {
                framework_id: "fw".into(),
                task: Some(task("too-many", "cpus:3.5")),
                state: TaskState::TaskRunning as i32,
            },
        ],
    );
    h.m.check_accounting().expect("books balance");
    let killed: Vec<String> = h
        .agent_msgs(A2)
        .into_iter()
        .filter_map(|m| match m {
            AOut::KillTask(k) => Some(k.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(killed, ["beyond", "too-many"]);
    let adopted: Vec<&String> = h.m.frameworks["fw"].tasks.keys().collect();
    assert_eq!(adopted, ["fits"]);
}

/// Found by the core's fuzz target: an agent re-registering with fewer resources than its
/// running tasks use (here none unreserved) kept them, and the master held more than the agent
/// has. The tasks beyond its total are lost to their frameworks and killed.
#[test]
fn regression_agent_back_with_fewer_resources_than_its_tasks_use() {
    let mut h = H::new();
    let agent = h.register_agent(A1, "host1", "cpus:4;mem:4096");
    let running = |id: &str, res: &str| v1::RunningTask {
        framework_id: "fw".into(),
        task: Some(task(id, res)),
        state: TaskState::TaskRunning as i32,
    };
    h.reregister(
        A2,
        &agent,
        "cpus:4;mem:4096",
        vec![running("t1", "cpus:1;mem:256"), running("t2", "cpus:2")],
    );
    h.m.check_accounting().expect("books balance");
    h.reregister(
        F1,
        &agent,
        "cpus:2.5;cpus(db):3;mem(db):1024",
        vec![running("t1", "cpus:1;mem:256"), running("t2", "cpus:2")],
    );
    h.m.check_accounting().expect("books balance");
    let killed: Vec<String> = h
        .agent_msgs(F1)
        .into_iter()
        .filter_map(|m| match m {
            AOut::KillTask(k) => Some(k.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(killed, ["t1"]);
    let fw = &h.m.frameworks["fw"];
    assert!(
        fw.tasks
            .get("t1")
            .is_none_or(|t| t.state == TaskState::TaskLost)
    );
    assert_eq!(fw.tasks["t2"].state, TaskState::TaskRunning);
}
