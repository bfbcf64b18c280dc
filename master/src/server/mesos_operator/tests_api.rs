//! `POST /api/v1` over a real socket: every call in JSON and protobuf, the SUBSCRIBE stream,
//! and Mesos's refusals of bad input.

use std::net::SocketAddr;
use std::sync::Arc;

use proffer_master_core::authz::{Acls, Authorizer};
use proffer_proto::auth::Credentials;
use proffer_proto::mesos::v1::master as mm;
use prost::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::tests::{TestServer, WAIT, register_agent};
use crate::server::{Security, ServerConfig};

/// A raw HTTP/1.1 exchange: (status, head, body with chunked encoding removed).
pub(crate) async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
    let end = find(&raw, b"\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .parse()?;
    let mut rest = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        dechunk(&mut rest, &mut out);
        rest = out;
    }
    Ok((code, head, rest))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Moves the complete chunks at the front of `raw` into `out`.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) {
    loop {
        let Some(eol) = find(raw, b"\r\n") else {
            return;
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]).to_string();
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            return;
        };
        if raw.len() < eol + 2 + size + 2 {
            return;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw.drain(..eol + 2 + size + 2);
        if size == 0 {
            return;
        }
    }
}

/// A JSON operator call; returns (status, body as JSON or text).
async fn call(server: &TestServer, body: Value) -> anyhow::Result<(u16, Value)> {
    let (code, _, body) = raw(
        server.addr,
        "POST",
        "/api/v1",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await?;
    let text = String::from_utf8(body)?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// A JSON call that must answer 200 with a body.
async fn get(server: &TestServer, kind: &str) -> anyhow::Result<Value> {
    let (code, v) = call(server, json!({"type": kind})).await?;
    anyhow::ensure!(code == 200, "{kind}: {code} {v}");
    anyhow::ensure!(v["type"] == kind, "{kind}: {v}");
    Ok(v)
}

#[tokio::test]
async fn reads_in_json_and_protobuf() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(5).await?;
    let (agent_id, _tx, _in) = register_agent(&server.url(), "host-b", "cpus:8;mem:4096").await?;
    assert_eq!(
        get(&server, "GET_HEALTH").await?["get_health"]["healthy"],
        true
    );
    assert_eq!(
        get(&server, "GET_VERSION").await?["get_version"]["version_info"]["version"],
        "1.11.0"
    );
    let state = get(&server, "GET_STATE").await?;
    let agents = &state["get_state"]["get_agents"]["agents"];
    assert_eq!(agents[0]["agent_info"]["id"]["value"], agent_id.as_str());
    assert_eq!(agents[0]["agent_info"]["hostname"], "host-b");
    let cpus = agents[0]["total_resources"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == "cpus").cloned())
        .ok_or_else(|| anyhow::anyhow!("no cpus in {state}"))?;
    assert_eq!(cpus["scalar"]["value"], 8.0);
    assert_eq!(cpus["type"], "SCALAR");
    for kind in [
        "GET_AGENTS",
        "GET_FRAMEWORKS",
        "GET_EXECUTORS",
        "GET_TASKS",
        "GET_ROLES",
        "GET_WEIGHTS",
        "GET_QUOTA",
        "GET_FLAGS",
        "GET_MASTER",
        "GET_MAINTENANCE_SCHEDULE",
        "GET_MAINTENANCE_STATUS",
    ] {
        get(&server, kind).await?;
    }
    let metrics = get(&server, "GET_METRICS").await?;
    let names: Vec<&str> = metrics["get_metrics"]["metrics"]
        .as_array()
        .map(|l| l.iter().filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"master/slaves_active"), "{metrics}");

    // Protobuf both ways.
    let body = mm::Call {
        r#type: Some(mm::call::Type::GetAgents as i32),
        ..Default::default()
    }
    .encode_to_vec();
    let (code, head, body) = raw(
        server.addr,
        "POST",
        "/api/v1",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Accept", "application/x-protobuf"),
        ],
        &body,
    )
    .await?;
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("application/x-protobuf"), "{head}");
    let resp = mm::Response::decode(body.as_slice())?;
    let agents = resp.get_agents.map(|g| g.agents).unwrap_or_default();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        agents[0].agent_info.id.as_ref().map(|i| i.value.as_str()),
        Some(agent_id.as_str())
    );
    server.stop().await
}

