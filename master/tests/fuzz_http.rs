//! Fuzz target of the master's HTTP/JSON API: every route with bodies built from what each
//! expects (roles, weights, quotas and reservations in the text and JSON forms of resources,
//! agent and framework ids, maintenance windows, the Mesos list form of weights, teardown's
//! form encoding), with wrong types, missing and extra fields, odd numbers and strings, then
//! mutated at the byte level; and any method, path and query.
//!
//! One master (with a registered agent and a subscribed framework, so reservations, drains and
//! teardowns reach the core) serves every case. Properties: no answer is a server error (5xx);
//! a refusal of a JSON route is `{"error": "…"}` with a message; the master keeps answering
//! (`/health` after every request) and `/state` and `/roles` stay valid JSON.
//!
//! `PROFFER_FUZZ_CASES=N` runs N cases, `PROFFER_FUZZ_SEED=S` another seed.

use std::net::SocketAddr;
use std::time::Duration;

use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_proto::v1::agent_client::AgentClient;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use proffer_proto::{Resources, fuzzing, v1};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn config() -> Config {
    Config {
        cases: fuzzing::cases(400),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0x4770_F022)),
        failure_persistence: None,
        max_shrink_iters: 500,
        ..Config::default()
    }
}

/// Ids the bodies may name: the live agent's and framework's (`AGENT`, `FW` are replaced),
/// and others.
fn id() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(vec!["AGENT", "FW"]).prop_map(String::from),
        1 => prop::sample::select(vec!["", "x", "../x", "a/b", "%2F", "\u{1f600}"]).prop_map(String::from),
        1 => Just("i".repeat(300)),
    ]
    .boxed()
}

/// An id whose use ends something for good (a gone agent, a torn down framework): the live
/// one rarely, so the rest of the run still has them.
fn rare_live_id() -> BoxedStrategy<String> {
    prop_oneof![
        1 => prop::sample::select(vec!["AGENT", "FW"]).prop_map(String::from),
        30 => prop::sample::select(vec!["", "x", "a/b", "%2F"]).prop_map(String::from),
    ]
    .boxed()
}

fn role() -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::sample::select(vec!["web", "db", "eng/ml", "*", "web/api"]).prop_map(String::from),
        1 => prop::sample::select(vec!["", "-x", "..", "a b", "a//b", "é"]).prop_map(String::from),
        1 => Just("r".repeat(300)),
    ]
    .boxed()
}

/// Resources as a request gives them: text, the JSON object form or the Mesos array form.
fn resources() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "cpus:1;mem:128",
            "cpus(web,dynamic=ops):1;mem(web,dynamic=ops):64",
            "cpus(web,dynamic):0.5",
            "disk(web,dynamic=ops):10",
            "disk(web,dynamic=ops)[v1:data]:10",
            "cpus(db):1",
            "cpus:4",
            "gpus:1",
            "ports:[31000-31001]",
            "",
            "cpus:-1",
            "cpus:1e13",
            "cpus:x",
            "cpus(web,dynamic=ops):100",
        ])
        .prop_map(|s| json!(s)),
        2 => Just(json!({"cpus": 1, "mem(web,dynamic=ops)": 64})),
        2 => Just(json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
            "reservations": [{"type": "DYNAMIC", "role": "web", "principal": "ops"}]}])),
        1 => junk(),
    ]
    .boxed()
}

fn junk() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "a", null])),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(vec![0.5, 1.0, 2.0, 10.0, 3600.0]).prop_map(|f| json!(f)),
        2 => prop::sample::select(vec![0.0, -1.0, 1e-300, 1e300, 3.2e9, 1e15]).prop_map(|f| json!(f)),
        1 => any::<u64>().prop_map(|n| json!(n)),
        1 => junk(),
    ]
    .boxed()
}

