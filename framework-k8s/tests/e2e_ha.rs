//! High availability end to end, 3 control-plane instances (real etcd, stand-in kube-*
//! programs) on an in-process Proffer cluster with reservations (etcd data on persistent
//! volumes):
//!
//! - a rolling upgrade relaunches every instance one at a time in the order etcd members →
//!   apiservers → controller-managers → schedulers → nodes, while some apiserver answers
//!   `/readyz` 200 at every check, and etcd keys written before are read back after;
//! - stopping a whole agent that hosts control-plane instances (its processes killed, the
//!   master loses it) moves them to a spare agent — the etcd member is removed and re-added
//!   by `k8s-etcd-member` — while an apiserver stays ready, and the data survives;
//! - uninstall DESTROYs the etcd volume and the agent deletes its directory; a cluster
//!   installed again under the same name then starts a fresh etcd.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::cluster::pids_under;
use common::cluster::{K8s, Proffer, ProfferOptions, cluster_yaml, etcd_path, free_block, kill9};
use proffer_k8s::etcd::Etcd;

/// Writes `n` keys under `/e2e/` and returns them with their values.
async fn write_keys(etcd: &Etcd, n: usize) -> Result<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for i in 0..n {
        let (k, v) = (format!("/e2e/key-{i}"), format!("value-{i}"));
        etcd.put(&k, v.as_bytes()).await?;
        keys.insert(k, v);
    }
    Ok(keys)
}

/// Fails unless every key reads back with its value.
async fn read_keys(etcd: &Etcd, keys: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in keys {
        let got = etcd.get(k).await?.with_context(|| format!("{k} lost"))?;
        if got != v.as_bytes() {
            bail!("{k}: {:?}, want {v}", String::from_utf8_lossy(&got));
        }
    }
    Ok(())
}

/// Fails unless etcd has exactly `n` members, all started (named).
async fn members_started(etcd: &Etcd, n: usize) -> Result<Vec<String>> {
    let members = etcd.members().await?;
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    if members.len() != n || names.iter().any(String::is_empty) {
        bail!("etcd members {members:?}, want {n} started");
    }
    Ok(names)
}

/// `name → member id` of every etcd member.
async fn member_ids(etcd: &Etcd) -> Result<BTreeMap<String, u64>> {
    Ok(etcd
        .members()
        .await?
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_upgrade_three_masters_rolls_in_order_and_stays_ready() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP ha upgrade: no `etcd` on PATH (apt-get install etcd-server)");
        return Ok(());
    };
    let block = free_block(4600);
    let proffer = Proffer::start(&ProfferOptions::new(3, block)).await?;
    let k8s = K8s::install(&proffer, cluster_yaml(3, 2, block, &etcd), 1, K8s::core()).await?;
    let result = async {
        let d = k8s.wait_deploy(Duration::from_secs(120)).await?;
        println!("deploy COMPLETE in {:.2?}", d.took);
        let client = k8s.etcd()?;
        let keys = write_keys(&client, 20).await?;
        let ids_before = member_ids(&client).await?;
        let u = k8s
            .upgrade("v1.31.3", Duration::from_secs(150), true)
            .await?;
        println!(
            "HA upgrade COMPLETE in {:.2?}, {} readiness rounds with an apiserver ready; relaunched {:?}",
            u.took, u.ready_checks, u.relaunched
        );
        let want: Vec<String> = ["etcd", "apiserver", "controller-manager", "scheduler"]
            .iter()
            .flat_map(|k| (0..3).map(move |i| format!("{k}-{i}")))
            .chain(["node", "coredns", "addons"].map(String::from))
            .collect();
        assert_eq!(u.order, want, "the update plan's order");
        assert!(u.ready_checks > 0, "readiness was checked during the upgrade");
        read_keys(&client, &keys).await?;
        members_started(&client, 3).await?;
        // Every member restarted from the data on its volume: the same member ids (a member
        // removed and added again would have a new one).
        assert_eq!(member_ids(&client).await?, ids_before, "etcd member ids");
        Ok::<(), anyhow::Error>(())
    }
    .await;
    k8s.finish(proffer, result).await
}

