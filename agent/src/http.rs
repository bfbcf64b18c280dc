//! The agent's HTTP endpoint: `/health`, `/state` (JSON), `/metrics` (Prometheus text, with
//! per-task cpu time and memory from cgroups), sandbox browsing (`/files/browse`,
//! `/files/read`, `/files/download`). Draining goes through the master (`proffer drain`), never
//! through the agent's own port.
//!
//! File paths are either relative to `work_dir` and inside `sandboxes/` (e.g.
//! `sandboxes/<framework>/<task>/stdout`) or absolute paths inside `work_dir/sandboxes`;
//! [`crate::files`] opens them (no symlink followed at any component, only regular files and
//! directories, never blocking on a FIFO). Refusals: `..`, outside the sandboxes or through a
//! symlink → 403, missing → 404, a FIFO/socket/device (or a directory to read, a file to
//! browse) → 400. All filesystem work runs on the blocking pool with [`FILE_TIMEOUT`] per
//! step (→ 504), and downloads are streamed in 64 KiB chunks with `Content-Length` from the
//! opened handle.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::cgroups;
use crate::files::{self, FilesError};
use crate::http_auth::HttpSecurity;
use axum::Extension;
use proffer_proto::auth::Authenticated;

/// A task as `/state` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Framework id.
    pub framework_id: String,
    /// Task id.
    pub task_id: String,
    /// State name.
    pub state: String,
    /// Sandbox path relative to the work directory.
    pub sandbox: String,
    /// Readiness check passed.
    pub ready: bool,
    /// Last health state.
    pub healthy: Option<bool>,
    /// Executor pid, if it is a process.
    pub executor_pid: Option<u32>,
    /// The user it runs as (its `command.user`, else the agent's user): `access_sandboxes`.
    pub user: String,
    /// Run directory (not shown).
    #[serde(skip)]
    pub run_dir: PathBuf,
    /// Its cgroups, if isolated (not shown).
    #[serde(skip)]
    pub cgroup: Option<cgroups::CgroupSpec>,
}

/// What the agent publishes for the endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    /// The agent id (empty before registration).
    pub agent_id: String,
    /// Isolation summary.
    pub isolation: String,
    /// How executors run.
    pub executor: String,
    /// Draining.
    pub draining: bool,
    /// Registered with a master.
    pub registered: bool,
    /// Known tasks.
    pub tasks: Vec<TaskView>,
    /// Bytes in the checkpoint journal (`meta/journal`).
    pub journal_bytes: u64,
}

/// The view shared between the agent loop and the endpoint.
pub type SharedView = Arc<Mutex<View>>;

#[derive(Clone)]
struct Ctx {
    view: SharedView,
    work_dir: PathBuf,
    security: Arc<HttpSecurity>,
}

/// The endpoint's routes, behind authentication (`security`; see [`crate::http_auth`]).
pub fn router(view: SharedView, work_dir: PathBuf, security: Arc<HttpSecurity>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/metrics", get(metrics))
        .route("/files/browse", get(browse))
        .route("/files/read", get(read))
        .route("/files/download", get(download))
        .with_state(Ctx {
            view,
            work_dir,
            security: security.clone(),
        })
        .layer(axum::middleware::from_fn_with_state(
            security,
            crate::http_auth::authenticate,
        ))
}

/// `access_sandboxes` for `path`: its refusal as a 403, `None` if allowed.
fn sandbox_refusal(ctx: &Ctx, who: Option<&Authenticated>, path: &str) -> Option<Response> {
    crate::http_auth::authorize_sandbox(
        &ctx.security.authorizer,
        who,
        &snapshot(ctx),
        &ctx.work_dir,
        path,
    )
    .err()
    .map(|denied| (StatusCode::FORBIDDEN, format!("{denied}\n")).into_response())
}

fn snapshot(ctx: &Ctx) -> View {
    ctx.view.lock().map(|v| v.clone()).unwrap_or_default()
}

#[derive(Serialize)]
struct TaskState {
    #[serde(flatten)]
    task: TaskView,
    usage: Option<cgroups::Usage>,
    /// The image, its digest and the runtime of a task in a container.
    container: Option<crate::executor::container::ContainerRecord>,
}

fn usage_of(t: &TaskView) -> Option<cgroups::Usage> {
    t.cgroup.as_ref().map(cgroups::usage)
}

