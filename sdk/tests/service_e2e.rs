//! End to end on an in-process cluster (the real master server and real agents running real
//! processes): the hello-world web service deployed with HTTP readiness checks, a crashed
//! server restarted in place, scaled 2 → 4 → 1, the scheduler stopped and restarted without
//! duplicate tasks, then uninstalled; and a batch job (driver + workers, goal FINISH).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_agent::{AgentConfig, ExecutorLauncher, IsolationMode};
use proffer_master::core::MasterConfig;
use proffer_master::registry::{MemoryRegistry, Registry};
use proffer_master::server::{ServerConfig, serve_with_registry};
use proffer_proto::{Resources, v1};
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::http::request;
use proffer_sdk::service::runner::{RunConfig, RunHandle, RunOutcome, prepare, run_service};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on every wait; steps normally take well under a few seconds.
const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    addr: String,
    cancel: CancellationToken,
    /// Stops the master alone (a child of `cancel`).
    server_cancel: CancellationToken,
    /// The master's registry, if it persists (and so can be restarted).
    registry: Option<MemoryRegistry>,
    server: JoinHandle<Result<(), proffer_master::server::ServerError>>,
    agents: Vec<JoinHandle<Result<(), proffer_agent::AgentError>>>,
    _dirs: Vec<tempfile::TempDir>,
}

fn master_config() -> ServerConfig {
    ServerConfig::new(MasterConfig {
        allocation_interval_ms: 100,
        ..MasterConfig::default()
    })
}

/// Serves the master on `listener`, persisting to `registry` if given.
fn spawn_master(
    listener: TcpListener,
    registry: Option<&MemoryRegistry>,
    cancel: CancellationToken,
) -> JoinHandle<Result<(), proffer_master::server::ServerError>> {
    let registry = registry.map(|r| Box::new(r.clone()) as Box<dyn Registry>);
    tokio::spawn(serve_with_registry(
        listener,
        master_config(),
        registry,
        cancel,
    ))
}

async fn cluster(agents: usize) -> Result<Cluster> {
    cluster_with(agents, None).await
}

async fn cluster_with(agents: usize, registry: Option<MemoryRegistry>) -> Result<Cluster> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let server_cancel = cancel.child_token();
    let server = spawn_master(listener, registry.as_ref(), server_cancel.clone());
    let mut dirs = Vec::new();
    let mut handles = Vec::new();
    // Agents share this host, so each offers its own port range; so do the clusters of tests
    // that run at the same time (their tasks listen on these ports). The ranges lie below the
    // ephemeral ports, which outgoing connections and `bind(0)` take, and above the fixed
    // ports of the etcd example (2N379, 2N380).
    static CLUSTERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cluster_base =
        23000 + 1000 * (CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 9);
    for i in 0..agents {
        let dir = tempfile::tempdir()?;
        let mut cfg = AgentConfig::new(addr.clone(), dir.path());
        let ports = cluster_base + 100 * i;
        cfg.resources = Some(Resources::parse(&format!(
            "cpus:2;mem:1024;disk:1024;ports:[{ports}-{}]",
            ports + 99
        ))?);
        cfg.hostname = format!("agent-{i}");
        cfg.status_retry_initial = Duration::from_secs(1);
        cfg.reconnect_initial = Duration::from_millis(50);
        cfg.executor = ExecutorLauncher::InProcess;
        cfg.isolation = IsolationMode::Posix;
        cfg.default_kill_grace = Duration::from_millis(500);
        handles.push(tokio::spawn(proffer_agent::run(cfg, cancel.child_token())));
        dirs.push(dir);
    }
    Ok(Cluster {
        addr,
        cancel,
        server_cancel,
        registry,
        server,
        agents: handles,
        _dirs: dirs,
    })
}

impl Cluster {
    /// Stops the master and starts it again on the same address and registry.
    async fn restart_master(&mut self) -> Result<()> {
        self.server_cancel.cancel();
        let old = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(Duration::from_secs(30), old)
            .await
            .context("master did not stop")???;
        let listener = TcpListener::bind(self.addr.as_str()).await?;
        self.server_cancel = self.cancel.child_token();
        self.server = spawn_master(listener, self.registry.as_ref(), self.server_cancel.clone());
        Ok(())
    }

