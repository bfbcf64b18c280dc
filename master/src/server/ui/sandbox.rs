//! The UI's sandbox proxy: `GET /ui/api/sandbox/{read,browse,download}` forwards to the task's
//! agent's file API (`/files/read`, `/files/browse`, `/files/download`, the last streamed), so
//! the page reads task output from its own origin (no CORS, one set of credentials).
//!
//! The task must be one the caller may see in `/state` (the view ACLs); its agent is the one
//! `/state` names, at the `hostname:port` it advertises (where `proffer agent --http` serves).
//! Only paths inside the task's sandbox are asked for (`..`, absolute paths and NUL are
//! refused here; the agent checks again). The caller's `authorization` header is forwarded
//! unchanged, so the agent's own authentication and `access_sandboxes` ACL decide as if the
//! caller had asked it directly; its answer (status, content type, body) is passed back.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use proffer_proto::v1;
use tracing::Instrument;

use super::super::http::{HttpState, visible_state};
use super::super::security::Caller;

/// Bound on one forwarded request (connect, ask, read the answer): above the agent's own
/// 10 s per filesystem step, so its 504 arrives rather than ours.
pub(crate) const PROXY_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest agent answer passed back (a `/files/read` is at most 1 MiB of data, JSON-escaped).
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Why a sandbox request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    /// Not `read` nor `browse`.
    #[error("unknown sandbox operation {0:?}: expected `read`, `browse` or `download`")]
    UnknownOp(String),
    /// A required query parameter is missing or empty.
    #[error("invalid query: missing `{0}`")]
    Missing(&'static str),
    /// A numeric parameter is not a non-negative integer.
    #[error("invalid query: `{param}` must be a non-negative integer, got {value:?}")]
    BadNumber {
        /// The parameter.
        param: &'static str,
        /// What was given.
        value: String,
    },
    /// The path would leave the sandbox.
    #[error("invalid path {path:?}: {reason}")]
    BadPath {
        /// What was given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No such task (or the caller may not see it).
    #[error("no task {task_id:?} of framework {framework_id:?} is known")]
    UnknownTask {
        /// The framework.
        framework_id: String,
        /// The task.
        task_id: String,
    },
    /// The master does not know where the task's sandbox is.
    #[error("the sandbox of task {task_id:?} is not known (its agent has not registered)")]
    NoSandbox {
        /// The task.
        task_id: String,
    },
    /// The task's agent is no longer in the master's state.
    #[error("agent {agent_id:?} of task {task_id:?} is no longer known to the master")]
    UnknownAgent {
        /// The agent.
        agent_id: String,
        /// The task.
        task_id: String,
    },
    /// The agent could not be asked.
    #[error(
        "agent {agent_id} at {addr} did not answer ({reason}); it serves sandboxes only when \
         started with --http on its advertised port"
    )]
    Unreachable {
        /// The agent.
        agent_id: String,
        /// Where it was asked.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The agent took too long.
    #[error("agent {agent_id} at {addr} did not answer within {PROXY_TIMEOUT:?}")]
    Timeout {
        /// The agent.
        agent_id: String,
        /// Where it was asked.
        addr: String,
    },
    /// The master is shutting down.
    #[error(transparent)]
    Gone(#[from] super::super::core_task::CoreGone),
}

impl SandboxError {
    /// The HTTP status of the error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            SandboxError::UnknownOp(_)
            | SandboxError::Missing(_)
            | SandboxError::BadNumber { .. }
            | SandboxError::BadPath { .. } => StatusCode::BAD_REQUEST,
            SandboxError::UnknownTask { .. }
            | SandboxError::NoSandbox { .. }
            | SandboxError::UnknownAgent { .. } => StatusCode::NOT_FOUND,
            SandboxError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            SandboxError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            SandboxError::Gone(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A JSON error answer `{"error": message}` (the form of the other operator routes).
pub(crate) fn error(code: StatusCode, message: String) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

fn refuse(e: &SandboxError) -> Response {
    error(e.status(), e.to_string())
}

/// A parsed sandbox request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxQuery {
    /// `read`, `browse` or `download`.
    pub(crate) op: &'static str,
    /// The task's framework.
    pub(crate) framework_id: String,
    /// The task.
    pub(crate) task_id: String,
    /// A path relative to the sandbox (empty: the sandbox itself).
    pub(crate) path: String,
    /// Where to read from.
    pub(crate) offset: Option<u64>,
    /// How much to read.
    pub(crate) length: Option<u64>,
}

/// Parses the operation and the query, checking the path stays inside the sandbox.
pub(crate) fn parse(op: &str, q: &BTreeMap<String, String>) -> Result<SandboxQuery, SandboxError> {
    let op = match op {
        "read" => "read",
        "browse" => "browse",
        "download" => "download",
        other => return Err(SandboxError::UnknownOp(other.to_string())),
    };
    let required = |name: &'static str| {
        q.get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(SandboxError::Missing(name))
    };
    let number = |param: &'static str| {
        q.get(param)
            .map(|v| {
                v.parse::<u64>().map_err(|_| SandboxError::BadNumber {
                    param,
                    value: v.clone(),
                })
            })
            .transpose()
    };
    let path = q.get("path").cloned().unwrap_or_default();
    check_relative(&path)?;
    Ok(SandboxQuery {
        op,
        framework_id: required("framework_id")?,
        task_id: required("task_id")?,
        path,
        offset: number("offset")?,
        length: number("length")?,
    })
}

