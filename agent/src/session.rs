//! One connection to the master: dial, open the `Session` bidi stream, forward what the master
//! sends to the agent loop and report when the stream ends.

use std::time::Duration;

use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::{AgentMessage, MasterMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;

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
    },
}

/// Dials `http://{master}` and runs session `id` until it ends; messages queued on `outbound`
/// are streamed to the master in order.
pub async fn run_session(
    id: u64,
    master: String,
    outbound: mpsc::UnboundedReceiver<AgentMessage>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    let reason = match pump(id, &master, outbound, &events).await {
        Ok(()) => "stream closed by the master".to_string(),
        Err(reason) => reason,
    };
    let _ = events.send(SessionEvent::Closed { id, reason });
}

async fn pump(
    id: u64,
    master: &str,
    outbound: mpsc::UnboundedReceiver<AgentMessage>,
    events: &mpsc::UnboundedSender<SessionEvent>,
) -> Result<(), String> {
    let url = format!("http://{master}");
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("invalid master address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let mut client = AgentClient::new(channel);
    let mut inbound = client
        .session(UnboundedReceiverStream::new(outbound))
        .await
        .map_err(|s| format!("opening session: {}: {}", s.code(), s.message()))?
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
            Err(s) => {
                return Err(format!(
                    "session stream failed: {}: {}",
                    s.code(),
                    s.message()
                ));
            }
        }
    }
}
