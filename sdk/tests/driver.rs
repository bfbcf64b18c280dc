//! Driver tests against the fake scheduler server.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{Call, Fake, FakeConfig};
use proffer_proto::v1;
use proffer_sdk::{Driver, DriverConfig, DriverError, DriverEvent, EventStream};
use tonic::Code;

/// Bound on every wait (each ends as soon as what it waits for happens): generous for a
/// loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);

fn framework(failover: f64) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        name: "test".into(),
        failover_timeout: failover,
        ..Default::default()
    }
}

fn config(fake: &Fake, failover: f64) -> DriverConfig {
    let mut c = DriverConfig::new(fake.master(), framework(failover));
    c.reconnect_initial = Duration::from_millis(10);
    c.reconnect_max = Duration::from_millis(100);
    c
}

async fn next(events: &mut EventStream) -> Result<Option<DriverEvent>> {
    tokio::time::timeout(WAIT, events.next())
        .await
        .context("timed out waiting for an event")
}

async fn next_event(events: &mut EventStream) -> Result<DriverEvent> {
    next(events).await?.context("event stream ended")
}

fn header(fw: &str, stream: &str) -> v1::CallHeader {
    v1::CallHeader {
        framework_id: fw.into(),
        stream_id: stream.into(),
    }
}

#[tokio::test]
async fn subscribe_delivers_subscribed_first_and_calls_carry_the_header() -> Result<()> {
    let fake = Fake::start(FakeConfig::default()).await?;
    let (driver, mut events) = Driver::subscribe(config(&fake, 0.0)).await?;
    assert_eq!(driver.framework_id(), "fw-1");
    match next_event(&mut events).await? {
        DriverEvent::Event(v1::Event {
            event: Some(v1::event::Event::Subscribed(s)),
        }) => {
            assert_eq!(s.framework_id, "fw-1");
            assert_eq!(s.stream_id, "stream-1");
        }
        other => bail!("expected SUBSCRIBED first, got {other:?}"),
    }

    let status = v1::TaskStatus {
        task_id: "t1".into(),
        agent_id: "a1".into(),
        uuid: vec![9; 16],
        ..Default::default()
    };
    driver.revive().await?;
    driver.suppress().await?;
    driver.kill("t1", "a1").await?;
    driver.reconcile(vec![("t1".into(), "a1".into())]).await?;
    driver.message("a1", "t1", b"hello".to_vec()).await?;
    // The fake refuses an ack of a uuid it never sent, but only after checking the header.
    let ack = driver.acknowledge(&status).await;
    assert!(
        matches!(
            ack,
            Err(DriverError::Call {
                call: "acknowledge",
                code: Code::NotFound,
                ..
            })
        ),
        "{ack:?}"
    );
    // An empty uuid is not acknowledged at all.
    driver
        .acknowledge(&v1::TaskStatus {
            uuid: Vec::new(),
            ..status.clone()
        })
        .await?;
    driver.teardown().await?;

    let calls = fake.calls();
    let names: Vec<_> = calls.iter().map(Call::name).collect();
    assert_eq!(
        names,
        [
            "revive",
            "suppress",
            "kill",
            "reconcile",
            "message",
            "acknowledge",
            "teardown"
        ]
    );
    for c in &calls {
        assert_eq!(c.header(), Some(header("fw-1", "stream-1")), "{}", c.name());
    }
    assert!(fake.state().bad_headers.is_empty());
    match &calls[3] {
        Call::Reconcile(r) => {
            assert_eq!(
                r.tasks,
                vec![v1::ReconcileTask {
                    task_id: "t1".into(),
                    agent_id: "a1".into()
                }]
            );
        }
        other => bail!("expected reconcile, got {other:?}"),
    }
    match &calls[4] {
        Call::Message(m) => assert_eq!(
            (m.agent_id.as_str(), m.data.as_slice()),
            ("a1", &b"hello"[..])
        ),
        other => bail!("expected message, got {other:?}"),
    }
    // Teardown ends the stream without a re-subscription.
    assert_eq!(next(&mut events).await?, None);
    assert_eq!(fake.state().subscribes.len(), 1);
    Ok(())
}

