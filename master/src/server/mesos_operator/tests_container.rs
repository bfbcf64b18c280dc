//! A task launched with an image shows it in the master's `/state` (image and sha256) and in
//! Mesos's `/master/state` (`container.mesos.image.docker.name`) and `GET_TASKS`.

use proffer_proto::v1;

use super::tests_api::raw;
use crate::server::tests::{TestServer, next_offer, register_agent, subscribe_framework};

#[tokio::test]
async fn a_task_with_an_image_shows_it_in_state() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(22).await?;
    let (_agent_id, _tx, _inbound) =
        register_agent(&server.url(), "host-a", "cpus:2;mem:512").await?;
    let info = v1::FrameworkInfo {
        name: "images".into(),
        roles: vec!["*".into()],
        ..Default::default()
    };
    let (mut sched, mut events, sub) = subscribe_framework(&server.url(), info).await?;
    let offer = next_offer(&mut events).await?;
    let image = "file:///srv/images/app.tar";
    let sha = "ab".repeat(32);
    let task = |id: &str, container: Option<v1::ContainerInfo>| v1::TaskInfo {
        name: id.into(),
        task_id: id.into(),
        agent_id: offer.agent_id.clone(),
        resources: proffer_proto::Resources::parse("cpus:0.5;mem:64")
            .map(|r| r.to_proto())
            .unwrap_or_default(),
        command: Some(v1::CommandInfo {
            value: "true".into(),
            shell: true,
            ..Default::default()
        }),
        container,
        ..Default::default()
    };
    let launch = v1::Launch {
        tasks: vec![
            task(
                "boxed",
                Some(v1::ContainerInfo {
                    image: image.into(),
                    image_sha256: sha.clone(),
                }),
            ),
            task("plain", None),
        ],
    };
    sched
        .accept(v1::AcceptRequest {
            header: Some(v1::CallHeader {
                framework_id: sub.framework_id.clone(),
                stream_id: sub.stream_id.clone(),
            }),
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::Operation {
                op: Some(v1::operation::Op::Launch(launch)),
            }],
            filters: None,
        })
        .await?;

    let (code, state) = server.http("GET", "/state", "").await?;
    assert_eq!(code, 200, "{state}");
    let tasks = state["tasks"].as_array().cloned().unwrap_or_default();
    let by_id = |id: &str| tasks.iter().find(|t| t["id"] == id).cloned();
    let boxed = by_id("boxed").ok_or_else(|| anyhow::anyhow!("no task boxed in {state}"))?;
    assert_eq!(boxed["image"], image, "{boxed}");
    assert_eq!(boxed["image_sha256"], sha.as_str(), "{boxed}");
    let plain = by_id("plain").ok_or_else(|| anyhow::anyhow!("no task plain in {state}"))?;
    assert_eq!(plain["image"], "", "{plain}");

    let (code, mesos) = server.http("GET", "/master/state", "").await?;
    assert_eq!(code, 200, "{mesos}");
    let mesos_tasks = mesos["frameworks"][0]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let boxed = mesos_tasks
        .iter()
        .find(|t| t["id"] == "boxed")
        .ok_or_else(|| anyhow::anyhow!("no task boxed in {mesos}"))?;
    assert_eq!(boxed["container"]["type"], "MESOS", "{boxed}");
    assert_eq!(
        boxed["container"]["mesos"]["image"]["docker"]["name"], image,
        "{boxed}"
    );
    let plain = mesos_tasks
        .iter()
        .find(|t| t["id"] == "plain")
        .ok_or_else(|| anyhow::anyhow!("no task plain in {mesos}"))?;
    assert!(plain.get("container").is_none(), "{plain}");

    let json = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let (code, _, body) = raw(
        server.addr,
        "POST",
        "/api/v1",
        &json,
        br#"{"type": "GET_TASKS"}"#,
    )
    .await?;
    let got: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(code, 200, "{got}");
    let listed = got["get_tasks"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let boxed = listed
        .iter()
        .find(|t| t["task_id"]["value"] == "boxed")
        .ok_or_else(|| anyhow::anyhow!("no task boxed in {got}"))?;
    assert_eq!(
        boxed["container"]["mesos"]["image"]["docker"]["name"], image,
        "{boxed}"
    );
    drop(events);
    server.stop().await
}
