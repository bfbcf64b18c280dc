//! `proffer service run --wait` with the real binary against a master and an agent: status 0
//! once the deploy plan is COMPLETE, non-zero naming the step when a task keeps failing (its
//! stderr shown), and `--uninstall --wait` ends the service.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use proffer_tests::procs::{Proc, free_port, proffer_bin, state_json, wait_for};

/// A master and one agent that serves its sandboxes on the address it advertises.
fn cluster(dir: &Path) -> Result<(String, Vec<Proc>)> {
    let master = format!("127.0.0.1:{}", free_port()?);
    let master_dir = dir.join("master").display().to_string();
    let m = Proc::start(
        "master",
        &[
            "master",
            "--listen",
            &master,
            "--work-dir",
            &master_dir,
            "--allocation-interval",
            "100ms",
        ],
        dir,
    )?;
    wait_for("master /state", Duration::from_secs(30), || {
        state_json(&master).ok()
    })?;
    let port = free_port()?.to_string();
    let http = format!("127.0.0.1:{port}");
    let work = dir.join("agent").display().to_string();
    let a = Proc::start(
        "agent",
        &[
            "agent",
            "--master",
            &master,
            "--work-dir",
            &work,
            "--resources",
            "cpus:2;mem:1024",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port,
            "--http",
            &http,
        ],
        dir,
    )?;
    wait_for("the agent to register", Duration::from_secs(30), || {
        let s = state_json(&master).ok()?;
        (s["agents"].as_array()?.len() == 1).then_some(())
    })?;
    Ok((master, vec![m, a]))
}

/// `proffer service run SPEC --state STATE --wait EXTRA…` to its end (bounded by `timeout`).
fn service_run(master: &str, spec: &Path, state: &Path, extra: &[&str]) -> Result<Output> {
    let child = Command::new(proffer_bin()?)
        .args(["service", "run"])
        .arg(spec)
        .args(["--master", master, "--state"])
        .arg(state)
        .args(["--wait"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            anyhow::bail!("service run --wait did not exit within 90 s")
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn wait_exits_zero_when_complete_and_names_the_failed_step_otherwise() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (master, _procs) = cluster(dir.path())?;

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "name: waiter\npods:\n  web:\n    count: 2\n    tasks:\n      server:\n        goal: RUNNING\n        cpus: 0.1\n        memory: 32\n        cmd: sleep 60\n",
    )?;
    let state = dir.path().join("good-state");
    let out = service_run(&master, &good, &state, &[])?;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deploy COMPLETE: 2/2 steps complete"),
        "{}",
        text(&out)
    );
    // The tasks keep running after the scheduler exits; the uninstall plan ends them.
    let out = service_run(&master, &good, &state, &["--uninstall", "--quiet"])?;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("uninstall COMPLETE"), "{}", text(&out));
    assert_eq!(
        stdout.lines().count(),
        1,
        "--quiet: the summary only\n{stdout}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: crasher\npods:\n  web:\n    count: 1\n    tasks:\n      server:\n        goal: RUNNING\n        cpus: 0.1\n        memory: 32\n        cmd: echo config missing >&2; exit 4\n        readiness-check:\n          cmd: test -f ready\n          interval: 0.5\n          timeout: 1\n",
    )?;
    let out = service_run(
        &master,
        &bad,
        &dir.path().join("bad-state"),
        &["--max-failures", "2"],
    )?;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "error: deploy failed: step web-0:[server]: task web-0-server failed 2 times"
        ),
        "{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failure = stdout
        .lines()
        .find(|l| l.starts_with("FAILED web-0-server TASK_FAILED"))
        .with_context(|| text(&out))?;
    assert!(failure.contains("(sandbox sandboxes/"), "{failure}");
    assert!(
        stdout.contains("  stderr| config missing"),
        "{}",
        text(&out)
    );
    Ok(())
}
