//! Limits over real sockets (issue 18, item 6): roles per call and role names on the operator
//! routes, connections, header-read and idle timeouts.

use std::time::Instant;

use proffer_master_core::core::limits::MAX_ROLES_PER_CALL;
use proffer_proto::v1;
use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::operator_client::OperatorClient;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use super::tests::{TestServer, WAIT, register_message};
use super::{ConnLimits, ServerConfig};
use crate::core::MasterConfig;

fn weights(n: usize, prefix: &str) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"role":"{prefix}{i}","weight":2}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

#[tokio::test]
async fn weights_calls_are_bounded_in_roles() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let (code, reply) = server
        .http("POST", "/weights", &weights(MAX_ROLES_PER_CALL, "ok"))
        .await?;
    assert_eq!(code, 200, "{reply}");
    let (code, reply) = server
        .http("POST", "/weights", &weights(MAX_ROLES_PER_CALL + 1, "no"))
        .await?;
    assert_eq!(code, 400, "{reply}");
    let msg = reply["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("1001 roles in one call, the limit is 1000"),
        "{msg}"
    );
    assert!(server.role("no0").await?.is_none(), "nothing applied");
    server.stop().await
}

/// Seen before the limit: 19.6 s, and `/roles` failed for good afterwards (reply over 4 MiB).
#[tokio::test]
async fn sixty_thousand_roles_in_one_post_weights_are_refused_quickly() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let start = Instant::now();
    let (code, reply) = server
        .http("POST", "/weights", &weights(60_000, "r"))
        .await?;
    assert_eq!(code, 400, "{reply}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let (code, _) = server.http("GET", "/roles", "").await?;
    assert_eq!(code, 200, "/roles still answers");
    server.stop().await
}

