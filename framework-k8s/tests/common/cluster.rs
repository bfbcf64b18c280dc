//! The end-to-end harness: an in-process Proffer cluster (real master, real agents running
//! real processes) and a Kubernetes cluster installed on it from the generated spec (real
//! etcd, stand-in kube-* programs), with process lookups and teardown checks.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proffer_agent::{AgentConfig, ExecutorLauncher, IsolationMode};
use proffer_k8s::config::ClusterConfig;
use proffer_k8s::deploy::{DeployOptions, instance_ports, pki_request, service_spec, spec_yaml};
use proffer_k8s::etcd::{Etcd, EtcdTls};
use proffer_k8s::pki::{ClusterPki, Host};
use proffer_k8s::programs::Programs;
use proffer_k8s::tlsutil::client_config;
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_proto::Resources;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::runner::{RunConfig, RunHandle, RunOutcome, prepare, run_service};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio::net::TcpListener;

use super::REQUEST_TIMEOUT;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The `etcd` program on PATH, if installed.
pub fn etcd_path() -> Option<String> {
    super::etcd_binary().map(|p| p.display().to_string())
}

/// A base port with `len` free ports above it (probed by binding), varied by process id so
/// that concurrent runs of these tests do not collide. Blocks lie below the ephemeral port
/// range: there the kernel hands out ports to outgoing connections and `bind(0)` (the tests
/// make hundreds of short-lived ones, and each lingers in TIME_WAIT), and one of those on a
/// port of the block makes the etcd or stand-in that is to listen there fail ("address in use").
pub fn free_block(len: usize) -> usize {
    // Blocks handed out in this process (tests run concurrently): never given out twice.
    static TAKEN: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());
    const LOW: usize = 10000;
    const STEP: usize = 500;
    let high = ephemeral_low().max(LOW + 2 * len);
    let slots = (high - LOW - len) / STEP + 1;
    let first = std::process::id() as usize % slots;
    let candidates = (0..slots).map(|k| LOW + (first + k) % slots * STEP);
    let unbound = |base: usize| {
        (base..base + len).all(|p| std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok())
    };
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let base = candidates
        .clone()
        .find(|&b| !taken.iter().any(|&(t, l)| b < t + l && t < b + len) && unbound(b))
        .or_else(|| candidates.clone().find(|&b| unbound(b)))
        .unwrap_or(LOW + first * STEP);
    taken.push((base, len));
    base
}

/// The first port of the kernel's ephemeral range (32768 if it cannot be read).
fn ephemeral_low() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(32768)
}

fn cmdline(pid: &std::path::Path) -> String {
    let cmd = std::fs::read(pid.join("cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).replace('\0', " ")
}

/// The pid of the process whose command line contains every needle (not a shell).
pub fn pid_of(needles: &[&str]) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = cmdline(&e.path());
        (needles.iter().all(|n| cmd.contains(n)) && !cmd.starts_with("sh ")).then_some(pid)
    })
}

/// Pids of processes whose working directory lies under one of `roots` (agents' work
/// directories) and whose command line contains every needle (shells excluded).
pub fn pids_under(roots: &[PathBuf], needles: &[&str]) -> Vec<i32> {
    roots
        .iter()
        .flat_map(|root| proffer_tests::leftovers::processes_under(root))
        .filter(|(_, cmd)| needles.iter().all(|n| cmd.contains(n)) && !cmd.starts_with("sh "))
        .map(|(pid, _)| pid)
        .collect()
}

/// How many processes [`pids_under`] finds for one needle.
pub fn procs_under(roots: &[PathBuf], needle: &str) -> usize {
    pids_under(roots, &[needle]).len()
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: i32) -> Result<()> {
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    if !st.success() {
        bail!("kill -9 {pid} failed");
    }
    Ok(())
}

/// How the in-process Proffer cluster is set up.
#[derive(Debug, Clone)]
pub struct ProfferOptions {
    /// Number of agents (hostnames `agent-0..N`).
    pub agents: usize,
    /// Port block base: agent `i` offers `[block + 1000·(i+1), +999]`.
    pub block: usize,
    /// Agent ping interval and misses before the master removes a silent agent.
    pub ping: (Duration, u32),
    /// Kill tasks when an agent is stopped (off: they stay, as on a crashed machine, and the
    /// test kills them).
    pub kill_tasks_on_shutdown: bool,
}

