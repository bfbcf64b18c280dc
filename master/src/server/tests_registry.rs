//! The server with a registry: what operators set survives a restart on the same work dir,
//! `/state` shows the registry, a failing registry makes the master wait (and `/health` say
//! why) without losing what was acknowledged, and a newer registry refuses to start.

use proffer_proto::v1;
use proffer_proto::v1::operator_client::OperatorClient;

use super::tests::{TestServer, WAIT, http_get};
use crate::registry::{MemoryRegistry, RedbRegistry, Registry, RegistryOp, Table};

async fn operator(
    server: &TestServer,
) -> anyhow::Result<OperatorClient<tonic::transport::Channel>> {
    Ok(OperatorClient::connect(server.url()).await?)
}

#[tokio::test]
async fn weights_and_quotas_survive_a_restart_on_the_same_work_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_registry(Box::new(RedbRegistry::open(dir.path())?)).await?;
    let mut op = operator(&server).await?;
    op.set_weight(v1::SetWeightRequest {
        role: "web".into(),
        weight: 2.5,
    })
    .await?;
    op.set_quota(v1::SetQuotaRequest {
        role: "web".into(),
        guarantees: proffer_proto::Resources::parse("cpus:2;mem:1024")?.to_proto(),
        ..Default::default()
    })
    .await?;
    let state = op.get_state(v1::GetStateRequest {}).await?.into_inner();
    let reg = state.registry.clone().expect("registry in /state");
    assert_eq!(reg.backend, "redb");
    assert!(reg.location.ends_with("registry.redb"), "{}", reg.location);
    assert!(reg.last_write_unix_ms > 0);
    assert_eq!(reg.recoveries, 1);
    server.stop().await?;

    let server = TestServer::start_with_registry(Box::new(RedbRegistry::open(dir.path())?)).await?;
    let mut op = operator(&server).await?;
    let roles = op.get_roles(v1::GetRolesRequest {}).await?.into_inner();
    let web = roles
        .roles
        .iter()
        .find(|r| r.role == "web")
        .expect("role web after the restart");
    assert_eq!(web.weight, 2.5);
    assert!(web.guarantees.contains("cpus:2"), "{web:?}");
    let state = op.get_state(v1::GetStateRequest {}).await?.into_inner();
    assert_eq!(state.registry.map(|r| r.recoveries), Some(2));
    let (status, body) = http_get(server.addr, "/metrics").await?;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("proffer_registry_write_seconds"), "{body}");
    assert!(body.contains("proffer_registry_recoveries 2"), "{body}");
    server.stop().await
}

#[tokio::test]
async fn a_failing_registry_holds_changes_and_says_so() -> anyhow::Result<()> {
    let registry = MemoryRegistry::new();
    let server = TestServer::start_with_registry(Box::new(registry.clone())).await?;
    let (status, _) = http_get(server.addr, "/health").await?;
    assert!(status.contains("200"), "{status}");
    registry.fail_writes(true);
    let mut op = operator(&server).await?;
    // The weight is not acknowledged while the registry fails.
    let call = op.set_weight(v1::SetWeightRequest {
        role: "batch".into(),
        weight: 4.0,
    });
    let waited = tokio::time::timeout(std::time::Duration::from_millis(1_500), call).await;
    assert!(waited.is_err(), "the reply must wait for the registry");
    let (status, body) = http_get(server.addr, "/health").await?;
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains("registry"), "{body}");
    // Once writes succeed again, the change is written and acknowledged.
    registry.fail_writes(false);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = http_get(server.addr, "/health").await?;
        if status.contains("200") {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "health never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stored = registry.contents();
    assert!(
        stored.get(Table::Roles, "batch").is_some(),
        "weight written"
    );
    server.stop().await
}

#[tokio::test]
async fn a_registry_from_a_newer_version_refuses_to_start() -> anyhow::Result<()> {
    let mut registry = MemoryRegistry::new();
    registry.load()?;
    registry.commit(&[RegistryOp {
        table: Table::Meta,
        key: crate::registry::FORMAT_KEY.into(),
        value: Some(b"7".to_vec()),
    }])?;
    let server = TestServer::start_with_registry(Box::new(registry)).await?;
    let err = server.join().await.expect_err("must refuse to start");
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains("format version 7"), "{text}");
    Ok(())
}
