//! `POST /api/v1`: Mesos's v1 operator API in JSON and protobuf (`mesos.v1.master.Call` in,
//! `Response` out; `SUBSCRIBE` answers a RecordIO stream of `Event`s, see `stream`).
//!
//! Reads (`GET_*`) are served from the published snapshot, filtered by the caller's view ACLs;
//! changes go through the same functions as the HTTP/JSON and gRPC operator routes
//! (`server::operator`), which authorize the caller. Errors are Mesos's: a status and a text
//! body naming what was wrong (400 bad call, 403 refused, 404 unknown agent/framework, 406/415
//! media types, 409 conflict, 413 too large, 501 a call Proffer does not implement, 503).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use proffer_proto::mesos::v1::master::response::{self as r, Type as RespType};
use proffer_proto::mesos::v1::master::{self as mm, call::Type as CallType};
use proffer_proto::v1;

use super::legacy::ident;
use super::{from_mesos, stream, to_mesos};
use crate::core::{ErrorKind, OperatorOp};
use crate::server::http::HttpState;
use crate::server::mesos_api::media::{self, Format};
use crate::server::operator::{self, OperatorError};
use crate::server::security::Caller;

/// The operator API route (merged into the HTTP router).
pub(crate) fn routes() -> Router<HttpState> {
    Router::new().route("/api/v1", post(call))
}

/// What a call fails with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The call is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// A call Proffer does not implement (501).
    #[error("{0}")]
    NotImplemented(String),
    /// The operator request failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
}

impl From<crate::core::MasterError> for ApiError {
    fn from(e: crate::core::MasterError) -> Self {
        ApiError::Operator(OperatorError::Master(e))
    }
}

impl From<crate::server::core_task::CoreGone> for ApiError {
    fn from(e: crate::server::core_task::CoreGone) -> Self {
        ApiError::Operator(OperatorError::Gone(e))
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Operator(OperatorError::Gone(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Operator(OperatorError::Master(e)) => match e.kind() {
                ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                ErrorKind::FailedPrecondition => StatusCode::CONFLICT,
                ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            },
        }
    }
}

/// A text error reply, as Mesos answers.
pub(crate) fn text(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decodes a call in `format`.
pub(crate) fn decode(format: Format, body: &[u8]) -> Result<mm::Call, String> {
    match format {
        Format::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
        Format::Protobuf => prost::Message::decode(body).map_err(|e| e.to_string()),
    }
}

/// Encodes `message` in `format` as a `200 OK`.
pub(crate) fn encoded<T: prost::Message + serde::Serialize>(
    format: Format,
    message: &T,
) -> Response {
    let body = match format {
        Format::Json => match serde_json::to_vec(message) {
            Ok(b) => b,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Format::Protobuf => message.encode_to_vec(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.media_type())],
        body,
    )
        .into_response()
}

async fn call(
    State(st): State<HttpState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = match media::content_type(header_str(&headers, header::CONTENT_TYPE)) {
        Ok(f) => f,
        Err(e) => return text(e.status(), e),
    };
    let accept = match media::accept(header_str(&headers, header::ACCEPT)) {
        Ok(f) => f,
        Err(e) => return text(e.status(), e),
    };
    let call = match decode(format, &body) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into Call: {e}"),
            );
        }
    };
    let kind = match call.r#type.map(CallType::try_from) {
        None => return text(StatusCode::BAD_REQUEST, "Expecting 'type' to be present"),
        Some(Err(_)) | Some(Ok(CallType::Unknown)) => {
            return text(StatusCode::BAD_REQUEST, "Unknown call type");
        }
        Some(Ok(k)) => k,
    };
    tracing::debug!(
        call = kind.as_str_name(),
        principal = caller.principal().unwrap_or(""),
        "operator API call"
    );
    if kind == CallType::Subscribe {
        return stream::subscribe(st, caller, accept).await;
    }
    match answer(&st, &caller, kind, call).await {
        Ok(Reply::Response(resp)) => encoded(accept, &resp),
        Ok(Reply::Done(code)) => code.into_response(),
        Err(e) => text(e.status(), e),
    }
}

/// What a call answers.
enum Reply {
    /// A `Response` (200).
    Response(Box<mm::Response>),
    /// No body, with this status (200 or 202 as Mesos answers the call).
    Done(StatusCode),
}

fn response(t: RespType, fill: impl FnOnce(&mut mm::Response)) -> Reply {
    let mut resp = mm::Response {
        r#type: Some(t as i32),
        ..Default::default()
    };
    fill(&mut resp);
    Reply::Response(Box::new(resp))
}

fn missing(what: &str) -> ApiError {
    ApiError::BadRequest(format!("Expecting '{what}' to be present"))
}

/// The state the caller may see, and the published roles the caller may see.
async fn visible(
    st: &HttpState,
    caller: &Caller,
) -> Result<(v1::StateSnapshot, Vec<v1::RoleSummary>), ApiError> {
    let published = st.core.published().await?;
    let mut state = published.state.clone();
    let hidden = crate::core::filter_snapshot(caller.authorizer(), caller.principal(), &mut state);
    caller.audit_filtered("state", hidden);
    let mut roles = published.roles.clone();
    crate::core::filter_roles(caller.authorizer(), caller.principal(), &mut roles);
    Ok((state, roles))
}

