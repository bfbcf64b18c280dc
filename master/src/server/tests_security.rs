//! Authentication and ACLs over real sockets (issue 18, items 3, 4 and 6): unauthenticated
//! framework, agent and operator calls are refused (401 / `UNAUTHENTICATED`), every operator
//! action is refused by its ACL (403 / `PERMISSION_DENIED`), a principal allowed one role
//! cannot subscribe to another, `/state` is filtered by the view ACLs, and a framework id
//! cannot be taken over by another principal.

use std::net::SocketAddr;
use std::sync::Arc;

use proffer_master_core::authz::{Acls, Action, Authorizer};
use proffer_proto::auth::{Authorize, Credential, Credentials};
use proffer_proto::v1;
use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::operator_client::OperatorClient;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use super::tests::WAIT;
use super::{Security, ServerConfig, serve};
use crate::core::MasterConfig;

const CREDENTIALS: &str = r#"{
  "credentials": [
    {"principal": "ops", "secret": "ops-secret"},
    {"principal": "dev", "secret": "dev-secret"},
    {"principal": "web", "secret": "web-secret"},
    {"principal": "eve", "secret": "eve-secret"},
    {"principal": "alice", "secret": "alice-secret"},
    {"principal": "bob", "secret": "bob-secret"},
    {"principal": "agent", "secret": "agent-secret"}
  ],
  "tokens": [{"principal": "ci", "token": "ci-token-0123456789"}]
}"#;

/// A master requiring authentication everywhere, with `acls`.
async fn start(acls: &str) -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = ServerConfig::new(MasterConfig::default());
    config.security = Security {
        credentials: Some(Arc::new(Credentials::parse(CREDENTIALS, "test")?)),
        authenticate_frameworks: true,
        authenticate_agents: true,
        authenticate_http_readwrite: true,
        authenticate_http_readonly: true,
        authorizer: Arc::new(Authorizer::new(Acls::parse(acls, "test")?)),
        require_agent_certificates: false,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(serve(listener, config, cancel.clone()));
    Ok((addr, cancel))
}

fn cred(principal: &str) -> anyhow::Result<Credential> {
    Ok(Credential::basic(principal, format!("{principal}-secret"))?)
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Authorize>;

async fn operator(addr: SocketAddr, as_: Option<&str>) -> anyhow::Result<OperatorClient<Authed>> {
    let c = as_.map(cred).transpose()?;
    Ok(OperatorClient::with_interceptor(
        channel(addr).await?,
        Authorize::new(c.as_ref()),
    ))
}

async fn scheduler(addr: SocketAddr, as_: Option<&str>) -> anyhow::Result<SchedulerClient<Authed>> {
    let c = as_.map(cred).transpose()?;
    Ok(SchedulerClient::with_interceptor(
        channel(addr).await?,
        Authorize::new(c.as_ref()),
    ))
}

/// One HTTP/1.1 request; (status code, head, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, head.to_string(), body.to_string()))
}

fn basic(principal: &str) -> String {
    cred(principal)
        .map(|c| c.authorization())
        .unwrap_or_default()
}

fn framework(name: &str, user: &str, roles: &[&str]) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        name: name.into(),
        user: user.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        failover_timeout: 60.0,
        ..Default::default()
    }
}

/// Subscribes; the SUBSCRIBED event and the open stream.
async fn subscribe(
    client: &mut SchedulerClient<Authed>,
    info: v1::FrameworkInfo,
) -> Result<(v1::Subscribed, tonic::Streaming<v1::Event>), tonic::Status> {
    let mut events = client
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(info),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, events.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no first event"))??;
    match first.and_then(|e| e.event) {
        Some(v1::event::Event::Subscribed(s)) => Ok((s, events)),
        other => Err(tonic::Status::internal(format!(
            "not SUBSCRIBED: {other:?}"
        ))),
    }
}

