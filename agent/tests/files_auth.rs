//! The agent's HTTP endpoint with `--credentials`, `--authenticate-http-readonly` and `--acls`
//! (issue 18): an unauthenticated sandbox read is refused with 401 and a challenge, a wrong
//! secret too; `access_sandboxes` lets a principal read the sandboxes of tasks running as the
//! users it names and refuses the others with 403; `/health` stays open.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use proffer_agent::http::{self, TaskView, View};
use proffer_agent::http_auth::HttpSecurity;
use proffer_master_core::authz::{Acls, Authorizer};
use proffer_proto::auth::{Credential, Credentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CREDENTIALS: &str = r#"{"credentials": [
    {"principal": "alice", "secret": "alice-secret"},
    {"principal": "bob", "secret": "bob-secret"}
]}"#;

const ACLS: &str = r#"{"permissive": false, "access_sandboxes": [
    {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}},
    {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
]}"#;

fn task(id: &str, user: &str) -> TaskView {
    TaskView {
        framework_id: "fw".into(),
        task_id: id.into(),
        state: "TASK_RUNNING".into(),
        sandbox: format!("sandboxes/fw/{id}"),
        ready: false,
        healthy: None,
        executor_pid: None,
        user: user.into(),
        run_dir: Default::default(),
        cgroup: None,
    }
}

async fn serve(work_dir: &std::path::Path) -> Result<SocketAddr> {
    let view = View {
        tasks: vec![task("a", "alice"), task("b", "bob")],
        ..Default::default()
    };
    let security = HttpSecurity {
        credentials: Some(Arc::new(Credentials::parse(CREDENTIALS, "test")?)),
        authenticate_http_readonly: true,
        authorizer: Arc::new(Authorizer::new(Acls::parse(ACLS, "test")?)),
        tls: None,
    };
    let app = http::router(
        Arc::new(Mutex::new(view)),
        work_dir.to_path_buf(),
        Arc::new(security),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// One GET: status, head and body.
async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> Result<(u16, String, String)> {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        let (head, body) = out.split_once("\r\n\r\n").context("no end of headers")?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("bad status line")?;
        Ok((code, head.to_string(), body.to_string()))
    })
    .await
    .context("no answer")?
}

#[tokio::test]
async fn sandbox_reads_need_a_principal_the_acls_allow() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for t in ["a", "b"] {
        let sb = dir.path().join("sandboxes/fw").join(t);
        std::fs::create_dir_all(&sb)?;
        std::fs::write(sb.join("stdout"), format!("output of {t}\n"))?;
    }
    let addr = serve(dir.path()).await?;
    let alice = Credential::basic("alice", "alice-secret")?.authorization();
    let bob = Credential::basic("bob", "bob-secret")?.authorization();
    let wrong = Credential::basic("alice", "nope")?.authorization();
    let read_a = "/files/read?path=sandboxes/fw/a/stdout";
    let read_b = "/files/read?path=sandboxes/fw/b/stdout";

    let (code, head, body) = get(addr, read_a, None).await?;
    assert_eq!(code, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{head}"
    );
    assert!(
        body.contains("agent HTTP reads require authentication"),
        "{body}"
    );
    let (code, _, body) = get(addr, read_a, Some(&wrong)).await?;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("principal `alice`"), "{body}");

    let (code, _, body) = get(addr, read_a, Some(&alice)).await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("output of a"), "{body}");
    for path in [
        read_b,
        "/files/download?path=sandboxes/fw/b/stdout",
        "/files/browse?path=sandboxes/fw/b",
        // Not a known task's sandbox: only a rule for any user would allow it.
        "/files/browse?path=sandboxes",
    ] {
        let (code, _, body) = get(addr, path, Some(&alice)).await?;
        assert_eq!(code, 403, "{path}: {body}");
        assert!(
            body.contains("principal `alice` may not access_sandboxes"),
            "{path}: {body}"
        );
    }
    let (code, _, body) = get(addr, read_b, Some(&bob)).await?;
    assert_eq!(
        code, 403,
        "bob's own task runs as bob, not allowed by the ACLs: {body}"
    );
    let (code, _, _) = get(addr, "/health", None).await?;
    assert_eq!(code, 200);
    let (code, _, _) = get(addr, "/state", None).await?;
    assert_eq!(code, 401);
    Ok(())
}
