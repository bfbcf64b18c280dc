//! The operator API's `SUBSCRIBE`: `200 OK` and a chunked RecordIO stream
//! (`<length>\n<record>`) of `mesos.v1.master.Event`s in the negotiated format: `SUBSCRIBED`
//! with the full state the caller may see, then `TASK_ADDED`, `TASK_UPDATED`, `AGENT_ADDED`,
//! `AGENT_REMOVED`, `FRAMEWORK_ADDED`, `FRAMEWORK_UPDATED`, `FRAMEWORK_REMOVED` as the
//! published snapshots change, and a `HEARTBEAT` every 15 s.
//!
//! Events come from [`Snapshots::subscribe_events`](super::Snapshots::subscribe_events) and are
//! filtered by the same view ACLs as `GET_STATE`. A subscriber that falls more than
//! `EVENT_QUEUE` changes behind has its stream ended (it re-subscribes and gets the state
//! again, as after any disconnection); the stream also ends when the master stops.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proffer_master_core::authz::Action;
use proffer_proto::mesos::v1::master::{self as mm, event::Type as EventType};
use proffer_proto::v1;
use tokio::sync::{broadcast, mpsc};

use super::api::text;
use super::events::OperatorEvent;
use super::to_mesos::{self, OfferedBy};
use crate::server::http::HttpState;
use crate::server::mesos_api::media::Format;
use crate::server::security::Caller;

/// How often a `HEARTBEAT` is sent (Mesos's default).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Records queued per stream before the writer waits for the client.
const QUEUE: usize = 64;

/// One record in RecordIO framing.
pub(crate) fn record(format: Format, event: &mm::Event) -> Bytes {
    let body = match format {
        Format::Protobuf => prost::Message::encode_to_vec(event),
        Format::Json => serde_json::to_vec(event).unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot write an operator event as JSON");
            Vec::new()
        }),
    };
    Bytes::from(crate::server::mesos_api::recordio::encode(&body))
}

fn event(t: EventType, fill: impl FnOnce(&mut mm::Event)) -> mm::Event {
    let mut e = mm::Event {
        r#type: Some(t as i32),
        ..Default::default()
    };
    fill(&mut e);
    e
}

/// Whether `caller` may see what `e` is about (the view ACLs of `GET_STATE`).
pub(crate) fn visible(caller: &Caller, e: &OperatorEvent) -> bool {
    let (action, object) = match e {
        OperatorEvent::TaskAdded(t) | OperatorEvent::TaskUpdated(t) => (Action::ViewTask, &t.user),
        OperatorEvent::AgentAdded(a) | OperatorEvent::AgentRemoved(a) => (Action::ViewAgent, &a.id),
        OperatorEvent::FrameworkAdded(f)
        | OperatorEvent::FrameworkUpdated(f)
        | OperatorEvent::FrameworkRemoved(f) => (Action::ViewFramework, &f.user),
    };
    caller.authorizer().allows_everything()
        || caller
            .authorizer()
            .is_allowed(caller.principal(), action, Some(object.as_str()))
}

/// A Proffer operator event as Mesos's (`state`: the snapshot it came from, for offers).
pub(crate) fn to_event(e: &OperatorEvent, state: &v1::StateSnapshot) -> mm::Event {
    match e {
        OperatorEvent::TaskAdded(t) => event(EventType::TaskAdded, |x| {
            x.task_added = Some(mm::event::TaskAdded {
                task: to_mesos::task(t),
            });
        }),
        OperatorEvent::TaskUpdated(t) => event(EventType::TaskUpdated, |x| {
            x.task_updated = Some(mm::event::TaskUpdated {
                framework_id: proffer_proto::mesos::v1::FrameworkId {
                    value: t.framework_id.clone(),
                },
                status: to_mesos::task_status(t),
                state: to_mesos::task_state(&t.state) as i32,
            });
        }),
        OperatorEvent::AgentAdded(a) => event(EventType::AgentAdded, |x| {
            x.agent_added = Some(mm::event::AgentAdded {
                agent: to_mesos::agent(a, &OfferedBy::of(state)),
            });
        }),
        OperatorEvent::AgentRemoved(a) => event(EventType::AgentRemoved, |x| {
            x.agent_removed = Some(mm::event::AgentRemoved {
                agent_id: proffer_proto::mesos::v1::AgentId {
                    value: a.id.clone(),
                },
            });
        }),
        OperatorEvent::FrameworkAdded(f) => event(EventType::FrameworkAdded, |x| {
            x.framework_added = Some(mm::event::FrameworkAdded {
                framework: to_mesos::framework(f, state, &OfferedBy::of(state)),
            });
        }),
        OperatorEvent::FrameworkUpdated(f) => event(EventType::FrameworkUpdated, |x| {
            x.framework_updated = Some(mm::event::FrameworkUpdated {
                framework: to_mesos::framework(f, state, &OfferedBy::of(state)),
            });
        }),
        OperatorEvent::FrameworkRemoved(f) => event(EventType::FrameworkRemoved, |x| {
            x.framework_removed = Some(mm::event::FrameworkRemoved {
                framework_info: to_mesos::framework_info(f),
            });
        }),
    }
}

/// Answers `SUBSCRIBE` (see the module doc).
pub(crate) async fn subscribe(st: HttpState, caller: Caller, format: Format) -> Response {
    // Subscribed before the state is read: no change falls between the two.
    let mut sub = st.core.snapshots().subscribe_events();
    let published = match st.core.published().await {
        Ok(p) => p,
        Err(gone) => return text(StatusCode::SERVICE_UNAVAILABLE, gone),
    };
    let mut state = published.state.clone();
    let hidden = crate::core::filter_snapshot(caller.authorizer(), caller.principal(), &mut state);
    caller.audit_filtered("operator event stream", hidden);
    let first = event(EventType::Subscribed, |x| {
        x.subscribed = Some(mm::event::Subscribed {
            get_state: Some(to_mesos::get_state(&state)),
            heartbeat_interval_seconds: Some(HEARTBEAT.as_secs_f64()),
        });
    });
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(QUEUE);
    let stop = st.leading.stop.clone();
    let seen = published.version;
    tokio::spawn(async move {
        if tx.send(Ok(record(format, &first))).await.is_err() {
            return;
        }
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            let records: Vec<Bytes> = tokio::select! {
                () = stop.cancelled() => break,
                () = tx.closed() => break,
                _ = heartbeat.tick() => vec![record(format, &event(EventType::Heartbeat, |_| {}))],
                change = sub.rx.recv() => match change {
                    Ok(change) if change.snapshot.version <= seen => continue,
                    Ok(change) => change
                        .events
                        .iter()
                        .filter(|e| visible(&caller, e))
                        .map(|e| record(format, &to_event(e, &change.snapshot.state)))
                        .collect(),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "operator event subscriber fell behind; ending its stream");
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            for r in records {
                if tx.send(Ok(r)).await.is_err() {
                    return;
                }
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.media_type())],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}
