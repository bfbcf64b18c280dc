//! The agent's HTTP endpoint: `/health`, `/state` (JSON), `/metrics` (Prometheus text, with
//! per-task cpu time and memory from cgroups), sandbox browsing (`/files/browse`,
//! `/files/read`, `/files/download`) and `POST /drain`.
//!
//! File paths are either relative to `work_dir` and inside `sandboxes/` (e.g.
//! `sandboxes/<framework>/<task>/stdout`) or absolute paths inside `work_dir/sandboxes`;
//! `..` components are refused, and the resolved path (symlinks followed) must stay inside
//! the sandboxes directory, else 403.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cgroups;
use crate::executor::protocol;

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
    /// Run directory (not shown).
    #[serde(skip)]
    pub run_dir: PathBuf,
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
}

/// The view shared between the agent loop and the endpoint.
pub type SharedView = Arc<Mutex<View>>;

/// Requests from the endpoint to the agent loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start draining.
    Drain,
}

#[derive(Clone)]
struct Ctx {
    view: SharedView,
    work_dir: PathBuf,
    commands: mpsc::UnboundedSender<Command>,
}

/// The endpoint's routes.
pub fn router(
    view: SharedView,
    work_dir: PathBuf,
    commands: mpsc::UnboundedSender<Command>,
) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/metrics", get(metrics))
        .route("/files/browse", get(browse))
        .route("/files/read", get(read))
        .route("/files/download", get(download))
        .route("/drain", post(drain))
        .with_state(Ctx {
            view,
            work_dir,
            commands,
        })
}

fn snapshot(ctx: &Ctx) -> View {
    ctx.view.lock().map(|v| v.clone()).unwrap_or_default()
}

#[derive(Serialize)]
struct TaskState {
    #[serde(flatten)]
    task: TaskView,
    usage: Option<cgroups::Usage>,
}

fn usage_of(run_dir: &Path) -> Option<cgroups::Usage> {
    let spec = protocol::read_spec(run_dir).ok()?;
    spec.cgroup.as_ref().map(cgroups::usage)
}

async fn state(State(ctx): State<Ctx>) -> Response {
    let v = snapshot(&ctx);
    let tasks: Vec<TaskState> = v
        .tasks
        .iter()
        .map(|t| TaskState {
            usage: usage_of(&t.run_dir),
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
    out.push_str("# HELP proffer_task_cpu_seconds_total CPU time of a task (cgroup).\n# TYPE proffer_task_cpu_seconds_total counter\n");
    let mut rss = String::from(
        "# HELP proffer_task_rss_bytes Resident memory of a task (cgroup).\n# TYPE proffer_task_rss_bytes gauge\n",
    );
    for t in &v.tasks {
        if let Some(u) = usage_of(&t.run_dir) {
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

/// Resolves a requested path inside `work_dir/sandboxes`; `Err` is the HTTP refusal.
pub fn resolve(work_dir: &Path, requested: &str) -> Result<PathBuf, (StatusCode, String)> {
    let forbidden = |m: &str| (StatusCode::FORBIDDEN, format!("{m}: {requested:?}\n"));
    let p = Path::new(requested);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(forbidden("'..' is not allowed"));
    }
    let root = work_dir.join("sandboxes");
    let candidate = if p.is_absolute() {
        p.to_path_buf()
    } else {
        work_dir.join(p)
    };
    let canon_root = std::fs::canonicalize(&root)
        .map_err(|_| (StatusCode::NOT_FOUND, "no sandboxes yet\n".to_string()))?;
    let canon = std::fs::canonicalize(&candidate)
        .map_err(|e| (StatusCode::NOT_FOUND, format!("{requested:?}: {e}\n")))?;
    if !canon.starts_with(&canon_root) {
        return Err(forbidden("outside the sandboxes"));
    }
    Ok(canon)
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
    name: String,
    is_dir: bool,
    size: u64,
    mtime: u64,
}

fn refuse((code, msg): (StatusCode, String)) -> Response {
    (code, msg).into_response()
}

async fn browse(State(ctx): State<Ctx>, Query(q): Query<PathQuery>) -> Response {
    let dir = match resolve(&ctx.work_dir, &q.path) {
        Ok(d) => d,
        Err(e) => return refuse(e),
    };
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{}: {e}\n", q.path)).into_response(),
    };
    let mut entries: Vec<Entry> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            Some(Entry {
                path: format!("{}/{}", q.path.trim_end_matches('/'), name),
                is_dir: m.is_dir(),
                size: m.len(),
                mtime: m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs()),
                name,
            })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    axum::Json(entries).into_response()
}

/// At most this much is returned by one `/files/read`.
const MAX_READ: u64 = 1 << 20;

async fn read(State(ctx): State<Ctx>, Query(q): Query<PathQuery>) -> Response {
    use std::io::{Read, Seek, SeekFrom};
    let path = match resolve(&ctx.work_dir, &q.path) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let offset = q.offset.unwrap_or(0).min(size);
    let length = q.length.unwrap_or(64 * 1024).min(MAX_READ);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_err() || f.take(length).read_to_end(&mut buf).is_err() {
        return (StatusCode::BAD_REQUEST, "not a readable file\n").into_response();
    }
    axum::Json(serde_json::json!({
        "data": String::from_utf8_lossy(&buf),
        "offset": offset,
        "size": size,
    }))
    .into_response()
}

async fn download(State(ctx): State<Ctx>, Query(q): Query<PathQuery>) -> Response {
    let path = match resolve(&ctx.work_dir, &q.path) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().replace('"', ""))
                .unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn drain(State(ctx): State<Ctx>) -> Response {
    match ctx.commands.send(Command::Drain) {
        Ok(()) => (StatusCode::ACCEPTED, "draining\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "agent loop is gone\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(resolve(w, "sandboxes/fw/t/stdout").is_ok());
        let abs = sb.join("stdout").to_string_lossy().into_owned();
        assert!(resolve(w, &abs).is_ok());
        let code = |p: &str| resolve(w, p).err().map(|e| e.0);
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
        assert_eq!(code("sandboxes/fw/t/missing"), Some(StatusCode::NOT_FOUND));
    }
}