impl ProfferOptions {
    /// `agents` agents above port `block`, Mesos's ping defaults, tasks killed on shutdown.
    pub fn new(agents: usize, block: usize) -> ProfferOptions {
        ProfferOptions {
            agents,
            block,
            ping: (Duration::from_secs(15), 5),
            kill_tasks_on_shutdown: true,
        }
    }
}

/// A running agent.
type AgentTask = JoinHandle<Result<(), proffer_agent::AgentError>>;

/// A running in-process Proffer cluster.
pub struct Proffer {
    /// The master's address.
    pub master: String,
    cancel: CancellationToken,
    server: JoinHandle<Result<(), proffer_master::server::ServerError>>,
    agents: Vec<(CancellationToken, Option<AgentTask>)>,
    /// The agents' work directories.
    pub dirs: Vec<tempfile::TempDir>,
}

impl Proffer {
    /// Starts a master and the agents.
    pub async fn start(o: &ProfferOptions) -> Result<Proffer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let master = listener.local_addr()?.to_string();
        let cancel = CancellationToken::new();
        let cfg = MasterConfig {
            allocation_interval_ms: 100,
            agent_ping_interval_ms: o.ping.0.as_millis() as u64,
            agent_max_missed_pings: o.ping.1,
            ..MasterConfig::default()
        };
        let server = tokio::spawn(serve(listener, ServerConfig::new(cfg), cancel.clone()));
        let mut dirs = Vec::new();
        let mut agents = Vec::new();
        for i in 0..o.agents {
            let dir = tempfile::tempdir()?;
            let mut a = AgentConfig::new(master.clone(), dir.path());
            let p = o.block + 1000 + 1000 * i;
            a.resources = Some(Resources::parse(&format!(
                "cpus:64;mem:262144;disk:262144;ports:[{p}-{}]",
                p + 999
            ))?);
            a.hostname = format!("agent-{i}");
            a.gc_max_disk_fraction = 1.0;
            a.executor = ExecutorLauncher::InProcess;
            a.isolation = IsolationMode::Posix;
            a.default_kill_grace = Duration::from_millis(500);
            a.reconnect_initial = Duration::from_millis(50);
            a.kill_tasks_on_shutdown = o.kill_tasks_on_shutdown;
            let token = cancel.child_token();
            agents.push((
                token.clone(),
                Some(tokio::spawn(proffer_agent::run(a, token))),
            ));
            dirs.push(dir);
        }
        Ok(Proffer {
            master,
            cancel,
            server,
            agents,
            dirs,
        })
    }

    /// The agents' work directories, canonical (as processes see their working directory).
    pub fn roots(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d.path()).ok())
            .collect()
    }

    /// Stops agent `i` (its session ends; its tasks are killed or left per the options).
    pub async fn stop_agent(&mut self, i: usize) -> Result<()> {
        let (token, handle) = self.agents.get_mut(i).context("no such agent")?;
        token.cancel();
        if let Some(h) = handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .context("agent did not stop")???;
        }
        Ok(())
    }

    /// The master's state.
    pub async fn state(&self) -> Result<proffer_proto::v1::StateSnapshot> {
        let mut c = proffer_proto::v1::operator_client::OperatorClient::connect(format!(
            "http://{}",
            self.master
        ))
        .await?;
        Ok(c.get_state(proffer_proto::v1::GetStateRequest {})
            .await?
            .into_inner())
    }

    /// Active tasks of the framework `name`.
    pub async fn tasks_of(&self, name: &str) -> Result<usize> {
        let s = self.state().await?;
        let ids: Vec<&str> = s
            .frameworks
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.id.as_str())
            .collect();
        Ok(s.tasks
            .iter()
            .filter(|t| ids.contains(&t.framework_id.as_str()))
            .count())
    }

    /// Agents still holding a dynamic reservation for a principal starting with `prefix`
    /// (`HOST: reserved resources`).
    pub async fn reserved_for(&self, prefix: &str) -> Result<Vec<String>> {
        let needle = format!("dynamic={prefix}");
        Ok(self
            .state()
            .await?
            .agents
            .iter()
            // An agent that was stopped is unreachable: its reservations stay in the master's
            // registry (nobody can unreserve them until it returns, or an operator marks it
            // gone), as in Mesos. Only reachable agents must be clean.
            .filter(|a| a.state != "unreachable")
            .filter(|a| a.total.contains(&needle))
            .map(|a| {
                let mine: Vec<&str> = a.total.split(';').filter(|r| r.contains(&needle)).collect();
                format!("{}: {}", a.hostname, mine.join(";"))
            })
            .collect())
    }

    /// Stops the agents and the master.
    pub async fn stop(self) {
        self.cancel.cancel();
        for (_, h) in self.agents {
            if let Some(h) = h {
                let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server).await;
        // Processes an agent left behind (agents stopped without killing their tasks).
        for root in self
            .dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d.path()).ok())
        {
            for pid in pids_under(std::slice::from_ref(&root), &[""]) {
                let _ = kill9(pid);
            }
        }
    }
}