#[tokio::test]
async fn changes_take_effect() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(6).await?;
    let (agent_id, _tx, _in) =
        register_agent(&server.url(), "host-c", "cpus:8;mem:4096;disk:1000").await?;
    let (code, v) = call(
        &server,
        json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "eng", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 4}}}
        ]}}),
    )
    .await?;
    assert_eq!(code, 200, "{v}");
    let quota = get(&server, "GET_QUOTA").await?;
    let config = &quota["get_quota"]["status"]["configs"][0];
    assert_eq!(config["role"], "eng");
    assert_eq!(config["guarantees"]["cpus"]["value"], 2.0);
    assert_eq!(config["limits"]["cpus"]["value"], 4.0);

    let (code, v) = call(
        &server,
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "eng", "weight": 3.0}]}}),
    )
    .await?;
    assert_eq!(code, 200, "{v}");
    let weights = get(&server, "GET_WEIGHTS").await?;
    let eng = weights["get_weights"]["weight_infos"]
        .as_array()
        .and_then(|l| l.iter().find(|w| w["role"] == "eng").cloned())
        .ok_or_else(|| anyhow::anyhow!("eng not in {weights}"))?;
    assert_eq!(eng["weight"], 3.0);

    let reserve = json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
            "reservations": [{"type": "DYNAMIC", "role": "eng"}]}]}});
    let (code, v) = call(&server, reserve).await?;
    assert_eq!(code, 202, "{v}");
    let state = get(&server, "GET_AGENTS").await?;
    let reserved = state["get_agents"]["agents"][0]["total_resources"]
        .as_array()
        .is_some_and(|l| l.iter().any(|r| r["name"] == "cpus" && r["role"] == "eng"));
    assert!(reserved, "{state}");
    let unreserve = json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
        "agent_id": {"value": agent_id},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
            "reservations": [{"type": "DYNAMIC", "role": "eng"}]}]}});
    let (code, v) = call(&server, unreserve).await?;
    assert_eq!(code, 202, "{v}");

    // A persistent volume on reserved disk: created, shown, destroyed.
    let disk = |persistence: bool| {
        let mut r = json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 100},
            "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "ops"}]});
        if persistence {
            r["disk"] = json!({"persistence": {"id": "data"},
                "volume": {"container_path": "data", "mode": "RW"}});
        }
        r
    };
    let agent = json!({"value": agent_id});
    for (kind, field, body) in [
        (
            "RESERVE_RESOURCES",
            "reserve_resources",
            json!({"agent_id": agent, "resources": [disk(false)]}),
        ),
        (
            "CREATE_VOLUMES",
            "create_volumes",
            json!({"agent_id": agent, "volumes": [disk(true)]}),
        ),
    ] {
        let (code, v) = call(&server, json!({"type": kind, field: body})).await?;
        assert_eq!(code, 202, "{kind}: {v}");
    }
    let agents = get(&server, "GET_AGENTS").await?;
    let has_volume = agents["get_agents"]["agents"][0]["total_resources"]
        .as_array()
        .is_some_and(|l| l.iter().any(|r| r["disk"]["persistence"]["id"] == "data"));
    assert!(has_volume, "{agents}");
    let (code, v) = call(
        &server,
        json!({"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": agent, "volumes": [disk(true)]}}),
    )
    .await?;
    assert_eq!(code, 400, "{v}");
    assert!(
        v.as_str().is_some_and(|t| t.contains("exists on agent")),
        "{v}"
    );
    let (code, v) = call(
        &server,
        json!({"type": "DESTROY_VOLUMES", "destroy_volumes": {"agent_id": agent, "volumes": [disk(true)]}}),
    )
    .await?;
    assert_eq!(code, 202, "{v}");

    // Maintenance by machine (hostname).
    let start_ns = (crate::server::unix_ms() + 3_600_000) as i64 * 1_000_000;
    let (code, v) = call(
        &server,
        json!({"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {
            "schedule": {"windows": [{"machine_ids": [{"hostname": "host-c"}],
                "unavailability": {"start": {"nanoseconds": start_ns},
                    "duration": {"nanoseconds": 600_000_000_000i64}}}]}}}),
    )
    .await?;
    assert_eq!(code, 202, "{v}");
    let schedule = get(&server, "GET_MAINTENANCE_SCHEDULE").await?;
    let window = &schedule["get_maintenance_schedule"]["schedule"]["windows"][0];
    assert_eq!(window["machine_ids"][0]["hostname"], "host-c", "{schedule}");
    assert_eq!(
        window["unavailability"]["duration"]["nanoseconds"],
        600_000_000_000i64
    );
    let (code, v) = call(
        &server,
        json!({"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {
            "schedule": {"windows": [{"machine_ids": [{"hostname": "nowhere"}],
                "unavailability": {"start": {"nanoseconds": start_ns}}}]}}}),
    )
    .await?;
    assert_eq!(code, 400, "{v}");
    assert!(v.as_str().is_some_and(|t| t.contains("nowhere")), "{v}");

    // Drain and reactivate.
    let (code, v) = call(
        &server,
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await?;
    assert_eq!(code, 200, "{v}");
    let agents = get(&server, "GET_AGENTS").await?;
    assert_eq!(
        agents["get_agents"]["agents"][0]["deactivated"], true,
        "{agents}"
    );
    let (code, v) = call(
        &server,
        json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await?;
    assert_eq!(code, 200, "{v}");

    // Unknown objects and unimplemented calls.
    let (code, v) = call(
        &server,
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "no-such"}}}),
    )
    .await?;
    assert_eq!(code, 404, "{v}");
    let (code, v) = call(
        &server,
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "no-such"}}}),
    )
    .await?;
    assert_eq!(code, 404, "{v}");
    let (code, v) = call(
        &server,
        json!({"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await?;
    assert_eq!(code, 501, "{v}");
    assert!(
        v.as_str().is_some_and(|t| t.contains("DEACTIVATE_AGENT")),
        "{v}"
    );
    let (code, v) = call(&server, json!({"type": "UPDATE_QUOTA"})).await?;
    assert_eq!(code, 400, "{v}");
    assert!(
        v.as_str().is_some_and(|t| t.contains("update_quota")),
        "{v}"
    );
    server.stop().await
}

/// A refused request: what it is, its headers, body, expected status and reply text.
type BadCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_input_gets_mesos_status_codes() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(8).await?;
    let json_headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    // (what, headers, body, expected status, text the reply must contain)
    let cases: Vec<BadCase> = vec![
        (
            "malformed JSON",
            json_headers.to_vec(),
            b"{not json".to_vec(),
            400,
            "Failed to parse",
        ),
        (
            "malformed protobuf",
            vec![("Content-Type", "application/x-protobuf")],
            vec![0xff, 0xff, 0xff],
            400,
            "Failed to parse",
        ),
        (
            "unknown call",
            json_headers.to_vec(),
            br#"{"type":"GET_NOTHING"}"#.to_vec(),
            400,
            "GET_NOTHING",
        ),
        (
            "no type",
            json_headers.to_vec(),
            b"{}".to_vec(),
            400,
            "'type'",
        ),
        (
            "wrong content type",
            vec![("Content-Type", "text/plain")],
            br#"{"type":"GET_HEALTH"}"#.to_vec(),
            415,
            "Content-Type",
        ),
        (
            "no content type",
            vec![],
            br#"{"type":"GET_HEALTH"}"#.to_vec(),
            400,
            "Content-Type",
        ),
        (
            "unacceptable",
            vec![
                ("Content-Type", "application/json"),
                ("Accept", "text/html"),
            ],
            br#"{"type":"GET_HEALTH"}"#.to_vec(),
            406,
            "Accept",
        ),
    ];
    for (what, headers, body, want, needle) in cases {
        let (code, head, body) = raw(server.addr, "POST", "/api/v1", &headers, &body).await?;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(code, want, "{what}: {head} {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    let big = vec![b' '; crate::server::MAX_MESSAGE_BYTES + 1];
    let (code, _, _) = raw(server.addr, "POST", "/api/v1", &json_headers, &big).await?;
    assert_eq!(code, 413);
    let (code, _, _) = raw(server.addr, "GET", "/api/v1", &[], b"").await?;
    assert_eq!(code, 405);
    server.stop().await
}

#[tokio::test]
async fn authentication_and_acls_apply() -> anyhow::Result<()> {
    let mut config = ServerConfig::new(crate::core::MasterConfig::default());
    config.security = Security {
        credentials: Some(Arc::new(Credentials::parse(
            r#"{"credentials": [{"principal": "ops", "secret": "ops-secret"},
                {"principal": "dev", "secret": "dev-secret"}]}"#,
            "test",
        )?)),
        authenticate_http_readwrite: true,
        authenticate_http_readonly: true,
        authorizer: Arc::new(Authorizer::new(Acls::parse(
            r#"{"update_quotas": [
                {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
                {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]}"#,
            "test",
        )?)),
        ..Security::default()
    };
    let server = TestServer::start_with(config).await?;
    let body = json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "eng", "guarantees": {"cpus": {"value": 1}}}]}})
    .to_string();
    let basic = |who: &str| {
        proffer_proto::auth::Credential::basic(who, format!("{who}-secret"))
            .map(|c| c.authorization())
            .unwrap_or_default()
    };
    let json_ct = ("Content-Type", "application/json");
    let (code, _, _) = raw(server.addr, "POST", "/api/v1", &[json_ct], body.as_bytes()).await?;
    assert_eq!(code, 401);
    let (code, _, _) = raw(server.addr, "GET", "/master/state", &[], b"").await?;
    assert_eq!(code, 401);
    let dev = basic("dev");
    let (code, _, text) = raw(
        server.addr,
        "POST",
        "/api/v1",
        &[json_ct, ("Authorization", &dev)],
        body.as_bytes(),
    )
    .await?;
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&text));
    let ops = basic("ops");
    let (code, _, text) = raw(
        server.addr,
        "POST",
        "/api/v1",
        &[json_ct, ("Authorization", &ops)],
        body.as_bytes(),
    )
    .await?;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&text));
    server.stop().await
}

