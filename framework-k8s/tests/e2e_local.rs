//! End to end on an in-process Proffer cluster (real master, real agents running real
//! processes): a 3-instance control plane (real etcd, stand-in kube-* programs) and 3 nodes
//! deployed from the generated spec; the plan reaches COMPLETE and no group's tasks launch
//! before the previous group was ready (recorded by polling the scheduler's state); an
//! apiserver killed with SIGKILL is replaced while another stays ready, and so is a kubelet; nodes scale 3 → 5 → 2;
//! uninstall leaves no tasks.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proffer_agent::{AgentConfig, ExecutorLauncher, IsolationMode};
use proffer_k8s::config::ClusterConfig;
use proffer_k8s::deploy::{DeployOptions, instance_ports, pki_request, service_spec, spec_yaml};
use proffer_k8s::etcd::Etcd;
use proffer_k8s::pki::{ClusterPki, Host};
use proffer_k8s::tlsutil::client_config;
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_proto::Resources;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare, run_service};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Active tasks of the framework `name`, from the master's state.
async fn tasks_of(master: &str, name: &str) -> Result<usize> {
    let mut c =
        proffer_proto::v1::operator_client::OperatorClient::connect(format!("http://{master}"))
            .await?;
    let s = c
        .get_state(proffer_proto::v1::GetStateRequest {})
        .await?
        .into_inner();
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

/// A base port with `len` free ports above it (probed by binding), varied by process id so
/// that concurrent runs of this test do not collide.
fn free_block(len: usize) -> usize {
    // Successive calls in one process start 7000 ports apart (tests run concurrently).
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let start = 20000 + ((std::process::id() as usize % 64) * 500 + call * 7000) % 40000;
    (0..80)
        .map(|k| 20000 + (start - 20000 + k * 500) % 40000)
        .find(|&base| {
            (base..base + len).all(|p| std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok())
        })
        .unwrap_or(start)
}

/// The pid of the process whose command line contains every needle (not a shell).
fn pid_of(needles: &[&str]) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (needles.iter().all(|n| cmd.contains(n)) && !cmd.starts_with("sh ")).then_some(pid)
    })
}

