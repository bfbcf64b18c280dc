//! End to end on an in-process Proffer cluster (real master, real agents running real
//! processes): a 3-instance control plane (real etcd, stand-in kube-* programs) and 3 nodes
//! deployed from the generated spec; the plan reaches COMPLETE and no group's tasks launch
//! before the previous group was ready (recorded by polling the scheduler's state); an
//! apiserver killed with SIGKILL is replaced while another stays ready, and so is a kubelet; nodes scale 3 → 5 → 2;
//! uninstall leaves no tasks.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::REQUEST_TIMEOUT;
use common::cluster::{
    K8s, Proffer, ProfferOptions, cluster_yaml, etcd_path, free_block, kill9, pid_of, pids_under,
    procs_under,
};
use proffer_k8s::config::ClusterConfig;
use proffer_k8s::deploy::{DeployOptions, instance_ports, pki_request, service_spec, spec_yaml};
use proffer_k8s::tlsutil::client_config;
use proffer_sdk::service::ServiceSpec;

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
    kill9(pid)?;
    let tls = client_config(ca, None, "ca")?;
    let start = Instant::now();
    let mut checks = 0;
    loop {
        let r = proffer_k8s::http::request(
            "GET",
            &format!("https://127.0.0.1:{port0}/readyz"),
            None,
            Some(tls.clone()),
            REQUEST_TIMEOUT,
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
                REQUEST_TIMEOUT,
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
    kill9(pid)?;
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

/// Deploys a cluster of `cp` control-plane instances and `nodes` nodes on `agents_n` agents;
/// fails unless the deploy plan completes within `limit` with every group launched after the
/// previous one was ready, then runs `extra` and uninstalls (no task or reservation left).
async fn deploy(
    cp: u32,
    nodes: u32,
    agents_n: usize,
    block: usize,
    limit: Duration,
    etcd: &str,
    extra: Extra,
) -> Result<Report> {
    let proffer = Proffer::start(&ProfferOptions::new(agents_n, block)).await?;
    let k8s = K8s::install(
        &proffer,
        cluster_yaml(cp, nodes, block, etcd),
        nodes.div_ceil(agents_n as u32),
        K8s::core(),
    )
    .await?;
    let result = async {
        let d = k8s.wait_deploy(limit).await?;
        println!(
            "deploy COMPLETE in {:?}; phases completed at {:?}",
            d.took, d.completed
        );
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
            let ready = w[0]
                .iter()
                .filter_map(|p| d.completed.get(p))
                .max()
                .with_context(|| format!("{:?} never completed", w[0]))?;
            for p in &w[1] {
                let l = d
                    .launched
                    .get(p)
                    .with_context(|| format!("{p} never launched"))?;
                if l < ready {
                    bail!(
                        "{p} launched at {l:?}, before {:?} were ready at {ready:?}",
                        w[0]
                    );
                }
            }
        }
        // The apiservers registered themselves in the real etcd.
        let client = k8s.etcd()?;
        let mut registered = 0;
        for i in 0..cp {
            let key = format!(
                "/registry/standin/kube-apiserver/127.0.0.1:{}",
                instance_ports(&k8s.cluster, i, true).apiserver
            );
            if client.get(&key).await?.is_some() {
                registered += 1;
            }
        }
        let roots = proffer.roots();
        match extra {
            Extra::None => {}
            Extra::KillApiserver => {
                kill_and_replace_apiserver(&k8s.handle, &k8s.cluster, &k8s.pki.ca.pair.cert_pem)
                    .await?;
                kill_and_replace_kubelet(&k8s.handle, &roots).await?;
            }
            Extra::Upgrade(v) => {
                let u = k8s.upgrade(v, Duration::from_secs(120), false).await?;
                println!(
                    "upgrade to {v} in {:.2?}; relaunched {:?}",
                    u.took, u.relaunched
                );
            }
            Extra::Scale(ref counts) => {
                scale_nodes(&k8s.handle, &k8s.yaml, nodes, counts, &k8s.opts, &roots).await?
            }
        }
        Ok(Report {
            took: d.took,
            completed: d.completed,
            launched: d.launched,
            registered,
        })
    }
    .await;
    // Uninstall whatever happened: the uninstall plan kills every task and releases the
    // reservations.
    k8s.finish(proffer, result).await
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
