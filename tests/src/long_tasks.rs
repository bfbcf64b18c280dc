//! A framework's long tasks for the failover tests: launch many `sleep MARKER` tasks through
//! the SDK driver, count the processes on this machine, stop them.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_proto::v1::{TaskState, event::Event};
use proffer_sdk::driver::{Driver, DriverEvent, EventStream, command_task};

/// How long each wait may take.
pub const LIMIT: Duration = Duration::from_secs(90);

/// The next driver event, or an error at `deadline`.
pub async fn next(events: &mut EventStream, deadline: tokio::time::Instant) -> Result<DriverEvent> {
    tokio::time::timeout_at(deadline, events.next())
        .await
        .context("timed out waiting for a framework event")?
        .context("the framework's event stream ended")
}

/// Launches `count` tasks `exec sleep MARKER` (0.03 cpu, 8 MB each) and waits until all run;
/// then suppresses offers.
pub async fn launch_all(
    driver: &Driver,
    events: &mut EventStream,
    count: usize,
    marker: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut launched = 0usize;
    // Distinct ids: an agent re-sends an update not yet acknowledged (after 10 s, or at once
    // after it reconnects), so one task's RUNNING may arrive twice.
    let mut running = std::collections::HashSet::new();
    while running.len() < count {
        let DriverEvent::Event(e) = next(events, deadline).await? else {
            bail!("disconnected while launching");
        };
        match e.event {
            Some(Event::Offers(o)) => {
                for offer in o.offers {
                    let free = Resources::from_proto(&offer.resources)?.unreserved();
                    // Offers may be chopped (a quota is set): count cpus and memory.
                    let fit = (free.cpus_milli() / 30).min(free.mem_milli() / 8_000);
                    let n = (fit.max(0) as usize).min(count - launched);
                    let res = Resources::parse("cpus:0.03;mem:8")?;
                    let tasks: Vec<_> = (launched..launched + n)
                        .map(|i| {
                            let id = format!("long-{i}");
                            let cmd = format!("exec sleep {marker}");
                            command_task(&id, &id, &offer.agent_id, &cmd, &res)
                        })
                        .collect();
                    launched += n;
                    if tasks.is_empty() {
                        driver.decline(vec![offer.id], None).await?;
                    } else {
                        driver.launch(vec![offer.id], tasks, None).await?;
                    }
                }
            }
            Some(Event::Update(u)) => {
                let s = u.status.context("status")?;
                driver.acknowledge(&s).await?;
                if s.state == TaskState::TaskRunning as i32 {
                    running.insert(s.task_id.clone());
                } else if TaskState::try_from(s.state).is_ok_and(TaskState::is_terminal) {
                    bail!("a task ended while launching: {s:?}");
                }
            }
            _ => {}
        }
    }
    driver.suppress().await?;
    Ok(())
}

/// Waits until exactly `count` `sleep MARKER` processes run (a process reported RUNNING may
/// still be between its shell and `exec sleep` for a moment), failing with the count seen.
pub fn wait_sleepers(marker: &str, count: usize) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let n = sleepers(marker);
        if n == count {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("{n} `sleep {marker}` processes run, expected {count}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many `sleep MARKER` processes run on this machine.
pub fn sleepers(marker: &str) -> usize {
    std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Kills every `sleep MARKER` process.
pub fn stop_sleepers(marker: &str) {
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("sleep {marker}")])
        .status();
}

/// Waits until the framework re-subscribes (with `framework_id`), acknowledging updates
/// meanwhile and failing on any that says a task ended.
pub async fn resubscribed(
    driver: &Driver,
    events: &mut EventStream,
    framework_id: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match next(events, deadline).await? {
            DriverEvent::Resubscribed { framework_id: id } => {
                anyhow::ensure!(
                    id == framework_id,
                    "re-subscribed as {id}, not {framework_id}"
                );
                return Ok(());
            }
            DriverEvent::Disconnected { .. } => {}
            DriverEvent::Event(e) => {
                if let Some(Event::Update(u)) = e.event {
                    let st = u.status.context("status")?;
                    driver.acknowledge(&st).await?;
                    anyhow::ensure!(
                        !TaskState::try_from(st.state).is_ok_and(TaskState::is_terminal),
                        "a task ended across the failover: {st:?}"
                    );
                }
            }
        }
    }
}
