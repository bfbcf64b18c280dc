//! A spec's own `update` plan drives configuration updates: serial phases with serial steps
//! relaunch instances strictly one at a time, in the declared order (unlike the deploy order).

mod common;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use common::fixtures::status;
use proffer_proto::v1;
use proffer_sdk::service::core::{Action, CoreConfig, ServiceCore};
use proffer_sdk::service::store::StateStore;
use proffer_sdk::service::{RollupStatus, ServiceSpec};

fn spec(version: &str) -> Result<ServiceSpec> {
    let yaml = format!(
        r#"
name: ordered
pods:
  db:
    count: 2
    tasks:
      t: {{cmd: "db {version}", cpus: 0.1, memory: 8}}
  api:
    count: 2
    tasks:
      t: {{cmd: "api {version}", cpus: 0.1, memory: 8}}
  node:
    count: 2
    tasks:
      t: {{cmd: "node {version}", cpus: 0.1, memory: 8}}
plans:
  update:
    strategy: serial
    phases:
      node-first:
        pod: node
        strategy: serial
      then-db:
        pod: db
        strategy: serial
      then-api:
        pod: api
        strategy: serial
"#
    );
    Ok(ServiceSpec::parse(&yaml, &BTreeMap::new())?)
}

fn offer(id: &str, agent: &str) -> v1::Offer {
    common::fixtures::offer(id, agent, "cpus:4;mem:1024")
}

/// The instance (`pod-index`) of a task id known to the core.
fn instance(core: &ServiceCore, task_id: &str) -> Option<String> {
    core.tasks()
        .values()
        .find(|r| r.task_id == task_id)
        .map(|r| format!("{}-{}", r.pod, r.index))
}

/// Feeds offers and answers kills and launches until the first plan completes. Returns the log
/// of `kill X` / `launch X` events, checking that at most one instance is down at any time.
fn run(core: &mut ServiceCore, now: &mut u64) -> Result<Vec<String>> {
    let mut log = Vec::new();
    let mut down: Option<String> = None;
    for round in 0..100 {
        if core.plans().first().map(|p| p.status()) == Some(RollupStatus::Complete) {
            return Ok(log);
        }
        *now += 1000;
        let offers: Vec<v1::Offer> = (0..2)
            .map(|a| offer(&format!("o{round}-{a}"), &format!("a{a}")))
            .collect();
        core.handle_offers(*now, &offers)?;
        let actions = core.take_actions();
        let mut statuses = Vec::new();
        for a in &actions {
            match a {
                Action::Kill { task_id, agent_id } => {
                    let Some(inst) = instance(core, task_id) else {
                        bail!("kill of an unknown task {task_id}");
                    };
                    if let Some(d) = &down {
                        bail!("{inst} killed while {d} is still down: {log:?}");
                    }
                    log.push(format!("kill {inst}"));
                    down = Some(inst);
                    statuses.push(status(task_id, agent_id, v1::TaskState::TaskKilled));
                }
                Action::Accept {
                    tasks, operations, ..
                } => {
                    core.accept_result(*now, tasks, Ok(()))?;
                    for op in operations {
                        if let Some(v1::operation::Op::Launch(l)) = &op.op {
                            for t in &l.tasks {
                                let Some(inst) = instance(core, &t.task_id) else {
                                    bail!("launch of an unknown task {}", t.task_id);
                                };
                                match &down {
                                    Some(d) if *d == inst => down = None,
                                    Some(d) => bail!("{inst} launched while {d} is down"),
                                    None => {}
                                }
                                log.push(format!("launch {inst}"));
                                statuses.push(status(
                                    &t.task_id,
                                    &t.agent_id,
                                    v1::TaskState::TaskRunning,
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for s in statuses {
            core.handle_status(*now + 1, &s)?;
        }
    }
    bail!("the plan did not complete: {log:?}")
}

#[test]
fn a_custom_update_plan_relaunches_one_instance_at_a_time_in_its_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Stop-first: one instance down at a time (start-first: tests/service_replace_first.rs).
    let cfg = CoreConfig {
        permanent_after_ms: 600_000,
        replace_first_wait_ms: 0,
        ..CoreConfig::default()
    };
    let mut core = ServiceCore::open(spec("v1")?, cfg, StateStore::open(dir.path())?)?;
    core.on_subscribed(1);
    let mut now = 1;
    // The deploy plan is the default one (spec order); the update plan is not a custom plan.
    assert_eq!(
        core.plans()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["deploy"]
    );
    let deployed = run(&mut core, &mut now)?;
    assert_eq!(
        deployed,
        ["db-0", "db-1", "api-0", "api-1", "node-0", "node-1"].map(|i| format!("launch {i}"))
    );

    core.update_spec(now, spec("v2")?)?;
    assert_eq!(
        core.plans().first().map(|p| p.name.as_str()),
        Some("update")
    );
    let phases: Vec<&str> = core.plans()[0]
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(phases, ["node-first", "then-db", "then-api"]);
    let updated = run(&mut core, &mut now)?;
    let expected: Vec<String> = ["node-0", "node-1", "db-0", "db-1", "api-0", "api-1"]
        .iter()
        .flat_map(|i| [format!("kill {i}"), format!("launch {i}")])
        .collect();
    assert_eq!(updated, expected);
    Ok(())
}
