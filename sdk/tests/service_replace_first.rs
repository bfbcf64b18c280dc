//! Start-first restarts, driven on a `ServiceCore` directly: where the spec allows it (no
//! volumes, no fixed ports, no reservations) a configuration update launches each instance's
//! replacement while the old task runs and kills the old one once the new one is ready; it
//! falls back to stop-first when the replacement fails or finds no room in time, and a pod with
//! a fixed port is stopped first.

mod common;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use common::fixtures::{offer, status};
use proffer_proto::v1;
use proffer_sdk::service::core::{Action, CoreConfig, ServiceCore};
use proffer_sdk::service::store::StateStore;
use proffer_sdk::service::{RollupStatus, ServiceSpec};

const ROOM: &str = "cpus:2;mem:1024;ports:[31000-31010]";

fn spec(version: &str, port: u64) -> Result<ServiceSpec> {
    let yaml = format!(
        r#"
name: web
pods:
  web:
    count: 2
    placement: [one-per-agent]
    tasks:
      server:
        cmd: "serve {version}"
        cpus: 0.5
        memory: 64
        ports:
          http: {{port: {port}}}
"#
    );
    Ok(ServiceSpec::parse(&yaml, &BTreeMap::new())?)
}

fn open(dir: &std::path::Path, s: ServiceSpec, wait_ms: u64) -> Result<ServiceCore> {
    let cfg = CoreConfig {
        replace_first_wait_ms: wait_ms,
        ..CoreConfig::default()
    };
    Ok(ServiceCore::open(s, cfg, StateStore::open(dir)?)?)
}

/// Launched `(task id, agent)` and killed task ids.
type Effects = (Vec<(String, String)>, Vec<String>);

/// Launched `(task id, agent)` and killed task ids in `actions`.
fn split(actions: &[Action]) -> Effects {
    let mut launched = Vec::new();
    let mut killed = Vec::new();
    for a in actions {
        match a {
            Action::Accept { operations, .. } => {
                for op in operations {
                    if let Some(v1::operation::Op::Launch(l)) = &op.op {
                        launched.extend(
                            l.tasks
                                .iter()
                                .map(|t| (t.task_id.clone(), t.agent_id.clone())),
                        );
                    }
                }
            }
            Action::Kill { task_id, .. } => killed.push(task_id.clone()),
            _ => {}
        }
    }
    (launched, killed)
}

/// Offers from `agents` at `now`; answers launches RUNNING (ready: no readiness check).
fn offer_round(core: &mut ServiceCore, now: u64, agents: &[&str], res: &str) -> Result<Effects> {
    let offers: Vec<v1::Offer> = agents
        .iter()
        .map(|a| offer(&format!("o{now}-{a}"), a, res))
        .collect();
    core.handle_offers(now, &offers)?;
    let (launched, killed) = split(&core.take_actions());
    for (t, a) in &launched {
        core.accept_result(now, std::slice::from_ref(t), Ok(()))?;
        core.handle_status(now, &status(t, a, v1::TaskState::TaskRunning))?;
    }
    Ok((launched, killed))
}

/// A deployed service (web-0 on a0, web-1 on a1) and its task ids.
fn deployed(core: &mut ServiceCore) -> Result<Vec<(String, String)>> {
    core.on_subscribed(1);
    let (mut l, _) = offer_round(core, 2, &["a0"], ROOM)?;
    l.extend(offer_round(core, 3, &["a1"], ROOM)?.0);
    assert_eq!(
        core.plan("deploy").map(|p| p.status()),
        Some(RollupStatus::Complete)
    );
    core.take_actions();
    Ok(l)
}

fn update_status(core: &ServiceCore) -> Option<RollupStatus> {
    core.plan("update").map(|p| p.status())
}