async fn state(State(ctx): State<Ctx>) -> Response {
    let v = snapshot(&ctx);
    let tasks: Vec<TaskState> = v
        .tasks
        .iter()
        .map(|t| TaskState {
            usage: usage_of(t),
            container: crate::executor::container::read_record(&t.run_dir),
            task: t.clone(),
        })
        .collect();
    let body = serde_json::json!({
        "agent_id": v.agent_id,
        "isolation": v.isolation,
        "executor": v.executor,
        "draining": v.draining,
        "registered": v.registered,
        "tasks": tasks,
    });
    axum::Json(body).into_response()
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(ctx): State<Ctx>) -> Response {
    let v = snapshot(&ctx);
    let mut out = String::new();
    out.push_str("# HELP proffer_agent_tasks Tasks known to the agent, by state.\n# TYPE proffer_agent_tasks gauge\n");
    let mut by_state = std::collections::BTreeMap::<&str, u64>::new();
    for t in &v.tasks {
        *by_state.entry(t.state.as_str()).or_default() += 1;
    }
    for (s, n) in by_state {
        out.push_str(&format!("proffer_agent_tasks{{state=\"{s}\"}} {n}\n"));
    }
    out.push_str(&format!("# HELP proffer_agent_draining 1 while draining.\n# TYPE proffer_agent_draining gauge\nproffer_agent_draining {}\n", u8::from(v.draining)));
    out.push_str(&format!("# HELP proffer_agent_journal_bytes Size of the checkpoint journal (compacted past 8 MiB).\n# TYPE proffer_agent_journal_bytes gauge\nproffer_agent_journal_bytes {}\n", v.journal_bytes));
    out.push_str("# HELP proffer_task_cpu_seconds_total CPU time of a task (cgroup).\n# TYPE proffer_task_cpu_seconds_total counter\n");
    let mut rss = String::from(
        "# HELP proffer_task_rss_bytes Resident memory of a task (cgroup).\n# TYPE proffer_task_rss_bytes gauge\n",
    );
    for t in &v.tasks {
        if let Some(u) = usage_of(t) {
            let l = format!(
                "framework_id=\"{}\",task_id=\"{}\"",
                label(&t.framework_id),
                label(&t.task_id)
            );
            out.push_str(&format!(
                "proffer_task_cpu_seconds_total{{{l}}} {:.6}\n",
                u.cpu_time_ns as f64 / 1e9
            ));
            rss.push_str(&format!("proffer_task_rss_bytes{{{l}}} {}\n", u.rss_bytes));
        }
    }
    out.push_str(&rss);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
    offset: Option<u64>,
    length: Option<u64>,
}

#[derive(Serialize)]
struct Entry {
    path: String,
    #[serde(flatten)]
    info: files::EntryInfo,
    is_dir: bool,
}

/// The HTTP status of a refused file request.
pub fn status_of(e: &FilesError) -> StatusCode {
    match e {
        FilesError::ParentDir { .. }
        | FilesError::Outside { .. }
        | FilesError::Symlink { .. }
        | FilesError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        FilesError::NotFound { .. } | FilesError::NoSandboxes { .. } => StatusCode::NOT_FOUND,
        FilesError::InvalidPath { .. }
        | FilesError::Unsupported { .. }
        | FilesError::IsDirectory { .. }
        | FilesError::NotDirectory { .. } => StatusCode::BAD_REQUEST,
        FilesError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn refuse(e: &FilesError) -> Response {
    (status_of(e), format!("{e}\n")).into_response()
}

/// Bound on each blocking step of a file request (opening, listing, reading one chunk).
pub const FILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs blocking filesystem work `f` on the blocking pool, so it cannot stall the runtime;
/// gives up after `limit` with 504 (the thread finishes on its own), 500 if `f` panicked.
async fn blocking<T, F>(what: &str, limit: Duration, f: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what}: internal error: {e}\n"),
        )
            .into_response()),
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            format!("{what}: the filesystem did not answer within {limit:?}\n"),
        )
            .into_response()),
    }
}

