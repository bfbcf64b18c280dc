//! End to end with the real `proffer` binary (issue 15): an agent holding static and dynamic
//! reservations never runs more at once than it has unreserved for a framework in role `*`,
//! and a drained agent runs tasks again once reactivated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_tests::procs::{Cluster, run, run_ok, state_json, wait_for};

/// 3 unreserved cpus and 1 reserved for `web` (static); 1 of the 3 is then reserved for `db`
/// (dynamic), which leaves 2 unreserved cpus: 20 tasks of 0.1 cpu at most at once.
const AGENT_RES: &str = "cpus:3;cpus(web):1;mem:1024;mem(web):256";
const DYNAMIC: &str = "cpus(db,dynamic=ops):1;mem(db,dynamic=ops):128";
const MOST_AT_ONCE: usize = 20;

/// The agent's id, total and allocated resources in `/state`.
fn agent_books(master: &str) -> Result<(String, Resources, Resources)> {
    let s = state_json(master)?;
    let a = s["agents"]
        .as_array()
        .and_then(|v| v.first())
        .context("no agent in /state")?;
    let parse = |f: &str| -> Result<Resources> {
        let text = a[f].as_str().with_context(|| format!("agent.{f}"))?;
        Resources::parse(text).with_context(|| format!("agent.{f} `{text}`"))
    };
    let id = a["id"].as_str().context("agent.id")?.to_string();
    Ok((id, parse("total")?, parse("allocated")?))
}

#[test]
fn tasks_on_an_agent_with_reservations_never_exceed_its_unreserved_part() -> Result<()> {
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let (agent, _, _) = agent_books(&cluster.master)?;
    run_ok(&["reserve", &agent, DYNAMIC, "--master", &cluster.master])?;
    let (_, total, _) = agent_books(&cluster.master)?;
    assert!(
        total.contains(&Resources::parse(DYNAMIC)?),
        "the reservation is in the total: {total}"
    );
    // While the batch runs, /state's allocation on the agent never exceeds its total.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, master) = (stop.clone(), cluster.master.clone());
        std::thread::spawn(move || -> Result<usize> {
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                let (_, total, allocated) = agent_books(&master)?;
                if !total.contains(&allocated) {
                    bail!("allocated {allocated} exceeds total {total}");
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(samples)
        })
    };
    // Each task records how many tasks are running at that moment (a directory per running
    // task), then runs for a second.
    let live = cluster.dir.path().join("live");
    std::fs::create_dir_all(&live)?;
    let counts = cluster.dir.path().join("counts");
    let cmd = format!(
        "mkdir {l}/$PROFFER_TASK_ID && ls {l} | wc -l >> {c}; sleep 1; rmdir {l}/$PROFFER_TASK_ID",
        l = live.display(),
        c = counts.display()
    );
    let out = run(&[
        "run",
        "--master",
        &cluster.master,
        "--tasks",
        "60",
        "--cpus",
        "0.1",
        "--mem",
        "8",
        "--cmd",
        &cmd,
        "--name",
        "acct",
    ])?;
    stop.store(true, Ordering::Relaxed);
    let samples = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "proffer run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("60/60 tasks finished"), "{stdout}");
    assert!(samples > 0, "the watcher looked at /state");
    let seen: Vec<usize> = std::fs::read_to_string(&counts)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(seen.len(), 60, "every task recorded a count");
    let most = seen.iter().copied().max().unwrap_or(0);
    assert!(
        most <= MOST_AT_ONCE,
        "{most} tasks ran at once; the agent has 2 unreserved cpus (20 tasks of 0.1)"
    );
    assert!(most > 1, "tasks ran side by side (max {most})");
    Ok(())
}

#[test]
fn drain_then_reactivate_runs_tasks_again() -> Result<()> {
    let cluster = Cluster::start(1, "cpus:2;mem:512", &["--allocation-interval", "100ms"])?;
    let (agent, _, _) = agent_books(&cluster.master)?;
    run_ok(&["drain", &agent, "--master", &cluster.master])?;
    wait_for("the agent drained", Duration::from_secs(20), || {
        let s = state_json(&cluster.master).ok()?;
        (s["agents"][0]["draining"] == true).then_some(())
    })?;
    run_ok(&["reactivate", &agent, "--master", &cluster.master])?;
    let out = run(&[
        "run",
        "--master",
        &cluster.master,
        "--tasks",
        "3",
        "--cmd",
        "true",
        "--cpus",
        "0.1",
        "--mem",
        "8",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("3/3 tasks finished"),
        "after reactivation tasks must run:\n{stdout}\n{}\nagent log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.log("agent0")
    );
    Ok(())
}

#[test]
fn a_task_larger_than_every_agent_fails_fast_naming_the_largest() -> Result<()> {
    let cluster = Cluster::start(2, "cpus:1;mem:512", &["--allocation-interval", "100ms"])?;
    let started = std::time::Instant::now();
    let out = run(&[
        "run",
        "--master",
        &cluster.master,
        "--tasks",
        "3",
        "--cpus",
        "2",
        "--mem",
        "32",
        "--cmd",
        "true",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains("no agent can ever hold a task of cpus:2;mem:32")
            && stderr.contains("the largest agent has cpus:1"),
        "{stderr}"
    );
    // Failing fast: the check runs at once (a generous bound for a loaded CI machine).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