#[tokio::test]
async fn unauthenticated_framework_agent_operator_and_http_calls_are_refused() -> anyhow::Result<()>
{
    let (addr, cancel) = start("{}").await?;
    // A framework without credentials.
    let mut anon = scheduler(addr, None).await?;
    let err = subscribe(&mut anon, framework("f", "u", &["*"]))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("anonymous subscription accepted"))?;
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(
        err.message()
            .contains("framework calls require authentication"),
        "{err}"
    );
    // A wrong secret is refused, naming the principal.
    let wrong = Credential::basic("web", "nope")?;
    let mut bad =
        SchedulerClient::with_interceptor(channel(addr).await?, Authorize::new(Some(&wrong)));
    let err = subscribe(&mut bad, framework("f", "u", &["*"]))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("wrong secret accepted"))?;
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("principal `web`"), "{err}");
    // An agent without credentials.
    let mut agent = AgentClient::new(channel(addr).await?);
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel::<v1::AgentMessage>();
    let err = agent
        .session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("anonymous agent session accepted"))?;
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("agent sessions"), "{err}");
    // An operator call without credentials; with them it works (Basic and Bearer).
    let err = operator(addr, None)
        .await?
        .get_state(v1::GetStateRequest {})
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("anonymous GetState accepted"))?;
    assert_eq!(err.code(), Code::Unauthenticated);
    operator(addr, Some("ops"))
        .await?
        .get_state(v1::GetStateRequest {})
        .await?;
    // HTTP: 401 with a challenge, reads and writes; /health stays open.
    for (method, path) in [("GET", "/state"), ("GET", "/roles"), ("POST", "/quota")] {
        let (code, head, body) = http(addr, method, path, None, "{}").await?;
        assert_eq!(code, 401, "{method} {path}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"proffer\""),
            "{head}"
        );
        assert!(body.contains("require authentication"), "{body}");
    }
    let (code, _, _) = http(addr, "GET", "/health", None, "").await?;
    assert_eq!(code, 200);
    let (code, _, _) = http(addr, "GET", "/state", Some(&basic("ops")), "").await?;
    assert_eq!(code, 200);
    let token = Credential::bearer("ci-token-0123456789")?.authorization();
    let (code, _, _) = http(addr, "GET", "/state", Some(&token), "").await?;
    assert_eq!(code, 200);
    let (code, _, body) = http(addr, "GET", "/state", Some("Bearer wrong"), "").await?;
    assert_eq!(code, 401, "{body}");
    cancel.cancel();
    Ok(())
}

/// ACLs that refuse principal `dev` every action (and allow the rest: permissive).
fn deny_dev_everything() -> String {
    let rules: Vec<String> = Action::ALL
        .iter()
        .map(|a| {
            format!(
                r#""{}": [{{"principals": {{"values": ["dev"]}}, "{}": {{"type": "NONE"}}}}]"#,
                a.key(),
                a.object_key()
            )
        })
        .collect();
    format!("{{{}}}", rules.join(","))
}

fn refused_by(err: &tonic::Status, action: &str) -> bool {
    err.code() == Code::PermissionDenied
        && err.message().contains(action)
        && err.message().contains("principal `dev`")
}