/// [`blocking`] with [`FILE_TIMEOUT`] for a [`files`] operation; its refusal as a response.
async fn file_op<T, F>(what: &str, f: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, FilesError> + Send + 'static,
{
    blocking(what, FILE_TIMEOUT, f)
        .await?
        .map_err(|e| refuse(&e))
}

async fn browse(
    State(ctx): State<Ctx>,
    who: Option<Extension<Authenticated>>,
    Query(q): Query<PathQuery>,
) -> Response {
    if let Some(r) = sandbox_refusal(&ctx, who.as_deref(), &q.path) {
        return r;
    }
    let (work_dir, path) = (ctx.work_dir.clone(), q.path.clone());
    let what = format!("browse {:?}", q.path);
    let listed = match file_op(&what, move || files::list_dir(&work_dir, &path)).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let base = q.path.trim_end_matches('/');
    let entries: Vec<Entry> = listed
        .into_iter()
        .map(|info| Entry {
            path: format!("{base}/{}", info.name),
            is_dir: info.kind == files::Kind::Dir,
            info,
        })
        .collect();
    axum::Json(entries).into_response()
}

/// At most this much is returned by one `/files/read`.
const MAX_READ: u64 = 1 << 20;

/// `/files/download` streams in chunks of this size.
const CHUNK: u64 = 64 * 1024;

async fn read(
    State(ctx): State<Ctx>,
    who: Option<Extension<Authenticated>>,
    Query(q): Query<PathQuery>,
) -> Response {
    if let Some(r) = sandbox_refusal(&ctx, who.as_deref(), &q.path) {
        return r;
    }
    let (work_dir, path) = (ctx.work_dir.clone(), q.path.clone());
    let length = q.length.unwrap_or(64 * 1024).min(MAX_READ);
    let requested_offset = q.offset.unwrap_or(0);
    let what = format!("read {:?}", q.path);
    let done = file_op(&what, move || {
        let f = files::open_file(&work_dir, &path)?;
        let offset = requested_offset.min(f.size());
        let data = f.read_at(offset, length).map_err(|source| FilesError::Io {
            path,
            op: "read",
            source,
        })?;
        Ok((data, offset, f.size()))
    })
    .await;
    match done {
        Ok((data, offset, size)) => axum::Json(serde_json::json!({
            "data": String::from_utf8_lossy(&data),
            "offset": offset,
            "size": size,
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn download(
    State(ctx): State<Ctx>,
    who: Option<Extension<Authenticated>>,
    Query(q): Query<PathQuery>,
) -> Response {
    if let Some(r) = sandbox_refusal(&ctx, who.as_deref(), &q.path) {
        return r;
    }
    let (work_dir, path) = (ctx.work_dir.clone(), q.path.clone());
    let what = format!("download {:?}", q.path);
    let file = match file_op(&what, move || files::open_file(&work_dir, &path)).await {
        Ok(f) => Arc::new(f),
        Err(r) => return r,
    };
    let name: String = file
        .name()
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    let size = file.size();
    let mut response = Body::from_stream(chunks(file, what)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::try_from(format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// The file's bytes up to its size at open time, one [`CHUNK`] per blocking `pread`, so
/// memory stays flat whatever the size. A read that fails, stalls past [`FILE_TIMEOUT`] or
/// finds the file shorter than announced ends the stream with an error (the client sees a
/// truncated body, never wrong bytes).
fn chunks(
    file: Arc<files::SandboxFile>,
    what: String,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::try_unfold(0u64, move |offset| {
        let (file, what) = (file.clone(), what.clone());
        async move {
            let left = file.size().saturating_sub(offset);
            if left == 0 {
                return Ok(None);
            }
            let len = left.min(CHUNK);
            let read = tokio::time::timeout(
                FILE_TIMEOUT,
                tokio::task::spawn_blocking(move || file.read_at(offset, len)),
            )
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, format!("{what}: timed out")))?
            .map_err(|e| std::io::Error::other(format!("{what}: {e}")))??;
            if read.is_empty() {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("{what}: the file shrank while being sent"),
                ));
            }
            let next = offset + read.len() as u64;
            Ok(Some((Bytes::from(read), next)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status each refusal maps to, through the same opening code the handlers use.
    #[test]
    fn traversal_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = dir.path();
        let sb = w.join("sandboxes/fw/t");
        std::fs::create_dir_all(&sb).expect("mkdir");
        std::fs::write(sb.join("stdout"), "hi").expect("write");
        std::fs::write(w.join("agent_id"), "secret").expect("write");
        std::os::unix::fs::symlink("/etc", sb.join("etc")).expect("symlink");
        std::os::unix::fs::symlink(w.join("agent_id"), sb.join("id")).expect("symlink");
        std::os::unix::fs::symlink("stdout", sb.join("inside")).expect("symlink");
        assert!(files::open_file(w, "sandboxes/fw/t/stdout").is_ok());
        let abs = sb.join("stdout").to_string_lossy().into_owned();
        assert!(files::open_file(w, &abs).is_ok());
        assert!(files::list_dir(w, "sandboxes").is_ok());
        let code = |p: &str| files::open_file(w, p).err().map(|e| status_of(&e));
        assert_eq!(
            code("sandboxes/fw/t/../../../agent_id"),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(code("../etc/passwd"), Some(StatusCode::FORBIDDEN));
        assert_eq!(code("/etc/passwd"), Some(StatusCode::FORBIDDEN));
        assert_eq!(code("agent_id"), Some(StatusCode::FORBIDDEN));
        assert_eq!(
            code("sandboxes/fw/t/etc/passwd"),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(code("sandboxes/fw/t/id"), Some(StatusCode::FORBIDDEN));
        assert_eq!(code("sandboxes/fw/t/inside"), Some(StatusCode::FORBIDDEN));
        assert_eq!(code("sandboxes/fw/t/missing"), Some(StatusCode::NOT_FOUND));
        assert_eq!(code("sandboxes/fw/t"), Some(StatusCode::BAD_REQUEST));
    }

    #[tokio::test]
    async fn a_stuck_filesystem_call_times_out_with_504() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let r = blocking("read \"x\"", Duration::from_millis(50), move || wait.recv()).await;
        let code = r.err().map(|r| r.status());
        assert_eq!(code, Some(StatusCode::GATEWAY_TIMEOUT));
        // Let the stuck blocking thread finish.
        let _ = release.send(());
    }
}