#[tokio::test]
async fn offers_and_updates_are_forwarded_in_order() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        agents: vec![("a1".into(), "cpus:1;mem:128".into())],
        ..Default::default()
    })
    .await?;
    let (driver, mut events) = Driver::subscribe(config(&fake, 0.0)).await?;
    next_event(&mut events).await?; // SUBSCRIBED
    let offer = match next_event(&mut events).await? {
        DriverEvent::Event(v1::Event {
            event: Some(v1::event::Event::Offers(o)),
        }) => o.offers.into_iter().next().context("empty OFFERS")?,
        other => bail!("expected OFFERS, got {other:?}"),
    };
    assert_eq!(offer.agent_id, "a1");
    let res = proffer_proto::Resources::parse("cpus:0.5;mem:64")?;
    let task = proffer_sdk::command_task("t1", "t1", "a1", "true", &res);
    driver
        .launch(vec![offer.id.clone()], vec![task], None)
        .await?;
    let mut states = Vec::new();
    while states.len() < 3 {
        if let DriverEvent::Event(v1::Event {
            event: Some(v1::event::Event::Update(u)),
        }) = next_event(&mut events).await?
        {
            let status = u.status.context("update without status")?;
            assert!(!status.uuid.is_empty());
            driver.acknowledge(&status).await?;
            states.push(status.state);
        }
    }
    let expected = [
        v1::TaskState::TaskStarting,
        v1::TaskState::TaskRunning,
        v1::TaskState::TaskFinished,
    ];
    assert_eq!(states, expected.map(|s| s as i32));
    let acks = fake
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Acknowledge(_)))
        .count();
    assert_eq!(acks, 3);
    assert!(
        fake.state().violations.is_empty(),
        "{:?}",
        fake.state().violations
    );
    Ok(())
}

#[tokio::test]
async fn call_error_keeps_the_grpc_code_and_message() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        accept_error: Some((
            Code::FailedPrecondition,
            "offer offer-7 is no longer valid".into(),
        )),
        ..Default::default()
    })
    .await?;
    let (driver, _events) = Driver::subscribe(config(&fake, 0.0)).await?;
    let err = driver
        .launch(vec!["offer-7".into()], Vec::new(), None)
        .await;
    match err {
        Err(DriverError::Call {
            call,
            code,
            message,
        }) => {
            assert_eq!(call, "accept");
            assert_eq!(code, Code::FailedPrecondition);
            assert_eq!(message, "offer offer-7 is no longer valid");
        }
        other => bail!("expected a call error, got {other:?}"),
    }
    let err = driver.decline(vec!["nope".into()], None).await;
    let Err(e) = err else {
        bail!("decline of an unknown offer succeeded")
    };
    assert_eq!(e.code(), Some(Code::NotFound));
    assert!(e.to_string().contains("decline failed"), "{e}");
    Ok(())
}

#[tokio::test]
async fn unreachable_master_is_a_connect_error_naming_the_address() -> Result<()> {
    // A port bound but never listened on: connections are refused, and (unlike a port bound
    // and released at once) no concurrently started fake master can be given it.
    let held = tokio::net::TcpSocket::new_v4()?;
    held.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = held.local_addr()?.to_string();
    let cfg = DriverConfig::new(addr.clone(), framework(0.0));
    let err = tokio::time::timeout(WAIT, Driver::subscribe(cfg)).await?;
    match err {
        Err(e @ DriverError::Connect { .. }) => {
            assert!(e.to_string().contains(&addr), "{e}");
            let DriverError::Connect { address, .. } = e else {
                unreachable!()
            };
            assert_eq!(address, addr);
        }
        other => bail!("expected a connect error, got {other:?}"),
    }
    let bad = DriverConfig::new("not a host:port", framework(0.0));
    let err = Driver::subscribe(bad).await;
    assert!(
        matches!(err, Err(DriverError::InvalidAddress { .. })),
        "{err:?}"
    );
    drop(held);
    Ok(())
}

