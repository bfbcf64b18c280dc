//! Tests of the UI routes (over a real server socket) and of the sandbox proxy's parts.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use proffer_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::sandbox::{self, SandboxError, SandboxQuery, Target};
use super::{ASSETS, INDEX, asset, etag, matches_etag};
use crate::server::tests::{TestServer, WAIT};

/// GET `path` with extra header lines; (the head, the body).
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    extra: &str,
) -> anyhow::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in {text:?}"))?;
    Ok((head.to_ascii_lowercase(), body.to_owned()))
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_and_revalidation() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(1).await?;
    for path in ["/", "/ui", "/ui/", "/ui/agents/x"] {
        let (head, body) = get(server.addr, path, "").await?;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains("content-type: text/html; charset=utf-8"),
            "{head}"
        );
        assert!(head.contains("cache-control: no-cache"), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{head}"
        );
        assert!(body.contains("/ui/assets/app.js"), "{path}: {body}");
    }
    let (head, body) = get(server.addr, "/ui/assets/app.js", "").await?;
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert_eq!(body, asset("app.js").map(|a| a.body).unwrap_or_default());
    let tag = etag(&body);
    assert!(head.contains(&format!("etag: {tag}")), "{head}");
    // The browser's copy is current: 304 without a body.
    let (head, body) = get(
        server.addr,
        "/ui/assets/app.js",
        &format!("If-None-Match: {tag}\r\n"),
    )
    .await?;
    assert!(head.starts_with("http/1.1 304"), "{head}");
    assert!(body.is_empty());
    // A stale copy gets the file again.
    let (head, _) = get(server.addr, "/ui/assets/app.js", "If-None-Match: \"0\"\r\n").await?;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let (head, _) = get(server.addr, "/ui/assets/style.css", "").await?;
    assert!(head.contains("content-type: text/css"), "{head}");
    let (head, _) = get(server.addr, "/ui/assets/favicon.svg", "").await?;
    assert!(head.contains("content-type: image/svg+xml"), "{head}");
    let (head, body) = get(server.addr, "/ui/assets/nope.js", "").await?;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("nope.js"), "{body}");
    let (head, body) = get(server.addr, "/ui/api/nothing", "").await?;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("/ui/api/nothing"), "{body}");
    server.stop().await
}

#[tokio::test]
async fn sandbox_requests_name_what_is_wrong() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(2).await?;
    let cases = [
        (
            "/ui/api/sandbox/write?framework_id=f&task_id=t",
            "400",
            "unknown sandbox operation",
        ),
        (
            "/ui/api/sandbox/read?task_id=t",
            "400",
            "missing `framework_id`",
        ),
        (
            "/ui/api/sandbox/read?framework_id=f&task_id=t&path=../../etc/passwd",
            "400",
            "`..`",
        ),
        (
            "/ui/api/sandbox/read?framework_id=f&task_id=t&path=/etc/passwd",
            "400",
            "relative",
        ),
        (
            "/ui/api/sandbox/read?framework_id=f&task_id=t&offset=-1",
            "400",
            "`offset`",
        ),
        (
            "/ui/api/sandbox/read?framework_id=f&task_id=t&path=stdout",
            "404",
            "no task \\\"t\\\"",
        ),
    ];
    for (path, code, text) in cases {
        let (head, body) = get(server.addr, path, "").await?;
        assert!(
            head.starts_with(&format!("http/1.1 {code}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-type: application/json"),
            "{path}: {head}"
        );
        assert!(body.contains(text), "{path}: {body}");
    }
    server.stop().await
}

#[test]
fn assets_are_complete_and_etags_match() {
    assert!(INDEX.body.contains("<main id=\"main\">"));
    for a in ASSETS {
        assert!(!a.body.is_empty(), "{}", a.name);
        assert!(
            INDEX.body.contains(&format!("/ui/assets/{}", a.name)),
            "{} not linked",
            a.name
        );
    }
    // No framework or CDN: nothing is loaded from another origin.
    for text in [INDEX.body]
        .into_iter()
        .chain(ASSETS.iter().map(|a| a.body))
    {
        assert!(!text.contains("src=\"http"), "external script");
        assert!(!text.contains("href=\"http"), "external link");
        assert!(!text.contains("innerHTML"), "markup built from strings");
    }
    let tag = etag("abc");
    assert_ne!(tag, etag("abd"));
    assert!(matches_etag(&tag, &tag));
    assert!(matches_etag(&format!("\"x\", W/{tag}"), &tag));
    assert!(matches_etag("*", &tag));
    assert!(!matches_etag("\"x\"", &tag));
}

fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn queries_parse_and_paths_stay_in_the_sandbox() {
    let q = sandbox::parse(
        "read",
        &query(&[
            ("framework_id", "f"),
            ("task_id", "t"),
            ("path", "stdout"),
            ("offset", "5"),
            ("length", "10"),
        ]),
    );
    assert_eq!(
        q.ok(),
        Some(SandboxQuery {
            op: "read",
            framework_id: "f".into(),
            task_id: "t".into(),
            path: "stdout".into(),
            offset: Some(5),
            length: Some(10),
        })
    );
    for bad in ["..", "a/../..", "/abs", "a\0b"] {
        let e = sandbox::check_relative(bad);
        assert!(
            matches!(e, Err(SandboxError::BadPath { .. })),
            "{bad:?}: {e:?}"
        );
    }
    assert!(sandbox::check_relative("dir/file..txt").is_ok());
    let e = sandbox::parse("read", &query(&[("framework_id", "f"), ("task_id", "")]));
    assert!(matches!(e, Err(SandboxError::Missing("task_id"))), "{e:?}");
    let e = sandbox::parse(
        "read",
        &query(&[("framework_id", "f"), ("task_id", "t"), ("length", "x")]),
    );
    assert!(
        matches!(
            e,
            Err(SandboxError::BadNumber {
                param: "length",
                ..
            })
        ),
        "{e:?}"
    );
}

fn snapshot() -> v1::StateSnapshot {
    v1::StateSnapshot {
        agents: vec![
            v1::AgentSummary {
                id: "a1".into(),
                hostname: "10.0.0.1".into(),
                port: 5051,
                ..Default::default()
            },
            v1::AgentSummary {
                id: "a6".into(),
                hostname: "fe80::1".into(),
                port: 5052,
                ..Default::default()
            },
        ],
        tasks: vec![v1::TaskSummary {
            id: "t 1".into(),
            framework_id: "f".into(),
            agent_id: "a1".into(),
            sandbox: "/w/sandboxes/f/t 1".into(),
            ..Default::default()
        }],
        completed_tasks: vec![
            v1::TaskSummary {
                id: "done".into(),
                framework_id: "f".into(),
                agent_id: "a6".into(),
                sandbox: "/w/sandboxes/f/done".into(),
                ..Default::default()
            },
            v1::TaskSummary {
                id: "nosb".into(),
                framework_id: "f".into(),
                agent_id: "a1".into(),
                ..Default::default()
            },
            v1::TaskSummary {
                id: "lost".into(),
                framework_id: "f".into(),
                agent_id: "gone".into(),
                sandbox: "/x".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn q(task: &str, path: &str, offset: Option<u64>) -> SandboxQuery {
    SandboxQuery {
        op: "read",
        framework_id: "f".into(),
        task_id: task.into(),
        path: path.into(),
        offset,
        length: Some(100),
    }
}

#[test]
fn targets_are_the_tasks_agent_and_sandbox() {
    let s = snapshot();
    let t = sandbox::target(&s, &q("t 1", "stdout", Some(7)));
    assert_eq!(
        t.ok(),
        Some(Target {
            agent_id: "a1".into(),
            addr: "10.0.0.1:5051".into(),
            path_and_query: "/files/read?path=/w/sandboxes/f/t%201/stdout&offset=7&length=100"
                .into(),
            stream: false,
        })
    );
    let t = sandbox::target(&s, &q("done", "", None)).map(|t| (t.addr, t.path_and_query));
    assert_eq!(
        t.ok(),
        Some((
            "[fe80::1]:5052".to_string(),
            "/files/read?path=/w/sandboxes/f/done&length=100".to_string()
        ))
    );
    let e = sandbox::target(&s, &q("other", "", None));
    assert!(matches!(e, Err(SandboxError::UnknownTask { .. })), "{e:?}");
    let e = sandbox::target(
        &s,
        &SandboxQuery {
            framework_id: "g".into(),
            ..q("t 1", "", None)
        },
    );
    assert!(matches!(e, Err(SandboxError::UnknownTask { .. })), "{e:?}");
    let e = sandbox::target(&s, &q("nosb", "", None));
    assert!(matches!(e, Err(SandboxError::NoSandbox { .. })), "{e:?}");
    let e = sandbox::target(&s, &q("lost", "", None));
    assert!(matches!(e, Err(SandboxError::UnknownAgent { .. })), "{e:?}");
    assert_eq!(e.map_err(|e| e.status()).err(), Some(StatusCode::NOT_FOUND));
}

/// A stand-in for an agent's file API: answers with the authorization header it got.
async fn fake_agent() -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/files/read",
        axum::routing::get(|headers: HeaderMap| async move {
            match headers.get(header::AUTHORIZATION) {
                Some(v) => (
                    StatusCode::OK,
                    axum::Json(serde_json::json!({ "data": v.to_str().unwrap_or("?"), "offset": 0, "size": 1 })),
                ),
                None => (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({ "error": "no principal" }))),
            }
        }),
    )
    .route(
        "/files/download",
        axum::routing::get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"stdout\""),
                ],
                "x".repeat(200_000),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::test]
