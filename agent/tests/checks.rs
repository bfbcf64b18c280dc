//! Health and readiness checks run by the executor: COMMAND, HTTP and TCP checks that fail
//! get the task killed after the configured consecutive failures; readiness is reported.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use common::{Harness, http_server, shell_task, state_of};
use proffer_proto::v1::{CommandInfo, HealthCheck, TaskInfo, TaskState, health_check::CheckType};

fn fast(kind: CheckType) -> HealthCheck {
    HealthCheck {
        r#type: kind as i32,
        delay_ms: Some(0),
        interval_ms: Some(50),
        // Failures in these tests are refusals, 503s and non-zero exits, never timeouts: a
        // long timeout only keeps a slow `sh` spawn on a loaded machine from failing a check.
        timeout_ms: Some(30_000),
        consecutive_failures: Some(3),
        grace_period_ms: Some(0),
        ..Default::default()
    }
}

/// Runs `task`, expects STARTING, RUNNING, then (when `break_check` is given) RUNNING
/// healthy, after which `break_check` makes the check fail; then RUNNING unhealthy and KILLED
/// as unhealthy. Breaking the check only once it was seen healthy keeps the test independent
/// of how long the launch takes.
async fn expect_killed_unhealthy(
    h: &mut Harness,
    task: TaskInfo,
    break_check: Option<Box<dyn FnOnce() + Send>>,
) -> Result<()> {
    h.run("fw", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    if let Some(break_check) = break_check {
        let u = h.expect_state(TaskState::TaskRunning).await?;
        let s = u.status.context("status")?;
        assert_eq!(s.healthy, Some(true), "{s:?}");
        assert_eq!(s.reason, "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
        break_check();
    }
    let u = h.next_update().await?;
    h.ack(&u)?;
    let s = u.status.clone().context("status")?;
    if state_of(&u) == TaskState::TaskRunning {
        assert_eq!(s.healthy, Some(false), "{s:?}");
    }
    let u = if state_of(&u) == TaskState::TaskRunning {
        h.expect_state(TaskState::TaskKilled).await?
    } else {
        u
    };
    let s = u.status.context("status")?;
    assert_eq!(
        TaskState::try_from(s.state)?,
        TaskState::TaskKilled,
        "{s:?}"
    );
    assert_eq!(s.reason, "REASON_TASK_UNHEALTHY", "{s:?}");
    assert_eq!(s.healthy, Some(false));
    assert!(s.message.contains("3 times in a row"), "{}", s.message);
    Ok(())
}

#[tokio::test]
async fn failing_command_check_kills_the_task() -> Result<()> {
    let mut h =
        Harness::start(|c| c.default_kill_grace = std::time::Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    let mut task = shell_task("cmd", "sleep 60");
    let mut check = fast(CheckType::Command);
    // Healthy while the file exists; the test removes it.
    check.command = Some(CommandInfo {
        value: "test -f healthy".into(),
        ..Default::default()
    });
    task.health_check = Some(check);
    std::fs::create_dir_all(h.sandbox("fw", "cmd"))?;
    std::fs::write(h.sandbox("fw", "cmd").join("healthy"), "")?;
    let healthy = h.sandbox("fw", "cmd").join("healthy");
    let break_check = Box::new(move || {
        std::fs::remove_file(&healthy).expect("remove the health marker");
    });
    expect_killed_unhealthy(&mut h, task, Some(break_check)).await?;
    h.stop().await
}

#[tokio::test]
async fn failing_http_check_kills_the_task() -> Result<()> {
    let ok = Arc::new(AtomicBool::new(true));
    let flag = ok.clone();
    let (port, count) = http_server(move |path| {
        if path == "/health" && flag.load(Ordering::SeqCst) {
            (200, b"ok".to_vec())
        } else {
            (503, b"down".to_vec())
        }
    })
    .await?;
    let mut h =
        Harness::start(|c| c.default_kill_grace = std::time::Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    let mut task = shell_task("web", "sleep 60");
    let mut check = fast(CheckType::Http);
    check.port = u32::from(port);
    check.path = "/health".into();
    task.health_check = Some(check);
    let flip = ok.clone();
    let break_check = Box::new(move || flip.store(false, Ordering::SeqCst));
    expect_killed_unhealthy(&mut h, task, Some(break_check)).await?;
    assert!(
        count.load(Ordering::SeqCst) >= 4,
        "the check really polled the server"
    );
    h.stop().await
}

#[tokio::test]
async fn failing_tcp_check_kills_the_task() -> Result<()> {
    // A port nobody listens on (reserved: no concurrent test can start listening on it).
    let port = common::reserved_port()?;
    let mut h =
        Harness::start(|c| c.default_kill_grace = std::time::Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    let mut task = shell_task("tcp", "sleep 60");
    let mut check = fast(CheckType::Tcp);
    check.port = u32::from(port);
    task.health_check = Some(check);
    expect_killed_unhealthy(&mut h, task, None).await?;
    h.stop().await
}

#[tokio::test]
async fn readiness_is_reported_once_the_check_passes() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let mut task = shell_task("slow-start", "sleep 0.3; touch ready; sleep 60");
    let mut check = fast(CheckType::Command);
    check.command = Some(CommandInfo {
        value: "test -f ready".into(),
        ..Default::default()
    });
    task.readiness_check = Some(check);
    h.run("fw", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    let running = h.expect_state(TaskState::TaskRunning).await?;
    let first = running.status.context("status")?;
    assert_eq!(first.reason, "");
    assert_eq!(
        first.ready, None,
        "the plain RUNNING says nothing about readiness"
    );
    let ready = h.expect_state(TaskState::TaskRunning).await?;
    let s = ready.status.context("status")?;
    assert_eq!(s.ready, Some(true));
    assert_eq!(s.reason, "REASON_TASK_CHECK_STATUS_UPDATED");
    assert!(s.message.starts_with("ready"), "{}", s.message);
    h.stop().await
}

#[tokio::test]
async fn invalid_checks_are_refused() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let mut task = shell_task("bad-check", "true");
    task.health_check = Some(HealthCheck {
        r#type: CheckType::Http as i32,
        port: 0,
        ..Default::default()
    });
    h.run("fw", task)?;
    let u = h.expect_state(TaskState::TaskError).await?;
    let s = u.status.context("status")?;
    assert_eq!(s.reason, "REASON_TASK_INVALID");
    assert!(s.message.contains("health check"), "{}", s.message);
    h.stop().await
}
