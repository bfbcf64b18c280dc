//! The `Agent` service: one bidirectional session per agent. A reader task feeds every inbound
//! message to the core; the core's messages for the session flow out through a channel.

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use proffer_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::Shared;
use super::core_task::{AGENT_QUEUE, CoreHandle};
use super::status;
use crate::core::{ConnId, Input};

/// The `Agent` gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct AgentService {
    shared: Shared,
}

impl AgentService {
    pub(crate) fn new(shared: Shared) -> Self {
        AgentService { shared }
    }
}

#[tonic::async_trait]
impl v1::agent_server::Agent for AgentService {
    type SessionStream = ReceiverStream<Result<v1::MasterMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        // Who registers: `register_agents` decides, and every (re-)registration on this
        // session carries the principal (the core keeps the agent id's owner).
        let caller = super::security::Caller::of(&request, &self.shared.authorizer);
        caller
            .authorize(proffer_master_core::authz::Action::RegisterAgent, None)
            .map_err(|e| status::from_master(&e))?;
        let principal = caller.principal().unwrap_or("").to_string();
        let slot = self
            .shared
            .streams
            .acquire(super::streams::StreamSlots::key_of(&request))?;
        let inbound = request.into_inner();
        let core = self.shared.core.clone();
        let conn = core.next_conn();
        let (tx, rx) = mpsc::channel(AGENT_QUEUE);
        let closed = CancellationToken::new();
        let span = tracing::info_span!(
            "agent_session",
            conn,
            agent_id = tracing::field::Empty,
            hostname = tracing::field::Empty
        );
        core.open_agent(conn, tx, closed.clone(), span.clone())
            .map_err(status::unavailable)?;
        let shutdown = self.shared.shutdown.clone();
        self.shared.tracker.spawn(
            async move {
                read_session(core, conn, inbound, closed, shutdown, principal).await;
                drop(slot);
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Inbound messages of one session queued to the core and not yet answered. The reader does
/// not wait for each verdict: messages that arrive together reach the core together (the
/// core takes them in one turn), and the bound keeps a flooding agent from queueing without
/// limit.
const SESSION_IN_FLIGHT: usize = 64;

/// Feeds the session's inbound messages to the core until the agent hangs up, the core closes
/// the session or the server shuts down.
async fn read_session(
    core: CoreHandle,
    conn: ConnId,
    mut inbound: Streaming<v1::AgentMessage>,
    closed: CancellationToken,
    shutdown: CancellationToken,
    principal: String,
) {
    tracing::debug!("agent session opened");
    let mut verdicts = FuturesOrdered::new();
    loop {
        let next = tokio::select! {
            biased;
            () = closed.cancelled() => {
                tracing::debug!("session closed by the master");
                return;
            }
            () = shutdown.cancelled() => return,
            Some(verdict) = verdicts.next(), if !verdicts.is_empty() => {
                match verdict {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(%err, "agent message refused"),
                    Err(_) => return,
                }
                continue;
            }
            next = inbound.message(), if verdicts.len() < SESSION_IN_FLIGHT => next,
        };
        let mut msg = match next {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                tracing::info!("agent ended its session");
                break;
            }
            Err(status) => {
                tracing::info!(code = ?status.code(), message = status.message(), "agent session broke");
                break;
            }
        };
        record_identity(&msg);
        set_principal(&mut msg, &principal);
        match core.queue_input(Input::Agent { conn, msg }) {
            Ok(verdict) => verdicts.push_back(verdict),
            Err(_) => return,
        }
    }
    // Queued after the session's messages: the core handles them before the session ends.
    core.agent_gone(conn);
}

/// Stamps a (re-)registration with the session's principal (what the agent says is ignored).
fn set_principal(msg: &mut v1::AgentMessage, principal: &str) {
    let info = match &mut msg.msg {
        Some(v1::agent_message::Msg::Register(r)) => r.info.as_mut(),
        Some(v1::agent_message::Msg::Reregister(r)) => r.info.as_mut(),
        _ => None,
    };
    if let Some(info) = info {
        info.principal = principal.to_string();
    }
}

/// Records the agent's id and hostname on the session span once it says who it is.
fn record_identity(msg: &v1::AgentMessage) {
    let info = match &msg.msg {
        Some(v1::agent_message::Msg::Register(r)) => r.info.as_ref(),
        Some(v1::agent_message::Msg::Reregister(r)) => r.info.as_ref(),
        _ => None,
    };
    if let Some(info) = info {
        let span = tracing::Span::current();
        span.record("hostname", info.hostname.as_str());
        if !info.id.is_empty() {
            span.record("agent_id", info.id.as_str());
        }
    }
}
