//! Scenario tests of the scheduler core with synthetic offers and status updates (no master):
//! deploy, suppress/revive, restart from the store without duplicates, transient recovery,
//! scale up/down, rolling configuration update, FINISH goals, uninstall.

mod common;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use common::fixtures::status;
use proffer_proto::{Resources, v1};
use proffer_sdk::service::core::{Action, CoreConfig, ServiceCore};
use proffer_sdk::service::store::StateStore;
use proffer_sdk::service::{RollupStatus, ServiceSpec, StepStatus};

fn spec(count: u32, cmd: &str) -> Result<ServiceSpec> {
    let yaml = format!(
        "name: hello\npods:\n  web:\n    count: {count}\n    placement: [one-per-agent]\n    tasks:\n      server:\n        cpus: 0.5\n        memory: 64\n        ports: {{http: {{}}}}\n        cmd: \"{cmd}\"\n"
    );
    Ok(ServiceSpec::parse(&yaml, &BTreeMap::new())?)
}

fn offer(id: &str, agent: &str) -> v1::Offer {
    common::fixtures::offer(id, agent, "cpus:1;mem:256;ports:[31000-31010]")
}

fn open(dir: &std::path::Path, s: ServiceSpec) -> Result<ServiceCore> {
    // Stop-first restarts (start-first ones: tests/service_replace_first.rs).
    let cfg = CoreConfig {
        permanent_after_ms: 60_000,
        replace_first_wait_ms: 0,
        ..CoreConfig::default()
    };
    Ok(ServiceCore::open(s, cfg, StateStore::open(dir)?)?)
}

/// A core for the spec `yaml` that reserves its resources (default timings).
fn open_reserving(dir: &std::path::Path, yaml: &str) -> Result<ServiceCore> {
    let cfg = CoreConfig {
        reservations: true,
        ..CoreConfig::default()
    };
    let spec = ServiceSpec::parse(yaml, &BTreeMap::new())?;
    Ok(ServiceCore::open(spec, cfg, StateStore::open(dir)?)?)
}

/// Launched task ids (with their agent) in the actions.
fn launched(actions: &[Action]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::Accept { operations, .. } = a {
            for op in operations {
                if let Some(v1::operation::Op::Launch(l)) = &op.op {
                    out.extend(
                        l.tasks
                            .iter()
                            .map(|t| (t.task_id.clone(), t.agent_id.clone())),
                    );
                }
            }
        }
    }
    out
}

fn accept_all(core: &mut ServiceCore, now: u64, actions: &[Action]) -> Result<()> {
    for a in actions {
        if let Action::Accept { tasks, .. } = a {
            core.accept_result(now, tasks, Ok(()))?;
        }
    }
    Ok(())
}

fn step_status(core: &ServiceCore, plan: &str, step: &str) -> Option<StepStatus> {
    core.plan(plan)?
        .steps()
        .find(|(_, s)| s.name == step)
        .map(|(_, s)| s.status)
}

/// Deploys `count` instances on agents a0..; returns the task ids.
fn deploy(core: &mut ServiceCore, count: usize) -> Result<Vec<(String, String)>> {
    core.on_subscribed(1);
    let mut ids = Vec::new();
    for i in 0..count {
        core.handle_offers(10 + i as u64, &[offer(&format!("o{i}"), &format!("a{i}"))])?;
        let actions = core.take_actions();
        let l = launched(&actions);
        if l.len() != 1 {
            bail!("expected one launch from offer {i}, got {actions:?}");
        }
        accept_all(core, 20, &actions)?;
        for (t, a) in &l {
            core.handle_status(30, &status(t, a, v1::TaskState::TaskRunning))?;
        }
        ids.extend(l);
    }
    core.take_actions();
    Ok(ids)
}

