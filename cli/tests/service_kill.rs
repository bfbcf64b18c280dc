//! Multi-process: a real `proffer master`, two `proffer agent`s and `proffer service run`; the
//! scheduler is killed with SIGKILL and started again from its state directory → it fails over
//! to the same framework, the plan is still COMPLETE and no task is launched twice.

use std::time::Duration;

use anyhow::{Context, Result};
use proffer_tests::leftovers::Children;
use proffer_tests::ports::free_port;
use proffer_tests::procs::{proffer_quiet, run};

const SPEC: &str = r#"
name: sleeper
pods:
  nap:
    count: 2
    placement: [one-per-agent]
    tasks:
      main:
        cpus: 0.1
        memory: 16
        cmd: "exec sleep 3600"
"#;

/// Waits up to 60 s for `f`.
fn wait_until(what: &str, f: impl FnMut() -> Result<bool>) -> Result<()> {
    proffer_tests::procs::wait_until(what, Duration::from_secs(60), f)
}

fn plan_complete(api: &str) -> Result<bool> {
    let out = run(&["service", "plan", "deploy", "--api", api])?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).starts_with("deploy (serial) COMPLETE"))
}

/// Task ids of the master's active tasks.
fn tasks(master: &str) -> Result<Vec<String>> {
    let out = run(&["tasks", "--master", master, "--json"])?;
    anyhow::ensure!(
        out.status.success(),
        "proffer tasks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut ids: Vec<String> = v
        .as_array()
        .or_else(|| v.get("tasks").and_then(|t| t.as_array()))
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("id").and_then(|i| i.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}

#[test]
fn killed_scheduler_resumes_without_duplicate_tasks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("sleeper.yaml");
    std::fs::write(&spec, SPEC)?;
    let master = format!("127.0.0.1:{}", free_port()?);
    // Killed (with the tasks the agents leave running) when dropped: a test leaks nothing.
    let mut procs = Children::new(dir.path());
    procs.push(
        proffer_quiet()?
            .args([
                "master",
                "--listen",
                &master,
                "--allocation-interval",
                "100ms",
            ])
            .arg("--work-dir")
            .arg(dir.path().join("master"))
            .spawn()?,
    );
    for i in 0..2 {
        let work = dir.path().join(format!("agent-{i}"));
        let res = format!("cpus:1;mem:256;ports:[3{i}100-3{i}199]");
        procs.push(
            proffer_quiet()?
                .args(["agent", "--master", &master, "--resources", &res])
                .args(["--hostname", &format!("agent-{i}")])
                .arg("--work-dir")
                .arg(&work)
                .spawn()?,
        );
    }
    let api = format!("127.0.0.1:{}", free_port()?);
    let state = dir.path().join("state");
    // Each scheduler logs to its own file (the test reads what it says it did).
    let scheduler = |procs: &mut Children, log: &std::path::Path| -> Result<usize> {
        Ok(procs.push(
            proffer_quiet()?
                .args(["service", "run"])
                .arg(&spec)
                .args(["--master", &master, "--http", &api])
                .arg("--state")
                .arg(&state)
                .stderr(std::fs::File::create(log)?)
                .spawn()?,
        ))
    };
    let first = scheduler(&mut procs, &dir.path().join("scheduler-1.log"))?;
    wait_until("deploy COMPLETE", || plan_complete(&api))?;
    let before = tasks(&master)?;
    assert_eq!(before.len(), 2, "{before:?}");

    // SIGKILL: no teardown, no goodbye.
    procs.list[first].kill()?;
    procs.list[first].wait()?;
    let second_log = dir.path().join("scheduler-2.log");
    scheduler(&mut procs, &second_log)?;
    wait_until("the restarted scheduler's API", || plan_complete(&api))?;
    // Its API answers from the stored state at once; wait until it has really subscribed to
    // the master again (a fixed pause let a slow machine check before it had), then give a
    // duplicate launch, if there were one, time to show.
    wait_until("the restarted scheduler to fail over", || {
        Ok(std::fs::read_to_string(&second_log)?.contains("failed over to the existing framework"))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tasks(&master)?, before, "same tasks, none duplicated");
    let offers = run(&["service", "offers", "--api", &api])?;
    let text = String::from_utf8_lossy(&offers.stdout);
    assert!(
        !text.contains("LAUNCHED"),
        "nothing launched after the restart:\n{text}"
    );
    let state_out = run(&["state", "--master", &master, "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&state_out.stdout).context("state json")?;
    let frameworks = v.get("frameworks").and_then(|f| f.as_array()).map(|a| {
        a.iter()
            .filter(|f| f.get("name").and_then(|n| n.as_str()) == Some("sleeper"))
            .count()
    });
    assert_eq!(
        frameworks,
        Some(1),
        "one framework: the restart failed over"
    );

    // Uninstall ends the scheduler and the tasks.
    let out = run(&["service", "uninstall", "--api", &api])?;
    assert!(out.status.success());
    wait_until("tasks gone", || Ok(tasks(&master)?.is_empty()))?;
    Ok(())
}