    async fn state(&self) -> Result<v1::StateSnapshot> {
        let mut c =
            v1::operator_client::OperatorClient::connect(format!("http://{}", self.addr)).await?;
        Ok(c.get_state(v1::GetStateRequest {}).await?.into_inner())
    }

    /// Active tasks of the framework named `name`: `(task id, agent id, state)`.
    async fn tasks_of(&self, name: &str) -> Result<Vec<(String, String, String)>> {
        let s = self.state().await?;
        let ids: Vec<String> = s
            .frameworks
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.id.clone())
            .collect();
        let mut out: Vec<(String, String, String)> = s
            .tasks
            .iter()
            .filter(|t| ids.contains(&t.framework_id))
            .map(|t| (t.id.clone(), t.agent_id.clone(), t.state.clone()))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        for a in self.agents {
            tokio::time::timeout(Duration::from_secs(30), a)
                .await
                .context("agent did not stop")???;
        }
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .context("master did not stop")???;
        Ok(())
    }
}

fn example(name: &str) -> Result<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples-specs")
        .join(format!("{name}.yaml"));
    Ok(std::fs::read_to_string(p)?)
}

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Scheduler {
    handle: RunHandle,
    cancel: CancellationToken,
    task: JoinHandle<Result<RunOutcome, proffer_sdk::service::runner::ServiceError>>,
}

async fn start_scheduler(
    master: &str,
    state: &Path,
    spec: ServiceSpec,
    options: BTreeMap<String, String>,
) -> Result<Scheduler> {
    let cfg = RunConfig {
        master: master.to_string(),
        state_dir: state.to_path_buf(),
        core: CoreConfig {
            framework_host: "127.0.0.1".into(),
            refuse_pending_secs: 0.5,
            refuse_idle_secs: 5.0,
            ..CoreConfig::default()
        },
        http: Some("127.0.0.1:0".parse()?),
        options,
        uninstall: false,
    };
    let (handle, listener) = prepare(spec, &cfg).await?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_service(handle.clone(), listener, cfg, cancel.clone()));
    Ok(Scheduler {
        handle,
        cancel,
        task,
    })
}

impl Scheduler {
    fn api(&self) -> Result<String> {
        Ok(self
            .handle
            .http_addr
            .context("no HTTP address")?
            .to_string())
    }

    fn plan_status(&self, plan: &str) -> Option<RollupStatus> {
        let core = self.handle.shared.core.lock().ok()?;
        core.plan(plan).map(|p| p.status())
    }