#[tokio::test]
async fn a_role_name_of_3_9_mb_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let role = "r".repeat(3_900_000);
    for (path, body) in [
        ("/weights", format!(r#"{{"role":"{role}","weight":2}}"#)),
        (
            "/quota",
            format!(r#"{{"role":"{role}","guarantees":"cpus:1"}}"#),
        ),
    ] {
        let (code, reply) = server.http("POST", path, &body).await?;
        assert_eq!(code, 400, "{path}");
        let msg = reply["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("the limit is 256"),
            "{path}: {}",
            &msg[..msg.len().min(200)]
        );
        assert!(msg.len() < 1024, "{path}: the error does not echo the role");
    }
    server.stop().await
}

/// Reads until the server closes the connection (EOF or reset); fails after [`WAIT`].
async fn closed_by_server(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await? {
            Ok(0) | Err(_) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One keep-alive HTTP/1.1 `GET /health` on `stream`; returns the status line.
async fn health(stream: &mut TcpStream) -> anyhow::Result<String> {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: m\r\n\r\n")
        .await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn with_connections(limits: ConnLimits) -> ServerConfig {
    ServerConfig {
        connections: limits,
        ..ServerConfig::new(MasterConfig::default())
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_the_open_ones_keep_working() -> anyhow::Result<()>
{
    let server = TestServer::start_with(with_connections(ConnLimits {
        max_connections: 2,
        ..ConnLimits::default()
    }))
    .await?;
    let mut first = TcpStream::connect(server.addr).await?;
    let mut second = TcpStream::connect(server.addr).await?;
    // Both are served (so both were accepted and hold their slots).
    assert!(health(&mut first).await?.contains("200"));
    assert!(health(&mut second).await?.contains("200"));
    let mut third = TcpStream::connect(server.addr).await?;
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: m\r\n\r\n")
        .await;
    let reply = closed_by_server(&mut third).await?;
    assert!(reply.is_empty(), "the third got no answer");
    assert!(
        health(&mut first).await?.contains("200"),
        "the first still works"
    );
    // A slot freed is usable again.
    drop(second);
    let mut again = None;
    for _ in 0..200 {
        let mut s = TcpStream::connect(server.addr).await?;
        if health(&mut s).await.is_ok_and(|l| l.contains("200")) {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a connection is served once one closed");
    server.stop().await
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_connections(ConnLimits {
        idle_timeout: std::time::Duration::from_millis(200),
        ..ConnLimits::default()
    }))
    .await?;
    // Silent from the start.
    let mut silent = TcpStream::connect(server.addr).await?;
    assert!(closed_by_server(&mut silent).await?.is_empty());
    // Idle after one request.
    let mut used = TcpStream::connect(server.addr).await?;
    assert!(health(&mut used).await?.contains("200"));
    closed_by_server(&mut used).await?;
    server.stop().await
}

#[tokio::test]
async fn half_a_request_header_is_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_connections(ConnLimits {
        header_read_timeout: std::time::Duration::from_millis(200),
        ..ConnLimits::default()
    }))
    .await?;
    let mut slow = TcpStream::connect(server.addr).await?;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: m\r\nX-Half: ")
        .await?;
    let start = Instant::now();
    closed_by_server(&mut slow).await?;
    // Well before the 5 min idle timeout: the header timeout closed it.
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    server.stop().await
}

fn framework(name: &str) -> v1::SubscribeRequest {
    v1::SubscribeRequest {
        framework_info: Some(v1::FrameworkInfo {
            name: name.into(),
            user: "test".into(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn streams_per_peer_are_bounded_and_a_closed_one_frees_its_slot() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_connections(ConnLimits {
        max_streams_per_principal: 1,
        ..ConnLimits::default()
    }))
    .await?;
    let mut client = SchedulerClient::connect(server.url()).await?;
    let mut first = client.subscribe(framework("a")).await?.into_inner();
    tokio::time::timeout(WAIT, first.message()).await??;
    let err = client
        .subscribe(framework("b"))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a second stream from the same peer was accepted"))?;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(
        err.message().contains("peer 127.0.0.1") && err.message().contains("the limit is 1"),
        "{err}"
    );
    drop(first);
    // The slot is freed once the server notices the stream is gone.
    let deadline = Instant::now() + WAIT;
    loop {
        match client.subscribe(framework("c")).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => anyhow::bail!("third subscription: {e}"),
        }
    }
    server.stop().await
}

/// Seen before the limit: the master stalled ~34 s when such an agent left and `/state` took
/// 34–68 s while it was there.
#[tokio::test]
async fn an_agent_advertising_100_000_resource_names_is_refused_quickly() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let mut agent = AgentClient::connect(server.url())
        .await?
        .max_encoding_message_size(super::MAX_MESSAGE_BYTES);
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(4);
    let mut huge = proffer_proto::Resources::parse("cpus:2;mem:1024")?.to_proto();
    huge.extend((0..100_000).map(|i| v1::Resource {
        name: format!("r{i}"),
        value: Some(v1::resource::Value::ScalarMilli(1000)),
        role: "*".into(),
        ..Default::default()
    }));
    let start = Instant::now();
    tx.send(register_message("huge", huge)).await?;
    tx.send(register_message(
        "small",
        proffer_proto::Resources::parse("cpus:2;mem:1024")?.to_proto(),
    ))
    .await?;
    let mut inbound = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    // The first registration is refused; the second is the one registered.
    loop {
        let msg = tokio::time::timeout(WAIT, inbound.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("session ended"))?;
        if let Some(v1::master_message::Msg::Registered(_)) = msg.msg {
            break;
        }
    }
    let mut operator = OperatorClient::connect(server.url()).await?;
    let state = operator
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    let hosts: Vec<&str> = state.agents.iter().map(|a| a.hostname.as_str()).collect();
    assert_eq!(hosts, ["small"]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    drop(tx);
    server.stop().await
}

/// The frame types in a raw HTTP/2 byte stream (server side, after its preface).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn a_half_open_http2_connection_is_dropped_when_pings_go_unanswered() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_connections(ConnLimits {
        keep_alive_interval: std::time::Duration::from_millis(100),
        keep_alive_timeout: std::time::Duration::from_millis(100),
        ..ConnLimits::default()
    }))
    .await?;
    let mut peer = TcpStream::connect(server.addr).await?;
    // The client preface and an empty SETTINGS frame, then silence: no ACKs, no PING replies.
    peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await?;
    let start = Instant::now();
    let got = closed_by_server(&mut peer).await?;
    const PING: u8 = 6;
    assert!(
        frame_types(&got).contains(&PING),
        "the server pinged: {:?}",
        frame_types(&got)
    );
    // Long before the 5 min idle timeout.
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    server.stop().await
}
