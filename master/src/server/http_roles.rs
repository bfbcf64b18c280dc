//! HTTP/JSON operator routes for roles, quota, weights and explanations:
//!
//! | route | body / query | reply |
//! |---|---|---|
//! | `GET /roles` | — | `{"roles":[{"role","weight","guarantees","limits","allocated","frameworks"}]}` |
//! | `POST /quota` | `{"role":"eng","guarantees":"cpus:4;mem:4096","limits":"cpus:8"}` | `{"ok":true}` |
//! | `DELETE /quota/ROLE` | — | `{"ok":true}` |
//! | `POST` or `PUT /weights` | `{"role":"eng","weight":2}` or a list of those (Mesos) | `{"ok":true}` |
//! | `GET /why?framework_id=ID` or `?role=ROLE` | — | `{"subject":…,"lines":[…]}`; 404 when no framework (nor role) has that name |
//! | `POST /reserve`, `POST /unreserve` | `{"agent_id":"…","resources":"cpus(web,dynamic):2"}` | `{"ok":true}` |
//! | `POST /teardown` | `{"framework_id":"…"}` (or Mesos's form `frameworkId=…`) | `{"ok":true}` |
//!
//! Resources are a Mesos text string or JSON (array or object); `guarantee` (Mesos < 1.9) is
//! accepted for `guarantees`. Errors are `{"error": "…"}` with 400 (bad input), 403 (the ACLs
//! refuse), 404, 409 or 503. Every route authorizes its caller (`super::security`).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use proffer_proto::Resources;
use serde::Serialize;

use super::http::HttpState;
use super::operator::{self, OperatorError, WhySubject};
use super::security::Caller;
use crate::core::{ErrorKind, MasterError, OperatorOp};

/// The operator routes (merged into the HTTP router).
pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/roles", get(roles))
        .route("/quota", post(set_quota))
        .route("/quota/{*role}", delete(remove_quota))
        .route("/weights", post(set_weights).put(set_weights))
        .route("/why", get(why))
        .route("/reserve", post(reserve))
        .route("/unreserve", post(unreserve))
        .route("/create-volumes", post(create_volumes))
        .route("/destroy-volumes", post(destroy_volumes))
        .route("/agents/{agent_id}/drain", post(drain_agent))
        .route("/agents/{agent_id}/gone", post(mark_agent_gone))
        .route("/maintenance", get(maintenance).post(schedule_maintenance))
        .route("/agents/{agent_id}/reactivate", post(reactivate_agent))
        .route("/teardown", post(teardown))
}

