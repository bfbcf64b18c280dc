//! RESERVE and CREATE over the real gRPC services: the reservation fields survive the wire, the
//! agent's total is relabelled, and the next offer carries the reservation and the volume.

use std::time::Duration;

use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::operator_client::OperatorClient;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use proffer_proto::{Resources, v1};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::{ServerConfig, serve};
use crate::core::MasterConfig;

const WAIT: Duration = Duration::from_secs(10);

/// Reads events until an OFFERS event arrives.
async fn next_offer(events: &mut tonic::codec::Streaming<v1::Event>) -> anyhow::Result<v1::Offer> {
    loop {
        let ev = tokio::time::timeout(WAIT, events.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
        if let Some(v1::event::Event::Offers(o)) = ev.event
            && let Some(first) = o.offers.into_iter().next()
        {
            return Ok(first);
        }
    }
}

fn op(op: v1::operation::Op) -> v1::Operation {
    v1::Operation { op: Some(op) }
}

#[tokio::test]
async fn reserve_and_create_over_grpc() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    let mut config = ServerConfig::new(MasterConfig {
        allocation_interval_ms: 50,
        ..MasterConfig::default()
    });
    config.seed = 5;
    let server = tokio::spawn(serve(listener, config, cancel.clone()));

    // An agent.
    let mut agent = AgentClient::connect(url.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(4);
    tx.send(v1::AgentMessage {
        msg: Some(v1::agent_message::Msg::Register(v1::RegisterAgent {
            info: Some(v1::AgentInfo {
                hostname: "host-a".into(),
                port: 5051,
                resources: Resources::parse("cpus:2;mem:1024;disk:100")?.to_proto(),
                ..Default::default()
            }),
        })),
    })
    .await?;
    let _inbound = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();

    // A framework in role `web`.
    let mut sched = SchedulerClient::connect(url.clone()).await?;
    let mut events = sched
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(v1::FrameworkInfo {
                name: "web-fw".into(),
                roles: vec!["web".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, events.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
    let Some(v1::event::Event::Subscribed(sub)) = first.event else {
        anyhow::bail!("first event is not SUBSCRIBED: {first:?}");
    };
    let header = v1::CallHeader {
        framework_id: sub.framework_id.clone(),
        stream_id: sub.stream_id.clone(),
    };
    let offer = next_offer(&mut events).await?;
    let no_filter = Some(v1::Filters {
        refuse_seconds: Some(0.0),
    });
    sched
        .accept(v1::AcceptRequest {
            header: Some(header.clone()),
            offer_ids: vec![offer.id.clone()],
            operations: vec![
                op(v1::operation::Op::Reserve(v1::Reserve {
                    resources: Resources::parse(
                        "cpus(web,dynamic=ops):1;disk(web,dynamic=ops):100",
                    )?
                    .to_proto(),
                })),
                op(v1::operation::Op::Create(v1::CreateVolume {
                    volumes: Resources::parse("disk(web,dynamic=ops)[data:data]:100")?.to_proto(),
                })),
            ],
            filters: no_filter,
        })
        .await?;

    let state = OperatorClient::connect(url.clone())
        .await?
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    assert_eq!(
        state.agents.first().map(|a| a.total.as_str()),
        Some("cpus:1;cpus(web,dynamic=ops):1;disk(web,dynamic=ops)[data:data]:100;mem:1024")
    );

    // The next offer carries the reservation and the volume on the wire.
    let offer = next_offer(&mut events).await?;
    let vol = offer
        .resources
        .iter()
        .find(|r| r.volume.is_some())
        .ok_or_else(|| anyhow::anyhow!("no volume in {offer:?}"))?;
    assert_eq!(vol.role, "web");
    assert_eq!(vol.reservation_type, v1::ReservationType::Dynamic as i32);
    assert_eq!(vol.principal, "ops");
    assert_eq!(vol.volume.as_ref().map(|v| v.id.as_str()), Some("data"));

    // Unreserving disk that holds a volume is refused with a clear message.
    let err = sched
        .accept(v1::AcceptRequest {
            header: Some(header.clone()),
            offer_ids: vec![offer.id.clone()],
            operations: vec![op(v1::operation::Op::Unreserve(v1::Unreserve {
                resources: Resources::parse("disk(web,dynamic=ops)[data:data]:100")?.to_proto(),
            }))],
            filters: no_filter,
        })
        .await
        .expect_err("volume");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("holds persistent volume `data`"),
        "{}",
        err.message()
    );

    drop(events);
    cancel.cancel();
    tokio::time::timeout(WAIT, server).await???;
    Ok(())
}