/// Reads RecordIO records from a chunked HTTP response.
struct Records {
    stream: TcpStream,
    raw: Vec<u8>,
    payload: Vec<u8>,
}

impl Records {
    /// Opens `SUBSCRIBE` with `accept`; returns the reader and the response head.
    async fn subscribe(addr: SocketAddr, accept: &str) -> anyhow::Result<(Records, String)> {
        let mut stream = TcpStream::connect(addr).await?;
        let body = br#"{"type":"SUBSCRIBE"}"#;
        let request = format!(
            "POST /api/v1 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Accept: {accept}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut r = Records {
            stream,
            raw: Vec::new(),
            payload: Vec::new(),
        };
        let head = loop {
            if let Some(end) = find(&r.raw, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&r.raw[..end]).to_string();
                r.raw.drain(..end + 4);
                break head;
            }
            r.fill().await?;
        };
        Ok((r, head))
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 65536];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "stream closed");
        self.raw.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// The next record.
    async fn next(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            dechunk(&mut self.raw, &mut self.payload);
            if let Some(nl) = self.payload.iter().position(|b| *b == b'\n') {
                let len: usize = String::from_utf8_lossy(&self.payload[..nl]).parse()?;
                if self.payload.len() >= nl + 1 + len {
                    let record = self.payload[nl + 1..nl + 1 + len].to_vec();
                    self.payload.drain(..nl + 1 + len);
                    return Ok(record);
                }
            }
            self.fill().await?;
        }
    }
}