#[tokio::test]
async fn every_operator_action_is_refused_by_its_acl() -> anyhow::Result<()> {
    let (addr, cancel) = start(&deny_dev_everything()).await?;
    // A framework (owned by `web`) to tear down.
    let mut web = scheduler(addr, Some("web")).await?;
    let (sub, _events) = subscribe(&mut web, framework("web", "web", &["web"])).await?;
    let res = |t: &str| proffer_proto::Resources::parse(t).map(|r| r.to_proto());
    let mut op = operator(addr, Some("dev")).await?;
    let checks: Vec<(&str, Result<(), tonic::Status>)> = vec![
        (
            "update_quotas",
            op.set_quota(v1::SetQuotaRequest {
                role: "web".into(),
                guarantees: res("cpus:1")?,
                limits: vec![],
            })
            .await
            .map(drop),
        ),
        (
            "update_quotas",
            op.remove_quota(v1::RemoveQuotaRequest { role: "web".into() })
                .await
                .map(drop),
        ),
        (
            "update_weights",
            op.set_weight(v1::SetWeightRequest {
                role: "web".into(),
                weight: 2.0,
            })
            .await
            .map(drop),
        ),
        (
            "reserve_resources",
            op.reserve_resources(v1::ReserveResourcesRequest {
                agent_id: "a1".into(),
                resources: res("cpus(web,dynamic=dev):1")?,
            })
            .await
            .map(drop),
        ),
        (
            "unreserve_resources",
            op.unreserve_resources(v1::UnreserveResourcesRequest {
                agent_id: "a1".into(),
                resources: res("cpus(web,dynamic=ops):1")?,
            })
            .await
            .map(drop),
        ),
        (
            "drain_agents",
            op.drain_agent(v1::DrainAgentRequest {
                agent_id: "a1".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "reactivate_agents",
            op.reactivate_agent(v1::ReactivateAgentRequest {
                agent_id: "a1".into(),
            })
            .await
            .map(drop),
        ),
        (
            "mark_agents_gone",
            op.mark_agent_gone(v1::MarkAgentGoneRequest {
                agent_id: "a1".into(),
            })
            .await
            .map(drop),
        ),
        (
            "update_maintenance_schedules",
            op.schedule_maintenance(v1::ScheduleMaintenanceRequest {
                agent_id: "a1".into(),
                starts_in_secs: 10.0,
                duration_secs: 10.0,
            })
            .await
            .map(drop),
        ),
        (
            "teardown_frameworks",
            op.teardown_framework(v1::TeardownFrameworkRequest {
                framework_id: sub.framework_id.clone(),
            })
            .await
            .map(drop),
        ),
        (
            "view_frameworks",
            op.why(v1::WhyRequest {
                subject: Some(v1::why_request::Subject::FrameworkId(
                    sub.framework_id.clone(),
                )),
            })
            .await
            .map(drop),
        ),
    ];
    for (action, got) in checks {
        let err = got
            .err()
            .ok_or_else(|| anyhow::anyhow!("{action}: allowed"))?;
        assert!(refused_by(&err, action), "{action}: {err}");
    }
    // Subscribing and registering as an agent are refused too.
    let mut dev = scheduler(addr, Some("dev")).await?;
    let err = subscribe(&mut dev, framework("dev", "dev", &["dev"]))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("dev subscribed"))?;
    assert!(refused_by(&err, "register_frameworks"), "{err}");
    let c = cred("dev")?;
    let mut agent = AgentClient::with_interceptor(channel(addr).await?, Authorize::new(Some(&c)));
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel::<v1::AgentMessage>();
    let err = agent
        .session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("dev registered an agent"))?;
    assert!(refused_by(&err, "register_agents"), "{err}");
    // Views are filtered rather than refused.
    let state = op.get_state(v1::GetStateRequest {}).await?.into_inner();
    assert!(state.frameworks.is_empty(), "{state:?}");
    // The same over HTTP: 403 naming the action and the principal.
    let fw = &sub.framework_id;
    let http_checks = [
        (
            "POST",
            "/quota".to_string(),
            r#"{"role":"web","guarantees":"cpus:1"}"#.to_string(),
            "update_quotas",
        ),
        (
            "DELETE",
            "/quota/web".into(),
            String::new(),
            "update_quotas",
        ),
        (
            "POST",
            "/weights".into(),
            r#"{"role":"web","weight":2}"#.into(),
            "update_weights",
        ),
        (
            "POST",
            "/reserve".into(),
            r#"{"agent_id":"a1","resources":"cpus(web,dynamic=dev):1"}"#.into(),
            "reserve_resources",
        ),
        (
            "POST",
            "/unreserve".into(),
            r#"{"agent_id":"a1","resources":"cpus(web,dynamic=ops):1"}"#.into(),
            "unreserve_resources",
        ),
        (
            "POST",
            "/agents/a1/drain".into(),
            String::new(),
            "drain_agents",
        ),
        (
            "POST",
            "/agents/a1/reactivate".into(),
            String::new(),
            "reactivate_agents",
        ),
        (
            "POST",
            "/agents/a1/gone".into(),
            String::new(),
            "mark_agents_gone",
        ),
        (
            "POST",
            "/maintenance".into(),
            r#"{"agent_id":"a1","starts_in_secs":1,"duration_secs":1}"#.into(),
            "update_maintenance_schedules",
        ),
        (
            "POST",
            "/teardown".into(),
            format!(r#"{{"framework_id":"{fw}"}}"#),
            "teardown_frameworks",
        ),
        (
            "GET",
            format!("/why?framework_id={fw}"),
            String::new(),
            "view_frameworks",
        ),
        ("GET", "/metrics".into(), String::new(), "get_endpoints"),
    ];
    for (method, path, body, action) in http_checks {
        let (code, _, text) = http(addr, method, &path, Some(&basic("dev")), &body).await?;
        assert_eq!(code, 403, "{method} {path}: {text}");
        assert!(
            text.contains(action) && text.contains("principal `dev`"),
            "{method} {path}: {text}"
        );
    }
    // Another principal is allowed (permissive): ops tears the framework down.
    operator(addr, Some("ops"))
        .await?
        .teardown_framework(v1::TeardownFrameworkRequest {
            framework_id: sub.framework_id.clone(),
        })
        .await?;
    let state = operator(addr, Some("ops"))
        .await?
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    assert!(state.frameworks.is_empty(), "torn down: {state:?}");
    cancel.cancel();
    Ok(())
}

#[tokio::test]
async fn a_principal_allowed_one_role_cannot_subscribe_to_another() -> anyhow::Result<()> {
    let (addr, cancel) = start(
        r#"{"register_frameworks": [
            {"principals": {"values": ["web"]}, "roles": {"values": ["web"]}},
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
        ]}"#,
    )
    .await?;
    let mut web = scheduler(addr, Some("web")).await?;
    let err = subscribe(&mut web, framework("web", "web", &["prod"]))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("web subscribed to prod"))?;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "not authorized: principal `web` may not register_frameworks (role `prod`)"
    );
    let (sub, _events) = subscribe(&mut web, framework("web", "web", &["web"])).await?;
    assert!(!sub.framework_id.is_empty());
    // Naming another principal in FrameworkInfo than the authenticated one is refused.
    let mut info = framework("web", "web", &["web"]);
    info.principal = "ops".into();
    let err = subscribe(&mut web, info)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("principal spoofed"))?;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("is not the authenticated principal `web`"),
        "{err}"
    );
    cancel.cancel();
    Ok(())
}

