//! The operator endpoints over real sockets: quota, weights, roles and explanations, over
//! HTTP/JSON and gRPC, including refusals of bad input that change nothing.

use proffer_proto::Resources;
use proffer_proto::v1;
use proffer_proto::v1::operator_client::OperatorClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use super::tests::{TestServer, WAIT, subscribe_framework};

impl TestServer {
    /// An HTTP/1.1 request; returns (status code, JSON body).
    pub(crate) async fn http(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut stream = TcpStream::connect(self.addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await??;
        let text = String::from_utf8(raw)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no header end"))?;
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("no status"))?
            .parse()?;
        let json = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()));
        Ok((code, json))
    }

    /// The role entry of `GET /roles`, if listed.
    pub(crate) async fn role(&self, role: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let (code, body) = self.http("GET", "/roles", "").await?;
        anyhow::ensure!(code == 200, "GET /roles: {code} {body}");
        Ok(body["roles"]
            .as_array()
            .and_then(|list| list.iter().find(|r| r["role"] == role).cloned()))
    }
}

#[tokio::test]
async fn quota_weights_roles_and_why_over_http() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(11).await?;
    let (code, body) = server
        .http(
            "POST",
            "/quota",
            r#"{"role":"eng/ml","guarantees":"cpus:2;mem:1024","limits":"cpus:4"}"#,
        )
        .await?;
    assert_eq!((code, &body), (200, &serde_json::json!({"ok": true})));
    let (code, _) = server
        .http("POST", "/weights", r#"{"role":"eng/ml","weight":2.5}"#)
        .await?;
    assert_eq!(code, 200);
    // Mesos form: a list, with PUT.
    let (code, _) = server
        .http("PUT", "/weights", r#"[{"role":"batch","weight":0.5}]"#)
        .await?;
    assert_eq!(code, 200);
    let eng = server
        .role("eng/ml")
        .await?
        .ok_or_else(|| anyhow::anyhow!("eng/ml not listed"))?;
    assert_eq!(eng["weight"], 2.5);
    assert_eq!(eng["guarantees"], "cpus:2;mem:1024");
    assert_eq!(eng["limits"], "cpus:4");
    assert_eq!(
        server.role("batch").await?.map(|r| r["weight"].clone()),
        Some(0.5.into())
    );

    let (code, why) = server.http("GET", "/why?role=eng/ml", "").await?;
    assert_eq!(code, 200, "{why}");
    assert_eq!(why["subject"], "role eng/ml");
    assert!(
        why["lines"].as_array().is_some_and(|l| !l.is_empty()),
        "{why}"
    );
    // A framework id that names a role explains the role; unknown names are 404.
    let (code, why) = server.http("GET", "/why?framework_id=eng/ml", "").await?;
    assert_eq!(
        (code, &why["subject"]),
        (200, &"role eng/ml".into()),
        "{why}"
    );
    for (path, want) in [
        (
            "/why?framework_id=nope",
            "no framework or role named `nope`",
        ),
        ("/why?role=nobody", "no role named `nobody`"),
    ] {
        let (code, why) = server.http("GET", path, "").await?;
        assert_eq!(code, 404, "{path}: {why}");
        assert_eq!(why["error"], want, "{path}");
    }

    let (code, _) = server.http("DELETE", "/quota/eng/ml", "").await?;
    assert_eq!(code, 200);
    let eng = server.role("eng/ml").await?;
    assert_eq!(eng.map(|r| r["guarantees"].clone()), Some("".into()));
    let (code, body) = server.http("DELETE", "/quota/eng/ml", "").await?;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has no quota")
    );
    server.stop().await
}