#[tokio::test]
async fn subscribe_streams_state_then_events() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(9).await?;
    let (first_agent, _tx1, _in1) =
        register_agent(&server.url(), "host-d", "cpus:2;mem:512").await?;
    let (mut json_stream, head) = Records::subscribe(server.addr, "application/json").await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    let (mut pb_stream, _) = Records::subscribe(server.addr, "application/x-protobuf").await?;
    let first: Value = serde_json::from_slice(&json_stream.next().await?)?;
    assert_eq!(first["type"], "SUBSCRIBED", "{first}");
    assert_eq!(first["subscribed"]["heartbeat_interval_seconds"], 15.0);
    assert_eq!(
        first["subscribed"]["get_state"]["get_agents"]["agents"][0]["agent_info"]["id"]["value"],
        first_agent.as_str()
    );
    let pb_first = mm::Event::decode(pb_stream.next().await?.as_slice())?;
    assert_eq!(pb_first.r#type, Some(mm::event::Type::Subscribed as i32));

    // A new agent shows up on both streams.
    let (second, _tx2, _in2) = register_agent(&server.url(), "host-e", "cpus:2;mem:512").await?;
    let added: Value = serde_json::from_slice(&json_stream.next().await?)?;
    assert_eq!(added["type"], "AGENT_ADDED", "{added}");
    assert_eq!(
        added["agent_added"]["agent"]["agent_info"]["id"]["value"],
        second.as_str()
    );
    let pb_added = mm::Event::decode(pb_stream.next().await?.as_slice())?;
    assert_eq!(pb_added.r#type, Some(mm::event::Type::AgentAdded as i32));

    // A framework subscribes: FRAMEWORK_ADDED.
    let mut sched =
        proffer_proto::v1::scheduler_client::SchedulerClient::connect(server.url()).await?;
    let _events = sched
        .subscribe(proffer_proto::v1::SubscribeRequest {
            framework_info: Some(proffer_proto::v1::FrameworkInfo {
                name: "watched".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let fw: Value = serde_json::from_slice(&json_stream.next().await?)?;
    assert_eq!(fw["type"], "FRAMEWORK_ADDED", "{fw}");
    assert_eq!(
        fw["framework_added"]["framework"]["framework_info"]["name"],
        "watched"
    );
    server.stop().await
}
