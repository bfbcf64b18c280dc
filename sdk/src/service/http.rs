//! The framework's HTTP API (axum) and a tiny client for the CLI.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/plans` | plan names and statuses |
//! | GET | `/v1/plans/NAME` | one plan (phases, steps, statuses, messages) |
//! | POST | `/v1/plans/NAME/ACTION?phase=P&step=S` | pause, resume, start, restart, force-complete |
//! | GET | `/v1/why` | every incomplete step and what it waits for |
//! | GET | `/v1/pod` | pod instances and their tasks |
//! | POST | `/v1/pod/NAME/restart`, `/v1/pod/NAME/replace` | recovery by hand |
//! | GET | `/v1/debug/offers` | recent offers and why each was used or declined |
//! | POST | `/v1/update?dry-run=true&force=true` | a new YAML spec (scale, configuration change) |
//! | POST | `/v1/uninstall` | start the uninstall plan |

//!
//! `/v1/update` first previews the update ([`ServiceCore::preview_update`]): what changes, in
//! rollout order, and whether every new or changed pod can be placed on the cluster's current
//! agents (asked of the master). With `dry-run=true` it answers the preview and changes
//! nothing. An update that cannot be placed is refused (409, `{"refused": true, "reason",
//! "preview"}`) before anything is killed, unless `force=true`; an accepted one answers
//! `{"updated": true, "forced": …, "preview": …}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::core::{CoreError, ServiceCore};
use super::plan::Plan;
use super::spec::ServiceSpec;

/// What the HTTP handlers share with the scheduler loop.
#[derive(Debug)]
pub struct Shared {
    /// The scheduler state.
    pub core: Mutex<ServiceCore>,
    /// Woken when a handler queued actions for the loop.
    pub notify: Notify,
    /// Option overrides used to parse specs posted to `/v1/update`.
    pub options: BTreeMap<String, String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ServiceCore> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A plan with its rolled-up status (the JSON shape of `/v1/plans/NAME`).
#[derive(Debug, Serialize)]
pub struct PlanView<'a> {
    /// The rolled-up status.
    pub status: &'static str,
    /// The plan.
    #[serde(flatten)]
    pub plan: &'a Plan,
}

/// The router's state: the shared scheduler state and the masters asked for the agents.
#[derive(Debug, Clone)]
struct Api {
    shared: Arc<Shared>,
    master: Option<String>,
}

impl FromRef<Api> for Arc<Shared> {
    fn from_ref(api: &Api) -> Arc<Shared> {
        api.shared.clone()
    }
}

/// How long `/v1/update` waits for the master's list of agents.
const AGENTS_TIMEOUT: Duration = Duration::from_secs(10);

/// The router over `shared`; updates are not checked against the cluster (no master known).
pub fn router(shared: Arc<Shared>) -> Router {
    router_with_master(shared, None)
}

/// The router over `shared`; `/v1/update` checks updates against the agents of `master`
/// (`HOST:PORT[,HOST:PORT…]`).
pub fn router_with_master(shared: Arc<Shared>, master: Option<String>) -> Router {
    Router::new()
        .route("/v1/plans", get(plans))
        .route("/v1/plans/{name}", get(plan))
        .route("/v1/plans/{name}/{action}", post(plan_action))
        .route("/v1/why", get(why))
        .route("/v1/pod", get(pods))
        .route("/v1/pod/{name}/{action}", post(pod_action))
        .route("/v1/debug/offers", get(offers))
        .route("/v1/update", post(update))
        .route("/v1/uninstall", post(uninstall))
        .with_state(Api { shared, master })
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string_pretty(v) {
        Ok(s) => ([("content-type", "application/json")], s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn error(e: CoreError) -> Response {
    let code = match e {
        CoreError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CoreError::Spec(_) | CoreError::Request(_) => StatusCode::BAD_REQUEST,
    };
    (code, format!("{e}\n")).into_response()
}

async fn plans(State(s): State<Arc<Shared>>) -> Response {
    let core = s.lock();
    let list: Vec<serde_json::Value> = core
        .plans()
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "status": p.status().name()}))
        .collect();
    json(&list)
}

async fn plan(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let core = s.lock();
    match core.plan(&name) {
        Some(p) => json(&PlanView {
            status: p.status().name(),
            plan: p,
        }),
        None => (StatusCode::NOT_FOUND, format!("no plan named `{name}`\n")).into_response(),
    }
}

async fn plan_action(
    State(s): State<Arc<Shared>>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let r = s.lock().plan_action(
        now_ms(),
        &name,
        &action,
        q.get("phase").map(String::as_str),
        q.get("step").map(String::as_str),
    );
    s.notify.notify_one();
    match r {
        Ok(()) => json(&serde_json::json!({"plan": name, "action": action})),
        Err(e) => error(e),
    }
}

async fn why(State(s): State<Arc<Shared>>) -> Response {
    json(&s.lock().why())
}