/// One role in `GET /roles`.
#[derive(Debug, Serialize)]
struct RoleJson {
    role: String,
    weight: f64,
    guarantees: String,
    limits: String,
    allocated: String,
    frameworks: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Ok_ {
    ok: bool,
}

#[derive(Debug, Serialize)]
struct ErrorJson {
    error: String,
}

fn http_error(code: StatusCode, message: String) -> Response {
    (code, Json(ErrorJson { error: message })).into_response()
}

fn bad_request(message: String) -> Response {
    http_error(StatusCode::BAD_REQUEST, message)
}

fn error_response(err: &OperatorError) -> Response {
    let code = match err {
        OperatorError::Gone(_) => StatusCode::SERVICE_UNAVAILABLE,
        OperatorError::Master(e) => match e.kind() {
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::FailedPrecondition => StatusCode::CONFLICT,
            ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        },
    };
    http_error(code, err.to_string())
}

fn done(result: Result<(), OperatorError>) -> Response {
    match result {
        Ok(()) => Json(Ok_ { ok: true }).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn roles(State(st): State<HttpState>, caller: Caller) -> Response {
    match operator::roles(&st.core, &caller).await {
        Ok(list) => {
            let roles: Vec<RoleJson> = list
                .into_iter()
                .map(|r| RoleJson {
                    role: r.role,
                    weight: r.weight,
                    guarantees: r.guarantees,
                    limits: r.limits,
                    allocated: r.allocated,
                    frameworks: r.frameworks,
                })
                .collect();
            Json(serde_json::json!({ "roles": roles })).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// Parses a JSON request body, saying what was wrong.
fn json_body(body: &Bytes) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// A role field of a JSON object.
fn role_field(obj: &serde_json::Value) -> Result<String, String> {
    match obj.get("role") {
        Some(serde_json::Value::String(r)) => {
            let max = proffer_proto::resources::MAX_ROLE_LEN;
            if r.len() > max {
                // Not echoed: it may be megabytes.
                return Err(format!(
                    "invalid role: {} bytes long, the limit is {max}",
                    r.len()
                ));
            }
            Ok(r.clone())
        }
        Some(other) => Err(format!("invalid role: expected a string, got {other}")),
        None => Err("invalid body: missing string field `role`".into()),
    }
}

/// A resources field: Mesos text or JSON; absent or null is `None`. Errors name the field and,
/// when `role` is given, the role (`guarantees of role `eng``).
fn resources_field(
    obj: &serde_json::Value,
    names: &[&str],
    role: Option<&str>,
) -> Result<Option<Resources>, String> {
    let Some((name, value)) = names
        .iter()
        .find_map(|n| obj.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
    else {
        return Ok(None);
    };
    let parsed = match value {
        serde_json::Value::String(text) => Resources::parse(text),
        other => Resources::parse_json(&other.to_string()),
    };
    parsed.map(Some).map_err(|e| {
        MasterError::Resources {
            field: match role {
                Some(role) => format!("{name} of role `{role}`"),
                None => name.to_string(),
            },
            source: e,
        }
        .to_string()
    })
}

async fn set_quota(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    let parsed = json_body(&body).and_then(|obj| {
        let role = role_field(&obj)?;
        let guarantees =
            resources_field(&obj, &["guarantees", "guarantee"], Some(&role))?.unwrap_or_default();
        let limits = resources_field(&obj, &["limits", "limit"], Some(&role))?;
        Ok((role, guarantees, limits))
    });
    match parsed {
        Ok((role, guarantees, limits)) => {
            done(operator::set_quota(&st.core, &caller, role, guarantees, limits).await)
        }
        Err(msg) => bad_request(msg),
    }
}

async fn remove_quota(
    State(st): State<HttpState>,
    Path(role): Path<String>,
    caller: Caller,
) -> Response {
    done(operator::remove_quota(&st.core, &caller, role).await)
}

async fn set_weights(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    let items = match json_body(&body) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(obj @ serde_json::Value::Object(_)) => vec![obj],
        Ok(other) => {
            return bad_request(format!(
                "invalid body: expected {{\"role\",\"weight\"}} or a list of those, got {other}"
            ));
        }
        Err(msg) => return bad_request(msg),
    };
    let max = proffer_master_core::core::limits::MAX_ROLES_PER_CALL;
    if items.len() > max {
        return bad_request(format!(
            "invalid body: {} roles in one call, the limit is {max}",
            items.len()
        ));
    }
    // Check every entry before changing anything.
    let mut weights = Vec::with_capacity(items.len());
    for item in &items {
        let role = match role_field(item) {
            Ok(r) => r,
            Err(msg) => return bad_request(msg),
        };
        let Some(weight) = item.get("weight").and_then(serde_json::Value::as_f64) else {
            return bad_request(format!(
                "invalid weight for role `{role}`: expected a number"
            ));
        };
        if !weight.is_finite() || weight <= 0.0 {
            return bad_request(format!(
                "invalid weight {weight} for role `{role}`: must be a positive finite number"
            ));
        }
        if let Err(reason) = proffer_proto::resources::validate_role(&role) {
            return bad_request(format!("invalid role `{role}`: {reason}"));
        }
        weights.push((role, weight));
    }
    for (role, weight) in weights {
        if let Err(e) = operator::set_weight(&st.core, &caller, role, weight).await {
            return error_response(&e);
        }
    }
    done(Ok(()))
}

async fn why(
    State(st): State<HttpState>,
    caller: Caller,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let subject = match (q.get("framework_id"), q.get("role")) {
        (Some(id), None) => WhySubject::Framework(id.clone()),
        (None, Some(role)) => WhySubject::Role(role.clone()),
        _ => {
            return bad_request(
                "invalid query: give exactly one of `framework_id` or `role`".into(),
            );
        }
    };
    match operator::why(&st.core, &caller, subject).await {
        Ok((subject, lines)) => {
            let name = match subject {
                WhySubject::Framework(id) => format!("framework {id}"),
                WhySubject::Role(role) => format!("role {role}"),
            };
            Json(serde_json::json!({ "subject": name, "lines": lines })).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `GET /maintenance`: the schedule, with each framework's answer to its inverse offer.
async fn maintenance(State(st): State<HttpState>, caller: Caller) -> Response {
    match operator::maintenance(&st.core, &caller).await {
        Ok(windows) => {
            let list: Vec<serde_json::Value> = windows
                .iter()
                .map(|w| {
                    let u = w.unavailability.unwrap_or_default();
                    serde_json::json!({
                        "agent_id": w.agent_id,
                        "starts_in_ms": u.starts_in_ms,
                        "duration_ms": u.duration_ms,
                        "started": w.started,
                        "frameworks": w.frameworks.iter().map(|f| serde_json::json!({
                            "framework_id": f.framework_id, "status": f.status,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            axum::Json(serde_json::json!({ "windows": list })).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /maintenance` `{"agent_id", "starts_in_secs", "duration_secs"}`.
async fn schedule_maintenance(
    State(st): State<HttpState>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let parsed = json_body(&body).and_then(|obj| {
        let agent_id = match obj.get("agent_id") {
            Some(serde_json::Value::String(id)) => id.clone(),
            _ => return Err("invalid body: missing string field `agent_id`".to_string()),
        };
        let num = |k: &str| {
            obj.get(k)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("invalid body: missing number field `{k}`"))
        };
        Ok((agent_id, num("starts_in_secs")?, num("duration_secs")?))
    });
    match parsed {
        Ok((agent_id, start, duration)) => {
            done(operator::schedule(&st.core, &caller, agent_id, start, duration).await)
        }
        Err(msg) => bad_request(msg),
    }
}

async fn drain_agent(
    State(st): State<HttpState>,
    axum::extract::Path(agent_id): axum::extract::Path<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let reason = if body.is_empty() {
        Ok("maintenance".to_string())
    } else {
        json_body(&body).map(|obj| match obj.get("reason") {
            Some(serde_json::Value::String(r)) => r.clone(),
            _ => "maintenance".to_string(),
        })
    };
    match reason {
        Ok(reason) => done(operator::drain(&st.core, &caller, true, agent_id, reason).await),
        Err(msg) => bad_request(msg),
    }
}

/// `POST /agents/ID/gone`: the agent is gone for good (Mesos MARK_AGENT_GONE).
async fn mark_agent_gone(
    State(st): State<HttpState>,
    axum::extract::Path(agent_id): axum::extract::Path<String>,
    caller: Caller,
) -> Response {
    done(operator::mark_gone(&st.core, &caller, agent_id).await)
}

async fn reactivate_agent(
    State(st): State<HttpState>,
    axum::extract::Path(agent_id): axum::extract::Path<String>,
    caller: Caller,
) -> Response {
    done(operator::drain(&st.core, &caller, false, agent_id, String::new()).await)
}

/// `POST /teardown`: `{"framework_id":"…"}`, or Mesos's form body `frameworkId=…`.
async fn teardown(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    let form = std::str::from_utf8(&body).ok().and_then(|text| {
        text.split('&')
            .find_map(|kv| kv.trim().strip_prefix("frameworkId="))
            .map(str::to_string)
    });
    let id = match form {
        Some(id) => Ok(id),
        None => json_body(&body).and_then(|obj| match obj.get("framework_id") {
            Some(serde_json::Value::String(id)) => Ok(id.clone()),
            _ => Err("invalid body: missing string field `framework_id`".to_string()),
        }),
    };
    match id {
        Ok(id) => done(operator::teardown(&st.core, &caller, id).await),
        Err(msg) => bad_request(msg),
    }
}

async fn reserve(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    relabel(st, caller, OperatorOp::Reserve, body).await
}

async fn unreserve(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    relabel(st, caller, OperatorOp::Unreserve, body).await
}

async fn create_volumes(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    relabel(st, caller, OperatorOp::CreateVolumes, body).await
}

async fn destroy_volumes(State(st): State<HttpState>, caller: Caller, body: Bytes) -> Response {
    relabel(st, caller, OperatorOp::DestroyVolumes, body).await
}

async fn relabel(st: HttpState, caller: Caller, op: OperatorOp, body: Bytes) -> Response {
    let parsed = json_body(&body).and_then(|obj| {
        let agent_id = match obj.get("agent_id") {
            Some(serde_json::Value::String(id)) => id.clone(),
            _ => return Err("invalid body: missing string field `agent_id`".to_string()),
        };
        let resources = resources_field(&obj, &["resources"], None)?
            .ok_or_else(|| "invalid body: missing field `resources`".to_string())?;
        Ok((agent_id, resources))
    });
    match parsed {
        Ok((agent_id, resources)) => {
            done(operator::relabel(&st.core, &caller, op, agent_id, resources).await)
        }
        Err(msg) => bad_request(msg),
    }
}
