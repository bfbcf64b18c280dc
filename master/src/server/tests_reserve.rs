//! RESERVE and CREATE over the real gRPC services: the reservation fields survive the wire, the
//! agent's total is relabelled, and the next offer carries the reservation and the volume.

use std::time::Duration;

use proffer_proto::v1::operator_client::OperatorClient;
use proffer_proto::{Resources, v1};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::tests::{next_offer, register_agent, subscribe_framework};
use super::{ServerConfig, serve};
use crate::core::MasterConfig;

/// Bound on every wait (each ends as soon as what it waits for happens).
const WAIT: Duration = Duration::from_secs(60);

/// An HTTP/1.1 POST with a JSON body; returns (status code, body).
async fn http_post(addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .parse()?;
    Ok((code, body.to_string()))
}

async fn agent_total(url: &str) -> anyhow::Result<String> {
    let state = OperatorClient::connect(url.to_string())
        .await?
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    Ok(state
        .agents
        .first()
        .map(|a| a.total.clone())
        .unwrap_or_default())
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

    let (_agent_id, _agent_tx, _inbound) =
        register_agent(&url, "host-a", "cpus:2;mem:1024;disk:100").await?;

    // A framework in role `web`.
    let info = v1::FrameworkInfo {
        name: "web-fw".into(),
        roles: vec!["web".into()],
        ..Default::default()
    };
    let (mut sched, mut events, sub) = subscribe_framework(&url, info).await?;
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

#[tokio::test]
async fn operator_reserve_and_unreserve_over_http_and_grpc() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let url = format!("http://{addr}");
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(listener, ServerConfig::default(), cancel.clone()));
    let (agent_id, _tx, _inbound) =
        register_agent(&url, "host-a", "cpus:4;cpus(db):1;mem:1024").await?;

    let body = format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(web,dynamic=ops):2"}}"#);
    let (code, reply) = http_post(&addr, "/reserve", &body).await?;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(
        agent_total(&url).await?,
        "cpus:2;cpus(db):1;cpus(web,dynamic=ops):2;mem:1024"
    );
    for (path, body, code, want) in [
        (
            "/reserve",
            r#"{"agent_id":"nope","resources":"cpus(web):1"}"#.to_string(),
            404,
            "unknown agent",
        ),
        (
            "/reserve",
            format!(r#"{{"agent_id":"{agent_id}","resources":"cpus:1"}}"#),
            400,
            "names no role",
        ),
        (
            "/reserve",
            format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(web):9"}}"#),
            400,
            "not available unused",
        ),
        (
            "/unreserve",
            format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(db):1"}}"#),
            400,
            "reserved statically",
        ),
        (
            "/unreserve",
            format!(r#"{{"agent_id":"{agent_id}"}}"#),
            400,
            "missing field `resources`",
        ),
    ] {
        let (got, reply) = http_post(&addr, path, &body).await?;
        assert_eq!(got, code, "{path} {body}: {reply}");
        assert!(
            reply.contains(want),
            "{path} {body}: `{reply}` lacks `{want}`"
        );
    }
    let mut op = OperatorClient::connect(url.clone()).await?;
    op.unreserve_resources(v1::UnreserveResourcesRequest {
        agent_id: agent_id.clone(),
        resources: Resources::parse("cpus(web,dynamic=ops):2")?.to_proto(),
    })
    .await?;
    assert_eq!(agent_total(&url).await?, "cpus:4;cpus(db):1;mem:1024");
    let err = op
        .reserve_resources(v1::ReserveResourcesRequest {
            agent_id,
            resources: vec![],
        })
        .await
        .expect_err("empty");
    assert_eq!(err.code(), Code::InvalidArgument);
    cancel.cancel();
    tokio::time::timeout(WAIT, server).await???;
    Ok(())
}