#[test]
fn deploy_serially_then_suppress_and_explain_declines() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec(2, "serve")?)?;
    core.on_subscribed(1);
    let actions = core.take_actions();
    assert!(
        matches!(actions.as_slice(), [Action::Revive]),
        "nothing to reconcile; offers wanted, said explicitly (a failed-over framework may be suppressed): {actions:?}"
    );
    let why = core.why();
    assert_eq!(why.len(), 2);
    assert_eq!(
        why[1].why,
        "serial strategy: waiting for step `web-0:[server]` (PENDING)"
    );

    // Two offers from the same agent: one launches web-0, the other is refused by one-per-agent.
    core.handle_offers(10, &[offer("o1", "a1"), offer("o2", "a1")])?;
    let actions = core.take_actions();
    let l = launched(&actions);
    assert_eq!(l.len(), 1, "{actions:?}");
    assert_eq!(
        step_status(&core, "deploy", "web-0:[server]"),
        Some(StepStatus::Prepared)
    );
    let log: Vec<_> = core.offer_log().cloned().collect();
    assert_eq!(log[0].outcome, "LAUNCHED");
    assert_eq!(log[0].used_by, vec!["web-0:[server]"]);
    assert_eq!(log[1].outcome, "DECLINED");
    // Serial: web-1 may not start while web-0 is not complete, so nothing was tried.
    assert_eq!(
        log[1].reasons,
        vec!["nothing to launch: no step waits for an offer"]
    );
    assert!(actions.contains(&Action::Decline {
        offer_ids: vec!["o2".into()],
        refuse_seconds: 30.0
    }));
    // Nothing else can launch until web-0 runs: suppress.
    assert!(actions.contains(&Action::Suppress), "{actions:?}");

    accept_all(&mut core, 11, &actions)?;
    assert_eq!(
        step_status(&core, "deploy", "web-0:[server]"),
        Some(StepStatus::Starting)
    );
    core.handle_status(12, &status(&l[0].0, "a1", v1::TaskState::TaskRunning))?;
    assert_eq!(
        step_status(&core, "deploy", "web-0:[server]"),
        Some(StepStatus::Complete)
    );
    assert_eq!(
        core.take_actions(),
        vec![Action::Revive],
        "web-1 is next: revive"
    );

    core.handle_offers(13, &[offer("o3", "a1")])?;
    let actions = core.take_actions();
    assert!(launched(&actions).is_empty());
    let last = core.offer_log().last().cloned().context("log")?;
    assert_eq!(
        last.reasons,
        vec!["web-1:[server]: placement: one-per-agent: agent host-a1 already runs web-0"]
    );
    assert_eq!(
        core.why()[0].why,
        "waiting for a matching offer; last offer o3 from host-a1: placement: one-per-agent: agent host-a1 already runs web-0"
    );
    assert!(actions.contains(&Action::Decline {
        offer_ids: vec!["o3".into()],
        refuse_seconds: 2.0
    }));
    // A second agent that does not fit either: the why view weighs the recent offers (the
    // reason met first leads on a tie), counts the others and shows the last.
    let mut small = offer("o3b", "a3");
    small.resources = Resources::parse("cpus:0.1;mem:256;ports:[31000-31010]")?.to_proto();
    core.handle_offers(13, &[small])?;
    assert_eq!(
        core.why()[0].why,
        "waiting for a matching offer: 1 of the last 2 offers (from 2 agents) declined for placement: one-per-agent: agent host-a1 already runs web-0; also resources: insufficient cpus (1); last offer o3b from host-a3: resources: insufficient cpus: need 0.5, offer has 0.1"
    );
    core.take_actions();
    core.handle_offers(14, &[offer("o4", "a2")])?;
    let actions = core.take_actions();
    let l2 = launched(&actions);
    assert_eq!(l2.len(), 1);
    assert!(
        actions.contains(&Action::Suppress),
        "nothing left to launch: {actions:?}"
    );
    accept_all(&mut core, 15, &actions)?;
    core.handle_status(16, &status(&l2[0].0, "a2", v1::TaskState::TaskRunning))?;
    assert_eq!(
        core.plan("deploy").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    assert!(core.take_actions().is_empty());
    Ok(())
}

