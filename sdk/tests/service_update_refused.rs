//! On an in-process cluster (the real master server and two real agents of 2 cpus): an update
//! no agent can place (4 cpus per instance) is previewed as such, refused by `/v1/update`
//! before anything is killed (the running tasks stay, the spec and plans are unchanged), goes
//! through with `force=true` (the first instance's replacement, started first, waits while the
//! old task runs on), and `why` then names the resource no recent offer had and the largest
//! offer.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_agent::{AgentConfig, ExecutorLauncher, IsolationMode};
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve_with_registry};
use proffer_proto::{Resources, v1};
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::http::{ClientError, request};
use proffer_sdk::service::preview::UpdatePreview;
use proffer_sdk::service::runner::{RunConfig, prepare, run_service};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn spec(cpus: &str) -> String {
    format!(
        r#"
name: sleeper
pods:
  nap:
    count: 2
    placement: [one-per-agent]
    tasks:
      main:
        cpus: {cpus}
        memory: 16
        cmd: "exec sleep 3600"
"#
    )
}

/// Starts a master and two agents of `cpus:2;mem:1024`; returns the master's address.
async fn cluster(cancel: &CancellationToken) -> Result<(String, Vec<tempfile::TempDir>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let cfg = ServerConfig::new(MasterConfig {
        allocation_interval_ms: 100,
        ..MasterConfig::default()
    });
    tokio::spawn(serve_with_registry(
        listener,
        cfg,
        None,
        cancel.child_token(),
    ));
    let mut dirs = Vec::new();
    for i in 0..2 {
        let dir = tempfile::tempdir()?;
        let mut cfg = AgentConfig::new(addr.clone(), dir.path());
        cfg.resources = Some(Resources::parse("cpus:2;mem:1024;disk:1024")?);
        cfg.hostname = format!("agent-{i}");
        cfg.reconnect_initial = Duration::from_millis(50);
        cfg.executor = ExecutorLauncher::InProcess;
        cfg.isolation = IsolationMode::Posix;
        cfg.default_kill_grace = Duration::from_millis(200);
        tokio::spawn(proffer_agent::run(cfg, cancel.child_token()));
        dirs.push(dir);
    }
    Ok((addr, dirs))
}

/// The master's tasks of framework `sleeper`: `(task id, state)`, sorted.
async fn tasks(master: &str) -> Result<Vec<(String, String)>> {
    let mut c = v1::operator_client::OperatorClient::connect(format!("http://{master}")).await?;
    let s = c.get_state(v1::GetStateRequest {}).await?.into_inner();
    let ids: Vec<&str> = s
        .frameworks
        .iter()
        .filter(|f| f.name == "sleeper")
        .map(|f| f.id.as_str())
        .collect();
    let mut out: Vec<(String, String)> = s
        .tasks
        .iter()
        .filter(|t| ids.contains(&t.framework_id.as_str()))
        .map(|t| (t.id.clone(), t.state.clone()))
        .collect();
    out.sort();
    Ok(out)
}

async fn wait_for<F, Fut>(what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < WAIT {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out waiting for {what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_no_agent_can_place_is_refused_and_nothing_is_killed() -> Result<()> {
    let cancel = CancellationToken::new();
    let (master, _dirs) = cluster(&cancel).await?;
    let r = scenario(&master, &cancel).await;
    cancel.cancel();
    r
}

async fn scenario(master: &str, cancel: &CancellationToken) -> Result<()> {
    let state = tempfile::tempdir()?;
    let cfg = RunConfig {
        master: master.to_string(),
        state_dir: state.path().to_path_buf(),
        core: CoreConfig {
            framework_host: "127.0.0.1".into(),
            refuse_pending_secs: 0.2,
            refuse_idle_secs: 5.0,
            replace_first_wait_ms: 600_000,
            ..CoreConfig::default()
        },
        http: Some("127.0.0.1:0".parse()?),
        options: BTreeMap::new(),
        uninstall: false,
    };
    let (handle, listener) =
        prepare(ServiceSpec::parse(&spec("0.5"), &BTreeMap::new())?, &cfg).await?;
    let api = handle.http_addr.context("no HTTP address")?.to_string();
    let shared = handle.shared.clone();
    tokio::spawn(run_service(handle, listener, cfg, cancel.child_token()));
    let deploy_complete = || {
        let core = shared.core.lock().ok();
        core.and_then(|c| c.plan("deploy").map(|p| p.status())) == Some(RollupStatus::Complete)
    };
    wait_for("deploy COMPLETE", || async { Ok(deploy_complete()) }).await?;
    wait_for("two running tasks", || async {
        let t = tasks(master).await?;
        Ok(t.len() == 2 && t.iter().all(|(_, s)| s == "TASK_RUNNING"))
    })
    .await?;
    let before = tasks(master).await?;

    // The dry run says what would happen and that it cannot be placed.
    let big = spec("4");
    let body = request(&api, "POST", "/v1/update?dry-run=true", &big).await?;
    let preview: UpdatePreview = serde_json::from_str(&body)?;
    assert!(!preview.placeable(), "{}", preview.render());
    let text = preview.render();
    for want in [
        "tasks.main.cpus: 0.5 → 4.0",
        "restart nap-0 [main] on any agent that fits; the one on agent-",
        "FAIL pod nap cannot be placed: an instance asks cpus:4;mem:16 and no agent has enough cpus: the largest agent has cpus:2 (",
        "(2 agents, role *)",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // The update is refused: nothing is killed, the spec and plans stay.
    let refused = request(&api, "POST", "/v1/update", &big).await;
    let Err(ClientError::Status { status: 409, body }) = refused else {
        bail!("expected a 409 refusal, got {refused:?}");
    };
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let reason = v.get("reason").and_then(|r| r.as_str()).unwrap_or_default();
    assert!(
        reason.starts_with("update refused, nothing was changed: pod nap cannot be placed")
            && reason.contains("the largest agent has cpus:2"),
        "{reason}"
    );
    {
        let core = shared
            .core
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        assert!(core.plan("update").is_none(), "no update plan");
        assert_eq!(core.spec().pods[0].1.tasks[0].1.cpus, 0.5, "the spec stays");
    }
    // Give a kill, if one had been sent, time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tasks(master).await?, before, "no task was killed");

    // --force goes through: the update plan starts. The first instance's replacement is
    // started first (no volumes, no fixed ports) and finds no room, so the old task runs on
    // (for replace_first_wait_ms), and `why` names the resource no recent offer had and the
    // largest offer.
    let body = request(&api, "POST", "/v1/update?force=true", &big).await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v.get("updated"), Some(&serde_json::Value::Bool(true)));
    assert_eq!(v.get("forced"), Some(&serde_json::Value::Bool(true)));
    let named = wait_for("why to name the missing cpus", || async {
        let why = request(&api, "GET", "/v1/why", "").await?;
        // The old tasks still hold 0.5 of each agent's 2 cpus.
        Ok(why.contains("had cpus:4: the largest had cpus:1.5 (agent-"))
    })
    .await;
    if let Err(e) = named {
        let why = request(&api, "GET", "/v1/why", "").await?;
        let offers = request(&api, "GET", "/v1/debug/offers", "").await?;
        bail!("{e}: why: {why}\noffers: {offers}");
    }
    assert_eq!(tasks(master).await?, before, "the old tasks run on");
    Ok(())
}