/// An object with some of `fields` (each from its strategy), maybe an extra key.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let n = fields.len();
    let (names, strategies): (Vec<&'static str>, Vec<BoxedStrategy<Value>>) =
        fields.into_iter().unzip();
    (
        strategies,
        prop::collection::vec(prop::bool::weighted(0.85), n),
        prop::option::weighted(0.1, ("[a-z_]{1,6}", junk())),
    )
        .prop_map(move |(values, keep, extra)| {
            let mut m = serde_json::Map::new();
            for ((name, v), k) in names.iter().zip(values).zip(keep) {
                if k {
                    m.insert((*name).into(), v);
                }
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// One request: method, path and body.
fn request() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    let quota = object(vec![
        ("role", role().prop_map(|r| json!(r)).boxed()),
        ("guarantees", resources()),
        ("limits", resources()),
        ("guarantee", resources()),
    ]);
    let weight = object(vec![
        ("role", role().prop_map(|r| json!(r)).boxed()),
        ("weight", number()),
    ]);
    let weights = prop_oneof![
        3 => weight.clone(),
        2 => prop::collection::vec(weight, 0..5).prop_map(Value::Array),
        1 => junk(),
    ];
    let relabel = object(vec![
        ("agent_id", id().prop_map(|i| json!(i)).boxed()),
        ("resources", resources()),
    ]);
    let maintenance = object(vec![
        ("agent_id", id().prop_map(|i| json!(i)).boxed()),
        ("starts_in_secs", number()),
        ("duration_secs", number()),
    ]);
    let drain = object(vec![(
        "reason",
        prop_oneof![Just(json!("m")), junk()].boxed(),
    )]);
    let teardown = prop_oneof![
        object(vec![(
            "framework_id",
            rare_live_id().prop_map(|i| json!(i)).boxed()
        )]),
        rare_live_id().prop_map(|i| json!(format!("frameworkId={i}"))),
    ];
    let json_route = prop_oneof![
        3 => quota.prop_map(|b| ("POST", "/quota".to_string(), b)),
        3 => (prop::sample::select(vec!["POST", "PUT"]), weights)
            .prop_map(|(m, b)| (m, "/weights".to_string(), b)),
        3 => (prop::sample::select(vec!["/reserve", "/unreserve"]), relabel)
            .prop_map(|(p, b)| ("POST", p.to_string(), b)),
        2 => maintenance.prop_map(|b| ("POST", "/maintenance".to_string(), b)),
        2 => (id(), prop::sample::select(vec!["drain", "reactivate"]), drain.clone())
            .prop_map(|(a, what, b)| ("POST", format!("/agents/{a}/{what}"), b)),
        1 => (rare_live_id(), drain)
            .prop_map(|(a, b)| ("POST", format!("/agents/{a}/gone"), b)),
        1 => teardown.prop_map(|b| ("POST", "/teardown".to_string(), b)),
    ];
    let bare = prop_oneof![
        (role()).prop_map(|r| ("DELETE", format!("/quota/{r}"))),
        (
            prop::sample::select(vec!["framework_id", "role", "x"]),
            id()
        )
            .prop_map(|(k, v)| ("GET", format!("/why?{k}={v}"))),
        Just(("GET", "/why?role=web&framework_id=FW".to_string())),
        prop::sample::select(vec![
            ("GET", "/roles"),
            ("GET", "/state"),
            ("GET", "/state/tasks"),
            ("GET", "/metrics"),
            ("GET", "/maintenance"),
            ("GET", "/health"),
            ("GET", "/nope"),
            ("DELETE", "/weights"),
            ("PATCH", "/quota"),
            ("GET", "/quota"),
        ])
        .prop_map(|(m, p)| (m, p.to_string())),
    ];
    let ops = prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec(any::<(u8, usize, usize, u32)>(), 1..3),
    ];
    prop_oneof![
        5 => (json_route, ops).prop_map(|((m, p, body), ops)| {
            let text = match body {
                Value::String(form) if form.starts_with("frameworkId=") => form,
                other => other.to_string(),
            };
            (m.to_string(), p, fuzzing::mutate(&text, &ops).into_bytes())
        }),
        2 => bare.prop_map(|(m, p)| (m.to_string(), p, Vec::new())),
        1 => (prop::sample::select(vec!["/quota", "/weights", "/reserve", "/maintenance", "/teardown"]),
              prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(p, bytes)| ("POST".to_string(), p.to_string(), bytes)),
    ]
}

/// Percent-encodes what a request line cannot carry.
fn encode_path(p: &str) -> String {
    p.bytes()
        .map(|b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One HTTP/1.1 request; (status, body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        encode_path(path),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .parse()?;
    Ok((code, body.to_string()))
}

/// A master with one agent and one framework, kept alive for the whole test.
struct Cluster {
    addr: SocketAddr,
    cancel: CancellationToken,
    agent: String,
    framework: String,
    _agent_tx: tokio::sync::mpsc::Sender<v1::AgentMessage>,
    _agent_rx: tonic::codec::Streaming<v1::MasterMessage>,
    _events: tonic::codec::Streaming<v1::Event>,
}

async fn cluster() -> anyhow::Result<Cluster> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let mut config = ServerConfig::new(MasterConfig::default());
    config.seed = 5;
    tokio::spawn(serve(listener, config, cancel.clone()));
    let url = format!("http://{addr}");
    let mut agent = loop {
        match AgentClient::connect(url.clone()).await {
            Ok(a) => break a,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(4);
    tx.send(v1::AgentMessage {
        msg: Some(v1::agent_message::Msg::Register(v1::RegisterAgent {
            info: Some(Box::new(v1::AgentInfo {
                hostname: "host-a".into(),
                port: 5051,
                resources: Resources::parse("cpus:8;mem:8192;disk:1000;ports:[31000-31009]")?
                    .to_proto(),
                ..Default::default()
            })),
        })),
    })
    .await?;
    let mut inbound = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("session ended"))?;
    let Some(v1::master_message::Msg::Registered(reg)) = first.msg else {
        anyhow::bail!("first message is not AgentRegistered: {first:?}");
    };
    let mut scheduler = SchedulerClient::connect(url).await?;
    let mut events = scheduler
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(v1::FrameworkInfo {
                name: "fuzz".into(),
                roles: vec!["web".into()],
                failover_timeout: 3600.0,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let framework = loop {
        let ev = tokio::time::timeout(WAIT, events.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
        if let Some(v1::event::Event::Subscribed(s)) = ev.event {
            break s.framework_id;
        }
    };
    Ok(Cluster {
        addr,
        cancel,
        agent: reg.agent_id,
        framework,
        _agent_tx: tx,
        _agent_rx: inbound,
        _events: events,
    })
}

async fn check(c: &Cluster, method: &str, path: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let fill = |s: &str| s.replace("AGENT", &c.agent).replace("FW", &c.framework);
    let path = fill(path);
    let body = fill(&String::from_utf8_lossy(body)).into_bytes();
    let fail = |e: anyhow::Error| TestCaseError::fail(format!("{method} {path}: {e}"));
    let (code, answer) = call(c.addr, method, &path, &body).await.map_err(fail)?;
    prop_assert!(
        code < 500,
        "{method} {path} {:?}: {code} {answer}",
        String::from_utf8_lossy(&body)
    );
    let json_route = [
        "/quota",
        "/weights",
        "/reserve",
        "/unreserve",
        "/maintenance",
        "/teardown",
    ]
    .contains(&path.as_str())
        && method != "GET";
    if json_route && code == 400 {
        let v: Value = serde_json::from_str(&answer)
            .map_err(|e| TestCaseError::fail(format!("{method} {path}: {code} {answer:?}: {e}")))?;
        prop_assert!(
            v["error"].as_str().is_some_and(|m| !m.trim().is_empty()),
            "{method} {path}: {answer}"
        );
    }
    let (health, _) = call(c.addr, "GET", "/health", b"").await.map_err(fail)?;
    prop_assert_eq!(health, 200, "after {} {}", method, path);
    Ok(())
}

#[test]
fn the_http_api_answers_any_request() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let c = match rt.block_on(cluster()) {
        Ok(c) => c,
        Err(e) => panic!("cluster: {e}"),
    };
    let mut runner = TestRunner::new(config());
    let result = runner.run(&prop::collection::vec(request(), 1..6), |requests| {
        rt.block_on(async {
            for (method, path, body) in &requests {
                check(&c, method, path, body).await?;
            }
            Ok(())
        })
    });
    // Whatever came before, the state views are still JSON.
    let views = rt.block_on(async {
        for path in ["/state", "/roles", "/state/tasks", "/maintenance"] {
            let (code, body) = call(c.addr, "GET", path, b"").await?;
            anyhow::ensure!(code == 200, "{path}: {code} {body}");
            serde_json::from_str::<Value>(&body).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        }
        Ok(())
    });
    c.cancel.cancel();
    if let Err(e) = result {
        panic!("{e}");
    }
    if let Err(e) = views {
        panic!("{e}");
    }
}