/// The agents (by index) that run a task of `pod`.
fn agents_of(k8s: &K8s, pod: &str) -> Vec<String> {
    let core = k8s.handle.shared.core.lock().unwrap();
    core.tasks()
        .values()
        .filter(|r| r.pod == pod && r.state == "TASK_RUNNING")
        .map(|r| r.hostname.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_loss_moves_control_plane_instances_and_stays_ready() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP agent loss: no `etcd` on PATH (apt-get install etcd-server)");
        return Ok(());
    };
    let block = free_block(5600);
    let mut opts = ProfferOptions::new(4, block);
    // A stopped agent leaves its processes (the test kills them, as a machine crash would);
    // the master gives up on a silent agent after 6 × 500 ms (1 s of silence, as with
    // 4 × 250 ms, can be a live agent starved of CPU on a loaded machine: its instances would
    // move too).
    opts.kill_tasks_on_shutdown = false;
    opts.ping = (Duration::from_millis(500), 6);
    let mut proffer = Proffer::start(&opts).await?;
    let core = proffer_sdk::service::core::CoreConfig {
        permanent_after_ms: 2_000,
        ..K8s::core()
    };
    let k8s = K8s::install(&proffer, cluster_yaml(3, 1, block, &etcd), 1, core).await?;
    let result = async {
        let d = k8s.wait_deploy(Duration::from_secs(120)).await?;
        println!("deploy COMPLETE in {:.2?}", d.took);
        let client = k8s.etcd()?;
        let keys = write_keys(&client, 20).await?;
        let ids_before = member_ids(&client).await?;
        // The victim: the agent of etcd-1 (with avoid rules, it hosts one member).
        let victim_host = agents_of(&k8s, "etcd-1")
            .first()
            .cloned()
            .context("etcd-1 not running")?;
        let victim: usize = victim_host
            .strip_prefix("agent-")
            .and_then(|i| i.parse().ok())
            .context("agent hostname")?;
        let moved: Vec<String> = {
            let core = k8s.handle.shared.core.lock().unwrap();
            let mut pods: Vec<String> = core
                .tasks()
                .values()
                .filter(|r| r.hostname == victim_host && r.state == "TASK_RUNNING")
                .map(|r| format!("{}-{}", r.pod, r.index))
                .collect();
            pods.sort();
            pods.dedup();
            pods
        };
        let old_ids: Vec<String> = {
            let core = k8s.handle.shared.core.lock().unwrap();
            core.tasks().values().map(|r| r.task_id.clone()).collect()
        };
        let root = proffer.roots().remove(victim);
        proffer.stop_agent(victim).await?;
        let killed = pids_under(std::slice::from_ref(&root), &[""]);
        for pid in &killed {
            let _ = kill9(*pid);
        }
        println!(
            "stopped {victim_host} (hosting {moved:?}); killed its {} processes",
            killed.len()
        );
        // Every instance that ran there comes back on another agent, running and ready,
        // while some apiserver answers /readyz 200 at every check.
        let start = Instant::now();
        let mut checks = 0;
        loop {
            let mut statuses = Vec::new();
            for i in 0..3 {
                statuses.push(k8s.readyz(i).await.unwrap_or(0));
            }
            if !statuses.contains(&200) {
                bail!(
                    "no apiserver ready {:?} after the agent stopped: {statuses:?}",
                    start.elapsed()
                );
            }
            checks += 1;
            let back = {
                let core = k8s.handle.shared.core.lock().unwrap();
                let recs: Vec<_> = core.tasks().values().collect();
                moved.iter().all(|inst| {
                    let live: Vec<_> = recs
                        .iter()
                        .filter(|r| format!("{}-{}", r.pod, r.index) == *inst)
                        .filter(|r| r.state == "TASK_RUNNING")
                        .collect();
                    !live.is_empty()
                        && live.iter().all(|r| {
                            r.ready && r.hostname != victim_host && !old_ids.contains(&r.task_id)
                        })
                })
            };
            if back {
                break;
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!(
                    "{moved:?} not replaced after 90 s; tasks {:#?}",
                    k8s.task_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{moved:?} replaced off {victim_host} in {:.2?}; an apiserver ready in all {checks} checks",
            start.elapsed()
        );
        // etcd: the replaced member rejoined (3 started members), the data is intact.
        let names = members_started(&client, 3).await?;
        println!("etcd members after the replacement: {names:?}");
        // cp-1 (etcd-1) came back on a fresh volume: removed and added again (a new member
        // id); the other members are untouched.
        let ids_after = member_ids(&client).await?;
        for (name, id) in &ids_before {
            assert_eq!(
                ids_after.get(name) != Some(id),
                name == "cp-1",
                "member {name}: before {ids_before:?}, after {ids_after:?}"
            );
        }
        read_keys(&client, &keys).await?;
        client.health().await?;
        for i in 0..3 {
            let s = k8s.readyz(i).await?;
            if s != 200 {
                bail!("apiserver-{i} /readyz {s} after the replacement");
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    k8s.finish(proffer, result).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstall_under_the_same_name_starts_a_fresh_etcd() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP reinstall: no `etcd` on PATH (apt-get install etcd-server)");
        return Ok(());
    };
    let block = free_block(3600);
    // One agent: the second cluster's member lands where the first one's volume is.
    let proffer = Proffer::start(&ProfferOptions::new(1, block)).await?;
    let yaml = cluster_yaml(1, 1, block, &etcd);
    let result = async {
        let first = K8s::install(&proffer, yaml.clone(), 1, K8s::core()).await?;
        first.wait_deploy(Duration::from_secs(60)).await?;
        first.etcd()?.put("/e2e/first", b"1").await?;
        first.uninstall(&proffer).await?;
        // Uninstall DESTROYs the etcd volume; the agent then deletes its directory.
        let volumes = proffer.roots()[0].join("volumes");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left: Vec<_> = std::fs::read_dir(&volumes)?.flatten().collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!("volume directories left on the agent after uninstall: {left:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let second = K8s::install(&proffer, yaml, 1, K8s::core()).await?;
        let d = second.wait_deploy(Duration::from_secs(60)).await;
        let r = async {
            let d = d?;
            println!("second cluster COMPLETE in {:.2?}", d.took);
            let client = second.etcd()?;
            if client.get("/e2e/first").await?.is_some() {
                bail!("the second cluster sees the first one's data");
            }
            members_started(&client, 1).await?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let u = second.uninstall(&proffer).await;
        r?;
        u
    }
    .await;
    proffer.stop().await;
    result
}