/// A Kubernetes cluster installed on a [`Proffer`], its scheduler running in this process.
pub struct K8s {
    /// The cluster.yaml text.
    pub yaml: String,
    /// The resolved cluster.
    pub cluster: proffer_k8s::Cluster,
    /// The deploy options.
    pub opts: DeployOptions,
    /// The PKI.
    pub pki: ClusterPki,
    /// The generated spec, as YAML.
    pub spec_text: String,
    /// The scheduler.
    pub handle: RunHandle,
    spec: ServiceSpec,
    run: RunConfig,
    sched: JoinHandle<Result<RunOutcome, proffer_sdk::service::runner::ServiceError>>,
    sched_cancel: CancellationToken,
    pki_server: Option<JoinHandle<()>>,
    _pki_dir: tempfile::TempDir,
    _state: tempfile::TempDir,
}

/// Per-phase times of a deploy.
#[derive(Debug, Clone, Default)]
pub struct Deployed {
    /// Time to COMPLETE.
    pub took: Duration,
    /// When each phase completed.
    pub completed: BTreeMap<String, Duration>,
    /// When each pod's first task appeared.
    pub launched: BTreeMap<String, Duration>,
}

/// What an upgrade observed.
#[derive(Debug, Clone, Default)]
pub struct Upgraded {
    /// Time to COMPLETE.
    pub took: Duration,
    /// When each pod's first new task appeared.
    pub relaunched: BTreeMap<String, Duration>,
    /// When each update phase completed.
    pub completed: BTreeMap<String, Duration>,
    /// The update plan's phases, in order.
    pub order: Vec<String>,
    /// Readiness rounds in which some apiserver answered 200 (with `watch_ready`).
    pub ready_checks: usize,
}

/// Control-plane hosts `cp-0..n` on loopback.
fn control_plane(n: u32) -> Vec<Host> {
    (0..n)
        .map(|i| Host {
            name: format!("cp-{i}"),
            ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        })
        .collect()
}

/// The cluster.yaml of an e2e cluster: the stand-ins, the real etcd.
pub fn cluster_yaml(cp: u32, nodes: u32, port_base: usize, etcd: &str) -> String {
    format!(
        "name: e2e\ncontrol-plane-count: {cp}\nnode-count: {nodes}\nport-base: {port_base}\nartifacts:\n  etcd: {{path: {etcd}}}\n  kube-apiserver: {{path: {}}}\n  kube-controller-manager: {{path: {}}}\n  kube-scheduler: {{path: {}}}\n  kubelet: {{path: {}}}\n  kube-proxy: {{path: {}}}\n  coredns: {{path: {}}}\n  kubectl: {{path: 'true'}}\n",
        env!("CARGO_BIN_EXE_kube-apiserver-standin"),
        env!("CARGO_BIN_EXE_kube-controller-manager-standin"),
        env!("CARGO_BIN_EXE_kube-scheduler-standin"),
        env!("CARGO_BIN_EXE_kubelet-standin"),
        env!("CARGO_BIN_EXE_kube-proxy-standin"),
        env!("CARGO_BIN_EXE_coredns-standin"),
    )
}

