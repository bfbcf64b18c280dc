//! Mesos's legacy JSON endpoints, served from the published snapshots:
//!
//! | route | reply |
//! |---|---|
//! | `GET /version` | `{"version":"1.11.0","build_date",…,"proffer_version"}` |
//! | `GET /master/state` | agents (`slaves`), frameworks with their tasks and offers, … |
//! | `GET /master/state-summary` | agents and frameworks with task counts by state |
//! | `GET /master/frameworks` | `{"frameworks":[…],"completed_frameworks":[],…}` |
//! | `GET /master/slaves` | `{"slaves":[…],"recovered_slaves":[]}` |
//! | `GET /master/tasks?limit=&offset=&order=&framework_id=&task_id=` | `{"tasks":[…]}` |
//! | `GET /master/roles` | `{"roles":[{"name","weight","resources","frameworks","quota"}]}` |
//! | `GET /master/redirect` | `307` to `//LEADER` (this master: it leads) |
//! | `GET /metrics/snapshot` | `{"master/…": number, …}` (Mesos's names for what Proffer has) |
//!
//! Mesos also answers these without the `/master` prefix on a master (`/state`, `/slaves`…);
//! Proffer's own `/state` keeps its own form, so only the prefixed names are Mesos's.
//! Views are filtered by the caller's ACLs; `/metrics/snapshot` needs `get_endpoints`.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::mesos_json::{self, MasterIdent};
use crate::server::http::HttpState;
use crate::server::security::Caller;

/// The legacy routes (merged into the HTTP router).
pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/version", get(version))
        .route("/master/state", get(state))
        .route("/master/state.json", get(state))
        .route("/master/state-summary", get(state_summary))
        .route("/master/frameworks", get(frameworks))
        .route("/master/slaves", get(slaves))
        .route("/master/tasks", get(tasks))
        .route("/master/tasks.json", get(tasks))
        .route("/master/roles", get(roles))
        .route("/master/roles.json", get(roles))
        .route("/master/redirect", get(redirect))
        .route("/metrics/snapshot", get(metrics_snapshot))
}

/// Who this master is, from the HTTP state.
pub(crate) fn ident(st: &HttpState, master_id: &str) -> MasterIdent {
    MasterIdent {
        id: master_id.to_string(),
        advertise: st.leading.advertise.to_string(),
    }
}

fn unavailable(what: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{what}\n")).into_response()
}

/// The state `caller` may see, or the reply that says why there is none.
async fn visible(
    st: &HttpState,
    caller: &Caller,
) -> Result<proffer_proto::v1::StateSnapshot, Response> {
    crate::server::http::visible_state(&st.core, caller)
        .await
        .map_err(unavailable)
}

async fn version() -> Response {
    Json(mesos_json::version()).into_response()
}

async fn state(State(st): State<HttpState>, caller: Caller) -> Response {
    match visible(&st, &caller).await {
        Ok(s) => Json(mesos_json::state(&s, &ident(&st, &s.master_id))).into_response(),
        Err(r) => r,
    }
}

async fn state_summary(State(st): State<HttpState>, caller: Caller) -> Response {
    match visible(&st, &caller).await {
        Ok(s) => Json(mesos_json::state_summary(&s, &ident(&st, &s.master_id))).into_response(),
        Err(r) => r,
    }
}

async fn frameworks(State(st): State<HttpState>, caller: Caller) -> Response {
    match visible(&st, &caller).await {
        Ok(s) => Json(mesos_json::frameworks(&s)).into_response(),
        Err(r) => r,
    }
}

async fn slaves(State(st): State<HttpState>, caller: Caller) -> Response {
    match visible(&st, &caller).await {
        Ok(s) => Json(mesos_json::slaves(&s)).into_response(),
        Err(r) => r,
    }
}

async fn tasks(
    State(st): State<HttpState>,
    caller: Caller,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let query = match mesos_json::TasksQuery::parse(&q) {
        Ok(q) => q,
        Err(msg) => return (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response(),
    };
    match visible(&st, &caller).await {
        Ok(s) => Json(mesos_json::tasks(&s, &query)).into_response(),
        Err(r) => r,
    }
}

async fn roles(State(st): State<HttpState>, caller: Caller) -> Response {
    match st.core.published().await {
        Ok(p) => {
            let mut roles = p.roles.clone();
            let before = roles.len();
            crate::core::filter_roles(caller.authorizer(), caller.principal(), &mut roles);
            caller.audit_filtered("roles", before - roles.len());
            Json(mesos_json::roles(&roles)).into_response()
        }
        Err(gone) => unavailable(gone),
    }
}

/// `307` to the leader: this master (a standby answers every path with its own redirect).
async fn redirect(State(st): State<HttpState>) -> Response {
    let location = format!("//{}", st.leading.advertise);
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

async fn metrics_snapshot(State(st): State<HttpState>, caller: Caller) -> Response {
    if let Err(e) = caller.authorize(
        proffer_master_core::authz::Action::GetEndpoint,
        Some("/metrics/snapshot"),
    ) {
        return (StatusCode::FORBIDDEN, format!("{e}\n")).into_response();
    }
    match st.core.published().await {
        Ok(p) => {
            let v: Value = mesos_json::metrics(&p.state, &p.stats, st.core.snapshots().builds());
            Json(v).into_response()
        }
        Err(gone) => unavailable(gone),
    }
}