#[test]
fn restarted_core_resumes_without_duplicates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ids = {
        let mut core = open(dir.path(), spec(2, "serve")?)?;
        let ids = deploy(&mut core, 2)?;
        // A launch in flight when the scheduler dies: written to the store, never confirmed.
        core.set_framework_id("fw-1")?;
        ids
    };
    let mut core = open(dir.path(), spec(2, "serve")?)?;
    assert_eq!(core.framework_id()?.as_deref(), Some("fw-1"));
    assert_eq!(
        core.plan("deploy").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    core.on_subscribed(100);
    let actions = core.take_actions();
    let mut expect: Vec<(String, String)> = ids.clone();
    expect.sort();
    match actions.first() {
        Some(Action::Reconcile(list)) => {
            let mut l = list.clone();
            l.sort();
            assert_eq!(l, expect);
        }
        other => bail!("expected a reconcile first, got {other:?}"),
    }
    assert!(actions.contains(&Action::Suppress));
    core.handle_offers(101, &[offer("o9", "a9")])?;
    assert!(
        launched(&core.take_actions()).is_empty(),
        "no duplicate launches"
    );
    // The master says one task is unknown: it is launched again, back on its agent.
    core.handle_status(102, &status(&ids[0].0, &ids[0].1, v1::TaskState::TaskLost))?;
    assert!(core.take_actions().is_empty(), "backing off: no revive yet");
    assert!(
        core.why()[0]
            .why
            .ends_with("backing off after 1 failure(s), relaunch in 500 ms"),
        "{:?}",
        core.why()
    );
    core.tick(1_000);
    assert!(core.take_actions().contains(&Action::Revive));
    core.handle_offers(1_003, &[offer("o10", "a9")])?;
    assert!(launched(&core.take_actions()).is_empty());
    let last = core.offer_log().last().cloned().context("log")?;
    assert!(
        last.reasons[0].starts_with(
            "web-0:[server]: agent: web-0 must return to agent a0 (restart in place; may move after"
        ),
        "{last:?}"
    );
    core.handle_offers(1_004, &[offer("o11", &ids[0].1)])?;
    let l = launched(&core.take_actions());
    assert_eq!(l.len(), 1);
    assert_ne!(l[0].0, ids[0].0, "a fresh task id");
    assert_eq!(l[0].1, ids[0].1, "same agent");
    assert_eq!(
        step_status(&core, "recovery", "web-0:[server]"),
        Some(StepStatus::Prepared)
    );
    Ok(())
}

#[test]
fn pinned_recovery_moves_after_the_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec(1, "serve")?)?;
    let ids = deploy(&mut core, 1)?;
    core.handle_status(1_000, &status(&ids[0].0, "a0", v1::TaskState::TaskFailed))?;
    core.handle_offers(1_001, &[offer("x1", "b1")])?;
    assert!(launched(&core.take_actions()).is_empty());
    core.handle_offers(61_001, &[offer("x2", "b1")])?;
    let l = launched(&core.take_actions());
    assert_eq!(l.len(), 1, "the pin expired; the pod moved");
    assert_eq!(l[0].1, "b1");
    Ok(())
}

