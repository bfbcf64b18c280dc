//! Masters in an HA group on a real etcd (started by the test; skipped, saying so, when the
//! `etcd` binary is absent): one leads, the others point to it; when the leader stops or its
//! lease is revoked, a standby leads with everything the registry holds.

use std::net::SocketAddr;
use std::time::Duration;

use proffer_proto::v1;
use proffer_proto::v1::operator_client::OperatorClient;
use tokio_util::sync::CancellationToken;

use super::tests::{WAIT, http_get_head as get};
use super::{HaConfig, LEADER_METADATA, ServerConfig, serve_ha};
use crate::etcd::EtcdConfig;
use crate::etcd::launch::{EtcdCluster, etcd_installed};

/// A master of the group, running in this process.
struct Member {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), super::ServerError>>,
}

impl Member {
    fn start(etcd: &EtcdConfig, prefix: &str) -> anyhow::Result<Member> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let ha = HaConfig::new(
            etcd.clone(),
            prefix,
            addr.to_string(),
            Duration::from_secs(2),
        );
        let cancel = CancellationToken::new();
        let mut config = ServerConfig::default();
        config.master.allocation_interval_ms = 50;
        let task = tokio::spawn(serve_ha(listener, config, ha, cancel.clone()));
        Ok(Member { addr, cancel, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task).await???;
        Ok(())
    }

    async fn health(&self) -> anyhow::Result<serde_json::Value> {
        let (head, body) = get(self.addr, "/health").await?;
        anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
        Ok(serde_json::from_str(&body)?)
    }

    async fn operator(&self) -> anyhow::Result<OperatorClient<tonic::transport::Channel>> {
        Ok(OperatorClient::connect(format!("http://{}", self.addr)).await?)
    }
}

/// Waits until one of `members` says it leads; returns its index.
async fn leader_of(members: &[&Member]) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for (i, m) in members.iter().enumerate() {
            if m.health().await.is_ok_and(|h| h["role"] == "leader") {
                return Ok(i);
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no master leads after 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_etcd() -> anyhow::Result<Option<(EtcdCluster, tempfile::TempDir)>> {
    if !etcd_installed() {
        println!("skipped: etcd is not installed (apt-get install etcd-server)");
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let cluster = tokio::task::spawn_blocking(move || EtcdCluster::start(&path, 1)).await??;
    Ok(Some((cluster, dir)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_leads_and_a_standby_takes_over_with_the_registry() -> anyhow::Result<()> {
    let Some((cluster, _dir)) = start_etcd().await? else {
        return Ok(());
    };
    let etcd = EtcdConfig::parse(&cluster.endpoints(), None)?;
    let a = Member::start(&etcd, "/proffer/ha1")?;
    let b = Member::start(&etcd, "/proffer/ha1")?;
    let (leader, standby) = match leader_of(&[&a, &b]).await? {
        0 => (a, b),
        _ => (b, a),
    };
    // The standby says who leads, redirects HTTP there and answers gRPC with a pointer.
    let deadline = tokio::time::Instant::now() + WAIT;
    while standby.health().await?["leader"] != leader.addr.to_string() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "standby never names the leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = standby.health().await?;
    assert_eq!(h["role"], "standby", "{h}");
    let (head, _) = get(standby.addr, "/state?x=1").await?;
    assert!(head.starts_with("HTTP/1.1 307"), "{head}");
    assert!(
        head.to_lowercase()
            .contains(&format!("location: http://{}/state?x=1", leader.addr)),
        "{head}"
    );
    let err = standby
        .operator()
        .await?
        .get_state(v1::GetStateRequest {})
        .await
        .expect_err("a standby serves no state");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let hint = err
        .metadata()
        .get(LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(hint, Some(leader.addr.to_string()));

    // What the leader is told goes to etcd; the standby has it once it leads.
    leader
        .operator()
        .await?
        .set_weight(v1::SetWeightRequest {
            role: "web".into(),
            weight: 3.0,
        })
        .await?;
    leader.stop().await?;
    assert_eq!(leader_of(&[&standby]).await?, 0);
    let roles = standby
        .operator()
        .await?
        .get_roles(v1::GetRolesRequest {})
        .await?
        .into_inner();
    let web = roles.roles.iter().find(|r| r.role == "web");
    assert_eq!(web.map(|r| r.weight), Some(3.0), "{roles:?}");
    standby.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_revoked_steps_down() -> anyhow::Result<()> {
    let Some((cluster, _dir)) = start_etcd().await? else {
        return Ok(());
    };
    let etcd = EtcdConfig::parse(&cluster.endpoints(), None)?;
    let a = Member::start(&etcd, "/proffer/ha2")?;
    assert_eq!(leader_of(&[&a]).await?, 0);
    let b = Member::start(&etcd, "/proffer/ha2")?;
    // Revoke the leader's lease behind its back, as an expiry during a partition would.
    let mut client = etcd_client::Client::connect(etcd.endpoints.clone(), None).await?;
    let keys = client
        .get(
            "/proffer/ha2/leader",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    let first = keys
        .kvs()
        .iter()
        .min_by_key(|kv| kv.create_revision())
        .ok_or_else(|| anyhow::anyhow!("no election key"))?;
    assert_eq!(first.value_str()?, a.addr.to_string());
    let t0 = std::time::Instant::now();
    client.lease_revoke(first.lease()).await?;
    // A steps down as soon as its watch sees the key go (etcd hands B the leadership by its
    // own watch, so B may answer a few ms before A has noticed); B leads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // A connection caught in the switch of servers may be reset: ask again.
        let (ha, hb) = (
            a.health().await.unwrap_or_default(),
            b.health().await.unwrap_or_default(),
        );
        if hb["role"] == "leader" && ha["role"] == "standby" {
            println!("A stood by {:?} after the revocation", t0.elapsed());
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "B never leads alone: A {ha}, B {hb}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.stop().await?;
    a.stop().await
}
