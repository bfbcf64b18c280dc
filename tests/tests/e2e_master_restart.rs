//! End to end with the real binary (issue 16): a master with its redb registry, two agents, an
//! SDK framework with long tasks, a weight, a quota, a dynamic reservation and a persistent
//! volume; the master is
//! killed with SIGKILL under load and started again on the same work dir. Everything is still
//! there, every task keeps running exactly once (no LOST, no relaunch), the framework keeps
//! its id and gets offers again.

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event};
use proffer_sdk::driver::{Driver, DriverConfig, DriverEvent};
use proffer_tests::long_tasks::{self, LIMIT, launch_all, next};
use proffer_tests::procs::{Cluster, Proc, run_ok, state_json, wait_for};

const AGENT_RES: &str = "cpus:4;mem:2048;disk:1000";
const TASKS: usize = 200;
const MARKER: &str = "7200.16";

/// A framework in role `web` turns the reserved disk into a persistent volume `vol1`, then
/// declines (in a background task, until the test ends) every offer it gets, so it never sits
/// on resources; the task reports each re-subscription on the returned channel.
async fn create_volume(
    master: &str,
) -> Result<(Driver, tokio::sync::mpsc::UnboundedReceiver<String>)> {
    let info = v1::FrameworkInfo {
        name: "volume-maker".into(),
        roles: vec!["web".into()],
        failover_timeout: 3600.0,
        ..Default::default()
    };
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(master, info)).await?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let DriverEvent::Event(e) = next(&mut events, deadline).await? else {
            bail!("disconnected while creating the volume");
        };
        let Some(Event::Offers(o)) = e.event else {
            continue;
        };
        let (mine, others): (Vec<_>, Vec<_>) = o.offers.into_iter().partition(|o| {
            Resources::from_proto(&o.resources)
                .is_ok_and(|r| r.to_string().contains("disk(web,dynamic=ops):100"))
        });
        for other in others {
            driver.decline(vec![other.id], None).await?;
        }
        let Some(offer) = mine.into_iter().next() else {
            continue;
        };
        let volume = Resources::parse("disk(web,dynamic=ops)[vol1:data]:100")?;
        let create = v1::Operation {
            op: Some(v1::operation::Op::Create(v1::CreateVolume {
                volumes: volume.to_proto(),
            })),
        };
        driver.accept(vec![offer.id], vec![create], None).await?;
        driver.suppress().await?;
        break;
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let d = driver.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                DriverEvent::Event(v1::Event {
                    event: Some(Event::Offers(o)),
                }) => {
                    let ids = o.offers.into_iter().map(|o| o.id).collect();
                    let _ = d.decline(ids, None).await;
                }
                DriverEvent::Resubscribed { framework_id } => {
                    let _ = tx.send(framework_id);
                }
                _ => {}
            }
        }
    });
    Ok((driver, rx))
}