#[test]
fn the_replacement_starts_before_the_old_task_stops() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec("v1", 0)?, 30_000)?;
    let old = deployed(&mut core)?;
    core.update_spec(10, spec("v2", 0)?)?;
    let (_, killed) = split(&core.take_actions());
    assert!(killed.is_empty(), "nothing is killed first: {killed:?}");
    let mut now = 10;
    for (i, (old_id, agent)) in old.iter().enumerate() {
        // The other agent's offer is declined (one-per-agent); the replacement goes beside
        // the old task, which runs until the new one is ready, then is killed.
        now += 10;
        let (launched, killed) = offer_round(&mut core, now, &["a1", "a0"], ROOM)?;
        assert_eq!(launched.len(), 1, "web-{i}: {launched:?}");
        assert_eq!(&launched[0].1, agent);
        assert!(killed.is_empty(), "old killed before the new one ran");
        let pods = core.pods();
        let rows = pods.get(&format!("web-{i}")).context("no pod")?;
        assert_eq!(rows.len(), 2, "old and new run together: {rows:?}");
        now += 1;
        core.tick(now);
        let (_, killed) = split(&core.take_actions());
        assert_eq!(
            killed,
            std::slice::from_ref(old_id),
            "web-{i}: the old task is stopped"
        );
        core.handle_status(now, &status(old_id, agent, v1::TaskState::TaskKilled))?;
        core.take_actions();
    }
    assert_eq!(update_status(&core), Some(RollupStatus::Complete));
    assert_eq!(core.tasks().len(), 2, "retired records are forgotten");
    assert!(core.plan("recovery").is_none());
    Ok(())
}

#[test]
fn a_failed_replacement_falls_back_to_stopping_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec("v1", 0)?, 30_000)?;
    let old = deployed(&mut core)?;
    core.update_spec(10, spec("v2", 0)?)?;
    core.take_actions();
    core.handle_offers(20, &[offer("o20", "a0", ROOM)])?;
    let (launched, _) = split(&core.take_actions());
    let (new_id, _) = launched.first().context("no replacement launched")?;
    core.accept_result(20, std::slice::from_ref(new_id), Ok(()))?;
    core.handle_status(21, &status(new_id, "a0", v1::TaskState::TaskFailed))?;
    // The old task is killed first now, and the replacement waits for its end.
    let (_, killed) = split(&core.take_actions());
    assert_eq!(killed, [old[0].0.clone()]);
    core.handle_offers(30, &[offer("o30", "a0", ROOM)])?;
    assert!(
        split(&core.take_actions()).0.is_empty(),
        "old still running"
    );
    core.handle_status(31, &status(&old[0].0, "a0", v1::TaskState::TaskKilled))?;
    // After the crash back-off (0.5 s).
    let (launched, _) = offer_round(&mut core, 1_000, &["a0"], ROOM)?;
    assert_eq!(launched.len(), 1);
    Ok(())
}

#[test]
fn no_room_for_both_stops_first_after_the_wait() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut core = open(dir.path(), spec("v1", 0)?, 5_000)?;
    let old = deployed(&mut core)?;
    core.update_spec(10, spec("v2", 0)?)?;
    core.take_actions();
    let (launched, killed) = offer_round(&mut core, 20, &["a0"], "cpus:0.2;mem:1024")?;
    assert!(launched.is_empty() && killed.is_empty());
    core.tick(5_000);
    assert!(split(&core.take_actions()).1.is_empty(), "still waiting");
    core.tick(5_021);
    let (_, killed) = split(&core.take_actions());
    assert_eq!(killed, [old[0].0.clone()], "stopped first after the wait");
    Ok(())
}

#[test]
fn a_fixed_port_or_no_wait_stops_first() -> Result<()> {
    for (port, wait) in [(8080, 30_000), (0, 0)] {
        let dir = tempfile::tempdir()?;
        let mut core = open(dir.path(), spec("v1", port)?, wait)?;
        let r = format!("{ROOM};ports:[8080-8080]");
        core.on_subscribed(1);
        let (mut old, _) = offer_round(&mut core, 2, &["a0"], &r)?;
        old.extend(offer_round(&mut core, 3, &["a1"], &r)?.0);
        core.take_actions();
        core.update_spec(10, spec("v2", port)?)?;
        let (_, killed) = split(&core.take_actions());
        assert_eq!(killed, [old[0].0.clone()], "port {port}, wait {wait}");
    }
    Ok(())
}
