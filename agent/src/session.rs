//! One connection to the master: dial, open the `Session` bidi stream, forward what the master
//! sends to the agent loop and report when the stream ends (with the leader a standby named).

use std::time::Duration;

use proffer_proto::leader::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, leader_hint};
use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::{AgentMessage, MasterMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// What a session task tells the agent loop.
#[derive(Debug)]
pub enum SessionEvent {
    /// A message from the master on session `id`.
    Message {
        /// The session it arrived on.
        id: u64,
        /// The message.
        msg: Box<MasterMessage>,
    },
    /// Session `id` could not be opened or has ended.
    Closed {
        /// The session.
        id: u64,
        /// Why, for the log.
        reason: String,
        /// The leader a standby master named when it turned the session away (`HOST:PORT`).
        leader: Option<String>,
    },
}

/// Why a session ended.
struct Ended {
    reason: String,
    leader: Option<String>,
}

impl Ended {
    fn new(reason: String) -> Self {
        Ended {
            reason,
            leader: None,
        }
    }

    fn status(what: &str, s: &tonic::Status) -> Self {
        Ended {
            reason: format!("{what}: {}: {}", s.code(), s.message()),
            leader: leader_hint(s),
        }
    }
}

/// Dials `http://{master}` and runs session `id` until it ends; messages queued on `outbound`
/// are streamed to the master in order. A master that stops answering (hung) is dropped by
/// HTTP/2 keep-alive within [`KEEPALIVE_INTERVAL`] + [`KEEPALIVE_TIMEOUT`] of its last frame.
pub async fn run_session(
    id: u64,
    master: String,
    credential: Option<proffer_proto::auth::Credential>,
    tls: Option<proffer_net::tls::ClientTls>,
    outbound: mpsc::UnboundedReceiver<AgentMessage>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    let dial = Dial {
        credential: credential.as_ref(),
        tls: tls.as_ref(),
    };
    let ended = match pump(id, &master, dial, outbound, &events).await {
        Ok(()) => Ended::new("stream closed by the master".to_string()),
        Err(ended) => ended,
    };
    let _ = events.send(SessionEvent::Closed {
        id,
        reason: ended.reason,
        leader: ended.leader,
    });
}

/// Who the agent is to the master, and how it reaches it.
#[derive(Clone, Copy)]
struct Dial<'a> {
    credential: Option<&'a proffer_proto::auth::Credential>,
    /// None: the process's client TLS, if any.
    tls: Option<&'a proffer_net::tls::ClientTls>,
}

async fn pump(
    id: u64,
    master: &str,
    dial: Dial<'_>,
    outbound: mpsc::UnboundedReceiver<AgentMessage>,
    events: &mpsc::UnboundedSender<SessionEvent>,
) -> Result<(), Ended> {
    let tls = match dial.tls {
        Some(t) => Some(t),
        None => proffer_net::tls::process_tls(),
    };
    let url = format!(
        "{}://{master}",
        if tls.is_some() { "https" } else { "http" }
    );
    let endpoint = proffer_net::tls::grpc_endpoint_with(master, tls)
        .map_err(|e| Ended::new(format!("invalid master address {url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Ended::new(format!("connecting to {url}: {e}")))?;
    let mut client = AgentClient::with_interceptor(
        channel,
        proffer_proto::auth::Authorize::new(dial.credential),
    );
    let mut inbound = client
        .session(UnboundedReceiverStream::new(outbound))
        .await
        .map_err(|s| Ended::status("opening session", &s))?
        .into_inner();
    loop {
        match inbound.message().await {
            Ok(Some(msg)) => {
                if events
                    .send(SessionEvent::Message {
                        id,
                        msg: Box::new(msg),
                    })
                    .is_err()
                {
                    return Ok(()); // the agent loop is gone
                }
            }
            Ok(None) => return Ok(()),
            Err(s) => return Err(Ended::status("session stream failed", &s)),
        }
    }
}