async fn answer(
    st: &HttpState,
    caller: &Caller,
    kind: CallType,
    call: mm::Call,
) -> Result<Reply, ApiError> {
    use CallType as C;
    Ok(match kind {
        C::GetHealth => response(RespType::GetHealth, |x| {
            x.get_health = Some(r::GetHealth { healthy: true });
        }),
        C::GetVersion => response(RespType::GetVersion, |x| {
            x.get_version = Some(to_mesos::get_version());
        }),
        C::GetFlags => response(RespType::GetFlags, |x| {
            x.get_flags = Some(r::GetFlags::default());
        }),
        C::GetMetrics => {
            let p = st.core.published().await?;
            let builds = st.core.snapshots().builds();
            let metrics = super::mesos_json::metrics(&p.state, &p.stats, builds);
            response(RespType::GetMetrics, |x| {
                x.get_metrics = Some(r::GetMetrics {
                    metrics: from_mesos::metrics(&metrics),
                });
            })
        }
        C::GetState => {
            let (s, _) = visible(st, caller).await?;
            response(RespType::GetState, |x| {
                x.get_state = Some(to_mesos::get_state(&s));
            })
        }
        C::GetAgents => {
            let (s, _) = visible(st, caller).await?;
            response(RespType::GetAgents, |x| {
                x.get_agents = Some(to_mesos::get_agents(&s));
            })
        }
        C::GetFrameworks => {
            let (s, _) = visible(st, caller).await?;
            response(RespType::GetFrameworks, |x| {
                x.get_frameworks = Some(to_mesos::get_frameworks(&s));
            })
        }
        C::GetExecutors => response(RespType::GetExecutors, |x| {
            x.get_executors = Some(r::GetExecutors::default());
        }),
        C::GetTasks => {
            let (s, _) = visible(st, caller).await?;
            response(RespType::GetTasks, |x| {
                x.get_tasks = Some(to_mesos::get_tasks(&s));
            })
        }
        C::GetRoles | C::GetWeights | C::GetQuota => {
            let (_, roles) = visible(st, caller).await?;
            role_read(kind, &roles)
        }
        C::GetMaster => {
            let p = st.core.published().await?;
            let who = ident(st, &p.state.master_id);
            response(RespType::GetMaster, |x| {
                x.get_master = Some(to_mesos::get_master(&p.state, &who));
            })
        }
        C::GetMaintenanceSchedule | C::GetMaintenanceStatus => {
            return maintenance_reads(st, caller, kind).await;
        }
        _ => return change(st, caller, kind, call).await,
    })
}

/// `GET_ROLES`, `GET_WEIGHTS` or `GET_QUOTA` of the roles the caller may see.
fn role_read(kind: CallType, roles: &[v1::RoleSummary]) -> Reply {
    match kind {
        CallType::GetWeights => response(RespType::GetWeights, |x| {
            x.get_weights = Some(to_mesos::get_weights(roles));
        }),
        CallType::GetQuota => response(RespType::GetQuota, |x| {
            x.get_quota = Some(to_mesos::get_quota(roles));
        }),
        _ => response(RespType::GetRoles, |x| {
            x.get_roles = Some(to_mesos::get_roles(roles));
        }),
    }
}

async fn maintenance_reads(
    st: &HttpState,
    caller: &Caller,
    kind: CallType,
) -> Result<Reply, ApiError> {
    let windows = operator::maintenance(&st.core, caller).await?;
    let p = st.core.published().await?;
    let hosts = from_mesos::Hosts::of(&p.state);
    Ok(if kind == CallType::GetMaintenanceSchedule {
        response(RespType::GetMaintenanceSchedule, |x| {
            x.get_maintenance_schedule = Some(r::GetMaintenanceSchedule {
                schedule: from_mesos::schedule(&windows, &hosts, p.state.now_ms),
            });
        })
    } else {
        response(RespType::GetMaintenanceStatus, |x| {
            x.get_maintenance_status = Some(r::GetMaintenanceStatus {
                status: from_mesos::cluster_status(&windows, &hosts),
            });
        })
    })
}