    /// Waits until `plan` is COMPLETE; on timeout fails with the `why` view.
    async fn wait_complete(&self, plan: &str) -> Result<()> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < WAIT {
            if self.plan_status(plan) == Some(RollupStatus::Complete) {
                return Ok(());
            }
            if self.task.is_finished() {
                bail!("the scheduler stopped while waiting for plan {plan}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let why = request(&self.api()?, "GET", "/v1/why", "").await?;
        let offers = request(&self.api()?, "GET", "/v1/debug/offers", "").await?;
        let pods = request(&self.api()?, "GET", "/v1/pod", "").await?;
        bail!(
            "plan {plan} not complete after {WAIT:?}; why: {why}\npods: {pods}\nrecent offers: {offers}"
        )
    }

    /// Stops the scheduler (as a crash would: no teardown) and waits until its store is closed.
    async fn stop(self) -> Result<RunOutcome> {
        self.cancel.cancel();
        let weak = std::sync::Arc::downgrade(&self.handle.shared);
        drop(self.handle);
        let outcome = self.task.await??;
        wait_for("the store to close", || async {
            Ok(weak.upgrade().is_none())
        })
        .await?;
        Ok(outcome)
    }
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

/// GET http://127.0.0.1:PORT/index.html.
async fn fetch(port: u64) -> Result<String> {
    Ok(request(&format!("127.0.0.1:{port}"), "GET", "/index.html", "").await?)
}

/// The pid of the process whose command line contains `needle`.
fn pid_of(needle: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (pid != me && cmd.contains(needle) && !cmd.contains("sh -c")).then_some(pid)
    })
}

fn web_ports(s: &Scheduler) -> Vec<(String, u64, String)> {
    let Ok(core) = s.handle.shared.core.lock() else {
        return Vec::new();
    };
    core.tasks()
        .values()
        .filter(|r| r.state == "TASK_RUNNING")
        .filter_map(|r| {
            r.ports
                .first()
                .map(|(_, p)| (r.name.clone(), *p, r.task_id.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_deploys_recovers_scales_restarts_and_uninstalls() -> Result<()> {
    if which("python3").is_none() {
        println!(
            "skipped: python3 is not on PATH (the hello-world service runs python3 -m http.server)"
        );
        return Ok(());
    }
    let c = cluster(4).await?;
    // Stop the cluster (which kills every task) whether or not the scenario passed.
    let r = hello_world(&c).await;
    c.stop().await?;
    r
}

async fn hello_world(c: &Cluster) -> Result<()> {
    let state = tempfile::tempdir()?;
    let text = example("hello-world")?;
    let spec = |n: &str| ServiceSpec::parse(&text, &opts(&[("WEB_COUNT", n)]));
    let s = start_scheduler(&c.addr, state.path(), spec("2")?, BTreeMap::new()).await?;
    s.wait_complete("deploy").await?;
    let tasks = c.tasks_of("hello-world").await?;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_ne!(tasks[0].1, tasks[1].1, "one per agent");
    assert!(tasks.iter().all(|t| t.2 == "TASK_RUNNING"));
    for (name, port, _) in web_ports(&s) {
        let body = fetch(port).await?;
        let pod = name.trim_end_matches("-server");
        assert_eq!(body.trim(), format!("hello from {pod}"));
    }
    // The readiness check gated completion: every step saw a `ready` update.
    let api = s.api()?;
    let plan = request(&api, "GET", "/v1/plans/deploy", "").await?;
    assert!(plan.contains("\"status\": \"COMPLETE\""), "{plan}");

    // Crash web-0's server process: it is restarted in place (same agent, new task id).
    let (_, port0, old_id) = web_ports(&s)
        .into_iter()
        .find(|(n, _, _)| n == "web-0-server")
        .context("web-0 runs")?;
    let agent0 = tasks.iter().find(|t| t.0 == old_id).map(|t| t.1.clone());
    let pid = pid_of(&format!("http.server {port0}")).context("server process")?;
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    wait_for("web-0 restarted in place", || async {
        let now = c.tasks_of("hello-world").await?;
        let fresh: Vec<_> = now
            .iter()
            .filter(|t| t.0 != old_id && t.0.contains("web-0-server"))
            .collect();
        Ok(
            fresh.len() == 1
                && fresh[0].2 == "TASK_RUNNING"
                && Some(&fresh[0].1) == agent0.as_ref(),
        )
    })
    .await?;
    s.wait_complete("recovery").await?;

    // Scale 2 → 4 → 1 through the API.
    let text = example("hello-world")?.replace("WEB_COUNT: 2", "WEB_COUNT: 4");
    request(&api, "POST", "/v1/update", &text).await?;
    s.wait_complete("update").await?;
    let tasks = c.tasks_of("hello-world").await?;
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    let agents: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.1.clone()).collect();
    assert_eq!(agents.len(), 4, "one per agent");
    let text = example("hello-world")?.replace("WEB_COUNT: 2", "WEB_COUNT: 1");
    request(&api, "POST", "/v1/update", &text).await?;
    s.wait_complete("decommission").await?;
    wait_for("one task left", || async {
        Ok(c.tasks_of("hello-world").await?.len() == 1)
    })
    .await?;
    let before = c.tasks_of("hello-world").await?;

    // Stop the scheduler and start it again from its store: same framework, same task.
    assert_eq!(s.stop().await?, RunOutcome::Stopped);
    let connected = || async {
        let st = c.state().await?;
        Ok::<_, anyhow::Error>(
            st.frameworks
                .iter()
                .any(|f| f.name == "hello-world" && f.connected),
        )
    };
    wait_for("the master to see the scheduler gone", || async {
        Ok(!connected().await?)
    })
    .await?;
    let s = start_scheduler(&c.addr, state.path(), spec("1")?, BTreeMap::new()).await?;
    s.wait_complete("deploy").await?;
    // COMPLETE comes from the store at once: wait until the new scheduler has really
    // subscribed (a fixed pause let a slow machine look before it had), then give a duplicate
    // launch, if there were one, time to show.
    wait_for("the restarted scheduler to subscribe", connected).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.tasks_of("hello-world").await?;
    assert_eq!(
        after, before,
        "no duplicate or replaced task after the restart"
    );
    let st = c.state().await?;
    assert_eq!(
        st.frameworks
            .iter()
            .filter(|f| f.name == "hello-world")
            .count(),
        1
    );
    let offers = request(&s.api()?, "GET", "/v1/debug/offers", "").await?;
    assert!(
        !offers.contains("LAUNCHED"),
        "nothing launched after the restart: {offers}"
    );

    // A configuration change rolls the pod: old task killed, new one ready with the new greeting.
    let text = example("hello-world")?
        .replace("WEB_COUNT: 2", "WEB_COUNT: 1")
        .replace("GREETING: hello", "GREETING: bonjour");
    request(&s.api()?, "POST", "/v1/update", &text).await?;
    s.wait_complete("update").await?;
    // The old task's end reaches the master after its replacement is ready (start first).
    wait_for("the old task to end", || async {
        Ok(c.tasks_of("hello-world").await?.len() == 1)
    })
    .await?;
    let rolled = c.tasks_of("hello-world").await?;
    assert_eq!(rolled.len(), 1, "{rolled:?}");
    assert_ne!(
        rolled[0].0, before[0].0,
        "relaunched with the new configuration"
    );
    let (_, port, _) = web_ports(&s).into_iter().next().context("web-0 runs")?;
    assert_eq!(fetch(port).await?.trim(), "bonjour from web-0");

    // Uninstall: tasks killed, framework torn down, store wiped.
    request(&s.api()?, "POST", "/v1/uninstall", "").await?;
    let weak = std::sync::Arc::downgrade(&s.handle.shared);
    drop(s.handle);
    let outcome = tokio::time::timeout(WAIT, s.task)
        .await
        .context("uninstall did not finish")???;
    wait_for("the store to close", || async {
        Ok(weak.upgrade().is_none())
    })
    .await?;
    assert_eq!(outcome, RunOutcome::Uninstalled);
    wait_for("framework gone", || async {
        let st = c.state().await?;
        Ok(st.frameworks.iter().all(|f| f.name != "hello-world") && st.tasks.is_empty())
    })
    .await?;
    let store = proffer_sdk::service::store::StateStore::open(state.path())?;
    assert!(store.tasks()?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_carries_on_across_a_master_restart() -> Result<()> {
    if which("python3").is_none() {
        println!("skipped: python3 is not on PATH");
        return Ok(());
    }
    let mut c = cluster_with(2, Some(MemoryRegistry::new())).await?;
    let r = across_restart(&mut c).await;
    c.stop().await?;
    r
}

/// hello-world deployed, the master restarted from its registry: the same tasks keep running
/// and serving, none is relaunched, the scheduler is subscribed again with its id.
async fn across_restart(c: &mut Cluster) -> Result<()> {
    let state = tempfile::tempdir()?;
    let text = example("hello-world")?;
    let spec = ServiceSpec::parse(&text, &opts(&[("WEB_COUNT", "2")]))?;
    let s = start_scheduler(&c.addr, state.path(), spec, BTreeMap::new()).await?;
    s.wait_complete("deploy").await?;
    let before = c.tasks_of("hello-world").await?;
    assert_eq!(before.len(), 2, "{before:?}");
    let framework = c.state().await?.frameworks[0].id.clone();
    c.restart_master().await?;
    wait_for("agents back and the scheduler subscribed", || async {
        let st = c.state().await?;
        Ok(st.agents.len() == 2
            && st.agents.iter().all(|a| a.state == "active")
            && st
                .frameworks
                .iter()
                .any(|f| f.id == framework && f.connected))
    })
    .await?;
    // Every task is known again, running, with its id: nothing was relaunched.
    wait_for("the tasks known again", || async {
        Ok(c.tasks_of("hello-world").await? == before)
    })
    .await?;
    for (name, port, _) in web_ports(&s) {
        let pod = name.trim_end_matches("-server");
        assert_eq!(fetch(port).await?.trim(), format!("hello from {pod}"));
    }
    assert_eq!(s.plan_status("deploy"), Some(RollupStatus::Complete));
    let st = c.state().await?;
    assert_eq!(st.registry.map(|r| r.recoveries), Some(2));
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_job_runs_driver_then_workers_to_finish() -> Result<()> {
    let c = cluster(2).await?;
    let r = batch(&c).await;
    c.stop().await?;
    r
}

async fn batch(c: &Cluster) -> Result<()> {
    let state = tempfile::tempdir()?;
    let spec = ServiceSpec::parse(&example("batch")?, &opts(&[("WORKERS", "4")]))?;
    let s = start_scheduler(&c.addr, state.path(), spec, BTreeMap::new()).await?;
    s.wait_complete("deploy").await?;
    let st = c.state().await?;
    let finished: Vec<_> = st
        .completed_tasks
        .iter()
        .filter(|t| t.id.starts_with("batch-job.") && t.state == "TASK_FINISHED")
        .collect();
    assert_eq!(
        finished.len(),
        5,
        "driver + 4 workers: {:?}",
        st.completed_tasks
    );
    // max-per hostname 2: the 4 workers are spread 2 + 2 over the two agents.
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    for t in finished.iter().filter(|t| t.id.contains("worker")) {
        *per_agent.entry(t.agent_id.clone()).or_default() += 1;
    }
    assert_eq!(per_agent.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    assert!(c.tasks_of("batch-job").await?.is_empty());
    // Suppressed once done.
    wait_for("suppressed", || async {
        let st = c.state().await?;
        Ok(st
            .frameworks
            .iter()
            .any(|f| f.name == "batch-job" && f.suppressed))
    })
    .await?;
    assert_eq!(s.stop().await?, RunOutcome::Stopped);
    Ok(())
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_bring_a_crashed_pod_back_in_place_and_uninstall_releases_them() -> Result<()>
{
    let c = cluster(2).await?;
    let r = reserved(&c).await;
    c.stop().await?;
    r
}

const RESERVED_SPEC: &str = r#"
name: store
role: store-role
pods:
  kv:
    count: 1
    volumes:
      data: {path: data, size: 16}
    tasks:
      server:
        cpus: 0.1
        memory: 16
        cmd: "echo started >> data/log && exec sleep 987.654"
"#;

async fn reserved(c: &Cluster) -> Result<()> {
    let state = tempfile::tempdir()?;
    let cfg = RunConfig {
        master: c.addr.clone(),
        state_dir: state.path().to_path_buf(),
        core: CoreConfig {
            reservations: true,
            refuse_pending_secs: 0.5,
            refuse_idle_secs: 1.0,
            ..CoreConfig::default()
        },
        http: Some("127.0.0.1:0".parse()?),
        options: BTreeMap::new(),
        uninstall: false,
    };
    let spec = ServiceSpec::parse(RESERVED_SPEC, &BTreeMap::new())?;
    let (handle, listener) = prepare(spec, &cfg).await?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_service(handle.clone(), listener, cfg, cancel.clone()));
    let s = Scheduler {
        handle,
        cancel,
        task,
    };
    s.wait_complete("deploy").await?;
    let reserved_on = |st: &v1::StateSnapshot| -> Vec<String> {
        st.agents
            .iter()
            .filter(|a| a.total.contains("dynamic=store.kv-0"))
            .map(|a| a.id.clone())
            .collect()
    };
    let st = c.state().await?;
    let agents = reserved_on(&st);
    assert_eq!(agents.len(), 1, "reserved on one agent: {:?}", st.agents);
    let total = st
        .agents
        .iter()
        .find(|a| a.id == agents[0])
        .map(|a| a.total.clone())
        .unwrap_or_default();
    assert!(
        total.contains("[store.kv-0.data:data]"),
        "volume created: {total}"
    );
    let first = c.tasks_of("store").await?;
    assert_eq!(first.len(), 1);

    // Crash the task: it comes back on the same agent, on its reservation, with its volume.
    let pid = pid_of("sleep 987.654").context("task process")?;
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    wait_for("kv-0 back in place", || async {
        let now = c.tasks_of("store").await?;
        Ok(now.len() == 1
            && now[0].0 != first[0].0
            && now[0].1 == first[0].1
            && now[0].2 == "TASK_RUNNING")
    })
    .await?;
    let offers = request(&s.api()?, "GET", "/v1/debug/offers", "").await?;
    let log: Vec<serde_json::Value> = serde_json::from_str(&offers)?;
    let launched = log.iter().filter(|o| o["outcome"] == "LAUNCHED").count();
    assert_eq!(launched, 2, "{offers}");
    assert_eq!(reserved_on(&c.state().await?), agents, "same reservation");

    // Uninstall: the task is killed, the volume destroyed, the reservation released.
    request(&s.api()?, "POST", "/v1/uninstall", "").await?;
    let weak = std::sync::Arc::downgrade(&s.handle.shared);
    drop(s.handle);
    let outcome = tokio::time::timeout(WAIT, s.task)
        .await
        .context("uninstall did not finish")???;
    assert_eq!(outcome, RunOutcome::Uninstalled);
    wait_for("the store to close", || async {
        Ok(weak.upgrade().is_none())
    })
    .await?;
    let st = c.state().await?;
    assert!(
        st.agents.iter().all(|a| !a.total.contains("dynamic")),
        "no reservation left: {:?}",
        st.agents
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_three_member_cluster_deploys_and_answers_endpoint_health() -> Result<()> {
    for prog in ["etcd", "etcdctl", "curl"] {
        if which(prog).is_none() {
            println!(
                "skipped: `{prog}` is not on PATH (install the etcd-server, etcd-client and curl packages)"
            );
            return Ok(());
        }
    }
    let c = cluster(3).await?;
    let r = etcd(&c).await;
    c.stop().await?;
    r
}

async fn etcd(c: &Cluster) -> Result<()> {
    let state = tempfile::tempdir()?;
    let spec = ServiceSpec::parse(&example("etcd")?, &BTreeMap::new())?;
    let s = start_scheduler(&c.addr, state.path(), spec, BTreeMap::new()).await?;
    // Members become ready (etcd's /health via curl, checked by the agent) only once the
    // cluster has a quorum, so COMPLETE means the three found each other.
    s.wait_complete("deploy").await?;
    let endpoints = "http://127.0.0.1:20379,http://127.0.0.1:21379,http://127.0.0.1:22379";
    let etcdctl = |args: &[&str]| -> Result<std::process::Output> {
        Ok(std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .output()?)
    };
    let health = etcdctl(&["endpoint", "health"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    assert!(health.status.success(), "etcdctl endpoint health: {text}");
    assert_eq!(text.matches("is healthy").count(), 3, "{text}");
    let put = etcdctl(&["put", "proffer", "works"])?;
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = etcdctl(&["get", "proffer", "--print-value-only"])?;
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "works");
    let members = etcdctl(&["member", "list"])?;
    assert_eq!(String::from_utf8_lossy(&members.stdout).lines().count(), 3);

    request(&s.api()?, "POST", "/v1/uninstall", "").await?;
    drop(s.handle);
    let outcome = tokio::time::timeout(WAIT, s.task)
        .await
        .context("uninstall did not finish")???;
    assert_eq!(outcome, RunOutcome::Uninstalled);
    assert!(c.tasks_of("etcd").await?.is_empty());
    Ok(())
}