#[test]
fn scale_up_and_down_and_roll_a_config_update() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec(2, "serve")?)?;
    let ids = deploy(&mut core, 2)?;

    // Scale up to 4: the update plan keeps web-0/1 complete and deploys web-2/3.
    core.update_spec(200, spec(4, "serve")?)?;
    assert_eq!(
        step_status(&core, "update", "web-0:[server]"),
        Some(StepStatus::Complete)
    );
    assert_eq!(
        step_status(&core, "update", "web-2:[server]"),
        Some(StepStatus::Pending)
    );
    assert!(core.take_actions().contains(&Action::Revive));
    for (i, agent) in ["a2", "a3"].iter().enumerate() {
        core.handle_offers(201, &[offer(&format!("s{i}"), agent)])?;
        let actions = core.take_actions();
        let l = launched(&actions);
        assert_eq!(l.len(), 1, "{actions:?}");
        accept_all(&mut core, 202, &actions)?;
        core.handle_status(203, &status(&l[0].0, agent, v1::TaskState::TaskRunning))?;
    }
    assert_eq!(
        core.plan("update").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    assert_eq!(core.tasks().len(), 4);
    core.take_actions();

    // Scale down to 1: decommission kills web-1..3 and forgets them once they ended.
    core.update_spec(300, spec(1, "serve")?)?;
    let kills: Vec<String> = core
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Kill { task_id, .. } => Some(task_id),
            _ => None,
        })
        .collect();
    assert_eq!(kills.len(), 3, "{kills:?}");
    assert!(!kills.contains(&ids[0].0));
    assert_eq!(
        core.plan("decommission").map(|p| p.status()),
        Some(RollupStatus::InProgress)
    );
    let recs: Vec<_> = core.tasks().values().cloned().collect();
    for r in recs.iter().filter(|r| r.index > 0) {
        core.handle_status(
            301,
            &status(&r.task_id, &r.agent_id, v1::TaskState::TaskKilled),
        )?;
    }
    assert_eq!(
        core.plan("decommission").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    assert_eq!(core.tasks().len(), 1);
    assert!(
        core.plan("recovery").is_none(),
        "killed on purpose: no recovery"
    );
    core.take_actions();

    // A placement rule the running instance breaks is refused with the field and the reason.
    let refused = core.update_spec(399, {
        let mut sp = spec(1, "serve")?;
        if let Some((_, p)) = sp.pods.first_mut() {
            p.placement
                .push(proffer_sdk::service::PlacementRule::AttributeEquals {
                    attribute: "rack".into(),
                    value: "r9".into(),
                });
        }
        sp
    });
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some("invalid spec: pods.web.placement[1]: web-0 cannot stay where it runs (attribute-equals rack=r9: agent host-a0 has no attribute `rack`); replace it first or relax the rule".to_string())
    );

    // A new command: the update plan kills the old task first, then relaunches in place.
    core.update_spec(400, spec(1, "serve --v2")?)?;
    let actions = core.take_actions();
    assert!(
        actions.contains(&Action::Kill {
            task_id: ids[0].0.clone(),
            agent_id: "a0".into()
        }),
        "{actions:?}"
    );
    let why = core.why();
    assert_eq!(
        why[0].why,
        "killing web-0-server (launched with another configuration) before relaunching"
    );
    core.handle_offers(401, &[offer("u1", "a0")])?;
    assert!(
        launched(&core.take_actions()).is_empty(),
        "old task still running"
    );
    core.handle_status(402, &status(&ids[0].0, "a0", v1::TaskState::TaskKilled))?;
    core.handle_offers(403, &[offer("u2", "a0")])?;
    let actions = core.take_actions();
    let l = launched(&actions);
    assert_eq!(l.len(), 1);
    let cmd = actions.iter().find_map(|a| match a {
        Action::Accept { operations, .. } => operations.iter().find_map(|o| match &o.op {
            Some(v1::operation::Op::Launch(l)) => {
                l.tasks[0].command.as_ref().map(|c| c.value.clone())
            }
            _ => None,
        }),
        _ => None,
    });
    assert_eq!(cmd.as_deref(), Some("serve --v2"));
    Ok(())
}

