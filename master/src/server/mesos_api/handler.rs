//! `POST /api/v1/scheduler`: decodes a Mesos call (JSON or protobuf), checks it as Mesos does,
//! and feeds the translated call to the core through the same code as the gRPC service
//! (`scheduler::forward_call`, `scheduler::open_subscription`). SUBSCRIBE is answered with a
//! RecordIO stream of Mesos events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{Stream, StreamExt};
use proffer_proto::mesos::v1::scheduler as ms;
use proffer_proto::v1;
use prost::Message;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::media::{self, Format, MediaError};
use super::to_mesos::{self, Context};
use super::to_proffer::{self, Action, TranslateError};
use crate::core::{Call, MasterError};
use crate::server::Shared;
use crate::server::core_task::CoreGone;
use crate::server::scheduler::{EventStream, forward_call, open_subscription};
use crate::server::security::Authenticated;
use crate::server::streams::StreamSlots;

/// The endpoint's path.
pub(crate) const PATH: &str = "/api/v1/scheduler";
/// The header carrying the subscription's stream id.
pub(crate) const STREAM_ID: &str = "mesos-stream-id";

/// A refusal: an HTTP status and a text body naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status of a refusal by the core (Mesos's codes: a stale stream id is 400).
    pub(crate) fn from_master(err: &MasterError) -> Self {
        use crate::core::ErrorKind;
        let status = match (err, err.kind()) {
            (MasterError::WrongStream { .. }, _) => StatusCode::BAD_REQUEST,
            (_, ErrorKind::InvalidArgument) => StatusCode::BAD_REQUEST,
            (_, ErrorKind::NotFound) => StatusCode::NOT_FOUND,
            (_, ErrorKind::PermissionDenied) => StatusCode::FORBIDDEN,
            (_, ErrorKind::FailedPrecondition) => StatusCode::CONFLICT,
            (_, ErrorKind::Unimplemented) => StatusCode::NOT_IMPLEMENTED,
        };
        ApiError::new(status, err.to_string())
    }

    /// The status of a refused subscription (a gRPC status from the shared code).
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let code = match status.code() {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(code, status.message())
    }
}

impl From<MediaError> for ApiError {
    fn from(err: MediaError) -> Self {
        let status = match err {
            MediaError::MissingContentType => StatusCode::BAD_REQUEST,
            MediaError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MediaError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
        };
        ApiError::new(status, err.to_string())
    }
}

impl From<TranslateError> for ApiError {
    fn from(err: TranslateError) -> Self {
        let status = match err {
            TranslateError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("Failed to validate scheduler::Call: {err}"))
    }
}

impl From<CoreGone> for ApiError {
    fn from(err: CoreGone) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// The master's address, as SUBSCRIBED's `master_info` reports it.
#[derive(Debug, Clone)]
struct Address {
    hostname: String,
    ip: Option<Ipv4Addr>,
    port: u16,
}

impl Address {
    /// From `HOST:PORT` (the advertised address).
    fn parse(advertise: &str) -> Self {
        let (host, port) = advertise.rsplit_once(':').unwrap_or((advertise, ""));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Address {
            hostname: host.to_string(),
            ip: host.parse().ok(),
            port: port.parse().unwrap_or(0),
        }
    }
}

/// Open Mesos-API subscriptions by stream id: their framework and a way to add events the
/// shell makes itself (UPDATE_OPERATION_STATUS answers to RECONCILE_OPERATIONS).
#[derive(Debug, Default)]
struct Subscriptions {
    open: Mutex<HashMap<String, (String, mpsc::UnboundedSender<ms::Event>)>>,
}

/// One subscription in [`Subscriptions`]; dropping it removes it.
#[derive(Debug)]
struct Registration {
    subscriptions: Arc<Subscriptions>,
    stream_id: String,
}

impl Subscriptions {
    fn register(
        self: &Arc<Self>,
        stream_id: &str,
        framework_id: &str,
    ) -> (Registration, mpsc::UnboundedReceiver<ms::Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(stream_id.to_string(), (framework_id.to_string(), tx));
        let registration = Registration {
            subscriptions: self.clone(),
            stream_id: stream_id.to_string(),
        };
        (registration, rx)
    }

