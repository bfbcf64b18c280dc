//! `POST /api/v1/scheduler` behind the framework-calls gate (`--authenticate-frameworks`), over
//! a real socket: no credentials → 401; a principal subscribes, and `FrameworkInfo.principal`
//! naming someone else → 403.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proffer_proto::auth::{Credential, Credentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::core::MasterConfig;
use crate::server::{Security, ServerConfig, serve};

/// A master that authenticates framework calls only (not operator changes: the scheduler
/// endpoint must be behind the framework gate, not the HTTP read-write one).
async fn start() -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = ServerConfig::new(MasterConfig::default());
    config.security = Security {
        credentials: Some(Arc::new(Credentials::parse(
            r#"{"credentials": [{"principal": "alice", "secret": "alice-secret"}]}"#,
            "test",
        )?)),
        authenticate_frameworks: true,
        ..Security::default()
    };
    let cancel = CancellationToken::new();
    tokio::spawn(serve(listener, config, cancel.clone()));
    Ok((addr, cancel))
}

/// Sends a SUBSCRIBE for `info` and reads the answer's status and head (the body of a 200 is
/// an endless stream; of an error, a short text, read until the connection closes).
async fn subscribe(
    addr: SocketAddr,
    authorization: Option<&str>,
    info: serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    let body =
        serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}).to_string();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await??;
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if n == 0 || (status == 200 && text.contains("SUBSCRIBED")) {
            return Ok((status, text.into_owned()));
        }
    }
}

#[tokio::test]
async fn the_scheduler_endpoint_needs_framework_credentials() -> anyhow::Result<()> {
    let (addr, cancel) = start().await?;
    let info = serde_json::json!({"user": "u", "name": "n"});
    let (status, text) = subscribe(addr, None, info.clone()).await?;
    assert_eq!(status, 401, "{text}");
    assert!(text.to_lowercase().contains("www-authenticate"), "{text}");

    let alice = Credential::basic("alice", "alice-secret")?.authorization();
    let (status, text) = subscribe(addr, Some(&alice), info).await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.to_lowercase().contains("mesos-stream-id"), "{text}");

    let as_bob = serde_json::json!({"user": "u", "name": "n", "principal": "bob"});
    let (status, text) = subscribe(addr, Some(&alice), as_bob).await?;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("`bob` is not the authenticated principal `alice`"),
        "{text}"
    );
    cancel.cancel();
    Ok(())
}
