//! The framework-facing `Scheduler` service: `Subscribe` opens an event stream fed by the core;
//! every unary call becomes an [`Input::Call`](crate::core::Input::Call).
//!
//! A subscription carries the caller's authenticated principal in `FrameworkInfo.principal`
//! (a different one named there is refused); the core checks the framework id's owner and the
//! `register_frameworks` ACLs. A call by an authenticated principal must come from the
//! framework's owner.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use proffer_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::Shared;
use super::core_task::{CoreGone, CoreHandle, FRAMEWORK_QUEUE};
use super::status;
use crate::core::{Call, ConnId, Input, MasterError};

/// The `Scheduler` gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerService {
    shared: Shared,
}

impl SchedulerService {
    pub(crate) fn new(shared: Shared) -> Self {
        SchedulerService { shared }
    }

    async fn call(
        &self,
        principal: Option<String>,
        call: Call,
    ) -> Result<Response<v1::CallResponse>, Status> {
        match forward_call(&self.shared.core, principal, call).await {
            Ok(Ok(())) => Ok(Response::new(v1::CallResponse {})),
            Ok(Err(err)) => {
                tracing::debug!(%err, "call refused");
                Err(status::from_master(&err))
            }
            Err(gone) => Err(status::unavailable(gone)),
        }
    }
}

/// Feeds a framework call to the core; with an authenticated principal, the owner check and
/// the call run in one step on the core task. Shared by the gRPC service and the Mesos HTTP
/// API (`mesos_api`).
pub(crate) async fn forward_call(
    core: &CoreHandle,
    principal: Option<String>,
    call: Call,
) -> Result<Result<(), MasterError>, CoreGone> {
    match principal {
        None => core.input(Input::Call(call)).await,
        Some(p) => {
            let fw = call_framework_id(&call).to_string();
            core.run(move |m, now| {
                m.check_caller(&fw, Some(&p))?;
                m.handle(now, Input::Call(call))
            })
            .await
        }
    }
}

/// Opens a framework's subscription: takes a stream slot for `slot_key`, stamps the
/// authenticated principal into `info` (refusing a different one) and subscribes it on the
/// core. Shared by the gRPC service and the Mesos HTTP API (`mesos_api`).
pub(crate) async fn open_subscription(
    shared: &Shared,
    principal: Option<String>,
    slot_key: String,
    info: Option<v1::FrameworkInfo>,
) -> Result<EventStream, Status> {
    let slot = shared.streams.acquire(slot_key)?;
    let Some(mut info) = info else {
        return Err(Status::invalid_argument(
            "subscribe: framework_info is required",
        ));
    };
    if let Some(p) = principal {
        if !info.principal.is_empty() && info.principal != p {
            return Err(Status::permission_denied(format!(
                "framework_info.principal `{}` is not the authenticated principal `{p}`",
                info.principal
            )));
        }
        info.principal = p;
    }
    let conn = shared.core.next_conn();
    let span = tracing::info_span!(
        "subscribe",
        conn,
        framework_id = %info.id,
        framework_name = %info.name
    );
    async {
        let (tx, rx) = mpsc::channel(FRAMEWORK_QUEUE);
        match shared.core.subscribe(conn, info, tx).await {
            Ok(Ok(())) => {
                tracing::info!("framework subscribed");
                Ok(EventStream {
                    inner: ReceiverStream::new(rx),
                    conn,
                    core: shared.core.clone(),
                    _slot: slot,
                })
            }
            Ok(Err(err)) => {
                tracing::info!(%err, "subscription refused");
                Err(status::from_master(&err))
            }
            Err(gone) => Err(status::unavailable(gone)),
        }
    }
    .instrument(span)
    .await
}

/// A framework's event stream; dropping it (the client went away) tells the core.
pub(crate) struct EventStream {
    inner: ReceiverStream<Result<v1::Event, Status>>,
    conn: ConnId,
    core: CoreHandle,
    /// The caller's stream slot, freed with the stream.
    _slot: super::streams::Slot,
}