#[tokio::test]
async fn state_is_filtered_by_the_view_acls() -> anyhow::Result<()> {
    let (addr, cancel) = start(
        r#"{"view_frameworks": [
            {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}},
            {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
        ]}"#,
    )
    .await?;
    let mut a = scheduler(addr, Some("alice")).await?;
    let (_sa, _ea) = subscribe(&mut a, framework("fa", "alice", &["*"])).await?;
    let mut b = scheduler(addr, Some("bob")).await?;
    let (_sb, _eb) = subscribe(&mut b, framework("fb", "bob", &["*"])).await?;
    let names = |body: &str| -> anyhow::Result<Vec<String>> {
        let v: serde_json::Value = serde_json::from_str(body)?;
        Ok(v["frameworks"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|f| f["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    };
    let (code, _, body) = http(addr, "GET", "/state", Some(&basic("alice")), "").await?;
    assert_eq!(code, 200);
    assert_eq!(names(&body)?, vec!["fa".to_string()]);
    let (_, _, body) = http(addr, "GET", "/state", Some(&basic("bob")), "").await?;
    assert!(names(&body)?.is_empty(), "{body}");
    let (_, _, body) = http(addr, "GET", "/state", Some(&basic("ops")), "").await?;
    assert_eq!(names(&body)?.len(), 2);
    // GetState is filtered the same way.
    let state = operator(addr, Some("alice"))
        .await?
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    assert_eq!(state.frameworks.len(), 1);
    assert_eq!(state.frameworks[0].principal, "alice");
    cancel.cancel();
    Ok(())
}

#[tokio::test]
async fn a_framework_id_cannot_be_taken_over_by_another_principal() -> anyhow::Result<()> {
    let (addr, cancel) = start("{}").await?;
    let mut web = scheduler(addr, Some("web")).await?;
    let (sub, mut events) = subscribe(&mut web, framework("web", "web", &["*"])).await?;
    // The attack of the issue: read the id from /state, subscribe with it.
    let mut eve = scheduler(addr, Some("eve")).await?;
    let mut info = framework("web", "web", &["*"]);
    info.id = sub.framework_id.clone();
    let err = subscribe(&mut eve, info.clone())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("eve took the framework over"))?;
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(
        err.message().contains("belongs to another principal"),
        "{err}"
    );
    // Without credentials the attempt does not even reach the core.
    let mut anon = scheduler(addr, None).await?;
    let err = subscribe(&mut anon, info.clone())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("anonymous take-over"))?;
    assert_eq!(err.code(), Code::Unauthenticated);
    // A call with the right stream id by another principal is refused too.
    let header = v1::CallHeader {
        framework_id: sub.framework_id.clone(),
        stream_id: sub.stream_id.clone(),
    };
    let err = eve
        .teardown(v1::TeardownRequest {
            header: Some(header.clone()),
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("eve tore the framework down"))?;
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // The owner's stream and calls are untouched.
    web.revive(v1::ReviveRequest {
        header: Some(header),
        roles: vec![],
    })
    .await?;
    let state = operator(addr, Some("ops"))
        .await?
        .get_state(v1::GetStateRequest {})
        .await?
        .into_inner();
    let fw = state.frameworks.iter().find(|f| f.id == sub.framework_id);
    assert!(
        fw.is_some_and(|f| f.connected && f.principal == "web"),
        "{state:?}"
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), events.message())
            .await
            .is_err(),
        "the owner's stream got nothing (no ERROR, not closed)"
    );
    // The owner may fail over to a new stream.
    let (again, _new_events) = subscribe(&mut web, info).await?;
    assert_eq!(again.framework_id, sub.framework_id);
    cancel.cancel();
    Ok(())
}