#[test]
fn finish_goal_operator_actions_and_uninstall() -> Result<()> {
    let yaml = "name: job\npods:\n  worker:\n    count: 2\n    tasks:\n      work:\n        goal: FINISH\n        cpus: 0.1\n        memory: 16\n        cmd: \"echo {{POD_INDEX}}\"\nplans:\n  deploy:\n    phases:\n      w:\n        pod: worker\n        strategy: parallel\n";
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), ServiceSpec::parse(yaml, &BTreeMap::new())?)?;
    core.on_subscribed(1);
    core.plan_action(2, "deploy", "pause", Some("w"), Some("worker-1"))?;
    core.handle_offers(3, &[offer("o1", "a1")])?;
    let actions = core.take_actions();
    let l = launched(&actions);
    assert_eq!(l.len(), 1, "worker-1 is paused");
    let env = actions
        .iter()
        .find_map(|a| match a {
            Action::Accept { operations, .. } => operations.iter().find_map(|o| match &o.op {
                Some(v1::operation::Op::Launch(l)) => l.tasks[0].command.clone(),
                _ => None,
            }),
            _ => None,
        })
        .context("launch")?;
    assert_eq!(env.value, "echo 0");
    assert_eq!(
        env.environment.get("POD_NAME").map(String::as_str),
        Some("worker-0")
    );
    accept_all(&mut core, 4, &actions)?;
    core.handle_status(5, &status(&l[0].0, "a1", v1::TaskState::TaskRunning))?;
    assert_eq!(
        step_status(&core, "deploy", "worker-0:[work]"),
        Some(StepStatus::Started)
    );
    core.handle_status(6, &status(&l[0].0, "a1", v1::TaskState::TaskFinished))?;
    assert_eq!(
        step_status(&core, "deploy", "worker-0:[work]"),
        Some(StepStatus::Complete)
    );
    assert_eq!(
        core.why(),
        vec![proffer_sdk::service::core::WhyLine {
            plan: "deploy".into(),
            step: "worker-1:[work]".into(),
            status: "PENDING".into(),
            why: "step is paused".into(),
        }]
    );
    core.plan_action(7, "deploy", "force-complete", Some("w"), Some("worker-1"))?;
    assert_eq!(
        core.plan("deploy").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    // Flags survive a restart.
    drop(core);
    let mut core = open(dir.path(), ServiceSpec::parse(yaml, &BTreeMap::new())?)?;
    assert_eq!(
        core.plan("deploy").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    // A failed FINISH task is relaunched (the step is restarted by the operator here).
    core.plan_action(8, "deploy", "restart", Some("w"), Some("worker-0"))?;
    assert_eq!(
        step_status(&core, "deploy", "worker-0:[work]"),
        Some(StepStatus::Pending)
    );
    core.take_actions();
    core.uninstall(9)?;
    let actions = core.take_actions();
    assert!(
        actions.contains(&Action::Teardown),
        "no live tasks: teardown at once: {actions:?}"
    );
    assert!(core.torn_down());
    let plan = core.plan("uninstall").context("uninstall plan")?;
    assert_eq!(plan.status(), RollupStatus::Complete);
    assert_eq!(
        plan.phases[1].steps[0].message,
        "reservations disabled: nothing was reserved"
    );
    assert!(core.tasks().is_empty());
    Ok(())
}

#[test]
fn pod_restart_stays_and_replace_moves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec(1, "serve")?)?;
    let ids = deploy(&mut core, 1)?;
    let (old, agent) = ids[0].clone();

    // restart: killed, then relaunched on the same agent only.
    core.pod_action(100, "web-0", false)?;
    let actions = core.take_actions();
    assert!(
        actions.contains(&Action::Kill {
            task_id: old.clone(),
            agent_id: agent.clone()
        }),
        "{actions:?}"
    );
    core.handle_status(101, &status(&old, &agent, v1::TaskState::TaskKilled))?;
    core.handle_offers(102, &[offer("r1", "elsewhere")])?;
    assert!(
        launched(&core.take_actions()).is_empty(),
        "restart stays in place"
    );
    core.handle_offers(103, &[offer("r2", &agent)])?;
    let actions = core.take_actions();
    let l = launched(&actions);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].1, agent);
    accept_all(&mut core, 104, &actions)?;
    core.handle_status(105, &status(&l[0].0, &agent, v1::TaskState::TaskRunning))?;
    assert_eq!(
        core.plan("recovery").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );

    // replace: killed, then free to go anywhere.
    core.pod_action(200, "web-0", true)?;
    core.take_actions();
    core.handle_status(201, &status(&l[0].0, &agent, v1::TaskState::TaskKilled))?;
    core.handle_offers(202, &[offer("r3", "elsewhere")])?;
    let l2 = launched(&core.take_actions());
    assert_eq!(l2.len(), 1, "replace moves the pod");
    assert_eq!(l2[0].1, "elsewhere");
    assert!(core.pod_action(300, "web-7", true).is_err());
    Ok(())
}