impl Stream for EventStream {
    type Item = Result<v1::Event, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        tracing::debug!(conn = self.conn, "framework event stream dropped");
        self.core.framework_gone(self.conn);
    }
}

/// The framework id in a call's header (empty when the header is missing).
fn framework_id(header: Option<&v1::CallHeader>) -> &str {
    header.map_or("", |h| h.framework_id.as_str())
}

/// The framework id in a call's header.
fn call_framework_id(call: &Call) -> &str {
    let header = match call {
        Call::Accept(r) => r.header.as_ref(),
        Call::Decline(r) => r.header.as_ref(),
        Call::Revive(r) => r.header.as_ref(),
        Call::Suppress(r) => r.header.as_ref(),
        Call::UpdateFramework(r) => r.header.as_ref(),
        Call::Kill(r) => r.header.as_ref(),
        Call::Acknowledge(r) => r.header.as_ref(),
        Call::AcknowledgeBatch(r) => r.header.as_ref(),
        Call::Reconcile(r) => r.header.as_ref(),
        Call::Message(r) => r.header.as_ref(),
        Call::Teardown(r) => r.header.as_ref(),
        Call::AcceptInverseOffers(r) | Call::DeclineInverseOffers(r) => r.header.as_ref(),
    };
    framework_id(header)
}

/// The authenticated principal of a request (set by `security::authenticate`).
fn principal_of<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<super::security::Authenticated>()
        .and_then(|a| a.0.clone())
}

/// Implements a unary call: log span with the framework id, then forward to the core.
macro_rules! unary {
    ($self:ident, $request:ident, $variant:ident, $name:literal) => {{
        let principal = principal_of(&$request);
        let req = $request.into_inner();
        let span = tracing::debug_span!(
            "call",
            call = $name,
            framework_id = %framework_id(req.header.as_ref())
        );
        $self
            .call(principal, Call::$variant(req.into()))
            .instrument(span)
            .await
    }};
}

#[tonic::async_trait]
impl v1::scheduler_server::Scheduler for SchedulerService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let principal = principal_of(&request);
        let key = super::streams::StreamSlots::key_of(&request);
        let info = request.into_inner().framework_info;
        open_subscription(&self.shared, principal, key, info)
            .await
            .map(Response::new)
    }

    async fn accept(
        &self,
        request: Request<v1::AcceptRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Accept, "accept")
    }

    async fn decline(
        &self,
        request: Request<v1::DeclineRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Decline, "decline")
    }

    async fn revive(
        &self,
        request: Request<v1::ReviveRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Revive, "revive")
    }

    async fn suppress(
        &self,
        request: Request<v1::SuppressRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Suppress, "suppress")
    }

    async fn update_framework(
        &self,
        request: Request<v1::UpdateFrameworkRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, UpdateFramework, "update_framework")
    }

    async fn kill(
        &self,
        request: Request<v1::KillRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Kill, "kill")
    }

    async fn acknowledge(
        &self,
        request: Request<v1::AcknowledgeRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Acknowledge, "acknowledge")
    }

    async fn acknowledge_batch(
        &self,
        request: Request<v1::AcknowledgeBatchRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, AcknowledgeBatch, "acknowledge_batch")
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Reconcile, "reconcile")
    }

    async fn message(
        &self,
        request: Request<v1::MessageRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Message, "message")
    }

    async fn teardown(
        &self,
        request: Request<v1::TeardownRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, Teardown, "teardown")
    }

    async fn accept_inverse_offers(
        &self,
        request: Request<v1::InverseOffersRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(self, request, AcceptInverseOffers, "accept_inverse_offers")
    }

    async fn decline_inverse_offers(
        &self,
        request: Request<v1::InverseOffersRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        unary!(
            self,
            request,
            DeclineInverseOffers,
            "decline_inverse_offers"
        )
    }
}
