//! A failover as clients see it, without etcd (issue 17, item 3): master A serves on P1 with a
//! redb registry; a framework (SDK driver) and an agent with running tasks are given "P1,P2".
//! A goes away — it stops (its streams end), or it hangs (a proxy in front of it goes silent,
//! as a SIGSTOPped process does) — and master B starts on P2 from the same registry. The
//! framework re-subscribes with its id, the agent re-registers with its tasks, the update of a
//! task that ended meanwhile reaches the framework through B, and nothing is relaunched or lost.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_agent::AgentConfig;
use proffer_master::core::MasterConfig;
use proffer_master::registry::RedbRegistry;
use proffer_master::server::{ServerConfig, ServerError, serve_with_registry};
use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event};
use proffer_sdk::driver::{Driver, DriverConfig, DriverEvent, EventStream, command_task};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bound on every wait; each ends as soon as what it waits for happens.
const WAIT: Duration = Duration::from_secs(60);
/// Tasks that keep running across the failover.
const SLEEPERS: usize = 3;

/// How the leader goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// A stops: its streams and sessions end.
    Stop,
    /// A hangs: its connections stay open and nothing comes back.
    Hang,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_a_stopped_leader_to_the_next_master() -> Result<()> {
    failover(Loss::Stop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leave_a_hung_leader_for_the_next_master() -> Result<()> {
    failover(Loss::Hang).await
}

/// A master on `listener` recovering from (and writing to) the redb registry in `dir`;
/// heartbeats every second, so a silent stream is noticed after 3 s.
fn start_master(
    listener: TcpListener,
    dir: &Path,
    seed: u64,
    cancel: &CancellationToken,
) -> Result<JoinHandle<Result<(), ServerError>>> {
    let mut config = ServerConfig::new(MasterConfig {
        allocation_interval_ms: 100,
        framework_heartbeat_interval_ms: 1_000,
        ..MasterConfig::default()
    });
    config.seed = seed;
    let registry = Box::new(RedbRegistry::open(dir)?);
    Ok(tokio::spawn(serve_with_registry(
        listener,
        config,
        Some(registry),
        cancel.clone(),
    )))
}

async fn failover(loss: Loss) -> Result<()> {
    let registry = tempfile::tempdir()?;
    let marks = tempfile::tempdir()?;
    let agent_dir = tempfile::tempdir()?;
    let listener_a = TcpListener::bind("127.0.0.1:0").await?;
    // B's port is chosen now and its listener kept: clients that try it before B serves wait
    // in its backlog, and B answers them.
    let listener_b = TcpListener::bind("127.0.0.1:0").await?;
    let p1 = listener_a.local_addr()?.to_string();
    let p2 = listener_b.local_addr()?.to_string();
    let cancel_a = CancellationToken::new();
    let master_a = start_master(listener_a, registry.path(), 1, &cancel_a)?;
    let proxy = match loss {
        Loss::Stop => None,
        Loss::Hang => Some(Proxy::start(p1.clone()).await?),
    };
    let front = proxy.as_ref().map_or(p1.clone(), |p| p.addr.clone());
    let list = format!("{front},{p2}");

    let agent_http = format!("127.0.0.1:{}", proffer_tests::ports::free_port()?);
    let mut config = AgentConfig::new(list.as_str(), agent_dir.path());
    config.resources = Some(Resources::parse("cpus:2;mem:1024")?);
    config.status_retry_initial = Duration::from_secs(1);
    config.reconnect_initial = Duration::from_millis(50);
    config.reconnect_max = Duration::from_secs(1);
    config.http_listen = Some(agent_http.parse()?);
    let stop_agent = CancellationToken::new();
    let agent = tokio::spawn(proffer_agent::run(config, stop_agent.clone()));

    let info = v1::FrameworkInfo {
        name: "failover".into(),
        failover_timeout: 3600.0,
        ..Default::default()
    };
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(list.as_str(), info)).await?;
    let framework_id = driver.framework_id();
    launch(&driver, &mut events, marks.path()).await?;

    // The leader goes away; a task ends while no master hears of it.
    if let Some(p) = &proxy {
        p.freeze();
    }
    cancel_a.cancel();
    tokio::time::timeout(WAIT, master_a)
        .await
        .context("master A did not stop")???;
    std::fs::write(marks.path().join("go"), "")?;
    wait_for_agent_view(&agent_http, |view| {
        task_in_view(view, "waiter").is_some_and(|s| s == "TASK_FINISHED")
    })
    .await?;

    let cancel_b = CancellationToken::new();
    let master_b = start_master(listener_b, registry.path(), 2, &cancel_b)?;
    let reason = wait_for_resubscription(&mut events, &framework_id).await?;
    if loss == Loss::Hang {
        assert!(
            reason.contains("heartbeat"),
            "the silent stream is noticed by the missed heartbeats: {reason}"
        );
    }
    wait_for_waiter_update(&driver, &mut events).await?;
    check_b(&p2, &framework_id, marks.path()).await?;

    driver.teardown().await?;
    stop_agent.cancel();
    tokio::time::timeout(WAIT, agent)
        .await
        .context("the agent did not stop")???;
    cancel_b.cancel();
    tokio::time::timeout(WAIT, master_b)
        .await
        .context("master B did not stop")???;
    Ok(())
}

/// Launches the sleepers (each records its start in `marks/start-ID`) and a waiter that ends
/// once `marks/go` exists, and waits until all run.
async fn launch(driver: &Driver, events: &mut EventStream, marks: &Path) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    let res = Resources::parse("cpus:0.1;mem:32")?;
    let dir = marks.display();
    let mut launched = false;
    // Distinct ids: an update not yet acknowledged may be re-sent.
    let mut running = std::collections::HashSet::new();
    while running.len() < SLEEPERS + 1 {
        match next(events, deadline).await? {
            DriverEvent::Event(v1::Event {
                event: Some(Event::Offers(o)),
            }) => {
                for offer in o.offers {
                    if launched {
                        driver.decline(vec![offer.id], None).await?;
                        continue;
                    }
                    let mut tasks: Vec<v1::TaskInfo> = (0..SLEEPERS)
                        .map(|i| {
                            let id = format!("sleeper-{i}");
                            let cmd = format!("echo x >> {dir}/start-{id}; exec sleep 3600");
                            command_task(&id, &id, &offer.agent_id, &cmd, &res)
                        })
                        .collect();
                    let cmd = format!("until [ -e {dir}/go ]; do sleep 0.05; done");
                    tasks.push(command_task(
                        "waiter",
                        "waiter",
                        &offer.agent_id,
                        &cmd,
                        &res,
                    ));
                    driver.launch(vec![offer.id], tasks, None).await?;
                    launched = true;
                }
            }
            DriverEvent::Event(v1::Event {
                event: Some(Event::Update(u)),
            }) => {
                let s = u.status.context("status")?;
                driver.acknowledge(&s).await?;
                if s.state == TaskState::TaskRunning as i32 {
                    running.insert(s.task_id.clone());
                } else if terminal(s.state) {
                    bail!("a task ended before the failover: {s:?}");
                }
            }
            DriverEvent::Event(_) => {}
            other => bail!("{other:?} before the failover"),
        }
    }
    driver.suppress().await?;
    Ok(())
}