#[tokio::test]
async fn bad_operator_input_over_http_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(11).await?;
    let (code, _) = server
        .http("POST", "/quota", r#"{"role":"eng","guarantees":"cpus:1"}"#)
        .await?;
    assert_eq!(code, 200);
    let before = server.http("GET", "/roles", "").await?;
    let table = [
        (
            "POST",
            "/quota",
            r#"{"role":"a//b","guarantees":"cpus:1"}"#,
            "empty path segment",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":"cpus:-1"}"#,
            "negative",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":"cpus:NaN"}"#,
            "not a finite number",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":{"cpus":-2}}"#,
            "negative",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":"ports:[1-2]"}"#,
            "not a quota resource",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":"cpus(eng):1"}"#,
            "reservation",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":"cpus:4","limits":"cpus:2"}"#,
            "exceeds its limit",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"*","guarantees":"cpus:1"}"#,
            "cannot have a quota",
        ),
        (
            "POST",
            "/quota",
            r#"{"guarantees":"cpus:1"}"#,
            "missing string field `role`",
        ),
        ("POST", "/quota", "not json", "invalid JSON body"),
        (
            "POST",
            "/weights",
            r#"{"role":"eng","weight":0}"#,
            "must be a positive finite number",
        ),
        (
            "POST",
            "/weights",
            r#"{"role":"eng","weight":-1}"#,
            "must be a positive finite number",
        ),
        (
            "POST",
            "/weights",
            r#"{"role":"eng","weight":"heavy"}"#,
            "expected a number",
        ),
        (
            "POST",
            "/weights",
            r#"[{"role":"eng","weight":3},{"role":"..","weight":1}]"#,
            "invalid role `..`",
        ),
        ("POST", "/weights", "7", "expected"),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","limits":"cpus:1e13"}"#,
            "invalid resources in limits of role `eng`: resource `cpus`: invalid scalar 10000000000000: too large",
        ),
        (
            "POST",
            "/quota",
            r#"{"role":"eng","guarantees":{"gpus":0.5}}"#,
            "guarantees of role `eng`: resource `gpus`: invalid scalar 0.5: gpus are allocated whole",
        ),
        (
            "POST",
            "/weights",
            r#"{"role":"eng","weight":-0.5}"#,
            "must be a positive finite number",
        ),
        (
            "POST",
            "/maintenance",
            r#"{"agent_id":"a1","starts_in_secs":0,"duration_secs":1e300}"#,
            "invalid duration_secs: 1e300 s is more than the maximum 3153600000 s (100 years)",
        ),
        (
            "POST",
            "/maintenance",
            r#"{"agent_id":"a1","starts_in_secs":4e9,"duration_secs":60}"#,
            "invalid starts_in_secs: 4000000000 s is more than the maximum",
        ),
        (
            "POST",
            "/maintenance",
            r#"{"agent_id":"a1","starts_in_secs":-1,"duration_secs":60}"#,
            "invalid starts_in_secs: -1 is not a non-negative number of seconds",
        ),
        ("GET", "/why", "", "exactly one of"),
        ("GET", "/why?role=a//b", "", "empty path segment"),
        ("DELETE", "/quota/nobody", "", "has no quota"),
    ];
    for (method, path, body, want) in table {
        let (code, reply) = server.http(method, path, body).await?;
        assert_eq!(code, 400, "{method} {path} {body}: {reply}");
        let msg = reply["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(want),
            "{method} {path} {body}: `{msg}` lacks `{want}`"
        );
    }
    assert_eq!(
        server.http("GET", "/roles", "").await?,
        before,
        "nothing changed"
    );
    server.stop().await
}

/// Quotas, weights and maintenance windows out of range over gRPC: InvalidArgument naming the
/// role or field, the resource and the value.
async fn grpc_refuses_out_of_range_numbers(
    op: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let scalar = |name: &str, m: i64| {
        vec![v1::Resource {
            name: name.into(),
            value: Some(v1::resource::Value::ScalarMilli(m)),
            ..Default::default()
        }]
    };
    let quotas = [
        (
            vec![],
            scalar("cpus", i64::MAX),
            "limits of role `web`: resource `cpus`",
        ),
        (
            scalar("mem", -1),
            vec![],
            "guarantees of role `web`: resource `mem`: invalid scalar -0.001: negative",
        ),
        (
            scalar("gpus", 1500),
            vec![],
            "resource `gpus`: invalid scalar 1.5: gpus are allocated whole",
        ),
    ];
    for (guarantees, limits, want) in quotas {
        let bad = op
            .set_quota(v1::SetQuotaRequest {
                role: "web".into(),
                guarantees,
                limits,
            })
            .await
            .expect_err(want);
        assert_eq!(bad.code(), Code::InvalidArgument, "{want}");
        assert!(
            bad.message().contains(want),
            "`{}` lacks `{want}`",
            bad.message()
        );
    }
    for weight in [0.0, -1.0, f64::INFINITY] {
        let bad = op
            .set_weight(v1::SetWeightRequest {
                role: "web".into(),
                weight,
            })
            .await
            .expect_err("bad weight");
        assert_eq!(bad.code(), Code::InvalidArgument, "{weight}");
    }
    for (starts_in_secs, duration_secs, want) in [
        (
            0.0,
            1e300,
            "invalid duration_secs: 1e300 s is more than the maximum",
        ),
        (
            f64::NAN,
            60.0,
            "invalid starts_in_secs: NaN is not a non-negative",
        ),
        (
            0.0,
            f64::INFINITY,
            "invalid duration_secs: inf is not a non-negative",
        ),
    ] {
        let bad = op
            .schedule_maintenance(v1::ScheduleMaintenanceRequest {
                agent_id: "a1".into(),
                starts_in_secs,
                duration_secs,
            })
            .await
            .expect_err(want);
        assert_eq!(bad.code(), Code::InvalidArgument, "{want}");
        assert!(
            bad.message().contains(want),
            "`{}` lacks `{want}`",
            bad.message()
        );
    }
    Ok(())
}