async fn the_proxy_forwards_credentials_and_passes_answers_back() -> anyhow::Result<()> {
    let addr = fake_agent().await?;
    let target = Target {
        agent_id: "a1".into(),
        addr: addr.to_string(),
        path_and_query: "/files/read?path=x".into(),
        stream: false,
    };
    let auth = HeaderValue::from_static("Basic dTpw");
    let answer = sandbox::forward(&target, Some(auth)).await?;
    assert_eq!(answer.status(), StatusCode::OK);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(json["data"], "Basic dTpw");
    // Without credentials the agent's refusal comes back as it is.
    let answer = sandbox::forward(&target, None).await?;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    // A download is passed on as it comes, with its name and length.
    let download = Target {
        path_and_query: "/files/download?path=x".into(),
        stream: true,
        ..target.clone()
    };
    let answer = sandbox::forward(&download, None).await?;
    assert_eq!(answer.status(), StatusCode::OK);
    let h = answer.headers();
    assert_eq!(
        h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()),
        Some("200000")
    );
    assert_eq!(
        h.get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok()),
        Some("attachment; filename=\"stdout\"")
    );
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await?;
    assert_eq!(body.len(), 200_000);
    // Nothing listening: 502 naming the agent and its address.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let target = Target {
        addr: closed.to_string(),
        ..target
    };
    let e = sandbox::forward(&target, None).await.err();
    assert_eq!(
        e.as_ref().map(SandboxError::status),
        Some(StatusCode::BAD_GATEWAY)
    );
    let text = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("a1") && text.contains(&closed.to_string()),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn with_authentication_the_page_asks_the_browser_for_credentials() -> anyhow::Result<()> {
    use proffer_proto::auth::{Credential, Credentials};
    let credentials = r#"{"credentials": [{"principal": "web", "secret": "web-secret"}]}"#;
    let mut config = crate::server::ServerConfig::new(crate::core::MasterConfig::default());
    config.security = crate::server::Security {
        credentials: Some(std::sync::Arc::new(Credentials::parse(
            credentials,
            "test",
        )?)),
        authenticate_http_readonly: true,
        ..crate::server::Security::default()
    };
    let server = TestServer::start_with(config).await?;
    // Without credentials: 401 with a Basic challenge, so the browser asks and then sends
    // them with every same-origin request the page makes.
    let (head, _) = get(server.addr, "/ui", "").await?;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: basic"), "{head}");
    let auth = Credential::basic("web", "web-secret")?.authorization();
    let with = format!("Authorization: {auth}\r\n");
    for path in ["/ui", "/ui/assets/app.js", "/state"] {
        let (head, _) = get(server.addr, path, &with).await?;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
    }
    let (head, body) = get(
        server.addr,
        "/ui/api/sandbox/read?framework_id=f&task_id=t",
        &with,
    )
    .await?;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("no task"), "{body}");
    let wrong = format!(
        "Authorization: {}\r\n",
        Credential::basic("web", "nope")?.authorization()
    );
    let (head, _) = get(
        server.addr,
        "/ui/api/sandbox/read?framework_id=f&task_id=t",
        &wrong,
    )
    .await?;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    server.stop().await
}
