//! End to end with the real `proffer` binary: a master and two agents as separate processes on
//! loopback ports, driven by `proffer run` and by the SDK driver.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event};
use proffer_sdk::driver::{Driver, DriverConfig, DriverEvent, EventStream, command_task};
use proffer_tests::procs::{Cluster, run, run_ok, state_json};

const AGENT_RES: &str = "cpus:2;mem:1024;ports:[31000-31099]";
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn fifty_tasks_run_to_finished_through_proffer_run() -> Result<()> {
    let cluster = Cluster::start(2, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let out = run(&[
        "run",
        "--master",
        &cluster.master,
        "--tasks",
        "50",
        "--cmd",
        "echo hello from $PROFFER_TASK_ID",
        "--cpus",
        "0.25",
        "--mem",
        "32",
        "--name",
        "e2e",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "proffer run failed:\n{stdout}\n{}\nmaster log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.log("master")
    );
    assert!(stdout.contains("50/50 tasks finished"), "{stdout}");
    let state = state_json(&cluster.master)?;
    let done: Vec<&serde_json::Value> = state["completed_tasks"]
        .as_array()
        .context("completed_tasks")?
        .iter()
        .filter(|t| t["framework_id"] != serde_json::Value::Null && t["state"] == "TASK_FINISHED")
        .collect();
    assert_eq!(done.len(), 50, "{state}");
    // Both agents did work, and each task wrote its own stdout in its sandbox.
    let agents: std::collections::BTreeSet<&str> =
        done.iter().filter_map(|t| t["agent_id"].as_str()).collect();
    assert_eq!(agents.len(), 2, "tasks spread over both agents");
    let sandboxes: Vec<_> = walk(cluster.dir.path())
        .into_iter()
        .filter(|p| p.ends_with("stdout") && p.to_string_lossy().contains("e2e-"))
        .collect();
    assert_eq!(sandboxes.len(), 50);
    let text = std::fs::read_to_string(&sandboxes[0])?;
    assert!(text.starts_with("hello from e2e-"), "{text}");
    Ok(())
}

#[test]
fn failing_tasks_make_proffer_run_fail() -> Result<()> {
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let out = run(&[
        "run",
        "--master",
        &cluster.master,
        "--tasks",
        "3",
        "--cmd",
        "exit 3",
    ])?;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("failed 3"), "{stdout}");
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The next protocol event before `deadline` (skipping nothing: a disconnect is an error).
async fn next_event(
    events: &mut EventStream,
    deadline: tokio::time::Instant,
    what: &str,
) -> Result<v1::Event> {
    let ev = tokio::time::timeout_at(deadline, events.next())
        .await
        .with_context(|| format!("{what}: timed out"))?;
    match ev {
        Some(DriverEvent::Event(e)) => Ok(e),
        other => bail!("{what}: event stream ended: {other:?}"),
    }
}

/// Stops a test task's `sleep MARKER` process (markers are unique per test).
fn stop_sleeper(marker: &str) {
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("sleep {marker}")])
        .status();
}

/// Subscribes a framework and launches one long task on the first offer; returns once it runs.
async fn launch_long_task(
    master: &str,
    task_id: &str,
    marker: &str,
) -> Result<(Driver, EventStream, String)> {
    let info = v1::FrameworkInfo {
        name: "e2e-driver".into(),
        ..Default::default()
    };
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(master, info)).await?;
    let mut agent_id = String::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let e = next_event(&mut events, deadline, "waiting for events").await?;
        match e.event {
            Some(Event::Offers(o)) if agent_id.is_empty() => {
                let offer = &o.offers[0];
                agent_id = offer.agent_id.clone();
                let res = Resources::parse("cpus:0.5;mem:64")?;
                let task = command_task(
                    task_id,
                    task_id,
                    &agent_id,
                    &format!("exec sleep {marker}"),
                    &res,
                );
                driver
                    .launch(vec![offer.id.clone()], vec![task], None)
                    .await?;
            }
            Some(Event::Update(u)) => {
                let s = u.status.context("status")?;
                driver.acknowledge(&s).await?;
                if s.state == TaskState::TaskRunning as i32 {
                    return Ok((driver, events, agent_id));
                }
                if TaskState::try_from(s.state).is_ok_and(TaskState::is_terminal) {
                    bail!("task ended early: {s:?}");
                }
            }
            _ => {}
        }
    }
}