#[test]
fn lost_agent_starts_the_permanent_failure_clock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec(1, "serve")?)?;
    let ids = deploy(&mut core, 1)?;
    core.agent_lost(1_000, "a0");
    // The master reports the task lost much later; the clock started at the FAILURE.
    let mut lost = status(&ids[0].0, "a0", v1::TaskState::TaskLost);
    lost.reason = "REASON_AGENT_REMOVED".into();
    core.handle_status(50_000, &lost)?;
    core.handle_offers(55_000, &[offer("x1", "b1")])?;
    assert!(
        launched(&core.take_actions()).is_empty(),
        "still waiting for a0"
    );
    let why = core.why();
    assert!(
        why[0]
            .why
            .contains("must return to agent a0 (restart in place; may move after 6s)"),
        "{why:?}"
    );
    core.handle_offers(61_000, &[offer("x2", "b1")])?;
    let l = launched(&core.take_actions());
    assert_eq!(l.len(), 1, "moved after the timeout");
    assert_eq!(l[0].1, "b1");
    Ok(())
}

#[test]
fn a_refused_launch_is_explained_and_retried_after_a_back_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec(1, "serve")?)?;
    core.on_subscribed(1);
    core.handle_offers(10, &[offer("o1", "a1")])?;
    let actions = core.take_actions();
    let tasks = actions
        .iter()
        .find_map(|a| match a {
            Action::Accept { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .context("an accept")?;
    core.accept_result(11, &tasks, Err("Unimplemented: RESERVE".into()))?;
    let why = core.why();
    assert_eq!(why[0].status, "PENDING");
    assert!(why[0].why.contains("web-0-server ended TASK_ERROR: accept failed: Unimplemented: RESERVE; backing off after 1 failure(s)"), "{why:?}");
    core.handle_offers(12, &[offer("o2", "a1")])?;
    assert!(launched(&core.take_actions()).is_empty(), "backing off");
    core.handle_offers(600, &[offer("o3", "a1")])?;
    assert_eq!(launched(&core.take_actions()).len(), 1, "retried");
    Ok(())
}

#[test]
fn uninstall_survives_a_scheduler_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ids = {
        let mut core = open(dir.path(), spec(2, "serve")?)?;
        let ids = deploy(&mut core, 2)?;
        core.uninstall(100)?;
        let kills = core
            .take_actions()
            .into_iter()
            .filter(|a| matches!(a, Action::Kill { .. }))
            .count();
        assert_eq!(kills, 2);
        ids
    };
    let mut core = open(dir.path(), spec(2, "serve")?)?;
    assert!(core.uninstalling());
    assert_eq!(core.plans().len(), 1);
    assert_eq!(
        core.plan("uninstall").map(|p| p.status()),
        Some(RollupStatus::InProgress)
    );
    for (t, a) in &ids {
        core.handle_status(200, &status(t, a, v1::TaskState::TaskKilled))?;
    }
    assert!(core.take_actions().contains(&Action::Teardown));
    assert!(core.torn_down());
    drop(core);
    let store = StateStore::open(dir.path())?;
    assert!(store.tasks()?.is_empty() && store.meta("uninstalling")?.is_none());
    Ok(())
}

#[test]
fn a_lost_agent_takes_its_reservations_along_so_uninstall_finishes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let yaml = "name: hello\nrole: web-role\npods:\n  web:\n    count: 1\n    tasks:\n      server:\n        cpus: 0.5\n        memory: 64\n        cmd: \"serve\"\n";
    let mut core = open_reserving(dir.path(), yaml)?;
    core.on_subscribed(1);
    core.handle_offers(10, &[offer("o1", "a1")])?;
    let l = launched(&core.take_actions());
    assert_eq!(l.len(), 1);
    core.handle_status(20, &status(&l[0].0, "a1", v1::TaskState::TaskRunning))?;
    core.uninstall(30)?;
    core.take_actions();
    let step = |core: &ServiceCore, name: &str| {
        core.plan("uninstall")
            .and_then(|p| p.phases.iter().find(|ph| ph.name == name))
            .map(|ph| ph.steps[0].message.clone())
            .unwrap_or_default()
    };
    // The master removes a1: FAILURE, then the task is LOST.
    core.agent_lost(40, "a1");
    let mut lost = status(&l[0].0, "a1", v1::TaskState::TaskLost);
    lost.reason = "REASON_AGENT_REMOVED".into();
    core.handle_status(41, &lost)?;
    assert_eq!(step(&core, "unreserve"), "no reservations left");
    assert!(core.torn_down(), "{}", step(&core, "deregister"));
    Ok(())
}