    /// Adds `events` to the stream of `header`, if it is that framework's open stream.
    fn send(&self, header: &v1::CallHeader, events: Vec<ms::Event>) -> Result<(), ApiError> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.get(&header.stream_id) {
            Some((fw, tx)) if *fw == header.framework_id => {
                for e in events {
                    // A closed stream is being dropped: nobody is left to tell.
                    let _ = tx.send(e);
                }
                Ok(())
            }
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "framework `{}` is not subscribed through this API on stream `{}`",
                    header.framework_id, header.stream_id
                ),
            )),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self
            .subscriptions
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.remove(&self.stream_id);
    }
}

/// State of the endpoint.
#[derive(Debug, Clone)]
struct ApiState {
    shared: Shared,
    address: Arc<Address>,
    subscriptions: Arc<Subscriptions>,
    /// The body limit (`--max-request-bytes`).
    max_request_bytes: usize,
}

/// The route `POST /api/v1/scheduler` (`advertise`: this master's `HOST:PORT`; bodies above
/// `max_request_bytes` are answered 413).
pub(crate) fn routes(shared: Shared, advertise: &str, max_request_bytes: usize) -> Router {
    Router::new()
        .route(PATH, any(scheduler))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(ApiState {
            shared,
            address: Arc::new(Address::parse(advertise)),
            subscriptions: Arc::default(),
            max_request_bytes,
        })
}

async fn scheduler(
    State(st): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    ext: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if method != Method::POST {
        let message = format!("Expecting 'POST', received '{method}'");
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [
                (header::ALLOW, "POST"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            message,
        )
            .into_response();
    }
    match handle(&st, &headers, &ext, body).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(status = %err.status, message = %err.message, "mesos call refused");
            err.into_response()
        }
    }
}

/// A header's value as text (`None` when absent or not visible ASCII).
fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    st: &ApiState,
    headers: &HeaderMap,
    ext: &Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let format = match headers.get(header::CONTENT_TYPE) {
        None => media::content_type(None)?,
        Some(v) => media::content_type(Some(&String::from_utf8_lossy(v.as_bytes())))?,
    };
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!(
                    "Request body is larger than the limit of {} bytes (--max-request-bytes)",
                    st.max_request_bytes
                ),
            )
        } else {
            ApiError::new(status, rejection.body_text())
        }
    })?;
    let call = decode(format, &body)?;
    let principal = ext.get::<Authenticated>().and_then(|a| a.0.clone());
    if call.r#type() == ms::call::Type::Subscribe {
        let accept = media::accept(header_text(headers, header::ACCEPT))?;
        let key = StreamSlots::key_from(
            principal.as_deref(),
            ext.get::<ConnectInfo<SocketAddr>>().map(|c| &c.0),
        );
        subscribe(st, headers, principal, key, call, accept).await
    } else {
        other_call(st, headers, principal, call).await
    }
}

/// Decodes a call in `format`; errors name what could not be read.
fn decode(format: Format, body: &[u8]) -> Result<ms::Call, ApiError> {
    match format {
        Format::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("Failed to convert JSON into Call protobuf: {e}"))
        }),
        Format::Protobuf => ms::Call::decode(body).map_err(|e| {
            ApiError::bad_request(format!("Failed to parse body into Call protobuf: {e}"))
        }),
    }
}

/// One event as a RecordIO record in `format`.
fn encode(event: &ms::Event, format: Format) -> Bytes {
    let record = match format {
        Format::Protobuf => event.encode_to_vec(),
        Format::Json => serde_json::to_vec(event).unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot write an event as JSON");
            let fallback = to_mesos::error(format!("cannot write an event as JSON: {err}"));
            serde_json::to_vec(&fallback).unwrap_or_default()
        }),
    };
    Bytes::from(super::recordio::encode(&record))
}

async fn subscribe(
    st: &ApiState,
    headers: &HeaderMap,
    principal: Option<String>,
    slot_key: String,
    call: ms::Call,
    format: Format,
) -> Result<Response, ApiError> {
    if headers.contains_key(STREAM_ID) {
        return Err(ApiError::bad_request(
            "Subscribe calls should not include the 'Mesos-Stream-Id' header",
        ));
    }
    let sub = to_proffer::subscribe(call)?;
    let span = tracing::info_span!("mesos_subscribe", framework_id = %sub.info.id,
        framework_name = %sub.info.name);
    async {
        let mut events = open_subscription(&st.shared, principal.clone(), slot_key, Some(sub.info))
            .await
            .map_err(|s| ApiError::from_status(&s))?;
        // The core's first event on a new stream is SUBSCRIBED, with the stream id.
        let subscribed = match events.next().await {
            Some(Ok(v1::Event {
                event: Some(v1::event::Event::Subscribed(s)),
            })) => s,
            Some(Err(status)) => return Err(ApiError::from_status(&status)),
            Some(Ok(_)) | None => return Err(CoreGone.into()),
        };
        let header = v1::CallHeader {
            framework_id: subscribed.framework_id.clone(),
            stream_id: subscribed.stream_id.clone(),
        };
        if !sub.suppressed_roles.is_empty() {
            let suppress = Call::Suppress(v1::SuppressRequest {
                header: Some(header),
                roles: sub.suppressed_roles,
            });
            forward_call(&st.shared.core, principal, suppress)
                .await?
                .map_err(|e| ApiError::from_master(&e))?;
        }
        stream_response(st, subscribed, events, format)
    }
    .instrument(span)
    .await
}