/// Waits for a terminal update of `task_id`, acknowledging updates on the way.
async fn wait_terminal(
    driver: &Driver,
    events: &mut EventStream,
    task_id: &str,
) -> Result<v1::TaskStatus> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let e = next_event(events, deadline, "waiting for a terminal update").await?;
        if let Some(Event::Update(u)) = e.event {
            let s = u.status.context("status")?;
            driver.acknowledge(&s).await?;
            if s.task_id == task_id
                && TaskState::try_from(s.state).is_ok_and(TaskState::is_terminal)
            {
                return Ok(s);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_running_task_as_killed() -> Result<()> {
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let marker = "3600.11";
    let (driver, mut events, agent_id) =
        launch_long_task(&cluster.master, "sleeper", marker).await?;
    driver.kill("sleeper", &agent_id).await?;
    let status = wait_terminal(&driver, &mut events, "sleeper").await?;
    assert_eq!(status.state, TaskState::TaskKilled as i32, "{status:?}");
    // The process is gone.
    let alive = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()?;
    assert!(!alive.status.success(), "sleep {marker} still running");
    driver.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_with_sigkill_is_unreachable_and_its_tasks_lost() -> Result<()> {
    let mut cluster = Cluster::start(
        1,
        AGENT_RES,
        &[
            "--allocation-interval",
            "100ms",
            // Removed after 5 × 500 ms of silence: quick enough for the test, and long enough
            // that a live agent starved of CPU on a loaded machine is not removed early.
            "--agent-ping-interval",
            "500ms",
            "--agent-max-missed-pings",
            "5",
        ],
    )?;
    let marker = "3600.22";
    let (driver, mut events, agent_id) =
        launch_long_task(&cluster.master, "doomed", marker).await?;
    cluster.agents[0].kill9()?;
    let status = wait_terminal(&driver, &mut events, "doomed").await?;
    // The task's executor outlives the agent by design (a restarted agent would re-attach); this
    // agent never comes back, so stop the task's process here.
    stop_sleeper(marker);
    // Not partition-aware: TASK_LOST, and the agent is kept as unreachable (it may return).
    assert_eq!(status.state, TaskState::TaskLost as i32, "{status:?}");
    assert_eq!(status.reason, "REASON_AGENT_UNREACHABLE");
    assert_eq!(status.agent_id, agent_id);
    let state = state_json(&cluster.master)?;
    assert_eq!(state["agents"][0]["state"], "unreachable", "{state}");
    assert!(
        state["agents"][0]["unreachable_since_ms"]
            .as_u64()
            .is_some_and(|t| t > 0)
    );
    driver.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_kills_tasks_and_stops_offers_until_reactivated() -> Result<()> {
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let marker = "3600.33";
    let (driver, mut events, agent_id) =
        launch_long_task(&cluster.master, "drained", marker).await?;
    run_ok(&[
        "drain",
        &agent_id,
        "--reason",
        "kernel upgrade",
        "--master",
        &cluster.master,
    ])?;
    let status = wait_terminal(&driver, &mut events, "drained").await?;
    assert_eq!(status.state, TaskState::TaskKilled as i32, "{status:?}");
    let state = state_json(&cluster.master)?;
    assert_eq!(state["agents"][0]["draining"], true, "{state}");
    assert_eq!(
        state["offers"].as_array().map(Vec::len),
        Some(0),
        "no offers from a drained agent: {state}"
    );
    run_ok(&["reactivate", &agent_id, "--master", &cluster.master])?;
    let state = state_json(&cluster.master)?;
    assert_eq!(state["agents"][0]["draining"], false);
    stop_sleeper(marker);
    driver.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_window_sends_inverse_offers_then_drains() -> Result<()> {
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let marker = "3600.44";
    let (driver, mut events, agent_id) = launch_long_task(&cluster.master, "maint", marker).await?;
    let schedule = |starts_in: &str| {
        run_ok(&[
            "maintenance",
            "schedule",
            &agent_id,
            "--in",
            starts_in,
            "--for",
            "1h",
            "--master",
            &cluster.master,
        ])
    };
    // The framework using the agent is asked to vacate it while the window is ahead (an hour
    // ahead, so that a slow machine cannot reach the start before the inverse offer is seen:
    // starting the window clears the outstanding inverse offers).
    schedule("1h")?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let e = next_event(&mut events, deadline, "waiting for the inverse offer").await?;
        match e.event {
            Some(Event::InverseOffers(i)) => {
                assert_eq!(i.inverse_offers[0].agent_id, agent_id);
                let status = run(&["maintenance", "status", "--master", &cluster.master])?;
                let text = String::from_utf8_lossy(&status.stdout).to_string();
                assert!(
                    text.contains(&agent_id) && text.contains("OUTSTANDING"),
                    "{text}"
                );
                break;
            }
            Some(Event::Update(u)) => {
                let s = u.status.context("status")?;
                driver.acknowledge(&s).await?;
                anyhow::ensure!(
                    !TaskState::try_from(s.state).is_ok_and(TaskState::is_terminal),
                    "task ended before the window started: {s:?}"
                );
            }
            _ => {}
        }
    }
    // Then the window is moved to start now: its start kills the task.
    schedule("0s")?;
    loop {
        let e = next_event(&mut events, deadline, "waiting for the kill").await?;
        if let Some(Event::Update(u)) = e.event {
            let s = u.status.context("status")?;
            driver.acknowledge(&s).await?;
            if s.task_id == "maint"
                && TaskState::try_from(s.state).is_ok_and(TaskState::is_terminal)
            {
                assert_eq!(s.state, TaskState::TaskKilled as i32, "{s:?}");
                break;
            }
        }
    }
    let state = state_json(&cluster.master)?;
    assert_eq!(state["agents"][0]["draining"], true, "{state}");
    stop_sleeper(marker);
    driver.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_answers_inverse_offers() -> Result<()> {
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let marker = "3600.55";
    let (driver, mut events, agent_id) =
        launch_long_task(&cluster.master, "vacate", marker).await?;
    run_ok(&[
        "maintenance",
        "schedule",
        &agent_id,
        "--in",
        "1h",
        "--for",
        "1h",
        "--master",
        &cluster.master,
    ])?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let ids = loop {
        let e = next_event(&mut events, deadline, "waiting for events").await?;
        if let Some(Event::InverseOffers(i)) = e.event {
            break i
                .inverse_offers
                .into_iter()
                .map(|o| o.id)
                .collect::<Vec<_>>();
        }
    };
    let err = driver
        .answer_inverse_offers(vec!["nope".into()], true)
        .await;
    assert!(err.is_err(), "an unknown inverse offer is refused");
    driver.answer_inverse_offers(ids, true).await?;
    let status = run(&["maintenance", "status", "--master", &cluster.master])?;
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains("ACCEPTED"), "{text}");
    stop_sleeper(marker);
    driver.teardown().await?;
    Ok(())
}
