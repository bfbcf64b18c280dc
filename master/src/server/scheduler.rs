//! The framework-facing `Scheduler` service: `Subscribe` opens an event stream fed by the core;
//! every unary call becomes an [`Input::Call`](crate::core::Input::Call).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use proffer_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::Shared;
use super::core_task::{CoreHandle, FRAMEWORK_QUEUE};
use super::status;
use crate::core::{Call, ConnId, Input};

/// The `Scheduler` gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerService {
    shared: Shared,
}

impl SchedulerService {
    pub(crate) fn new(shared: Shared) -> Self {
        SchedulerService { shared }
    }

    async fn call(&self, call: Call) -> Result<Response<v1::CallResponse>, Status> {
        match self.shared.core.input(Input::Call(call)).await {
            Ok(Ok(())) => Ok(Response::new(v1::CallResponse {})),
            Ok(Err(err)) => {
                tracing::debug!(%err, "call refused");
                Err(status::from_master(&err))
            }
            Err(gone) => Err(status::unavailable(gone)),
        }
    }
}

/// A framework's event stream; dropping it (the client went away) tells the core.
pub(crate) struct EventStream {
    inner: ReceiverStream<Result<v1::Event, Status>>,
    conn: ConnId,
    core: CoreHandle,
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

/// Implements a unary call: log span with the framework id, then forward to the core.
macro_rules! unary {
    ($self:ident, $request:ident, $variant:ident, $name:literal) => {{
        let req = $request.into_inner();
        let span = tracing::debug_span!(
            "call",
            call = $name,
            framework_id = %framework_id(req.header.as_ref())
        );
        $self.call(Call::$variant(req.into())).instrument(span).await
    }};
}

#[tonic::async_trait]
impl v1::scheduler_server::Scheduler for SchedulerService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let Some(info) = request.into_inner().framework_info else {
            return Err(Status::invalid_argument(
                "subscribe: framework_info is required",
            ));
        };
        let conn = self.shared.core.next_conn();
        let span = tracing::info_span!(
            "subscribe",
            conn,
            framework_id = %info.id,
            framework_name = %info.name
        );
        async {
            let (tx, rx) = mpsc::channel(FRAMEWORK_QUEUE);
            match self.shared.core.subscribe(conn, info, tx).await {
                Ok(Ok(())) => {
                    tracing::info!("framework subscribed");
                    Ok(Response::new(EventStream {
                        inner: ReceiverStream::new(rx),
                        conn,
                        core: self.shared.core.clone(),
                    }))
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