fn terminal(state: i32) -> bool {
    TaskState::try_from(state).is_ok_and(TaskState::is_terminal)
}

async fn next(events: &mut EventStream, deadline: Instant) -> Result<DriverEvent> {
    tokio::time::timeout_at(deadline, events.next())
        .await
        .context("timed out waiting for a framework event")?
        .context("the framework's event stream ended")
}

/// Waits for Disconnected then Resubscribed with `framework_id`; returns why it disconnected.
async fn wait_for_resubscription(events: &mut EventStream, framework_id: &str) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    let mut reason = String::new();
    loop {
        match next(events, deadline).await? {
            DriverEvent::Disconnected { reason: r } => reason = r,
            DriverEvent::Resubscribed { framework_id: id } => {
                assert_eq!(id, framework_id, "the framework keeps its id");
                assert!(!reason.is_empty(), "Resubscribed without Disconnected");
                return Ok(reason);
            }
            DriverEvent::Event(v1::Event {
                event: Some(Event::Update(u)),
            }) => bail!("an update before the re-subscription: {u:?}"),
            DriverEvent::Event(_) => {}
        }
    }
}

/// The waiter's TASK_FINISHED, re-sent by the agent after it re-registered, reaches the
/// framework through the new leader; no other task ends.
async fn wait_for_waiter_update(driver: &Driver, events: &mut EventStream) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        match next(events, deadline).await? {
            DriverEvent::Event(v1::Event {
                event: Some(Event::Update(u)),
            }) => {
                let s = u.status.context("status")?;
                driver.acknowledge(&s).await?;
                if s.task_id == "waiter" && s.state == TaskState::TaskFinished as i32 {
                    return Ok(());
                }
                if terminal(s.state) {
                    bail!("a task ended across the failover: {s:?}");
                }
            }
            DriverEvent::Event(v1::Event {
                event: Some(Event::Offers(o)),
            }) => {
                driver
                    .decline(o.offers.into_iter().map(|o| o.id).collect(), None)
                    .await?;
            }
            DriverEvent::Event(_) => {}
            other => bail!("{other:?} after the re-subscription"),
        }
    }
}