impl K8s {
    /// Generates the PKI and spec of `yaml` (control-plane hosts on loopback, `--local`) and
    /// starts its scheduler against `p` with `core` settings.
    pub async fn install(
        p: &Proffer,
        yaml: String,
        nodes_per_agent: u32,
        core: CoreConfig,
    ) -> Result<K8s> {
        K8s::install_with(p, yaml, nodes_per_agent, core, false).await
    }

    /// As [`K8s::install`]; with `serve_pki`, the PKI is served by [`proffer_k8s::bundle::serve`]
    /// on loopback and tasks fetch their files from it.
    pub async fn install_with(
        p: &Proffer,
        yaml: String,
        nodes_per_agent: u32,
        core: CoreConfig,
        serve_pki: bool,
    ) -> Result<K8s> {
        let cluster = ClusterConfig::parse(&yaml, None)?;
        let pki_dir = tempfile::tempdir()?;
        let mut pki_server = None;
        let mut pki_url = None;
        if serve_pki {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            let token = proffer_k8s::bundle::random_token()?;
            pki_url = Some(format!("http://{}/pki/{token}", l.local_addr()?));
            let hosts = control_plane(cluster.config.control_plane_count);
            pki_server = Some(tokio::spawn(proffer_k8s::bundle::serve(
                l,
                pki_dir.path().to_path_buf(),
                hosts,
                token,
            )));
        }
        let opts = DeployOptions {
            pki_dir: pki_dir.path().display().to_string(),
            programs: Programs::Separate {
                probe: env!("CARGO_BIN_EXE_k8s-probe").into(),
            },
            control_plane: control_plane(cluster.config.control_plane_count),
            local: true,
            nodes_per_agent,
            pki_url,
        };
        let pki = ClusterPki::generate(&pki_request(&cluster, &opts)?)?;
        pki.write_to(pki_dir.path())?;
        let spec_text = spec_yaml(&service_spec(&cluster, &opts)?)?;
        let spec = ServiceSpec::parse(&spec_text, &BTreeMap::new())?;
        let state = tempfile::tempdir()?;
        let run = RunConfig {
            master: p.master.clone(),
            state_dir: state.path().to_path_buf(),
            core,
            http: None,
            options: BTreeMap::new(),
            uninstall: false,
        };
        let (handle, l) = prepare(spec.clone(), &run).await?;
        let sched_cancel = CancellationToken::new();
        let sched = tokio::spawn(run_service(
            handle.clone(),
            l,
            run.clone(),
            sched_cancel.clone(),
        ));
        Ok(K8s {
            yaml,
            cluster,
            opts,
            pki,
            spec_text,
            handle,
            spec,
            run,
            sched,
            sched_cancel,
            pki_server,
            _pki_dir: pki_dir,
            _state: state,
        })
    }

    /// Scheduler settings of the e2e tests: reservations (persistent etcd volumes) on, quick
    /// offer refusals.
    pub fn core() -> CoreConfig {
        CoreConfig {
            reservations: true,
            framework_host: "127.0.0.1".into(),
            refuse_pending_secs: 0.3,
            refuse_idle_secs: 5.0,
            ..CoreConfig::default()
        }
    }

