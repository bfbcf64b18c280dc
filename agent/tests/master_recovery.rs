//! Through the real master: 20 tasks run on an agent process that is SIGKILLed and started
//! again; the master keeps all 20 RUNNING on the same agent, the framework sees no task lost,
//! failed or restarted, and the tasks are still the same processes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_proto::Resources;
use proffer_proto::v1::operator_client::OperatorClient;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use proffer_proto::v1::{self, TaskState, event::Event};
use tokio_util::sync::CancellationToken;

const TASKS: usize = 20;

fn spawn_agent(addr: &str, dir: &std::path::Path) -> Result<std::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))?;
    Ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_proffer-agent"))
            .args(["agent", "--master", addr, "--work-dir"])
            .arg(dir.join("work"))
            .args(["--resources", "cpus:4;mem:4096;ports:[31000-31099]"])
            .args(["--status-retry-ms", "1000"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?,
    )
}

/// Stops the agent process (SIGTERM: it kills its tasks) if the test ends early.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Ok(raw) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_keeps_tasks_of_a_sigkilled_and_restarted_agent() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let master = MasterConfig {
        allocation_interval_ms: 50,
        ..MasterConfig::default()
    };
    let server = tokio::spawn(serve(listener, ServerConfig::new(master), cancel.clone()));
    let dir = tempfile::tempdir()?;
    let mut guard = Guard(Some(spawn_agent(&addr, dir.path())?));

    let mut client = SchedulerClient::connect(format!("http://{addr}")).await?;
    let mut events = client
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(v1::FrameworkInfo {
                name: "survivor".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let header = match events.message().await?.and_then(|e| e.event) {
        Some(Event::Subscribed(s)) => v1::CallHeader {
            framework_id: s.framework_id,
            stream_id: s.stream_id,
        },
        other => bail!("expected SUBSCRIBED, got {other:?}"),
    };
    let res = Resources::parse("cpus:0.1;mem:32")?;
    let mut launched = false;
    let mut running = BTreeSet::new();
    let mut agent_id = String::new();
    let wait = Duration::from_secs(60);
    while running.len() < TASKS {
        let e = tokio::time::timeout(wait, events.message())
            .await
            .context("waiting for events")??
            .context("stream ended")?;
        match e.event {
            Some(Event::Offers(o)) => {
                for offer in o.offers {
                    if launched {
                        continue;
                    }
                    launched = true;
                    agent_id = offer.agent_id.clone();
                    let tasks = (0..TASKS)
                        .map(|i| {
                            let id = format!("s{i:02}");
                            v1::TaskInfo {
                                agent_id: offer.agent_id.clone(),
                                resources: res.to_proto(),
                                ..common::shell_task(&id, "echo $$ > pid; exec sleep 120")
                            }
                        })
                        .collect();
                    client
                        .accept(v1::AcceptRequest {
                            header: Some(header.clone()),
                            offer_ids: vec![offer.id.clone()],
                            operations: vec![v1::Operation {
                                op: Some(v1::operation::Op::Launch(v1::Launch { tasks })),
                            }],
                            filters: None,
                        })
                        .await?;
                }
            }
            Some(Event::Update(u)) => {
                let s = u.status.context("status")?;
                client
                    .acknowledge(v1::AcknowledgeRequest {
                        header: Some(header.clone()),
                        agent_id: s.agent_id.clone(),
                        task_id: s.task_id.clone(),
                        uuid: s.uuid.clone(),
                    })
                    .await?;
                match TaskState::try_from(s.state)? {
                    TaskState::TaskRunning => {
                        running.insert(s.task_id);
                    }
                    TaskState::TaskStarting => {}
                    other => bail!("unexpected {} for {}", other.name(), s.task_id),
                }
            }
            _ => {}
        }
    }
    let pid_of = |id: &str| -> Result<String> {
        let p = dir
            .path()
            .join("work/sandboxes")
            .join(&header.framework_id)
            .join(id)
            .join("pid");
        Ok(std::fs::read_to_string(p)?.trim().to_string())
    };
    // Each task writes its pid file itself, after RUNNING was reported: wait for them all.
    let deadline = tokio::time::Instant::now() + wait;
    let before: Vec<String> = loop {
        match running
            .iter()
            .map(|id| pid_of(id))
            .collect::<Result<Vec<_>>>()
        {
            Ok(pids) if pids.iter().all(|p| !p.is_empty()) => break pids,
            other if tokio::time::Instant::now() >= deadline => {
                bail!("the tasks' pid files were never written: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // Wait until the agent has checkpointed every acknowledgement (no update of any task is
    // pending in its checkpoint; a fixed pause was too short on a loaded machine), then kill
    // it hard and start it again.
    let work = dir.path().join("work");
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let journal = proffer_agent::journal::read(&work)?;
        let pending: Vec<&String> = running
            .iter()
            .filter(|id| {
                let key =
                    proffer_agent::core::TaskKey::new(header.framework_id.clone(), id.as_str());
                !journal.get(&key).is_some_and(|cp| cp.updates.is_empty())
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "acknowledgements never checkpointed for {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut first = guard.0.take().context("agent")?;
    first.kill()?;
    first.wait()?;
    guard.0 = Some(spawn_agent(&addr, dir.path())?);

    // The agent re-registers with its 20 tasks; nothing is lost or restarted.
    let mut operator = OperatorClient::connect(format!("http://{addr}")).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = operator
            .get_state(v1::GetStateRequest {})
            .await?
            .into_inner();
        let connected = state.agents.iter().any(|a| a.id == agent_id && a.connected);
        let live = state
            .tasks
            .iter()
            .filter(|t| t.agent_id == agent_id && t.state == "TASK_RUNNING")
            .count();
        if connected && live == TASKS {
            assert_eq!(
                state.agents.len(),
                1,
                "same agent, not a new one: {:?}",
                state.agents
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "agent never came back with its tasks: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whatever the framework hears now (re-sent updates at most) is not a task ending.
    let quiet = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(Some(e))) = tokio::time::timeout_at(quiet, events.message()).await {
        if let Some(Event::Update(u)) = e.event {
            let s = u.status.context("status")?;
            anyhow::ensure!(
                s.state == TaskState::TaskRunning as i32,
                "task {} became {:?} after the agent restart",
                s.task_id,
                TaskState::try_from(s.state)
            );
        }
    }
    let after: Vec<String> = running.iter().map(|id| pid_of(id)).collect::<Result<_>>()?;
    assert_eq!(before, after, "no task was restarted");

    client
        .teardown(v1::TeardownRequest {
            header: Some(header.clone()),
        })
        .await?;
    // Teardown kills the tasks through the re-attached executors.
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let alive = before
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .count();
        if alive == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{alive} tasks survived the teardown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || drop(guard)).await?;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
