//! Two Kubernetes clusters side by side on one Proffer cluster (distinct framework names, roles
//! and port blocks): both deploy, and uninstalling one leaves the other running and ready.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use proffer_k8s::config::{ClusterConfig, check_coexist};
use proffer_k8s::deploy::{DeployOptions, instance_ports, pki_request, service_spec, spec_yaml};
use proffer_k8s::pki::{ClusterPki, Host};
use proffer_k8s::programs::Programs;
use proffer_k8s::tlsutil::client_config;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare, run_service};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio_util::sync::CancellationToken;

use common::REQUEST_TIMEOUT;
use common::cluster::{Proffer, ProfferOptions, etcd_path, free_block};

async fn readyz(port: u16, ca: &str) -> Result<u16> {
    let tls = client_config(ca, None, "ca")?;
    let url = format!("https://127.0.0.1:{port}/readyz");
    Ok(
        proffer_k8s::http::request("GET", &url, None, Some(tls), REQUEST_TIMEOUT)
            .await?
            .status,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_side_by_side() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP two_clusters_side_by_side: no `etcd` on PATH (apt-get install etcd-server)");
        return Ok(());
    };
    let block = free_block(5000);
    let proffer = Proffer::start(&ProfferOptions::new(2, block)).await?;
    let master = proffer.master.clone();

    let bins = [
        (
            "kube-apiserver",
            env!("CARGO_BIN_EXE_kube-apiserver-standin"),
        ),
        (
            "kube-controller-manager",
            env!("CARGO_BIN_EXE_kube-controller-manager-standin"),
        ),
        (
            "kube-scheduler",
            env!("CARGO_BIN_EXE_kube-scheduler-standin"),
        ),
        ("kubelet", env!("CARGO_BIN_EXE_kubelet-standin")),
        ("kube-proxy", env!("CARGO_BIN_EXE_kube-proxy-standin")),
        ("coredns", env!("CARGO_BIN_EXE_coredns-standin")),
    ];
    let mut arts = format!("artifacts:\n  etcd: {{path: {etcd}}}\n  kubectl: {{path: 'true'}}\n");
    for (c, p) in bins {
        arts.push_str(&format!("  {c}: {{path: {p}}}\n"));
    }
    let mut clusters = Vec::new();
    let mut keep = Vec::new();
    for (name, base) in [("blue", block), ("green", block + 100)] {
        let yaml = format!(
            "name: {name}\ncontrol-plane-count: 1\nnode-count: 2\nport-base: {base}\n{arts}"
        );
        let cluster = ClusterConfig::parse(&yaml, Some(2))?;
        let pki_dir = tempfile::tempdir()?;
        let opts = DeployOptions {
            pki_dir: pki_dir.path().display().to_string(),
            programs: Programs::Separate {
                probe: env!("CARGO_BIN_EXE_k8s-probe").into(),
            },
            control_plane: vec![Host {
                name: "cp-0".into(),
                ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            }],
            local: true,
            nodes_per_agent: 1,
            pki_url: None,
        };
        let pki = ClusterPki::generate(&pki_request(&cluster, &opts)?)?;
        pki.write_to(pki_dir.path())?;
        let spec = ServiceSpec::parse(
            &spec_yaml(&service_spec(&cluster, &opts)?)?,
            &BTreeMap::new(),
        )?;
        let state = tempfile::tempdir()?;
        let run = RunConfig {
            master: master.clone(),
            state_dir: state.path().to_path_buf(),
            core: CoreConfig {
                reservations: true,
                framework_host: "127.0.0.1".into(),
                refuse_pending_secs: 0.3,
                refuse_idle_secs: 5.0,
                ..CoreConfig::default()
            },
            http: None,
            options: BTreeMap::new(),
            uninstall: false,
        };
        let (handle, l) = prepare(spec.clone(), &run).await?;
        let c = CancellationToken::new();
        let task = tokio::spawn(run_service(handle.clone(), l, run.clone(), c.clone()));
        keep.push((pki_dir, state));
        clusters.push((cluster, pki, spec, run, handle, c, task));
    }
    check_coexist(&[&clusters[0].0, &clusters[1].0])?;

    let start = Instant::now();
    let outcome: Result<()> = async {
        loop {
            let done = clusters.iter().all(|c| {
                let core = c.4.shared.core.lock().unwrap();
                core.plan("deploy").map(|p| p.status()) == Some(RollupStatus::Complete)
            });
            if done {
                break;
            }
            if start.elapsed() > Duration::from_secs(180) {
                bail!("the two clusters did not both complete within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("two clusters COMPLETE in {:.2?}", start.elapsed());
        for c in &clusters {
            let port = instance_ports(&c.0, 0, true).apiserver;
            let s = readyz(port, &c.1.ca.pair.cert_pem).await?;
            if s != 200 {
                bail!("{} apiserver /readyz {s}", c.0.config.name);
            }
            // Each apiserver trusts only its own cluster's CA chain: the other CA cannot verify it.
            let other = if c.0.config.name == "blue" {
                &clusters[1]
            } else {
                &clusters[0]
            };
            if readyz(port, &other.1.ca.pair.cert_pem).await.is_ok() {
                bail!(
                    "{}'s apiserver verified with the other cluster's CA",
                    c.0.config.name
                );
            }
        }
        Ok(())
    }
    .await;

    // Uninstall blue: its tasks go, green keeps running and ready.
    let mut uninstall_result = Ok(());
    let mut green_after = 0;
    let mut blue_left = usize::MAX;
    if outcome.is_ok() {
        let (cluster, _pki, spec, run, handle, c, task) = clusters.remove(0);
        match stop_and_uninstall(spec, run, handle, c, task).await? {
            Ok(Ok(RunOutcome::Uninstalled)) => {}
            other => uninstall_result = Err(anyhow::anyhow!("blue uninstall: {other:?}")),
        }
        blue_left = proffer.tasks_of(cluster.framework_name()).await?;
        let g = &clusters[0];
        green_after = readyz(
            instance_ports(&g.0, 0, true).apiserver,
            &g.1.ca.pair.cert_pem,
        )
        .await?;
    }
    // Tear down green the same way.
    let mut green_left = 0;
    for (cluster, _pki, spec, run, handle, c, task) in clusters {
        let _ = stop_and_uninstall(spec, run, handle, c, task).await?;
        green_left = proffer.tasks_of(cluster.framework_name()).await?;
    }
    proffer.stop().await;
    outcome?;
    uninstall_result?;
    assert_eq!(blue_left, 0, "blue's tasks are gone after its uninstall");
    assert_eq!(
        green_after, 200,
        "green stays ready while blue is uninstalled"
    );
    assert_eq!(green_left, 0);
    drop(keep);
    Ok(())
}

/// How a service run ends.
type RunResult = std::result::Result<RunOutcome, proffer_sdk::service::runner::ServiceError>;

/// Stops a cluster's running scheduler (waits until its state is released), then runs its
/// uninstall plan for up to 120 s and returns how that ended.
async fn stop_and_uninstall(
    spec: ServiceSpec,
    run: RunConfig,
    handle: proffer_sdk::service::runner::RunHandle,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<RunResult>,
) -> Result<Result<RunResult, tokio::time::error::Elapsed>> {
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    let weak = std::sync::Arc::downgrade(&handle.shared);
    drop(handle);
    while weak.upgrade().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let un = RunConfig {
        uninstall: true,
        ..run
    };
    let (h, l) = prepare(spec, &un).await?;
    Ok(tokio::time::timeout(
        Duration::from_secs(120),
        run_service(h, l, un, CancellationToken::new()),
    )
    .await)
}