#[tokio::test]
async fn refused_subscription_reports_the_master_message() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        refuse_subscribe: Some("framework is not allowed".into()),
        ..Default::default()
    })
    .await?;
    let err = Driver::subscribe(config(&fake, 0.0)).await;
    match err {
        Err(DriverError::Refused { message }) => assert_eq!(message, "framework is not allowed"),
        other => bail!("expected Refused, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn broken_stream_resubscribes_with_the_framework_id_and_updates_the_header() -> Result<()> {
    let fake = Fake::start(FakeConfig::default()).await?;
    let (driver, mut events) = Driver::subscribe(config(&fake, 60.0)).await?;
    next_event(&mut events).await?; // SUBSCRIBED
    fake.drop_stream();
    assert!(matches!(
        next_event(&mut events).await?,
        DriverEvent::Disconnected { .. }
    ));
    assert_eq!(
        next_event(&mut events).await?,
        DriverEvent::Resubscribed {
            framework_id: "fw-1".into()
        }
    );
    {
        let st = fake.state();
        assert_eq!(st.subscribes.len(), 2);
        assert_eq!(st.subscribes[0].id, "");
        assert_eq!(st.subscribes[1].id, "fw-1");
        assert_eq!(st.subscribes[1].failover_timeout, 60.0);
    }
    assert_eq!(driver.header(), header("fw-1", "stream-2"));
    driver.revive().await?;
    assert_eq!(fake.calls()[0].header(), Some(header("fw-1", "stream-2")));
    // Events on the new stream keep flowing.
    fake.send(v1::event::Event::Heartbeat(v1::Heartbeat {}));
    assert_eq!(
        next_event(&mut events).await?,
        DriverEvent::Event(v1::Event {
            event: Some(v1::event::Event::Heartbeat(v1::Heartbeat {}))
        })
    );
    Ok(())
}

#[tokio::test]
async fn update_framework_sends_the_info_with_the_id_and_resubscribes_with_it() -> Result<()> {
    let fake = Fake::start(FakeConfig::default()).await?;
    let (driver, mut events) = Driver::subscribe(config(&fake, 60.0)).await?;
    next_event(&mut events).await?; // SUBSCRIBED
    let mut info = driver.framework_info();
    assert_eq!(info.id, "fw-1");
    info.id.clear();
    info.max_outstanding_offers = Some(3);
    driver.update_framework(info).await?;
    match fake.calls().as_slice() {
        [Call::UpdateFramework(u)] => {
            assert_eq!(u.header, Some(header("fw-1", "stream-1")));
            let sent = u.framework_info.as_ref().context("framework_info")?;
            assert_eq!(
                (sent.id.as_str(), sent.max_outstanding_offers),
                ("fw-1", Some(3))
            );
        }
        other => bail!("expected one update_framework, got {other:?}"),
    }
    // After a broken stream the driver re-subscribes with what it last sent.
    fake.drop_stream();
    assert!(matches!(
        next_event(&mut events).await?,
        DriverEvent::Disconnected { .. }
    ));
    assert!(matches!(
        next_event(&mut events).await?,
        DriverEvent::Resubscribed { .. }
    ));
    let st = fake.state();
    assert_eq!(st.subscribes.len(), 2);
    assert_eq!(st.subscribes[1].max_outstanding_offers, Some(3));
    Ok(())
}

#[tokio::test]
async fn without_failover_timeout_a_broken_stream_just_ends() -> Result<()> {
    let fake = Fake::start(FakeConfig::default()).await?;
    let (_driver, mut events) = Driver::subscribe(config(&fake, 0.0)).await?;
    next_event(&mut events).await?;
    fake.drop_stream();
    assert!(matches!(
        next_event(&mut events).await?,
        DriverEvent::Disconnected { .. }
    ));
    assert_eq!(next(&mut events).await?, None);
    assert_eq!(fake.state().subscribes.len(), 1);
    Ok(())
}

#[tokio::test]
async fn resubscribe_disabled_ends_the_stream() -> Result<()> {
    let fake = Fake::start(FakeConfig::default()).await?;
    let mut cfg = config(&fake, 60.0);
    cfg.resubscribe = false;
    let (_driver, mut events) = Driver::subscribe(cfg).await?;
    next_event(&mut events).await?;
    fake.drop_stream();
    assert!(matches!(
        next_event(&mut events).await?,
        DriverEvent::Disconnected { .. }
    ));
    assert_eq!(next(&mut events).await?, None);
    Ok(())
}

#[tokio::test]
async fn error_event_ends_the_stream() -> Result<()> {
    let fake = Fake::start(FakeConfig::default()).await?;
    let (_driver, mut events) = Driver::subscribe(config(&fake, 60.0)).await?;
    next_event(&mut events).await?;
    fake.send_error("framework removed");
    match next_event(&mut events).await? {
        DriverEvent::Event(v1::Event {
            event: Some(v1::event::Event::Error(e)),
        }) => {
            assert_eq!(e.message, "framework removed");
        }
        other => bail!("expected ERROR, got {other:?}"),
    }
    assert_eq!(next(&mut events).await?, None);
    assert_eq!(
        fake.state().subscribes.len(),
        1,
        "an ERROR must not trigger a re-subscription"
    );
    Ok(())
}