fn wire(text: &str) -> anyhow::Result<Vec<v1::Resource>> {
    Ok(Resources::parse(text)?.to_proto())
}

#[tokio::test]
async fn operator_grpc_quota_weights_roles_and_why() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(11).await?;
    let mut op = OperatorClient::connect(server.url()).await?;
    op.set_quota(v1::SetQuotaRequest {
        role: "web".into(),
        guarantees: wire("cpus:1;mem:256")?,
        limits: vec![],
    })
    .await?;
    op.set_weight(v1::SetWeightRequest {
        role: "web".into(),
        weight: 3.0,
    })
    .await?;
    // A framework in the role shows up in GetRoles and can be explained by id.
    let info = v1::FrameworkInfo {
        name: "web-fw".into(),
        roles: vec!["web".into()],
        ..Default::default()
    };
    let (_sched, events, sub) = subscribe_framework(&server.url(), info).await?;
    let roles = op
        .get_roles(v1::GetRolesRequest {})
        .await?
        .into_inner()
        .roles;
    let web = roles
        .iter()
        .find(|r| r.role == "web")
        .ok_or_else(|| anyhow::anyhow!("web not listed: {roles:?}"))?;
    assert_eq!(web.weight, 3.0);
    assert_eq!(web.guarantees, "cpus:1;mem:256");
    assert_eq!(web.limits, "");
    assert_eq!(web.frameworks, vec![sub.framework_id.clone()]);
    let why = op
        .why(v1::WhyRequest {
            subject: Some(v1::why_request::Subject::FrameworkId(
                sub.framework_id.clone(),
            )),
        })
        .await?
        .into_inner()
        .lines;
    assert!(!why.is_empty());
    op.remove_quota(v1::RemoveQuotaRequest { role: "web".into() })
        .await?;

    // Bad input: clear InvalidArgument statuses.
    let bad = op
        .set_weight(v1::SetWeightRequest {
            role: "web".into(),
            weight: f64::NAN,
        })
        .await
        .expect_err("NaN weight");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("positive finite"),
        "{}",
        bad.message()
    );
    let bad = op
        .set_quota(v1::SetQuotaRequest {
            role: "web".into(),
            guarantees: vec![v1::Resource {
                name: "cpus".into(),
                value: Some(v1::resource::Value::ScalarMilli(-1)),
                ..Default::default()
            }],
            limits: vec![],
        })
        .await
        .expect_err("negative quota");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("guarantees"), "{}", bad.message());
    let bad = op
        .set_quota(v1::SetQuotaRequest {
            role: "web/".into(),
            guarantees: wire("cpus:1")?,
            limits: vec![],
        })
        .await
        .expect_err("bad role");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad = op
        .why(v1::WhyRequest { subject: None })
        .await
        .expect_err("no subject");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad = op
        .why(v1::WhyRequest {
            subject: Some(v1::why_request::Subject::FrameworkId("UNKNOWN_ID".into())),
        })
        .await
        .expect_err("unknown framework");
    assert_eq!(bad.code(), Code::NotFound);
    assert_eq!(bad.message(), "no framework or role named `UNKNOWN_ID`");
    grpc_refuses_out_of_range_numbers(&mut op).await?;
    let roles = op
        .get_roles(v1::GetRolesRequest {})
        .await?
        .into_inner()
        .roles;
    let web = roles.iter().find(|r| r.role == "web");
    assert_eq!(
        web.map(|r| (r.weight, r.guarantees.as_str())),
        Some((3.0, ""))
    );
    drop(events);
    server.stop().await
}
