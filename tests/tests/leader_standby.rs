//! Clients given several masters find the leader (issue 17, item 3): a fake standby turns
//! every gRPC call away to a real in-process master, and the SDK driver, an agent and operator
//! calls follow it there; masters that are down, know no leader, or hang are skipped.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_agent::AgentConfig;
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, ServerError, serve};
use proffer_proto::Resources;
use proffer_proto::v1::{self, event::Event};
use proffer_sdk::driver::{Driver, DriverConfig, DriverEvent, EventStream};
use proffer_sdk::operator::{self, OperatorError};
use proffer_tests::standby::Standby;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bound on every wait; each ends as soon as what it waits for happens.
const WAIT: Duration = Duration::from_secs(60);

/// A real master on 127.0.0.1.
struct Master {
    addr: String,
    cancel: CancellationToken,
    server: JoinHandle<Result<(), ServerError>>,
}

impl Master {
    async fn start() -> Result<Master> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let cancel = CancellationToken::new();
        let config = ServerConfig::new(MasterConfig {
            allocation_interval_ms: 100,
            ..MasterConfig::default()
        });
        let server = tokio::spawn(serve(listener, config, cancel.clone()));
        Ok(Master {
            addr,
            cancel,
            server,
        })
    }

    async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.server)
            .await
            .context("the master did not stop")???;
        Ok(())
    }
}

/// An agent of this process on `masters`, stopped by cancelling `cancel`.
fn spawn_agent(
    masters: &str,
    dir: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<JoinHandle<Result<(), proffer_agent::AgentError>>> {
    let mut config = AgentConfig::new(masters, dir);
    config.resources = Some(Resources::parse("cpus:1;mem:256")?);
    config.reconnect_initial = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    Ok(tokio::spawn(proffer_agent::run(
        config,
        cancel.child_token(),
    )))
}

/// The leader's state, asked through `masters`.
async fn state(masters: &str) -> Result<v1::StateSnapshot> {
    operator::call_list(masters, async |c| c.get_state(v1::GetStateRequest {}).await)
        .await
        .map_err(anyhow::Error::from)
}

/// Waits until the leader (asked through `masters`) has `n` connected agents.
async fn wait_for_agents(masters: &str, n: usize) -> Result<v1::StateSnapshot> {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = state(masters).await?;
        if s.agents.iter().filter(|a| a.connected).count() == n {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {n} agents: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        name: name.into(),
        failover_timeout: 3600.0,
        ..Default::default()
    }
}

/// Waits for the first offer on `events`.
async fn first_offer(events: &mut EventStream) -> Result<v1::Offer> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("timed out waiting for an offer")?
            .context("the event stream ended")?;
        if let DriverEvent::Event(v1::Event {
            event: Some(Event::Offers(o)),
        }) = ev
            && let Some(offer) = o.offers.into_iter().next()
        {
            return Ok(offer);
        }
    }
}

async fn stop_agent(
    cancel: CancellationToken,
    agent: JoinHandle<Result<(), proffer_agent::AgentError>>,
) -> Result<()> {
    cancel.cancel();
    tokio::time::timeout(WAIT, agent)
        .await
        .context("the agent did not stop")???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_agent_and_operator_calls_follow_a_standby_to_the_leader() -> Result<()> {
    let master = Master::start().await?;
    let standby = Standby::start(Some(&master.addr)).await?;
    let list = format!("{},{}", standby.addr, master.addr);
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let agent = spawn_agent(&list, dir.path(), &cancel)?;

    // The agent registered with the leader; the operator call itself went through the standby.
    let s = wait_for_agents(&list, 1).await?;
    let direct = state(&master.addr).await?;
    assert_eq!(s.master_id, direct.master_id);

    // The driver subscribes with the leader and is offered the agent; its calls reach it.
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(&list, framework("f"))).await?;
    let offer = first_offer(&mut events).await?;
    driver.decline(vec![offer.id], None).await?;
    let s = state(&master.addr).await?;
    let fw = s
        .frameworks
        .iter()
        .find(|f| f.id == driver.framework_id())
        .context("the framework at the leader")?;
    assert!(fw.connected, "{fw:?}");
    // The agent's session, the subscription and the operator calls were each turned away once.
    assert!(
        standby.calls() >= 3,
        "the standby was asked {} times",
        standby.calls()
    );

    driver.teardown().await?;
    stop_agent(cancel, agent).await?;
    master.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_that_are_down_or_know_no_leader_are_skipped() -> Result<()> {
    let master = Master::start().await?;
    let no_leader = Standby::start(None).await?;
    let dead = format!("127.0.0.1:{}", proffer_tests::ports::free_port()?);
    let list = format!("{dead},{},{}", no_leader.addr, master.addr);
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let agent = spawn_agent(&list, dir.path(), &cancel)?;
    wait_for_agents(&list, 1).await?;
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(&list, framework("g"))).await?;
    first_offer(&mut events).await?;
    assert!(no_leader.calls() >= 3, "{}", no_leader.calls());

    // Without a leader among them, the error says so and names what was tried.
    let none = format!("{dead},{}", no_leader.addr);
    match state(&none).await {
        Err(e) => {
            let text = format!("{e:#}");
            assert!(text.contains("no leading master among"), "{text}");
            assert!(text.contains(&dead), "{text}");
            assert!(text.contains("no leader elected yet"), "{text}");
        }
        Ok(s) => bail!("a state from nowhere: {s:?}"),
    }
    // A standby naming a leader that is down: followed once, then given up.
    let stale = Standby::start(Some(&dead)).await?;
    let got = operator::call_list(&stale.addr, async |c| {
        c.get_state(v1::GetStateRequest {}).await
    })
    .await;
    assert!(
        matches!(got, Err(OperatorError::Unreachable { .. })),
        "{got:?}"
    );
    // A refusal by the leader itself is the leader's answer, not a reason to move on.
    let refused = operator::call_list(&list, async |c| {
        c.why(v1::WhyRequest {
            subject: Some(v1::why_request::Subject::FrameworkId("nobody".into())),
        })
        .await
    })
    .await;
    match refused {
        Err(OperatorError::Status(s)) => assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}"),
        other => bail!("expected NotFound from the leader, got {other:?}"),
    }

    driver.teardown().await?;
    stop_agent(cancel, agent).await?;
    master.stop().await
}

/// A master that accepts connections and never answers (the kernel's backlog of a SIGSTOPped
/// process) keeps neither the agent nor the driver: HTTP/2 keep-alive gives up on it after
/// 5 s + 5 s, before the 30 s registration and SUBSCRIBED timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_master_is_abandoned_for_the_next() -> Result<()> {
    let master = Master::start().await?;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let list = format!("{},{}", silent.local_addr()?, master.addr);
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let agent = spawn_agent(&list, dir.path(), &cancel)?;
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(&list, framework("h"))).await?;
    let subscribed = start.elapsed();
    wait_for_agents(&master.addr, 1).await?;
    let registered = start.elapsed();
    first_offer(&mut events).await?;
    for (what, took) in [("subscribed", subscribed), ("registered", registered)] {
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(25),
            "{what} after {took:?}: the silent master should hold it for about 10 s"
        );
    }
    driver.teardown().await?;
    stop_agent(cancel, agent).await?;
    drop(silent);
    master.stop().await
}