async fn pods(State(s): State<Arc<Shared>>) -> Response {
    let core = s.lock();
    json(&core.pods())
}

async fn pod_action(
    State(s): State<Arc<Shared>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let replace = match action.as_str() {
        "replace" => true,
        "restart" => false,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown pod action `{other}` (restart, replace)\n"),
            )
                .into_response();
        }
    };
    let r = s.lock().pod_action(now_ms(), &name, replace);
    s.notify.notify_one();
    match r {
        Ok(()) => json(&serde_json::json!({"pod": name, "action": action})),
        Err(e) => error(e),
    }
}

async fn offers(State(s): State<Arc<Shared>>) -> Response {
    let core = s.lock();
    let list: Vec<_> = core.offer_log().cloned().collect();
    json(&list)
}

async fn update(
    State(api): State<Api>,
    Query(q): Query<BTreeMap<String, String>>,
    body: String,
) -> Response {
    let flag = |k: &str| {
        q.get(k)
            .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
    };
    let (dry_run, force) = (flag("dry-run"), flag("force"));
    let s = &api.shared;
    let spec = match ServiceSpec::parse(&body, &s.options) {
        Ok(spec) => spec,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid spec: {e}\n")).into_response(),
    };
    let agents = cluster_agents(api.master.as_deref(), &spec.role).await;
    let mut core = s.lock();
    let preview = match core.preview_update(&spec, agents.as_deref().map_err(Clone::clone)) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if dry_run {
        return json(&preview);
    }
    let refusal = preview.refusal();
    if let (Some(reason), false) = (&refusal, force) {
        let body = serde_json::json!({"refused": true, "reason": reason, "preview": preview});
        let mut r = json(&body);
        *r.status_mut() = StatusCode::CONFLICT;
        return r;
    }
    let r = core.update_spec(now_ms(), spec);
    drop(core);
    s.notify.notify_one();
    match r {
        Ok(()) => json(&serde_json::json!({
            "updated": true,
            "forced": refusal.is_some(),
            "preview": preview,
        })),
        Err(e) => error(e),
    }
}

/// The agents of `master` as `role` sees them, or why they are not known.
async fn cluster_agents(
    master: Option<&str>,
    role: &str,
) -> Result<Vec<crate::capacity::AgentCapacity>, String> {
    let Some(master) = master else {
        return Err("the scheduler knows no master to ask for the agents".to_string());
    };
    match tokio::time::timeout(AGENTS_TIMEOUT, crate::capacity::agents(master, role)).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(format!("cannot ask the master for its agents: {e}")),
        Err(_) => Err(format!(
            "the master did not list its agents within {}s",
            AGENTS_TIMEOUT.as_secs()
        )),
    }
}

async fn uninstall(State(s): State<Arc<Shared>>) -> Response {
    let r = s.lock().uninstall(now_ms());
    s.notify.notify_one();
    match r {
        Ok(()) => json(&serde_json::json!({"uninstalling": true})),
        Err(e) => error(e),
    }
}

/// A client-side failure of [`request`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or talking failed.
    #[error("cannot reach the scheduler at {addr}: {reason}")]
    Io {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The scheduler answered with an error status.
    #[error("scheduler answered {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The body.
        body: String,
    },
}

/// Sends one HTTP/1.1 request (`Connection: close`) over plain TCP (a framework's own API,
/// on loopback) and returns the body of a 2xx answer.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, ClientError> {
    send(addr, method, path, body, None, false).await
}

/// [`request`] to a Proffer server (an agent's sandbox files): over TLS when the process uses
/// it (`proffer_net::tls::process_tls`), presenting `credential` in the `authorization`
/// header (see `proffer_proto::auth`).
pub async fn request_as(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    credential: Option<&proffer_proto::auth::Credential>,
) -> Result<String, ClientError> {
    send(addr, method, path, body, credential, true).await
}

async fn send(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    credential: Option<&proffer_proto::auth::Credential>,
    tls: bool,
) -> Result<String, ClientError> {
    let auth = credential.map_or(String::new(), |c| {
        format!("Authorization: {}\r\n", c.authorization())
    });
    let io = |e: std::io::Error| ClientError::Io {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let mut stream: Box<dyn proffer_net::tls::Stream> = if tls {
        proffer_net::tls::connect(addr).await.map_err(io)?
    } else {
        Box::new(tokio::net::TcpStream::connect(addr).await.map_err(io)?)
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.map_err(io)?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, rest) = match split {
        Some(i) => (&buf[..i], &buf[i + 4..]),
        None => (&buf[..], &[][..]),
    };
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    let body = String::from_utf8_lossy(&body).to_string();
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(ClientError::Status { status, body })
    }
}

/// Decodes a chunked body.
fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]).trim().to_string();
        let Ok(n) = usize::from_str_radix(&size, 16) else {
            break;
        };
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
