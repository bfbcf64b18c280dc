//! End-to-end tests of the shell over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use proffer_proto::v1;
use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::operator_client::OperatorClient;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::{MAX_MESSAGE_BYTES, ServerConfig, ServerError, serve};
use crate::core::MasterConfig;

/// Bound on every wait (each ends as soon as what it waits for happens): generous for a
/// loaded CI machine.
pub(super) const WAIT: Duration = Duration::from_secs(60);

/// A master server on a loopback port, for the server tests (shared by the `tests_*` modules).
pub(super) struct TestServer {
    pub(super) addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    async fn start() -> anyhow::Result<TestServer> {
        Self::start_seeded(7).await
    }

    /// Starts a server whose core is seeded with `seed`.
    pub(super) async fn start_seeded(seed: u64) -> anyhow::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let mut config = ServerConfig::new(MasterConfig::default());
        config.seed = seed;
        let task = tokio::spawn(serve(listener, config, cancel.clone()));
        Ok(TestServer { addr, cancel, task })
    }

    /// Starts a server with `config`.
    pub(super) async fn start_with(config: ServerConfig) -> anyhow::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, config, cancel.clone()));
        Ok(TestServer { addr, cancel, task })
    }

    /// Starts a server that persists to `registry`.
    pub(super) async fn start_with_registry(
        registry: Box<dyn crate::registry::Registry>,
    ) -> anyhow::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let config = ServerConfig::new(MasterConfig::default());
        let task = tokio::spawn(super::serve_with_registry(
            listener,
            config,
            Some(registry),
            cancel.clone(),
        ));
        Ok(TestServer { addr, cancel, task })
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the server to end on its own (e.g. refusing to start).
    pub(super) async fn join(self) -> Result<(), ServerError> {
        match tokio::time::timeout(WAIT, self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("server task panicked: {e}"),
            Err(_) => panic!("server did not end"),
        }
    }

    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task).await???;
        Ok(())
    }
}

/// A plain HTTP/1.1 GET; returns (status line, body).
/// A framework's gRPC client, its event stream and its SUBSCRIBED event.
pub(super) type Subscription = (
    SchedulerClient<tonic::transport::Channel>,
    tonic::Streaming<v1::Event>,
    v1::Subscribed,
);

/// Subscribes a framework with `info` at `url` and waits for its SUBSCRIBED event.
pub(super) async fn subscribe_framework(
    url: &str,
    info: v1::FrameworkInfo,
) -> anyhow::Result<Subscription> {
    let mut client = SchedulerClient::connect(url.to_owned()).await?;
    let mut events = client
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(info),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, events.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
    let Some(v1::event::Event::Subscribed(sub)) = first.event else {
        anyhow::bail!("first event is not SUBSCRIBED: {first:?}");
    };
    Ok((client, events, sub))
}

/// An agent's id, the sender of its session (keep it to keep the agent connected) and the
/// master's messages to it.
pub(crate) type AgentSession = (
    String,
    tokio::sync::mpsc::Sender<v1::AgentMessage>,
    tonic::Streaming<v1::MasterMessage>,
);

/// Reads events until an OFFERS event arrives; returns its first offer.
pub(crate) async fn next_offer(
    events: &mut tonic::Streaming<v1::Event>,
) -> anyhow::Result<v1::Offer> {
    loop {
        let ev = tokio::time::timeout(WAIT, events.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("event stream ended"))?;
        if let Some(v1::event::Event::Offers(o)) = ev.event
            && let Some(first) = o.offers.into_iter().next()
        {
            return Ok(first);
        }
    }
}

/// An agent's RegisterAgent for `hostname` (port 5051) offering `resources`.
pub(crate) fn register_message(hostname: &str, resources: Vec<v1::Resource>) -> v1::AgentMessage {
    v1::AgentMessage {
        msg: Some(v1::agent_message::Msg::Register(v1::RegisterAgent {
            info: Some(Box::new(v1::AgentInfo {
                hostname: hostname.into(),
                port: 5051,
                resources,
                ..Default::default()
            })),
        })),
    }
}

/// Registers an agent `hostname` offering `resources` with the master at `url`.
pub(crate) async fn register_agent(
    url: &str,
    hostname: &str,
    resources: &str,
) -> anyhow::Result<AgentSession> {
    let mut agent = AgentClient::connect(url.to_owned()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(4);
    let resources = proffer_proto::Resources::parse(resources)?.to_proto();
    tx.send(register_message(hostname, resources)).await?;
    let mut inbound = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("session ended"))?;
    let Some(v1::master_message::Msg::Registered(reg)) = first.msg else {
        anyhow::bail!("first message is not AgentRegistered: {first:?}");
    };
    Ok((reg.agent_id, tx, inbound))
}

pub(super) async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let (head, body) = http_get_head(addr, path).await?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body))
}

/// A plain HTTP/1.1 GET; returns (the whole head, body).
pub(super) async fn http_get_head(
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    Ok((head.to_owned(), body.to_owned()))
}

#[tokio::test]
async fn health_answers_ok_with_the_master_id() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (status, body) = http_get(server.addr, "/health").await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let json: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(json["status"], "ok");
    assert!(!json["master_id"].as_str().unwrap_or_default().is_empty());
    server.stop().await
}