/// Refuses a path that is absolute, climbs out (`..`) or holds NUL.
pub(crate) fn check_relative(path: &str) -> Result<(), SandboxError> {
    let bad = |reason| SandboxError::BadPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(bad("contains NUL"));
    }
    if path.starts_with('/') {
        return Err(bad("must be relative to the task's sandbox"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(bad("must not contain `..`"));
    }
    Ok(())
}

/// Where a request goes: the agent, its address and the file's path on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The agent's id.
    pub(crate) agent_id: String,
    /// `HOST:PORT` of its HTTP endpoint.
    pub(crate) addr: String,
    /// The path and query to ask it for.
    pub(crate) path_and_query: String,
    /// Pass the answer's body on as it arrives (a download) rather than read it first.
    pub(crate) stream: bool,
}

/// Finds the task of `q` in `state` (live or completed) and its agent; builds the request.
pub(crate) fn target(state: &v1::StateSnapshot, q: &SandboxQuery) -> Result<Target, SandboxError> {
    let task = state
        .tasks
        .iter()
        .chain(&state.completed_tasks)
        .find(|t| t.id == q.task_id && t.framework_id == q.framework_id)
        .ok_or_else(|| SandboxError::UnknownTask {
            framework_id: q.framework_id.clone(),
            task_id: q.task_id.clone(),
        })?;
    if task.sandbox.is_empty() {
        return Err(SandboxError::NoSandbox {
            task_id: task.id.clone(),
        });
    }
    let agent = state
        .agents
        .iter()
        .find(|a| a.id == task.agent_id)
        .ok_or_else(|| SandboxError::UnknownAgent {
            agent_id: task.agent_id.clone(),
            task_id: task.id.clone(),
        })?;
    let host = if agent.hostname.contains(':') {
        format!("[{}]", agent.hostname)
    } else {
        agent.hostname.clone()
    };
    let rel = q.path.trim_matches('/');
    let file = if rel.is_empty() {
        task.sandbox.clone()
    } else {
        format!("{}/{rel}", task.sandbox.trim_end_matches('/'))
    };
    let mut path_and_query = format!("/files/{}?path={}", q.op, encode(&file));
    for (name, value) in [("offset", q.offset), ("length", q.length)] {
        if let Some(v) = value {
            path_and_query.push_str(&format!("&{name}={v}"));
        }
    }
    Ok(Target {
        agent_id: agent.id.clone(),
        addr: format!("{host}:{}", agent.port),
        path_and_query,
        stream: q.op == "download",
    })
}

pub(crate) use proffer_net::url::query_value as encode;

/// `GET /ui/api/sandbox/{op}`.
pub(crate) async fn proxy(
    State(st): State<HttpState>,
    Path(op): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let query = match parse(&op, &q) {
        Ok(query) => query,
        Err(e) => return refuse(&e),
    };
    let span = tracing::info_span!("ui_sandbox", framework_id = %query.framework_id,
        task_id = %query.task_id, agent_id = tracing::field::Empty);
    async move {
        let state = match visible_state(&st.core, &caller).await {
            Ok(s) => s,
            Err(gone) => return refuse(&gone.into()),
        };
        let target = match target(&state, &query) {
            Ok(t) => t,
            Err(e) => return refuse(&e),
        };
        tracing::Span::current().record("agent_id", target.agent_id.as_str());
        let auth = headers.get(header::AUTHORIZATION).cloned();
        match tokio::time::timeout(PROXY_TIMEOUT, forward(&target, auth)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!("sandbox proxy: {e}");
                refuse(&e)
            }
            Err(_) => {
                let e = SandboxError::Timeout {
                    agent_id: target.agent_id.clone(),
                    addr: target.addr.clone(),
                };
                tracing::debug!("sandbox proxy: {e}");
                refuse(&e)
            }
        }
    }
    .instrument(span)
    .await
}

/// Asks the agent (HTTP/1.1, one connection; TLS when the process has client TLS, as the
/// CLI's sandbox reads) and passes its status, content type and body back.
pub(crate) async fn forward(
    target: &Target,
    auth: Option<HeaderValue>,
) -> Result<Response, SandboxError> {
    let unreachable = |reason: String| SandboxError::Unreachable {
        agent_id: target.agent_id.clone(),
        addr: target.addr.clone(),
        reason,
    };
    // Over TLS when the master's process uses it (a cluster with a CA: agents serve TLS).
    let stream = proffer_net::tls::connect(&target.addr)
        .await
        .map_err(|e| unreachable(format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(format!("handshake: {e}")))?;
    let connection = tokio::spawn(conn);
    let mut request = Request::get(&target.path_and_query)
        .header(header::HOST, &target.addr)
        .body(Body::empty())
        .map_err(|e| unreachable(format!("request: {e}")))?;
    if let Some(auth) = auth {
        request.headers_mut().insert(header::AUTHORIZATION, auth);
    }
    let answer = sender.send_request(request).await;
    let result = match answer {
        Ok(response) if target.stream && response.status().is_success() => {
            // Streamed: the connection task ends by itself once the body is through.
            return Ok(pass_on(response));
        }
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body: Bytes =
                axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
            let mut out = (status, body).into_response();
            if let Some(ct) = content_type {
                out.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            out.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(out)
        }
        Err(e) => Err(unreachable(format!("request: {e}"))),
    };
    connection.abort();
    result
}

/// A download as the agent sends it: its body streamed, with its type, length and name.
fn pass_on(response: axum::http::Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = response.into_parts();
    let mut out = Body::new(body).into_response();
    *out.status_mut() = parts.status;
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_DISPOSITION,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}
