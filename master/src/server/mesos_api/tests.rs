//! Bad input and the event stream of `POST /api/v1/scheduler`, in process (the router called
//! with `tower::ServiceExt::oneshot`, over a running core).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, BodyDataStream};
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use proffer_proto::mesos::v1::scheduler as ms;
use prost::Message;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::handler::{PATH, STREAM_ID};
use super::recordio::Decoder;
use crate::core::{Master, MasterConfig};
use crate::server::Shared;
use crate::server::core_task::{self, CoreHandle};
use crate::server::security::Authenticated;
use crate::server::streams::StreamSlots;

/// The body limit of the test endpoint.
const LIMIT: usize = 4096;

/// The endpoint over a running core (heartbeats every 100 ms); the token stops the core.
struct Api {
    router: Router,
    cancel: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn api() -> Api {
    let (core, inbox) = CoreHandle::new();
    let cancel = CancellationToken::new();
    let config = MasterConfig {
        framework_heartbeat_interval_ms: 100,
        ..MasterConfig::default()
    };
    tokio::spawn(core_task::run(
        Master::new(config, 7),
        inbox,
        core_task::Clock {
            tick_interval: Duration::from_millis(10),
            start: tokio::time::Instant::now(),
            start_ms: crate::server::unix_ms(),
            persist: None,
            registry: None,
            lease: None,
        },
        cancel.clone(),
    ));
    let shared = Shared {
        core,
        tracker: TaskTracker::new(),
        shutdown: cancel.clone(),
        authorizer: Arc::default(),
        streams: StreamSlots::new(8),
    };
    Api {
        router: super::routes(shared, "127.0.0.1:5050", LIMIT),
        cancel,
    }
}

/// A JSON POST with extra headers, made as `principal` (None: unauthenticated).
fn post(body: impl Into<Body>, headers: &[(&str, &str)], principal: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(PATH);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut request = builder.body(body.into()).expect("request");
    request
        .extensions_mut()
        .insert(Authenticated(principal.map(str::to_string)));
    request
}

fn json_post(value: serde_json::Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    post(value.to_string(), &all, None)
}

/// Status and text body of a (non-streaming) answer.
async fn answer(api: &Api, request: Request<Body>) -> (StatusCode, String) {
    let response = api
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn subscribe_call(name: &str) -> serde_json::Value {
    json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": name}}})
}

/// An open subscription: its stream id, framework id and event records.
struct Subscription {
    stream_id: String,
    framework_id: String,
    body: BodyDataStream,
    decoder: Decoder,
    pending: Vec<Vec<u8>>,
}

impl Subscription {
    /// The next record (waits at most 5 s).
    async fn next(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.pending.is_empty() {
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("a record within 5 s")
                .expect("stream open")
                .expect("chunk");
            self.pending = self.decoder.feed(&chunk).expect("RecordIO");
        }
        self.pending.remove(0)
    }

    /// The next JSON event whose type is `kind` (others are skipped).
    async fn next_of(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let event: serde_json::Value =
                serde_json::from_slice(&self.next().await).expect("a JSON event");
            if event["type"] == kind {
                return event;
            }
        }
    }
}

async fn subscribe(api: &Api, principal: Option<&str>) -> Subscription {
    let request = post(
        subscribe_call("test").to_string(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        principal,
    );
    let response = api.router.clone().oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(headers.get(header::CONTENT_LENGTH).is_none());
    let stream_id = headers[STREAM_ID].to_str().expect("ascii").to_string();
    let mut sub = Subscription {
        stream_id,
        framework_id: String::new(),
        body: response.into_body().into_data_stream(),
        decoder: Decoder::default(),
        pending: Vec::new(),
    };
    let first = sub.next_of("SUBSCRIBED").await;
    assert_eq!(first["subscribed"]["heartbeat_interval_seconds"], 0.1);
    sub.framework_id = first["subscribed"]["framework_id"]["value"]
        .as_str()
        .expect("framework id")
        .to_string();
    sub
}

fn call_of(sub: &Subscription, kind: &str) -> serde_json::Value {
    json!({"type": kind, "framework_id": {"value": sub.framework_id}})
}

#[tokio::test]
async fn wrong_method_content_type_and_body_are_refused_with_mesos_codes() {
    let api = api();
    let get = Request::get(PATH).body(Body::empty()).expect("request");
    let response = api.router.clone().oneshot(get).await.expect("answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");

    let table: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post("{}", &[], None),
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ),
        (
            post("{}", &[("content-type", "text/plain")], None),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
        ),
        (
            post("{not json", &[("content-type", "application/json")], None),
            StatusCode::BAD_REQUEST,
            "Failed to convert JSON into Call protobuf",
        ),
        (
            json_post(json!({"type": "FLY"}), &[]),
            StatusCode::BAD_REQUEST,
            "FLY",
        ),
        (
            post(
                vec![0xff_u8, 0xff, 0xff],
                &[("content-type", "application/x-protobuf")],
                None,
            ),
            StatusCode::BAD_REQUEST,
            "Failed to parse body into Call protobuf",
        ),
        (
            post(
                vec![b' '; LIMIT + 1],
                &[("content-type", "application/json")],
                None,
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit of 4096 bytes (--max-request-bytes)",
        ),
        (
            json_post(subscribe_call("x"), &[("accept", "text/html")]),
            StatusCode::NOT_ACCEPTABLE,
            "'Accept'",
        ),
        (
            json_post(subscribe_call("x"), &[(STREAM_ID, "abc")]),
            StatusCode::BAD_REQUEST,
            "should not include the 'Mesos-Stream-Id' header",
        ),
        (
            json_post(json!({"type": "SUBSCRIBE"}), &[]),
            StatusCode::BAD_REQUEST,
            "Expecting 'subscribe' to be present",
        ),
        (
            json_post(
                json!({"type": "DECLINE", "decline": {}}),
                &[(STREAM_ID, "s")],
            ),
            StatusCode::BAD_REQUEST,
            "Expecting 'framework_id' to be present",
        ),
        (
            json_post(
                json!({"type": "REVIVE", "framework_id": {"value": "fw"}}),
                &[],
            ),
            StatusCode::BAD_REQUEST,
            "should include the 'Mesos-Stream-Id' header",
        ),
        // A call before SUBSCRIBE.
        (
            json_post(
                json!({"type": "REVIVE", "framework_id": {"value": "fw"}}),
                &[(STREAM_ID, "s")],
            ),
            StatusCode::FORBIDDEN,
            "framework `fw` is not subscribed",
        ),
    ];
    for (request, want_status, want_text) in table {
        let (status, text) = answer(&api, request).await;
        assert_eq!(status, want_status, "{text}");
        assert!(text.contains(want_text), "{want_text:?} not in {text:?}");
    }
}

#[tokio::test]
async fn subscribe_streams_recordio_events_with_heartbeats_and_checks_the_stream_id() {
    let api = api();
    let mut sub = subscribe(&api, None).await;
    sub.next_of("HEARTBEAT").await;

    // A stale stream id is refused; the current one is accepted.
    let (status, text) = answer(
        &api,
        json_post(call_of(&sub, "REVIVE"), &[(STREAM_ID, "stale")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("stale"), "{text}");
    let id = sub.stream_id.clone();
    let (status, text) = answer(
        &api,
        json_post(call_of(&sub, "SUPPRESS"), &[(STREAM_ID, &id)]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    // RECONCILE_OPERATIONS is answered on the stream.
    let mut call = call_of(&sub, "RECONCILE_OPERATIONS");
    call["reconcile_operations"] = json!({"operations": [{"operation_id": {"value": "op1"}}]});
    let (status, text) = answer(&api, json_post(call, &[(STREAM_ID, &id)])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let update = sub.next_of("UPDATE_OPERATION_STATUS").await;
    assert_eq!(
        update["update_operation_status"]["status"]["state"],
        "OPERATION_UNKNOWN"
    );

    // An unsupported feature is named, with 501.
    let mut call = call_of(&sub, "UPDATE_FRAMEWORK");
    call["update_framework"] = json!({"framework_info": {"user": "u", "name": "n"},
        "offer_constraints": {}});
    let (status, text) = answer(&api, json_post(call, &[(STREAM_ID, &id)])).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{text}");
    assert!(text.contains("offer_constraints"), "{text}");

    // TEARDOWN ends the stream.
    let (status, _) = answer(
        &api,
        json_post(call_of(&sub, "TEARDOWN"), &[(STREAM_ID, &id)]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Some(chunk) = tokio::time::timeout_at(deadline, sub.body.next())
        .await
        .expect("the stream ends within 5 s")
    {
        chunk.expect("chunk");
    }

    // A torn down framework id cannot subscribe again (409); nor make calls (403).
    let again = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info":
        {"user": "u", "name": "test", "id": {"value": sub.framework_id}}}});
    let (status, text) = answer(&api, json_post(again, &[])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("was removed"), "{text}");
    let (status, text) = answer(
        &api,
        json_post(call_of(&sub, "REVIVE"), &[(STREAM_ID, &id)]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
}

#[tokio::test]
async fn a_framework_id_that_is_not_the_callers_is_forbidden() {
    let api = api();
    let sub = subscribe(&api, Some("alice")).await;
    let request = post(
        call_of(&sub, "REVIVE").to_string(),
        &[
            ("content-type", "application/json"),
            (STREAM_ID, &sub.stream_id),
        ],
        Some("bob"),
    );
    let (status, text) = answer(&api, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("bob"), "{text}");
}

#[tokio::test]
async fn protobuf_calls_and_events() {
    let api = api();
    let call = ms::Call {
        r#type: Some(ms::call::Type::Subscribe as i32),
        subscribe: Some(ms::call::Subscribe {
            framework_info: proffer_proto::mesos::v1::FrameworkInfo {
                user: "u".into(),
                name: "pb".into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = post(
        call.encode_to_vec(),
        &[
            ("content-type", "application/x-protobuf"),
            ("accept", "application/x-protobuf"),
        ],
        None,
    );
    let response = api.router.clone().oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/x-protobuf"
    );
    let mut sub = Subscription {
        stream_id: String::new(),
        framework_id: String::new(),
        body: response.into_body().into_data_stream(),
        decoder: Decoder::default(),
        pending: Vec::new(),
    };
    let first = ms::Event::decode(sub.next().await.as_slice()).expect("protobuf event");
    assert_eq!(first.r#type(), ms::event::Type::Subscribed);
    let subscribed = first.subscribed.expect("subscribed");
    assert!(!subscribed.framework_id.value.is_empty());
    assert_eq!(
        subscribed.master_info.map(|m| m.port),
        Some(5050),
        "master_info names the advertised port"
    );
}
