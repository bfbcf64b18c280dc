//! The HTTP/JSON routes: `/health`, `/state`, `/state/tasks`, `/metrics`, and the operator routes of
//! `http_roles` (`/roles`, `/quota`, `/weights`, `/why`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proffer_proto::v1;
use serde::Serialize;

use super::core_task::CoreHandle;

/// State of the HTTP handlers.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub(crate) core: CoreHandle,
    master_id: Arc<str>,
}

/// The HTTP/JSON routes.
pub(crate) fn routes(core: CoreHandle, master_id: String) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/state", get(state))
        .route("/state/tasks", get(tasks))
        .route("/metrics", get(super::metrics::metrics))
        .merge(super::http_roles::routes())
        .with_state(HttpState {
            core,
            master_id: master_id.into(),
        })
}

/// Unknown paths: a gRPC `UNIMPLEMENTED` status for gRPC requests, 404 for anything else.
pub(crate) async fn fallback(request: axum::extract::Request) -> Response {
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let status =
            tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
        status.into_http::<axum::body::Body>()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

/// `GET /health` body.
#[derive(Debug, Serialize)]
struct Health<'a> {
    status: &'a str,
    master_id: &'a str,
}

async fn health(State(st): State<HttpState>) -> Response {
    Json(Health {
        status: "ok",
        master_id: &st.master_id,
    })
    .into_response()
}

async fn state(State(st): State<HttpState>) -> Response {
    match st.core.snapshot().await {
        Ok(snapshot) => Json(snapshot).into_response(),
        Err(gone) => (StatusCode::SERVICE_UNAVAILABLE, gone.to_string()).into_response(),
    }
}

/// `GET /state/tasks` body.
#[derive(Debug, Serialize)]
struct Tasks {
    tasks: Vec<v1::TaskSummary>,
    completed_tasks: Vec<v1::TaskSummary>,
}

async fn tasks(State(st): State<HttpState>) -> Response {
    match st.core.snapshot().await {
        Ok(s) => Json(Tasks {
            tasks: s.tasks,
            completed_tasks: s.completed_tasks,
        })
        .into_response(),
        Err(gone) => (StatusCode::SERVICE_UNAVAILABLE, gone.to_string()).into_response(),
    }
}
