//! Mesos's legacy endpoints over a real socket: field names, filters, refusals.

use crate::server::tests::{TestServer, register_agent};

#[tokio::test]
async fn legacy_endpoints_use_mesos_field_names() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let (agent_id, _tx, _inbound) = register_agent(
        &server.url(),
        "host-a",
        "cpus:4;mem:2048;ports:[31000-31009]",
    )
    .await?;

    let (code, v) = server.http("GET", "/version", "").await?;
    assert_eq!(code, 200);
    assert_eq!(v["version"], "1.11.0");

    let (code, state) = server.http("GET", "/master/state", "").await?;
    assert_eq!(code, 200, "{state}");
    let slaves = state["slaves"].as_array().cloned().unwrap_or_default();
    assert_eq!(slaves.len(), 1, "{state}");
    assert_eq!(slaves[0]["id"], agent_id.as_str());
    assert_eq!(slaves[0]["hostname"], "host-a");
    assert_eq!(slaves[0]["resources"]["cpus"], 4.0);
    assert_eq!(slaves[0]["resources"]["mem"], 2048.0);
    assert_eq!(slaves[0]["resources"]["ports"], "[31000-31009]");
    assert_eq!(slaves[0]["active"], true);
    assert_eq!(state["activated_slaves"], 1);
    assert!(state["frameworks"].is_array() && state["completed_frameworks"].is_array());
    assert!(
        state["pid"]
            .as_str()
            .is_some_and(|p| p.starts_with("master@"))
    );

    let (code, slaves) = server.http("GET", "/master/slaves", "").await?;
    assert_eq!(code, 200);
    assert_eq!(slaves["slaves"][0]["id"], agent_id.as_str());

    let (code, summary) = server.http("GET", "/master/state-summary", "").await?;
    assert_eq!(code, 200);
    assert_eq!(summary["slaves"][0]["TASK_RUNNING"], 0);

    let (code, fws) = server.http("GET", "/master/frameworks", "").await?;
    assert_eq!(
        (code, fws["frameworks"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    let (code, tasks) = server
        .http("GET", "/master/tasks?limit=5&order=asc", "")
        .await?;
    assert_eq!(code, 200);
    assert!(tasks["tasks"].is_array());
    let (code, _) = server.http("GET", "/master/tasks?limit=many", "").await?;
    assert_eq!(code, 400);
    let (code, _) = server
        .http("GET", "/master/tasks?order=sideways", "")
        .await?;
    assert_eq!(code, 400);

    let (code, _) = server
        .http("POST", "/quota", r#"{"role":"eng","guarantees":"cpus:1"}"#)
        .await?;
    assert_eq!(code, 200);
    let (code, roles) = server.http("GET", "/master/roles", "").await?;
    assert_eq!(code, 200);
    let eng = roles["roles"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == "eng").cloned())
        .ok_or_else(|| anyhow::anyhow!("eng not in {roles}"))?;
    assert_eq!(eng["quota"]["guarantee"]["cpus"], 1.0);

    let (code, metrics) = server.http("GET", "/metrics/snapshot", "").await?;
    assert_eq!(code, 200);
    assert_eq!(metrics["master/slaves_active"], 1.0);
    assert_eq!(metrics["master/cpus_total"], 4.0);
    assert_eq!(metrics["master/elected"], 1.0);

    let (head, _) = crate::server::tests::http_get_head(server.addr, "/master/redirect").await?;
    assert!(head.starts_with("HTTP/1.1 307"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: //{}", server.addr)),
        "{head}"
    );
    server.stop().await
}
