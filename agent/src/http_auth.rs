//! Authentication and `access_sandboxes` on the agent's HTTP endpoint (issue 18).
//!
//! The agent decides for itself, with its own `--credentials`, `--authenticate-http-readonly`
//! and `--acls` (the same files as the master's): every route but `/health` goes through the
//! read-only gate ([`authenticate`]: 401 with `WWW-Authenticate` when a principal is required
//! and none is presented, or a wrong one is), and the file routes (`/files/browse`,
//! `/files/read`, `/files/download`) check `access_sandboxes` for the user the sandbox's task
//! runs as ([`sandbox_user`]): its `command.user`, else the agent's own user. A path that names
//! no task the agent knows (the sandboxes root, a framework's directory, a task the agent
//! forgot) is asked about as "any user": only a rule with users `ANY` (or `permissive`)
//! allows it. A refusal is 403 naming the action and the principal, with one audit line.

use std::path::{Component, Path};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proffer_master_core::authz::{AUDIT_TARGET, Action, Authorizer, Denied};
use proffer_net::tls::PeerSubject;
use proffer_proto::auth::{Authenticated, Credentials, Gate, PeerIdentity};

use crate::files;
use crate::http::View;

/// Who may read the agent's HTTP endpoint.
#[derive(Debug, Clone, Default)]
pub struct HttpSecurity {
    /// Principals and secrets or tokens (`--credentials`); `None`: presented credentials are
    /// ignored.
    pub credentials: Option<Arc<Credentials>>,
    /// Every route but `/health` needs a principal (`--authenticate-http-readonly`).
    pub authenticate_http_readonly: bool,
    /// The ACLs (`--acls`): `access_sandboxes` for the file routes.
    pub authorizer: Arc<Authorizer>,
    /// TLS on the endpoint (`--tls-cert`/`--tls-key`; with `--tls-ca` a client certificate's
    /// subject is the caller's principal).
    pub tls: Option<proffer_net::tls::ServerTls>,
}

/// The middleware: authenticates every request but `/health`; puts [`Authenticated`] into the
/// request's extensions.
pub(crate) async fn authenticate(
    State(security): State<Arc<HttpSecurity>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    if let Some(s) = request.extensions().get::<PeerSubject>().cloned() {
        request.extensions_mut().insert(PeerIdentity(s.name));
    }
    let gate = Gate::new(
        security.credentials.clone(),
        security.authenticate_http_readonly,
        "agent HTTP reads",
    );
    match gate.authenticate_request(&request) {
        Ok(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Err(err) => {
            tracing::warn!(target: AUDIT_TARGET, decision = "unauthenticated",
                path = %request.uri().path(), "{err}");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, gate.challenge())],
                format!("{err}\n"),
            )
                .into_response()
        }
    }
}

/// The user the task owning `requested` (a sandbox path) runs as, when the path is inside a
/// task's sandbox the agent knows; `None` otherwise.
pub(crate) fn sandbox_user(view: &View, work_dir: &Path, requested: &str) -> Option<String> {
    let rel = files::beneath_sandboxes(work_dir, requested).ok()?;
    let mut parts = rel.components().filter_map(|c| match c {
        Component::Normal(s) => s.to_str(),
        _ => None,
    });
    let (fw, task) = (parts.next()?, parts.next()?);
    view.tasks
        .iter()
        .find(|t| t.framework_id == fw && t.task_id == task)
        .map(|t| t.user.clone())
}

/// `access_sandboxes` for `requested` by the caller of `who` (one audit line).
pub(crate) fn authorize_sandbox(
    authorizer: &Authorizer,
    who: Option<&Authenticated>,
    view: &View,
    work_dir: &Path,
    requested: &str,
) -> Result<(), Denied> {
    if authorizer.allows_everything() {
        return Ok(());
    }
    let principal = who.and_then(Authenticated::principal);
    let user = sandbox_user(view, work_dir, requested);
    authorizer.authorize(principal, Action::AccessSandbox, user.as_deref())
}

/// The name of the user this process runs as (from `/etc/passwd`), or its uid.
pub fn current_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(str::to_string)
        })
        .unwrap_or_default();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .unwrap_or(uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::TaskView;

    fn view() -> View {
        View {
            tasks: vec![TaskView {
                framework_id: "fw".into(),
                task_id: "t1".into(),
                state: "TASK_RUNNING".into(),
                sandbox: "sandboxes/fw/t1".into(),
                ready: false,
                healthy: None,
                executor_pid: None,
                user: "alice".into(),
                run_dir: Default::default(),
                cgroup: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_paths_name_their_tasks_user() {
        let w = Path::new("/w");
        let v = view();
        assert_eq!(
            sandbox_user(&v, w, "sandboxes/fw/t1/stdout").as_deref(),
            Some("alice")
        );
        assert_eq!(
            sandbox_user(&v, w, "/w/sandboxes/fw/t1").as_deref(),
            Some("alice")
        );
        assert_eq!(sandbox_user(&v, w, "sandboxes/fw/t2/stdout"), None);
        assert_eq!(sandbox_user(&v, w, "sandboxes/fw"), None);
        assert_eq!(sandbox_user(&v, w, "sandboxes/fw/../fw/t1"), None);
    }

    #[test]
    fn access_sandboxes_decides_by_the_tasks_user() -> Result<(), String> {
        let acls = proffer_master_core::authz::Acls::parse(
            r#"{"permissive": false, "access_sandboxes": [
                {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}},
                {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}}
            ]}"#,
            "test",
        )
        .map_err(|e| e.to_string())?;
        let a = Authorizer::new(acls);
        let w = Path::new("/w");
        let v = view();
        let who = |p: &str| Authenticated(Some(p.to_string()));
        let ok =
            |p: Option<&Authenticated>, path: &str| authorize_sandbox(&a, p, &v, w, path).is_ok();
        assert!(ok(Some(&who("alice")), "sandboxes/fw/t1/stdout"));
        assert!(!ok(Some(&who("bob")), "sandboxes/fw/t1/stdout"));
        assert!(!ok(None, "sandboxes/fw/t1/stdout"));
        // Not a known task's sandbox: only an ANY-users rule allows it.
        assert!(!ok(Some(&who("alice")), "sandboxes"));
        assert!(ok(Some(&who("ops")), "sandboxes"));
        Ok(())
    }
}