/// The calls that change something.
async fn change(
    st: &HttpState,
    caller: &Caller,
    kind: CallType,
    call: mm::Call,
) -> Result<Reply, ApiError> {
    use CallType as C;
    let core = &st.core;
    match kind {
        C::UpdateQuota => {
            let update = call.update_quota.ok_or_else(|| missing("update_quota"))?;
            // All-or-nothing as in Mesos: every config is checked before any is applied.
            let mut plans = Vec::new();
            for config in &update.quota_configs {
                plans.push(from_mesos::quota(config)?);
            }
            for (role, guarantees, limits) in plans {
                if guarantees.is_empty() && limits.is_none() {
                    operator::remove_quota(core, caller, role).await?;
                } else {
                    operator::set_quota(core, caller, role, guarantees, limits).await?;
                }
            }
            Ok(Reply::Done(StatusCode::OK))
        }
        C::UpdateWeights => {
            let update = call
                .update_weights
                .ok_or_else(|| missing("update_weights"))?;
            for w in update.weight_infos {
                let role = w.role.ok_or_else(|| missing("weight_infos.role"))?;
                operator::set_weight(core, caller, role, w.weight).await?;
            }
            Ok(Reply::Done(StatusCode::OK))
        }
        C::Teardown => {
            let t = call.teardown.ok_or_else(|| missing("teardown"))?;
            operator::teardown(core, caller, t.framework_id.value).await?;
            Ok(Reply::Done(StatusCode::OK))
        }
        C::MarkAgentGone => {
            let g = call
                .mark_agent_gone
                .ok_or_else(|| missing("mark_agent_gone"))?;
            operator::mark_gone(core, caller, g.agent_id.value).await?;
            Ok(Reply::Done(StatusCode::OK))
        }
        C::DrainAgent => {
            let d = call.drain_agent.ok_or_else(|| missing("drain_agent"))?;
            operator::drain(core, caller, true, d.agent_id.value, "DRAIN_AGENT".into()).await?;
            Ok(Reply::Done(StatusCode::OK))
        }
        C::ReactivateAgent => {
            let a = call
                .reactivate_agent
                .ok_or_else(|| missing("reactivate_agent"))?;
            operator::drain(core, caller, false, a.agent_id.value, String::new()).await?;
            Ok(Reply::Done(StatusCode::OK))
        }
        _ => relabel_or_maintain(st, caller, kind, call).await,
    }
}

/// The operation, agent and resources of a RESERVE_RESOURCES, UNRESERVE_RESOURCES,
/// CREATE_VOLUMES or DESTROY_VOLUMES call.
fn operator_operation(
    kind: CallType,
    call: mm::Call,
) -> Result<(OperatorOp, String, proffer_proto::Resources), ApiError> {
    use CallType as C;
    let (op, agent, resources) = match kind {
        C::ReserveResources => {
            let r = call
                .reserve_resources
                .ok_or_else(|| missing("reserve_resources"))?;
            (OperatorOp::Reserve, r.agent_id, r.resources)
        }
        C::UnreserveResources => {
            let r = call
                .unreserve_resources
                .ok_or_else(|| missing("unreserve_resources"))?;
            (OperatorOp::Unreserve, r.agent_id, r.resources)
        }
        C::CreateVolumes => {
            let r = call
                .create_volumes
                .ok_or_else(|| missing("create_volumes"))?;
            (OperatorOp::CreateVolumes, r.agent_id, r.volumes)
        }
        _ => {
            let r = call
                .destroy_volumes
                .ok_or_else(|| missing("destroy_volumes"))?;
            (OperatorOp::DestroyVolumes, r.agent_id, r.volumes)
        }
    };
    Ok((op, agent.value, from_mesos::resources(&resources)?))
}

/// Reservations, volumes and maintenance (machines are agents' hostnames); other calls are 501.
async fn relabel_or_maintain(
    st: &HttpState,
    caller: &Caller,
    kind: CallType,
    call: mm::Call,
) -> Result<Reply, ApiError> {
    use CallType as C;
    let core = &st.core;
    match kind {
        C::ReserveResources | C::UnreserveResources | C::CreateVolumes | C::DestroyVolumes => {
            let (op, agent_id, resources) = operator_operation(kind, call)?;
            operator::relabel(core, caller, op, agent_id, resources).await?;
            Ok(Reply::Done(StatusCode::ACCEPTED))
        }
        C::UpdateMaintenanceSchedule => {
            let u = call
                .update_maintenance_schedule
                .ok_or_else(|| missing("update_maintenance_schedule"))?;
            let p = core.published().await?;
            let hosts = from_mesos::Hosts::of(&p.state);
            let plans = from_mesos::windows(&u.schedule, &hosts, crate::server::unix_ms())?;
            for (agent_id, starts_in, duration) in plans {
                operator::schedule(core, caller, agent_id, starts_in, duration).await?;
            }
            Ok(Reply::Done(StatusCode::ACCEPTED))
        }
        C::StartMaintenance | C::StopMaintenance => {
            let machines = if kind == C::StartMaintenance {
                call.start_maintenance.map(|s| s.machines)
            } else {
                call.stop_maintenance.map(|s| s.machines)
            }
            .ok_or_else(|| missing("machines"))?;
            let p = core.published().await?;
            let hosts = from_mesos::Hosts::of(&p.state);
            let agents = hosts.agents_of(&machines)?;
            let start = kind == C::StartMaintenance;
            for agent_id in agents {
                operator::drain(core, caller, start, agent_id, "maintenance".into()).await?;
            }
            Ok(Reply::Done(StatusCode::ACCEPTED))
        }
        other => Err(ApiError::NotImplemented(format!(
            "{} is not implemented by Proffer (its master has no such operation)",
            other.as_str_name()
        ))),
    }
}