#[tokio::test]
async fn state_is_served_as_json_and_over_grpc() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (status, body) = http_get(server.addr, "/state").await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let http_state: v1::StateSnapshot = serde_json::from_str(&body)?;
    assert!(!http_state.master_id.is_empty());

    let mut client = OperatorClient::connect(server.url()).await?;
    let grpc_state = client.get_state(v1::GetStateRequest {}).await?.into_inner();
    assert_eq!(grpc_state.master_id, http_state.master_id);
    assert!(grpc_state.now_ms >= http_state.now_ms);

    let (status, body) = http_get(server.addr, "/state/tasks").await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let tasks: serde_json::Value = serde_json::from_str(&body)?;
    assert!(tasks["tasks"].is_array());
    assert!(tasks["completed_tasks"].is_array());

    let (status, _) = http_get(server.addr, "/no-such-page").await?;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    server.stop().await
}

#[tokio::test]
async fn subscribe_without_framework_info_is_invalid() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = SchedulerClient::connect(server.url()).await?;
    let err = client
        .subscribe(v1::SubscribeRequest {
            framework_info: None,
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("subscribe without info succeeded"))?;
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await
}

#[tokio::test]
async fn oversized_messages_are_rejected() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = SchedulerClient::connect(server.url()).await?;
    let req = v1::MessageRequest {
        header: Some(v1::CallHeader::default()),
        data: vec![0u8; MAX_MESSAGE_BYTES + 1],
        ..Default::default()
    };
    let err = client
        .message(req)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("oversized message accepted"))?;
    assert_eq!(err.code(), Code::OutOfRange, "{err}");
    server.stop().await
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_returns() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut agent = AgentClient::connect(server.url()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(4);
    let mut inbound = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    server.cancel.cancel();
    // The master's side of the session ends (cleanly or with an error status).
    let end = tokio::time::timeout(WAIT, async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    assert!(end.is_ok(), "agent session still open after shutdown");
    drop(tx);
    tokio::time::timeout(WAIT, server.task).await???;
    Ok(())
}

#[tokio::test]
async fn zero_tick_interval_is_refused() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let config = ServerConfig {
        tick_interval: Duration::ZERO,
        ..ServerConfig::default()
    };
    let result = serve(listener, config, CancellationToken::new()).await;
    assert!(matches!(result, Err(ServerError::ZeroTick)));
    Ok(())
}

// ── Through the core: registration, subscriptions, authentication. ──

fn framework_info(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        name: name.into(),
        user: "test".into(),
        roles: vec!["*".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn call_without_subscription_is_permission_denied() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = SchedulerClient::connect(server.url()).await?;
    let req = v1::ReviveRequest {
        header: Some(v1::CallHeader {
            framework_id: "nobody".into(),
            stream_id: "x".into(),
        }),
        roles: vec![],
    };
    let err = client
        .revive(req)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("revive succeeded"))?;
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("nobody"), "{err}");
    server.stop().await
}

#[tokio::test]
async fn subscription_gets_subscribed_and_disconnect_is_noticed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut client, events, sub) =
        subscribe_framework(&server.url(), framework_info("fw-a")).await?;
    assert!(!sub.framework_id.is_empty());

    // An authenticated call succeeds.
    let header = v1::CallHeader {
        framework_id: sub.framework_id.clone(),
        stream_id: sub.stream_id,
    };
    client
        .revive(v1::ReviveRequest {
            header: Some(header),
            roles: vec![],
        })
        .await?;

    let mut operator = OperatorClient::connect(server.url()).await?;
    let state = operator
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    let fw = state.frameworks.iter().find(|f| f.id == sub.framework_id);
    assert!(
        fw.is_some_and(|f| f.connected),
        "framework not connected: {state:?}"
    );

    // Dropping the stream tells the core the framework disconnected.
    drop(events);
    tokio::time::timeout(WAIT, async {
        loop {
            let state = operator
                .get_state(v1::GetStateRequest {})
                .await?
                .into_inner();
            let fw = state.frameworks.iter().find(|f| f.id == sub.framework_id);
            if fw.is_none_or(|f| !f.connected) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await??;
    server.stop().await
}

#[tokio::test]
async fn agent_session_registers_and_shows_in_state() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (agent_id, tx, inbound) =
        register_agent(&server.url(), "host-a", "cpus:2;mem:1024").await?;
    assert!(!agent_id.is_empty());

    let mut operator = OperatorClient::connect(server.url()).await?;
    let state = operator
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    let summary = state.agents.iter().find(|a| a.id == agent_id);
    assert!(
        summary.is_some_and(|a| a.connected && a.hostname == "host-a"),
        "{state:?}"
    );

    // Closing the agent's side marks it disconnected.
    drop(tx);
    drop(inbound);
    tokio::time::timeout(WAIT, async {
        loop {
            let state = operator
                .get_state(v1::GetStateRequest {})
                .await?
                .into_inner();
            let agent = state.agents.iter().find(|a| a.id == agent_id);
            if agent.is_none_or(|a| !a.connected) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await??;
    server.stop().await
}
