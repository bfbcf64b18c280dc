//! Readiness from synthetic status updates: `TaskStatus.ready` is preferred when present; without
//! it the older convention (RUNNING, reason REASON_TASK_CHECK_STATUS_UPDATED, message `ready: …`)
//! still completes the deploy step.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use proffer_proto::{Resources, v1};
use proffer_sdk::service::core::{Action, CoreConfig, ServiceCore};
use proffer_sdk::service::store::StateStore;
use proffer_sdk::service::{ServiceSpec, StepStatus};

const SPEC: &str = r#"
name: ready
pods:
  web:
    count: 1
    tasks:
      server:
        cmd: "serve"
        cpus: 0.1
        memory: 8
        readiness-check: {cmd: "true"}
"#;

/// A core whose only task was launched; returns it with the task id and agent.
fn launched(dir: &std::path::Path) -> Result<(ServiceCore, String, String)> {
    let spec = ServiceSpec::parse(SPEC, &BTreeMap::new())?;
    let mut core = ServiceCore::open(spec, CoreConfig::default(), StateStore::open(dir)?)?;
    core.on_subscribed(1);
    let offer = v1::Offer {
        id: "o1".into(),
        framework_id: "fw".into(),
        agent_id: "a1".into(),
        hostname: "host-a1".into(),
        resources: Resources::parse("cpus:1;mem:256")
            .unwrap_or_default()
            .to_proto(),
        ..Default::default()
    };
    core.handle_offers(10, &[offer])?;
    for a in core.take_actions() {
        if let Action::Accept {
            tasks, operations, ..
        } = a
        {
            core.accept_result(11, &tasks, Ok(()))?;
            for op in operations {
                if let Some(v1::operation::Op::Launch(l)) = op.op
                    && let Some(t) = l.tasks.first()
                {
                    return Ok((core, t.task_id.clone(), t.agent_id.clone()));
                }
            }
        }
    }
    bail!("no launch")
}

fn running(task_id: &str, agent: &str) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task_id.into(),
        agent_id: agent.into(),
        state: v1::TaskState::TaskRunning as i32,
        message: "started".into(),
        ..Default::default()
    }
}

fn step(core: &ServiceCore) -> Option<StepStatus> {
    core.plan("deploy")?
        .steps()
        .find(|(_, s)| s.name == "web-0:[server]")
        .map(|(_, s)| s.status)
}

fn ready_of(core: &ServiceCore) -> Option<bool> {
    core.tasks().values().next().map(|r| r.ready)
}

#[test]
fn plain_running_is_not_ready_with_a_readiness_check() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut core, id, agent) = launched(dir.path())?;
    core.handle_status(20, &running(&id, &agent))?;
    assert_eq!(ready_of(&core), Some(false));
    assert_eq!(step(&core), Some(StepStatus::Started));
    Ok(())
}

#[test]
fn the_ready_field_makes_a_task_ready() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut core, id, agent) = launched(dir.path())?;
    core.handle_status(20, &running(&id, &agent))?;
    // No reason, no `ready:` message: only the field says so.
    core.handle_status(
        21,
        &v1::TaskStatus {
            ready: Some(true),
            ..running(&id, &agent)
        },
    )?;
    assert_eq!(ready_of(&core), Some(true));
    assert_eq!(step(&core), Some(StepStatus::Complete));
    Ok(())
}

#[test]
fn the_old_convention_still_works_without_the_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut core, id, agent) = launched(dir.path())?;
    core.handle_status(20, &running(&id, &agent))?;
    core.handle_status(
        21,
        &v1::TaskStatus {
            reason: "REASON_TASK_CHECK_STATUS_UPDATED".into(),
            message: "ready: check passed".into(),
            ready: None,
            ..running(&id, &agent)
        },
    )?;
    assert_eq!(ready_of(&core), Some(true));
    assert_eq!(step(&core), Some(StepStatus::Complete));
    Ok(())
}

#[test]
fn the_ready_field_wins_over_the_convention() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut core, id, agent) = launched(dir.path())?;
    core.handle_status(20, &running(&id, &agent))?;
    core.handle_status(
        21,
        &v1::TaskStatus {
            reason: "REASON_TASK_CHECK_STATUS_UPDATED".into(),
            message: "ready: stale message".into(),
            ready: Some(false),
            ..running(&id, &agent)
        },
    )?;
    assert_eq!(ready_of(&core), Some(false));
    assert_eq!(step(&core), Some(StepStatus::Started));
    // Once ready, a later update without readiness keeps the task ready while it runs.
    core.handle_status(
        22,
        &v1::TaskStatus {
            ready: Some(true),
            ..running(&id, &agent)
        },
    )?;
    core.handle_status(23, &running(&id, &agent))?;
    assert_eq!(ready_of(&core), Some(true));
    assert_eq!(step(&core), Some(StepStatus::Complete));
    Ok(())
}
