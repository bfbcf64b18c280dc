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
use super::security::Caller;

/// State of the HTTP handlers.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub(crate) core: CoreHandle,
    master_id: Arc<str>,
    /// Whether (and as what) this master leads.
    pub(crate) leading: Leading,
    /// The registry's status (None: the master persists nothing).
    pub(crate) registry: Option<Arc<super::registry_writer::RegistryStatus>>,
    /// The ACLs.
    pub(crate) authorizer: Arc<proffer_master_core::authz::Authorizer>,
}

/// The HTTP/JSON routes.
pub(crate) fn routes(
    core: CoreHandle,
    master_id: String,
    leading: Leading,
    registry: Option<Arc<super::registry_writer::RegistryStatus>>,
    authorizer: Arc<proffer_master_core::authz::Authorizer>,
) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/state", get(state))
        .route("/state/tasks", get(tasks))
        .route("/metrics", get(super::metrics::metrics))
        .merge(super::http_roles::routes())
        .merge(super::mesos_operator::routes())
        .merge(super::ui::routes())
        .with_state(HttpState {
            core,
            master_id: master_id.into(),
            leading,
            registry,
            authorizer,
        })
}

/// Unknown paths: a gRPC `UNIMPLEMENTED` status for gRPC requests, 404 for anything else.
pub(crate) async fn fallback(request: axum::extract::Request) -> Response {
    if proffer_net::listen::is_grpc(&request) {
        let status =
            tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
        status.into_http::<axum::body::Body>()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

/// This master's leadership, as `/health` reports it.
#[derive(Debug, Clone)]
pub(crate) struct Leading {
    /// This master's address as clients reach it.
    pub(crate) advertise: Arc<str>,
    /// Fired when the server stops (also when it steps down).
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// The leader lease, under an election.
    pub(crate) lease: Option<Arc<crate::etcd::election::LeaseClock>>,
}

impl Leading {
    /// Still the leader: not stopping, and the lease (if any) still held.
    fn holds(&self) -> bool {
        !self.stop.is_cancelled() && self.lease.as_ref().is_none_or(|l| l.is_valid())
    }
}

/// `GET /health` body (a standby answers the same shape: `server::standby`).
#[derive(Debug, Serialize)]
pub(crate) struct Health<'a> {
    pub(crate) status: &'a str,
    /// `leader` or `standby`.
    pub(crate) role: &'a str,
    /// The leader's address (`HOST:PORT`), null when none is known.
    pub(crate) leader: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) master_id: Option<&'a str>,
    /// Why the master is not healthy (a failing registry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// `200 {"status":"ok"}`, or `503` while the registry cannot be written (the master then acts
/// on nothing: every change waits for the registry).
async fn health(State(st): State<HttpState>) -> Response {
    let error = st.registry.as_ref().and_then(|r| r.error());
    let code = if error.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Json(Health {
        status: if error.is_some() {
            "registry unavailable"
        } else {
            "ok"
        },
        // Stepping down (the lease ran out, the server is stopping): no longer the leader,
        // and who leads next is not known here yet.
        role: if st.leading.holds() {
            "leader"
        } else {
            "standby"
        },
        leader: st.leading.holds().then_some(&*st.leading.advertise),
        master_id: Some(&st.master_id),
        error: error.map(|e| format!("registry writes fail: {e}")),
    });
    (code, body).into_response()
}

/// The state snapshot as `caller` may see it (filtered by the view ACLs).
pub(crate) async fn visible_state(
    core: &CoreHandle,
    caller: &Caller,
) -> Result<v1::StateSnapshot, super::core_task::CoreGone> {
    let mut snapshot = core.snapshot().await?;
    let hidden =
        crate::core::filter_snapshot(caller.authorizer(), caller.principal(), &mut snapshot);
    caller.audit_filtered("state", hidden);
    Ok(snapshot)
}

async fn state(State(st): State<HttpState>, caller: Caller) -> Response {
    match visible_state(&st.core, &caller).await {
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

async fn tasks(State(st): State<HttpState>, caller: Caller) -> Response {
    match visible_state(&st.core, &caller).await {
        Ok(s) => Json(Tasks {
            tasks: s.tasks,
            completed_tasks: s.completed_tasks,
        })
        .into_response(),
        Err(gone) => (StatusCode::SERVICE_UNAVAILABLE, gone.to_string()).into_response(),
    }
}