#[test]
fn uninstall_releases_an_instance_reservation_only_when_an_offer_holds_all_of_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let yaml = "name: hello\nrole: web-role\npods:\n  web:\n    count: 1\n    tasks:\n      a:\n        cpus: 0.25\n        memory: 32\n        cmd: \"serve\"\n      b:\n        cpus: 0.5\n        memory: 64\n        cmd: \"serve\"\n";
    let mut core = open_reserving(dir.path(), yaml)?;
    core.on_subscribed(1);
    core.handle_offers(10, &[offer("o1", "a1")])?;
    let l = launched(&core.take_actions());
    assert_eq!(l.len(), 2);
    for (t, a) in &l {
        core.handle_status(20, &status(t, a, v1::TaskState::TaskRunning))?;
    }
    let mut reserved: BTreeMap<String, (String, Resources)> = BTreeMap::new();
    for r in core.tasks().values() {
        let res = Resources::parse(&r.reserved)?;
        assert!(!res.is_empty(), "{} reserved nothing", r.name);
        reserved.insert(r.task.clone(), (r.task_id.clone(), res));
    }
    core.uninstall(30)?;
    core.take_actions();
    let with = |id: &str, res: &Resources| v1::Offer {
        resources: res.to_proto(),
        ..offer(id, "a1")
    };
    let releases = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Accept { operations, .. } if !operations.is_empty()))
            .count()
    };
    // Task a ended; b is still being killed: an offer with a's part releases nothing.
    let (a_id, a_res) = &reserved["a"];
    core.handle_status(40, &status(a_id, "a1", v1::TaskState::TaskKilled))?;
    core.handle_offers(41, &[with("p1", a_res)])?;
    assert_eq!(
        releases(&core.take_actions()),
        0,
        "partial reservation kept"
    );
    // b ended, but the next offer still lacks its part (not recovered yet): still nothing.
    let (b_id, b_res) = &reserved["b"];
    core.handle_status(50, &status(b_id, "a1", v1::TaskState::TaskKilled))?;
    core.handle_offers(51, &[with("p2", a_res)])?;
    assert_eq!(releases(&core.take_actions()), 0, "incomplete offer");
    // The whole reservation: released, and the uninstall finishes.
    let mut all = a_res.clone();
    all.add(b_res);
    core.handle_offers(60, &[with("p3", &all)])?;
    assert_eq!(releases(&core.take_actions()), 1, "released at once");
    core.tick(61);
    assert!(core.torn_down());
    Ok(())
}

/// An authenticated framework reserves under its own principal (`PRINCIPAL/SERVICE.POD-INDEX`,
/// as the master requires), volume ids stay plain names, and the uninstall releases them.
#[test]
fn an_authenticated_framework_tags_reservations_under_its_principal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let yaml = "name: hello\nrole: web-role\npods:\n  web:\n    count: 1\n    volumes:\n      data:\n        path: data\n        size: 10\n    tasks:\n      server:\n        cpus: 0.5\n        memory: 64\n        cmd: \"serve\"\n";
    let mut core = open_reserving(dir.path(), yaml)?;
    core.set_reservation_principal(Some("alice".into()));
    core.on_subscribed(1);
    let mut o = offer("o1", "a1");
    o.resources = Resources::parse("cpus:4;mem:4096;disk:1000")?.to_proto();
    core.handle_offers(10, &[o])?;
    let actions = core.take_actions();
    let l = launched(&actions);
    assert_eq!(l.len(), 1, "{actions:?}");
    let record = core
        .tasks()
        .values()
        .next()
        .context("a task record")?
        .clone();
    let reserved = Resources::parse(&record.reserved)?;
    let text = reserved.to_string();
    assert!(text.contains("dynamic=alice/hello.web-0"), "{text}");
    assert!(
        text.contains("[hello.web-0.data:"),
        "plain volume id: {text}"
    );
    Ok(())
}