/// The 200 answer to SUBSCRIBE: the stream id header and the event stream, starting with
/// `subscribed`.
fn stream_response(
    st: &ApiState,
    subscribed: v1::Subscribed,
    events: EventStream,
    format: Format,
) -> Result<Response, ApiError> {
    let stream_id = HeaderValue::from_str(&subscribed.stream_id)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad stream id"))?;
    let (registration, extra) = st
        .subscriptions
        .register(&subscribed.stream_id, &subscribed.framework_id);
    let ctx = Context {
        master_id: subscribed.master_id.clone(),
        hostname: st.address.hostname.clone(),
        ip: st.address.ip,
        port: st.address.port,
        now_ms: crate::server::unix_ms(),
    };
    tracing::info!(framework_id = %subscribed.framework_id, "framework subscribed (Mesos API)");
    let first = v1::Event {
        event: Some(v1::event::Event::Subscribed(subscribed)),
    };
    let body = EventBody {
        first: to_mesos::event(first, &ctx).map(|e| encode(&e, format)),
        events,
        extra,
        ctx,
        format,
        done: false,
        _registration: registration,
    };
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.media_type()),
            ),
            (header::HeaderName::from_static(STREAM_ID), stream_id),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

async fn other_call(
    st: &ApiState,
    headers: &HeaderMap,
    principal: Option<String>,
    call: ms::Call,
) -> Result<Response, ApiError> {
    let Some(framework_id) = call.framework_id.as_ref().map(|f| f.value.clone()) else {
        return Err(ApiError::bad_request(
            "Expecting 'framework_id' to be present",
        ));
    };
    let Some(stream_id) = header_text(headers, STREAM_ID) else {
        return Err(ApiError::bad_request(
            "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
        ));
    };
    let header = v1::CallHeader {
        framework_id,
        stream_id: stream_id.to_string(),
    };
    let span = tracing::debug_span!("mesos_call", call = to_proffer::type_name(&call),
        framework_id = %header.framework_id);
    async {
        match to_proffer::call(call, &header)? {
            Action::Core(calls) => {
                for c in calls {
                    forward_call(&st.shared.core, principal.clone(), c)
                        .await?
                        .map_err(|e| ApiError::from_master(&e))?;
                }
            }
            Action::Nothing => {}
            Action::ReconcileOperations(ops) => {
                let events = ops
                    .into_iter()
                    .map(|(id, agent)| to_mesos::operation_unknown(id, agent))
                    .collect();
                st.subscriptions.send(&header, events)?;
            }
        }
        Ok(StatusCode::ACCEPTED.into_response())
    }
    .instrument(span)
    .await
}

/// The body of a SUBSCRIBE answer: SUBSCRIBED, then the core's events (and the shell's own)
/// as RecordIO records. Dropping it (the client went away) ends the subscription.
struct EventBody {
    first: Option<Bytes>,
    events: EventStream,
    extra: mpsc::UnboundedReceiver<ms::Event>,
    ctx: Context,
    format: Format,
    done: bool,
    _registration: Registration,
}

impl Stream for EventBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Some(e)) = this.extra.poll_recv(cx) {
            return Poll::Ready(Some(Ok(encode(&e, this.format))));
        }
        loop {
            match Pin::new(&mut this.events).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    this.ctx.now_ms = crate::server::unix_ms();
                    if let Some(e) = to_mesos::event(event, &this.ctx) {
                        return Poll::Ready(Some(Ok(encode(&e, this.format))));
                    }
                }
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    let e = to_mesos::error(status.message().to_string());
                    return Poll::Ready(Some(Ok(encode(&e, this.format))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