/// B knows the agent with its sleepers running, the framework connected; no sleeper started
/// twice.
async fn check_b(p2: &str, framework_id: &str, marks: &Path) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    let state = loop {
        let s = proffer_sdk::operator::call_list(p2, async |c| {
            c.get_state(v1::GetStateRequest {}).await
        })
        .await?;
        let agent_back = s
            .agents
            .iter()
            .any(|a| a.connected && a.active_tasks as usize == SLEEPERS);
        if agent_back {
            break s;
        }
        if Instant::now() > deadline {
            bail!("the agent did not come back to B with its tasks: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let running: Vec<&str> = state
        .tasks
        .iter()
        .filter(|t| t.state == "TASK_RUNNING")
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        running.len(),
        SLEEPERS,
        "every sleeper runs at B: {state:?}"
    );
    let fw = state
        .frameworks
        .iter()
        .find(|f| f.id == framework_id)
        .context("the framework at B")?;
    assert!(fw.connected, "{fw:?}");
    for i in 0..SLEEPERS {
        let starts = std::fs::read_to_string(marks.join(format!("start-sleeper-{i}")))?;
        assert_eq!(starts.lines().count(), 1, "sleeper-{i} started once");
    }
    Ok(())
}

/// The agent's `/state` view (its HTTP endpoint), polled until `ok` holds.
async fn wait_for_agent_view(
    addr: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(view) = http_get_json(addr, "/state").await
            && ok(&view)
        {
            return Ok(view);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting on the agent's view");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn task_in_view<'a>(view: &'a serde_json::Value, task_id: &str) -> Option<&'a str> {
    view["tasks"]
        .as_array()?
        .iter()
        .find(|t| t["task_id"] == task_id)?["state"]
        .as_str()
}

/// GET over HTTP/1.1 with `Connection: close`; the body as JSON.
async fn http_get_json(addr: &str, path: &str) -> Result<serde_json::Value> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (_, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    Ok(serde_json::from_str(body)?)
}

/// A TCP proxy in front of a master that can freeze: from then on its clients' connections
/// stay open and nothing more passes either way (a hung master, as its clients see it), and
/// its connections to the master are closed (so the master behind it can stop).
struct Proxy {
    addr: String,
    frozen: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let (frozen, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, target.clone(), rx.clone()));
            }
        });
        Ok(Proxy { addr, frozen, task })
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection until either side closes or the proxy freezes; frozen, holds the
/// client's side open, silent, until the proxy is gone.
async fn relay(mut client: TcpStream, target: String, mut frozen: watch::Receiver<bool>) {
    if !*frozen.borrow() {
        let Ok(mut upstream) = TcpStream::connect(&target).await else {
            return;
        };
        // Biased: once frozen (which the test does before it stops the master), the freeze
        // wins even when the upstream has closed by the time this is polled; unbiased, the
        // closed upstream won half of those races and the client saw the stream closed.
        tokio::select! {
            biased;
            _ = frozen.wait_for(|f| *f) => {}
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
        }
    }
    while frozen.changed().await.is_ok() {}
    drop(client);
}
