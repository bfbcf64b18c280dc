//! End to end on an in-process Proffer cluster (real master, real agents running real
//! processes): a 3-instance control plane (real etcd, stand-in kube-* programs) and 3 nodes
//! deployed from the generated spec; the plan reaches COMPLETE and no group's tasks launch
//! before the previous group was ready (recorded by polling the scheduler's state).

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
use proffer_sdk::service::runner::{RunConfig, prepare, run_service};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const AGENTS: usize = 3;

fn etcd_path() -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
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
    for i in 0..AGENTS {
        let dir = tempfile::tempdir()?;
        let mut a = AgentConfig::new(master.clone(), dir.path());
        let p = 41000 + 100 * i;
        a.resources = Some(Resources::parse(&format!(
            "cpus:16;mem:32768;disk:32768;ports:[{p}-{}]",
            p + 99
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
    let port_base = 40000;
    let yaml = format!(
        "name: e2e\ncontrol-plane-count: 3\nnode-count: 3\nport-base: {port_base}\nartifacts:\n  etcd: {{path: {etcd}}}\n  kube-apiserver: {{path: {}}}\n  kube-controller-manager: {{path: {}}}\n  kube-scheduler: {{path: {}}}\n  kubelet: {{path: {}}}\n  kube-proxy: {{path: {}}}\n  coredns: {{path: {}}}\n  kubectl: {{path: 'true'}}\n",
        env!("CARGO_BIN_EXE_kube-apiserver-standin"),
        env!("CARGO_BIN_EXE_kube-controller-manager-standin"),
        env!("CARGO_BIN_EXE_kube-scheduler-standin"),
        env!("CARGO_BIN_EXE_kubelet-standin"),
        env!("CARGO_BIN_EXE_kube-proxy-standin"),
        env!("CARGO_BIN_EXE_coredns-standin"),
    );
    let cluster = ClusterConfig::parse(&yaml, Some(AGENTS))?;
    let pki_dir = tempfile::tempdir()?;
    let opts = DeployOptions {
        pki_dir: pki_dir.path().display().to_string(),
        probe: env!("CARGO_BIN_EXE_k8s-probe").into(),
        control_plane: (0..3)
            .map(|i| Host {
                name: format!("cp-{i}"),
                ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            })
            .collect(),
        local: true,
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
            for r in core.tasks().values() {
                launched.entry(r.pod.clone()).or_insert(start.elapsed());
            }
            let plan = core.plan("deploy").context("no deploy plan")?;
            for ph in &plan.phases {
                if ph.status() == RollupStatus::Complete {
                    completed.entry(ph.name.clone()).or_insert(start.elapsed());
                }
            }
            if plan.status() == RollupStatus::Complete {
                break Ok(start.elapsed());
            }
        }
        if sched.is_finished() {
            break Err("the scheduler stopped".to_string());
        }
        if start.elapsed() > Duration::from_secs(180) {
            let core = handle.shared.core.lock().unwrap();
            let tasks: Vec<String> = core
                .tasks()
                .values()
                .map(|r| format!("{} {} ready={} {}", r.name, r.state, r.ready, r.message))
                .collect();
            break Err(format!(
                "deploy not complete after 180 s; completed {completed:?}; tasks {tasks:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let result = (|| -> Result<Duration> {
        let took = outcome.map_err(anyhow::Error::msg)?;
        println!("deploy COMPLETE in {took:?}; phases completed at {completed:?}");
        let groups = [
            vec!["etcd-0", "etcd-1", "etcd-2"],
            vec!["apiserver-0", "apiserver-1", "apiserver-2"],
            vec![
                "controller-manager-0",
                "controller-manager-1",
                "controller-manager-2",
            ],
            vec!["scheduler-0", "scheduler-1", "scheduler-2"],
            vec!["node"],
            vec!["coredns"],
            vec!["addons"],
        ];
        for w in groups.windows(2) {
            let ready = w[0].iter().map(|p| completed[*p]).max().unwrap();
            for p in &w[1] {
                let l = launched
                    .get(*p)
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
    let endpoints = (0..3)
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
        for i in 0..3 {
            let key = format!(
                "/registry/standin/kube-apiserver/127.0.0.1:{}",
                instance_ports(&cluster, i, true).apiserver
            );
            if client.get(&key).await?.is_some() {
                registered += 1;
            }
        }
    }

    sched_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), sched).await;
    cancel.cancel();
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(30), a).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    result?;
    assert_eq!(registered, 3, "every apiserver wrote its record into etcd");
    Ok(())
}