/// Kills apiserver-1 with SIGKILL and waits until a new task replaces it and is ready, checking
/// that apiserver-0 answers `/readyz` 200 all along.
async fn kill_and_replace_apiserver(
    handle: &proffer_sdk::service::runner::RunHandle,
    cluster: &proffer_k8s::Cluster,
    ca: &str,
) -> Result<()> {
    let port1 = instance_ports(cluster, 1, true).apiserver;
    let port0 = instance_ports(cluster, 0, true).apiserver;
    let old = {
        let core = handle.shared.core.lock().unwrap();
        core.tasks()
            .values()
            .find(|r| r.pod == "apiserver-1")
            .map(|r| r.task_id.clone())
            .context("no apiserver-1 task")?
    };
    let pid = pid_of(&["kube-apiserver-standin", &format!("--secure-port={port1} ")])
        .context("apiserver-1 process not found")?;
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    if !st.success() {
        bail!("kill -9 {pid} failed");
    }
    let tls = client_config(ca, None, "ca")?;
    let start = Instant::now();
    let mut checks = 0;
    loop {
        let r = proffer_k8s::http::request(
            "GET",
            &format!("https://127.0.0.1:{port0}/readyz"),
            None,
            Some(tls.clone()),
            Duration::from_secs(2),
        )
        .await?;
        if r.status != 200 {
            bail!("apiserver-0 not ready while apiserver-1 is replaced: {r:?}");
        }
        checks += 1;
        let replaced = {
            let core = handle.shared.core.lock().unwrap();
            core.tasks().values().any(|r| {
                r.pod == "apiserver-1" && r.task_id != old && r.state == "TASK_RUNNING" && r.ready
            })
        };
        if replaced {
            let again = proffer_k8s::http::request(
                "GET",
                &format!("https://127.0.0.1:{port1}/readyz"),
                None,
                Some(tls),
                Duration::from_secs(2),
            )
            .await?;
            if again.status != 200 {
                bail!("replacement apiserver-1 not ready: {again:?}");
            }
            println!(
                "HA: apiserver-1 (pid {pid}) killed and replaced in {:.2?}; apiserver-0 ready in all {checks} checks",
                start.elapsed()
            );
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("apiserver-1 not replaced within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pids of processes whose working directory lies under one of `roots` (the agents'
/// sandboxes) and whose command line contains every needle (shells excluded).
fn pids_under(roots: &[std::path::PathBuf], needles: &[&str]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (roots.iter().any(|r| cwd.starts_with(r))
                && needles.iter().all(|n| cmd.contains(n))
                && !cmd.starts_with("sh "))
            .then_some(pid)
        })
        .collect()
}

/// How many processes [`pids_under`] finds for one needle.
fn procs_under(roots: &[std::path::PathBuf], needle: &str) -> usize {
    pids_under(roots, &[needle]).len()
}

/// What to do once the deploy is complete.
enum Extra {
    None,
    /// Kill -9 apiserver-1 and wait for its replacement.
    KillApiserver,
    /// Change the node count to each of these in turn.
    Scale(Vec<u32>),
    /// Change the Kubernetes version; every task restarts, group after group.
    Upgrade(&'static str),
}

/// Upgrades to `version` through a spec update and checks that each group's tasks were
/// relaunched only after the previous group's update phases were complete.
async fn upgrade(
    handle: &proffer_sdk::service::runner::RunHandle,
    yaml: &str,
    version: &str,
    opts: &DeployOptions,
) -> Result<()> {
    let text = yaml.replacen("\n", &format!("\nkubernetes-version: {version}\n"), 1);
    let cluster = ClusterConfig::parse(&text, None)?;
    let spec = ServiceSpec::parse(
        &spec_yaml(&service_spec(&cluster, opts)?)?,
        &BTreeMap::new(),
    )?;
    let before: BTreeMap<String, String> = {
        let core = handle.shared.core.lock().unwrap();
        core.tasks()
            .values()
            .map(|r| (r.name.clone(), r.task_id.clone()))
            .collect()
    };
    let start = Instant::now();
    {
        let mut core = handle.shared.core.lock().unwrap();
        core.update_spec(proffer_sdk::service::http::now_ms(), spec)?;
    }
    handle.shared.notify.notify_one();
    let mut relaunched: BTreeMap<String, Duration> = BTreeMap::new();
    let mut completed: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        {
            let core = handle.shared.core.lock().unwrap();
            let now = start.elapsed();
            for r in core.tasks().values() {
                if before.get(&r.name).is_some_and(|old| *old != r.task_id) {
                    relaunched.entry(r.pod.clone()).or_insert(now);
                }
            }
            let plan = core.plan("update").context("no update plan")?;
            for ph in &plan.phases {
                if ph.status() == RollupStatus::Complete {
                    completed.entry(ph.name.clone()).or_insert(now);
                }
            }
            if plan.status() == RollupStatus::Complete {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("upgrade not complete after 120 s; relaunched {relaunched:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The update plan's phases, in order: each must be relaunched only after the previous one
    // completed (one instance at a time: etcd, apiservers, controller-managers, schedulers,
    // nodes, CoreDNS, addons).
    let order: Vec<String> = {
        let core = handle.shared.core.lock().unwrap();
        let plan = core.plan("update").context("no update plan")?;
        plan.phases.iter().map(|ph| ph.name.clone()).collect()
    };
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    for w in order.windows(2) {
        let ready = completed
            .get(w[0])
            .with_context(|| format!("{} not complete", w[0]))?;
        let next = relaunched
            .get(w[1])
            .with_context(|| format!("{} not relaunched", w[1]))?;
        if next < ready {
            bail!(
                "{} relaunched at {next:?} before {} was upgraded at {ready:?}",
                w[1],
                w[0]
            );
        }
    }
    println!(
        "upgrade to {version} in {:.2?}; relaunched {relaunched:?}",
        start.elapsed()
    );
    Ok(())
}

/// Pods of the `node` pod type with both tasks running and ready, by index.
fn ready_nodes(handle: &proffer_sdk::service::runner::RunHandle) -> (Vec<u32>, usize) {
    let core = handle.shared.core.lock().unwrap();
    let live: Vec<_> = core
        .tasks()
        .values()
        .filter(|r| r.pod == "node" && r.state == "TASK_RUNNING")
        .collect();
    let mut ready: Vec<u32> = live
        .iter()
        .filter(|r| r.ready)
        .map(|r| r.index)
        .filter(|i| live.iter().filter(|r| r.index == *i && r.ready).count() == 2)
        .collect();
    ready.sort();
    ready.dedup();
    (ready, live.len())
}

/// Scales the node pod through `counts` with spec updates (issuing kubelet certificates for
/// new nodes first) and waits each time for exactly that many ready nodes and no others.
async fn scale_nodes(
    handle: &proffer_sdk::service::runner::RunHandle,
    yaml: &str,
    initial: u32,
    counts: &[u32],
    opts: &DeployOptions,
    roots: &[std::path::PathBuf],
) -> Result<()> {
    for &n in counts {
        let text = yaml.replace(
            &format!("node-count: {initial}\n"),
            &format!("node-count: {n}\n"),
        );
        let cluster = ClusterConfig::parse(&text, None)?;
        let added = proffer_k8s::pki::add_nodes(
            std::path::Path::new(&opts.pki_dir),
            &pki_request(&cluster, opts)?,
        )?;
        let spec = ServiceSpec::parse(
            &spec_yaml(&service_spec(&cluster, opts)?)?,
            &BTreeMap::new(),
        )?;
        let start = Instant::now();
        {
            let mut core = handle.shared.core.lock().unwrap();
            core.update_spec(proffer_sdk::service::http::now_ms(), spec)?;
        }
        handle.shared.notify.notify_one();
        loop {
            let (ready, live) = ready_nodes(handle);
            let gone = (n..n + 5)
                .all(|i| procs_under(roots, &format!("--hostname-override=node-{i} ")) == 0);
            let here =
                (0..n).all(|i| procs_under(roots, &format!("--hostname-override=node-{i} ")) == 2);
            if ready == (0..n).collect::<Vec<_>>() && live == 2 * n as usize && gone && here {
                println!(
                    "scale: {n} nodes ready (certificates added for {added:?}) in {:.2?}",
                    start.elapsed()
                );
                break;
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!(
                    "scaling to {n} nodes: ready {ready:?}, {live} node tasks running after 90 s"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Kills node-1's kubelet with SIGKILL and waits until a new kubelet task is running and
/// ready (its healthz check) with a live process.
async fn kill_and_replace_kubelet(
    handle: &proffer_sdk::service::runner::RunHandle,
    roots: &[std::path::PathBuf],
) -> Result<()> {
    let old = {
        let core = handle.shared.core.lock().unwrap();
        core.tasks()
            .values()
            .find(|r| r.pod == "node" && r.index == 1 && r.task == "kubelet")
            .map(|r| r.task_id.clone())
            .context("no kubelet task of node-1")?
    };
    let pid = *pids_under(roots, &["kubelet-standin", "--hostname-override=node-1 "])
        .first()
        .context("node-1 kubelet process not found")?;
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    if !st.success() {
        bail!("kill -9 {pid} failed");
    }
    let start = Instant::now();
    loop {
        let replaced = {
            let core = handle.shared.core.lock().unwrap();
            core.tasks().values().any(|r| {
                r.pod == "node"
                    && r.index == 1
                    && r.task == "kubelet"
                    && r.task_id != old
                    && r.state == "TASK_RUNNING"
                    && r.ready
            })
        };
        if replaced && procs_under(roots, "--hostname-override=node-1 ") == 2 {
            println!(
                "node-1 kubelet (pid {pid}) killed and replaced in {:.2?}",
                start.elapsed()
            );
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("node-1 kubelet not replaced within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one deploy measured.
struct Report {
    took: Duration,
    completed: BTreeMap<String, Duration>,
    launched: BTreeMap<String, Duration>,
    registered: usize,
}

fn etcd_path() -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

/// Deploys a cluster of `cp` control-plane instances and `nodes` nodes on `agents_n` agents;
/// fails unless the deploy plan completes within `limit`.
async fn deploy(
    cp: u32,
    nodes: u32,
    agents_n: usize,
    block: usize,
    limit: Duration,
    etcd: &str,
    extra: Extra,
) -> Result<Report> {
    // The master and agents.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let master = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let cfg = MasterConfig {
        allocation_interval_ms: 100,
        ..MasterConfig::default()
    };
    let server = tokio::spawn(serve(listener, ServerConfig::new(cfg), cancel.clone()));
    let mut dirs = Vec::new();
    let mut agents = Vec::new();
    for i in 0..agents_n {
        let dir = tempfile::tempdir()?;
        let mut a = AgentConfig::new(master.clone(), dir.path());
        let p = block + 1000 + 1000 * i;
        a.resources = Some(Resources::parse(&format!(
            "cpus:64;mem:262144;disk:262144;ports:[{p}-{}]",
            p + 999
        ))?);
        a.hostname = format!("agent-{i}");
        a.executor = ExecutorLauncher::InProcess;
        a.isolation = IsolationMode::Posix;
        a.default_kill_grace = Duration::from_millis(500);
        a.reconnect_initial = Duration::from_millis(50);
        agents.push(tokio::spawn(proffer_agent::run(a, cancel.child_token())));
        dirs.push(dir);
    }

    // The cluster: stand-ins for the kube-* programs, the real etcd.
    let port_base = block;
    let yaml = format!(
        "name: e2e\ncontrol-plane-count: {cp}\nnode-count: {nodes}\nport-base: {port_base}\nartifacts:\n  etcd: {{path: {etcd}}}\n  kube-apiserver: {{path: {}}}\n  kube-controller-manager: {{path: {}}}\n  kube-scheduler: {{path: {}}}\n  kubelet: {{path: {}}}\n  kube-proxy: {{path: {}}}\n  coredns: {{path: {}}}\n  kubectl: {{path: 'true'}}\n",
        env!("CARGO_BIN_EXE_kube-apiserver-standin"),
        env!("CARGO_BIN_EXE_kube-controller-manager-standin"),
        env!("CARGO_BIN_EXE_kube-scheduler-standin"),
        env!("CARGO_BIN_EXE_kubelet-standin"),
        env!("CARGO_BIN_EXE_kube-proxy-standin"),
        env!("CARGO_BIN_EXE_coredns-standin"),
    );
    let cluster = ClusterConfig::parse(&yaml, None)?;
    let pki_dir = tempfile::tempdir()?;
    let opts = DeployOptions {
        pki_dir: pki_dir.path().display().to_string(),
        probe: env!("CARGO_BIN_EXE_k8s-probe").into(),
        control_plane: (0..cp)
            .map(|i| Host {
                name: format!("cp-{i}"),
                ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            })
            .collect(),
        local: true,
        nodes_per_agent: nodes.div_ceil(agents_n as u32),
    };
    let pki = ClusterPki::generate(&pki_request(&cluster, &opts)?)?;
    pki.write_to(pki_dir.path())?;
    let spec = ServiceSpec::parse(
        &spec_yaml(&service_spec(&cluster, &opts)?)?,
        &BTreeMap::new(),
    )?;

    // The scheduler.
    let state = tempfile::tempdir()?;
    let run = RunConfig {
        master: master.clone(),
        state_dir: state.path().to_path_buf(),
        core: CoreConfig {
            framework_host: "127.0.0.1".into(),
            refuse_pending_secs: 0.3,
            refuse_idle_secs: 5.0,
            ..CoreConfig::default()
        },
        http: None,
        options: BTreeMap::new(),
        uninstall: false,
    };
    let spec_again = spec.clone();
    let run_cfg = run.clone();
    let (handle, l) = prepare(spec, &run).await?;
    let sched_cancel = CancellationToken::new();
    let sched = tokio::spawn(run_service(handle.clone(), l, run, sched_cancel.clone()));

    // Record when each pod's task first appears and when each phase completes.
    let start = Instant::now();
    let mut launched: BTreeMap<String, Duration> = BTreeMap::new();
    let mut completed: BTreeMap<String, Duration> = BTreeMap::new();
    let outcome = loop {
        {
            let core = handle.shared.core.lock().unwrap();
            // One instant per snapshot: a task and its predecessors' readiness seen together
            // count as simultaneous.
            let now = start.elapsed();
            for r in core.tasks().values() {
                launched.entry(r.pod.clone()).or_insert(now);
            }
            let plan = core.plan("deploy").context("no deploy plan")?;
            for ph in &plan.phases {
                if ph.status() == RollupStatus::Complete {
                    completed.entry(ph.name.clone()).or_insert(now);
                }
            }
            if plan.status() == RollupStatus::Complete {
                break Ok(now);
            }
        }
        if sched.is_finished() {
            break Err("the scheduler stopped".to_string());
        }
        if start.elapsed() > limit {
            let core = handle.shared.core.lock().unwrap();
            let tasks: Vec<String> = core
                .tasks()
                .values()
                .map(|r| format!("{} {} ready={} {}", r.name, r.state, r.ready, r.message))
                .collect();
            break Err(format!(
                "deploy not complete after {limit:?}; completed {completed:?}; tasks {tasks:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let result = (|| -> Result<Duration> {
        let took = outcome.map_err(anyhow::Error::msg)?;
        println!("deploy COMPLETE in {took:?}; phases completed at {completed:?}");
        let group = |k: &str| (0..cp).map(|i| format!("{k}-{i}")).collect::<Vec<_>>();
        let groups = [
            group("etcd"),
            group("apiserver"),
            group("controller-manager"),
            group("scheduler"),
            vec!["node".to_string()],
            vec!["coredns".to_string()],
            vec!["addons".to_string()],
        ];
        for w in groups.windows(2) {
            let ready = w[0].iter().map(|p| completed[p]).max().unwrap();
            for p in &w[1] {
                let l = launched
                    .get(p)
                    .with_context(|| format!("{p} never launched"))?;
                if *l < ready {
                    bail!(
                        "{p} launched at {l:?}, before {:?} were ready at {ready:?}",
                        w[0]
                    );
                }
            }
        }
        Ok(took)
    })();

    // The apiservers registered themselves in the real etcd.
    let etcd_tls = client_config(
        &pki.etcd_ca.pair.cert_pem,
        Some((
            &pki.apiserver_etcd_client.cert_pem,
            &pki.apiserver_etcd_client.key_pem,
        )),
        "etcd",
    )?;
    let endpoints = (0..cp)
        .map(|i| {
            format!(
                "https://127.0.0.1:{}",
                instance_ports(&cluster, i, true).etcd_client
            )
        })
        .collect();
    let client = Etcd::new(endpoints, Some(etcd_tls));
    let mut registered = 0;
    if result.is_ok() {
        for i in 0..cp {
            let key = format!(
                "/registry/standin/kube-apiserver/127.0.0.1:{}",
                instance_ports(&cluster, i, true).apiserver
            );
            if client.get(&key).await?.is_some() {
                registered += 1;
            }
        }
    }

    // HA: kill -9 one apiserver; it is replaced while another keeps answering /readyz.
    let ha = match extra {
        _ if result.is_err() => Ok(()),
        Extra::None => Ok(()),
        Extra::KillApiserver => {
            let roots: Vec<std::path::PathBuf> = dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d.path()).ok())
                .collect();
            match kill_and_replace_apiserver(&handle, &cluster, &pki.ca.pair.cert_pem).await {
                Ok(()) => kill_and_replace_kubelet(&handle, &roots).await,
                Err(e) => Err(e),
            }
        }
        Extra::Upgrade(v) => upgrade(&handle, &yaml, v, &opts).await,
        Extra::Scale(ref counts) => {
            let roots: Vec<std::path::PathBuf> = dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d.path()).ok())
                .collect();
            scale_nodes(&handle, &yaml, nodes, counts, &opts, &roots).await
        }
    };

    // Uninstall: the scheduler restarts with the uninstall plan, which kills every task.
    sched_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), sched).await;
    let weak = std::sync::Arc::downgrade(&handle.shared);
    drop(handle);
    while weak.upgrade().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let un = RunConfig {
        uninstall: true,
        ..run_cfg
    };
    let (h2, l2) = prepare(spec_again, &un).await?;
    let uninstalled = tokio::time::timeout(
        Duration::from_secs(120),
        run_service(h2, l2, un, CancellationToken::new()),
    )
    .await;
    let leftover = tasks_of(&master, cluster.framework_name()).await?;
    cancel.cancel();
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(30), a).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    let uninstalled = uninstalled.context("uninstall did not finish")??;
    if uninstalled != RunOutcome::Uninstalled || leftover != 0 {
        bail!("uninstall: {uninstalled:?}, {leftover} tasks left");
    }
    ha?;
    Ok(Report {
        took: result?,
        completed,
        launched,
        registered,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_three_nodes_deploy_in_order() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!(
            "SKIP three_masters_three_nodes_deploy_in_order: no `etcd` on PATH (apt-get install etcd-server)"
        );
        return Ok(());
    };
    let r = deploy(
        3,
        3,
        3,
        free_block(4000),
        Duration::from_secs(180),
        &etcd,
        Extra::KillApiserver,
    )
    .await?;
    println!(
        "deploy COMPLETE in {:?}; phases completed at {:?}",
        r.took, r.completed
    );
    assert_eq!(
        r.registered, 3,
        "every apiserver wrote its record into etcd"
    );
    assert_eq!(r.launched.len(), 3 * 4 + 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_scale_3_to_5_to_2() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP nodes_scale_3_to_5_to_2: no `etcd` on PATH (apt-get install etcd-server)");
        return Ok(());
    };
    deploy(
        1,
        3,
        5,
        free_block(6000),
        Duration::from_secs(180),
        &etcd,
        Extra::Scale(vec![5, 2]),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_restarts_groups_in_order() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!(
            "SKIP upgrade_restarts_groups_in_order: no `etcd` on PATH (apt-get install etcd-server)"
        );
        return Ok(());
    };
    deploy(
        1,
        2,
        2,
        free_block(4000),
        Duration::from_secs(180),
        &etcd,
        Extra::Upgrade("v1.31.3"),
    )
    .await?;
    Ok(())
}

/// Benchmark (run with `--ignored --nocapture`): a 1-master cluster with 20 and 100 stand-in
/// nodes on 5 agents; prints the time to COMPLETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_one_master_many_nodes() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP bench: no `etcd` on PATH");
        return Ok(());
    };
    for nodes in [20, 100] {
        let r = deploy(
            1,
            nodes,
            5,
            free_block(6000),
            Duration::from_secs(300),
            &etcd,
            Extra::None,
        )
        .await?;
        let node_phase = r.completed["node"] - r.completed["scheduler-0"];
        println!(
            "bench: 1 master + {nodes} nodes on 5 agents: COMPLETE in {:.2?} (nodes phase {:.2?})",
            r.took, node_phase
        );
    }
    Ok(())
}