fn sleepers() -> usize {
    long_tasks::sleepers(MARKER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_restarts_on_its_work_dir_with_nothing_lost() -> Result<()> {
    let result = scenario().await;
    long_tasks::stop_sleepers(MARKER);
    result
}

async fn scenario() -> Result<()> {
    let mut cluster = Cluster::start(
        2,
        AGENT_RES,
        &[
            "--allocation-interval",
            "100ms",
            "--agent-reregister-timeout",
            "60s",
        ],
    )?;
    let m = cluster.master.clone();
    run_ok(&["weight", "set", "web", "2.5", "--master", &m])?;
    run_ok(&[
        "quota",
        "set",
        "web",
        "--guarantee",
        "cpus:1;mem:256",
        "--master",
        &m,
    ])?;
    let state = state_json(&m)?;
    let agent = state["agents"][0]["id"]
        .as_str()
        .context("agent id")?
        .to_string();
    run_ok(&[
        "reserve",
        &agent,
        "cpus(web,dynamic=ops):1;disk(web,dynamic=ops):100",
        "--master",
        &m,
    ])?;

    let info = v1::FrameworkInfo {
        name: "restart-e2e".into(),
        failover_timeout: 3600.0,
        ..Default::default()
    };
    let (volume_maker, mut maker_events) = create_volume(&m).await?;
    wait_for("the volume in the agent's total", LIMIT, || {
        let s = state_json(&m).ok()?;
        s["agents"]
            .as_array()?
            .iter()
            .any(|a| {
                a["total"]
                    .as_str()
                    .is_some_and(|t| t.contains("[vol1:data]"))
            })
            .then_some(())
    })?;
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(m.as_str(), info)).await?;
    let framework_id = driver.framework_id();
    launch_all(&driver, &mut events, TASKS, MARKER).await?;
    tokio::task::block_in_place(|| long_tasks::wait_sleepers(MARKER, TASKS))?;

    // SIGKILL the master and start it again on the same work dir and port.
    cluster.master_proc.kill9()?;
    let work = cluster.dir.path().join("master");
    let work = work.to_string_lossy().to_string();
    let args = [
        "master",
        "--listen",
        &m,
        "--work-dir",
        &work,
        "--allocation-interval",
        "100ms",
        "--agent-reregister-timeout",
        "60s",
    ];
    cluster.master_proc = Proc::start("master-2", &args, cluster.dir.path())?;
    // The framework re-subscribes with its id, then is offered again (it revives).
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match next(&mut events, deadline).await? {
            DriverEvent::Resubscribed { framework_id: id } => {
                assert_eq!(id, framework_id, "same framework id after the restart");
                break;
            }
            DriverEvent::Disconnected { .. } => {}
            DriverEvent::Event(e) => {
                if let Some(Event::Update(u)) = e.event {
                    bail!("update before the re-subscription: {u:?}");
                }
            }
        }
    }
    // Both agents come back with their tasks.
    wait_for("agents re-registered", LIMIT, || {
        let s = state_json(&m).ok()?;
        let active = s["agents"]
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "active")
            .count();
        (active == 2).then_some(s)
    })?;
    let s = state_json(&m)?;
    let running = s["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .count();
    assert_eq!(running, TASKS, "every task is known and running: {s}");
    assert_eq!(sleepers(), TASKS, "nothing relaunched");
    assert_eq!(s["registry"]["backend"], "redb");
    assert_eq!(s["registry"]["recoveries"], 2);
    let a = s["agents"]
        .as_array()
        .and_then(|v| v.iter().find(|a| a["id"] == agent.as_str()))
        .context("the reserved agent")?;
    assert!(
        a["total"]
            .as_str()
            .is_some_and(|t| t.contains("cpus(web,dynamic=ops):1") && t.contains("[vol1:data]")),
        "reservation and volume kept: {a}"
    );
    // The reserved agent checkpointed the reservation (WORK_DIR/resources.pb).
    let checkpointed = (0..2)
        .map(|i| cluster.dir.path().join(format!("agent{i}/resources.pb")))
        .filter(|p| p.exists())
        .count();
    assert_eq!(
        checkpointed, 1,
        "one agent holds a reservation and checkpointed it"
    );
    let roles = run_ok(&["roles", "--json", "--master", &m])?;
    let roles = String::from_utf8_lossy(&roles.stdout).to_string();
    assert!(roles.contains("2.5") && roles.contains("cpus:1"), "{roles}");
    // Offers resume, and no update said a task was lost.
    driver.revive().await?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let DriverEvent::Event(e) = next(&mut events, deadline).await? else {
            continue;
        };
        match e.event {
            Some(Event::Offers(o)) if !o.offers.is_empty() => break,
            Some(Event::Update(u)) => {
                let st = u.status.context("status")?;
                driver.acknowledge(&st).await?;
                assert!(
                    !TaskState::try_from(st.state).is_ok_and(TaskState::is_terminal),
                    "a task ended across the restart: {st:?}"
                );
            }
            _ => {}
        }
    }
    driver.teardown().await?;
    // The volume's framework re-subscribed too (its driver follows the restarted master).
    tokio::time::timeout(LIMIT, maker_events.recv())
        .await
        .context("the volume's framework never re-subscribed")?;
    volume_maker.teardown().await?;
    wait_for("tasks killed after teardown", LIMIT, || {
        (sleepers() == 0).then_some(())
    })?;
    Ok(())
}