    /// Waits for the deploy plan to complete, recording when each pod's first task appeared
    /// and when each phase completed.
    pub async fn wait_deploy(&self, limit: Duration) -> Result<Deployed> {
        let start = Instant::now();
        let mut d = Deployed::default();
        loop {
            {
                let core = self.handle.shared.core.lock().unwrap();
                // One instant per snapshot: a task and its predecessors' readiness seen
                // together count as simultaneous.
                let now = start.elapsed();
                for r in core.tasks().values() {
                    d.launched.entry(r.pod.clone()).or_insert(now);
                }
                let plan = core.plan("deploy").context("no deploy plan")?;
                for ph in &plan.phases {
                    if ph.status() == RollupStatus::Complete {
                        d.completed.entry(ph.name.clone()).or_insert(now);
                    }
                }
                if plan.status() == RollupStatus::Complete {
                    d.took = now;
                    return Ok(d);
                }
            }
            if self.sched.is_finished() {
                bail!("the scheduler stopped");
            }
            if start.elapsed() > limit {
                bail!(
                    "deploy not complete after {limit:?}; completed {:?}; tasks {:#?}",
                    d.completed,
                    self.task_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One line per task record: name, state, readiness, message.
    pub fn task_lines(&self) -> Vec<String> {
        let core = self.handle.shared.core.lock().unwrap();
        core.tasks()
            .values()
            .map(|r| {
                format!(
                    "{} {} ready={} agent={} {}",
                    r.name, r.state, r.ready, r.hostname, r.message
                )
            })
            .collect()
    }

    /// Pushes the spec of a changed cluster.yaml to the running scheduler.
    pub fn update(&self, yaml: &str) -> Result<()> {
        let cluster = ClusterConfig::parse(yaml, None)?;
        let spec = ServiceSpec::parse(
            &spec_yaml(&service_spec(&cluster, &self.opts)?)?,
            &BTreeMap::new(),
        )?;
        {
            let mut core = self.handle.shared.core.lock().unwrap();
            core.update_spec(proffer_sdk::service::http::now_ms(), spec)?;
        }
        self.handle.shared.notify.notify_one();
        Ok(())
    }

    /// Upgrades to `version` (a spec update) and waits for the update plan to complete; fails
    /// unless every phase's pod was relaunched only after the previous phase completed. With
    /// `watch_ready`, some apiserver must answer `/readyz` 200 at every check on the way.
    pub async fn upgrade(
        &self,
        version: &str,
        limit: Duration,
        watch_ready: bool,
    ) -> Result<Upgraded> {
        let text = self
            .yaml
            .replacen('\n', &format!("\nkubernetes-version: {version}\n"), 1);
        let before: BTreeMap<String, String> = {
            let core = self.handle.shared.core.lock().unwrap();
            core.tasks()
                .values()
                .map(|r| (r.name.clone(), r.task_id.clone()))
                .collect()
        };
        let start = Instant::now();
        self.update(&text)?;
        let mut u = Upgraded::default();
        let n = self.cluster.config.control_plane_count;
        loop {
            {
                let core = self.handle.shared.core.lock().unwrap();
                let now = start.elapsed();
                for r in core.tasks().values() {
                    if before.get(&r.name).is_some_and(|old| *old != r.task_id) {
                        u.relaunched.entry(r.pod.clone()).or_insert(now);
                    }
                }
                let plan = core.plan("update").context("no update plan")?;
                for ph in &plan.phases {
                    if ph.status() == RollupStatus::Complete {
                        u.completed.entry(ph.name.clone()).or_insert(now);
                    }
                }
                if plan.status() == RollupStatus::Complete {
                    u.took = now;
                    u.order = plan.phases.iter().map(|ph| ph.name.clone()).collect();
                    break;
                }
            }
            if watch_ready {
                let mut statuses = Vec::new();
                for i in 0..n {
                    statuses.push(self.readyz(i).await.unwrap_or(0));
                }
                if !statuses.contains(&200) {
                    bail!(
                        "no apiserver ready during the upgrade ({statuses:?}) after {:?}; relaunched {:?}",
                        start.elapsed(),
                        u.relaunched
                    );
                }
                u.ready_checks += 1;
            }
            if start.elapsed() > limit {
                bail!(
                    "upgrade not complete after {limit:?}; relaunched {:?}; tasks {:#?}",
                    u.relaunched,
                    self.task_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The update plan's phases in order: each relaunched only after the previous one
        // completed (one instance at a time).
        for w in u.order.windows(2) {
            let done = u
                .completed
                .get(&w[0])
                .with_context(|| format!("{} not complete", w[0]))?;
            let next = u
                .relaunched
                .get(&w[1])
                .with_context(|| format!("{} not relaunched", w[1]))?;
            if next < done {
                bail!(
                    "{} relaunched at {next:?} before {} was upgraded at {done:?}",
                    w[1],
                    w[0]
                );
            }
        }
        Ok(u)
    }

    /// An etcd client for every member, with the apiserver's client certificate.
    pub fn etcd(&self) -> Result<Etcd> {
        let tls = EtcdTls::new(
            &self.pki.etcd_ca.pair.cert_pem,
            Some((
                &self.pki.apiserver_etcd_client.cert_pem,
                &self.pki.apiserver_etcd_client.key_pem,
            )),
            "etcd",
        )?;
        let endpoints = (0..self.cluster.config.control_plane_count)
            .map(|i| {
                format!(
                    "https://127.0.0.1:{}",
                    instance_ports(&self.cluster, i, true).etcd_client
                )
            })
            .collect();
        Ok(Etcd::new(endpoints, Some(tls)))
    }

    /// The HTTP status of apiserver `i`'s `/readyz` (trusting the cluster CA).
    pub async fn readyz(&self, i: u32) -> Result<u16> {
        let port = instance_ports(&self.cluster, i, true).apiserver;
        let tls = client_config(&self.pki.ca.pair.cert_pem, None, "ca")?;
        Ok(proffer_k8s::http::request(
            "GET",
            &format!("https://127.0.0.1:{port}/readyz"),
            None,
            Some(tls),
            REQUEST_TIMEOUT,
        )
        .await?
        .status)
    }

    /// The end of a test: uninstalls (see [`K8s::uninstall`]) and stops the cluster whatever
    /// the test's `result` was, then returns that result, or else the uninstall's failure.
    pub async fn finish<T>(self, proffer: Proffer, result: Result<T>) -> Result<T> {
        let uninstalled = self.uninstall(&proffer).await;
        proffer.stop().await;
        let value = result?;
        uninstalled?;
        Ok(value)
    }

    /// Stops the scheduler and runs the uninstall plan; fails unless it ends `Uninstalled` with
    /// no task of the framework and no reservation of it left on any agent.
    pub async fn uninstall(self, p: &Proffer) -> Result<()> {
        let name = self.cluster.framework_name().to_string();
        self.sched_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.sched).await;
        let weak = std::sync::Arc::downgrade(&self.handle.shared);
        drop(self.handle);
        while weak.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let un = RunConfig {
            uninstall: true,
            ..self.run
        };
        let (h2, l2) = prepare(self.spec, &un).await?;
        let shared = h2.shared.clone();
        let outcome = tokio::time::timeout(
            Duration::from_secs(120),
            run_service(h2, l2, un, CancellationToken::new()),
        )
        .await
        .with_context(|| {
            let core = shared.core.lock().unwrap();
            let steps: Vec<String> = core
                .plans()
                .iter()
                .flat_map(|p| {
                    p.phases.iter().flat_map(move |ph| {
                        ph.steps.iter().map(move |st| {
                            format!(
                                "{}/{}/{} {:?} {}",
                                p.name, ph.name, st.name, st.status, st.message
                            )
                        })
                    })
                })
                .collect();
            let tasks: Vec<String> = core
                .tasks()
                .values()
                .map(|r| format!("{} {} {}", r.name, r.state, r.hostname))
                .collect();
            format!(
                "uninstall did not finish ({:?}, torn down: {}): steps {steps:#?}; tasks {tasks:#?}",
                core.plans()
                    .iter()
                    .map(|p| format!(
                        "{} {:?} phases {:?}",
                        p.name,
                        p.status(),
                        p.phases.iter().map(|ph| ph.name.clone()).collect::<Vec<_>>()
                    ))
                    .collect::<Vec<_>>(),
                core.torn_down()
            )
        })??;
        if let Some(s) = self.pki_server {
            s.abort();
        }
        let leftover = p.tasks_of(&name).await?;
        let reserved = p.reserved_for(&format!("{name}.")).await?;
        if outcome != RunOutcome::Uninstalled || leftover != 0 || !reserved.is_empty() {
            bail!(
                "uninstall: {outcome:?}, {leftover} tasks left, reservations left on {reserved:?}"
            );
        }
        Ok(())
    }
}
