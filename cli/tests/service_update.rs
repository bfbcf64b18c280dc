//! Multi-process: a real `proffer master`, two `proffer agent`s of 1 cpu and `proffer service
//! run`. `service plan-update` prints the diff and the placement check and exits non-zero for
//! a spec no agent can place; `service update` refuses it before anything is killed, naming the
//! resource and the largest agent; `--dry-run` of a placeable change prints its restarts in
//! order; `--force` applies the impossible one (its replacements, started first, wait while
//! the old tasks run on), and `service why` then names the cpus no recent offer had.

use std::process::Output;
use std::time::Duration;

use anyhow::Result;
use proffer_tests::leftovers::Children;
use proffer_tests::ports::free_port;
use proffer_tests::procs::{proffer_quiet, run};

fn spec(cpus: &str, cmd: &str) -> String {
    format!(
        r#"
name: sleeper
pods:
  nap:
    count: 2
    placement: [one-per-agent]
    tasks:
      main:
        cpus: {cpus}
        memory: 16
        cmd: "{cmd}"
"#
    )
}

/// Waits up to 60 s for `f`.
fn wait_until(what: &str, f: impl FnMut() -> Result<bool>) -> Result<()> {
    proffer_tests::procs::wait_until(what, Duration::from_secs(60), f)
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
                .filter(|t| t.get("state").and_then(|s| s.as_str()) == Some("TASK_RUNNING"))
                .filter_map(|t| t.get("id").and_then(|i| i.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn an_impossible_update_is_refused_until_forced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let master = format!("127.0.0.1:{}", free_port()?);
    // Killed (with the tasks the agents leave running) when dropped: a test leaks nothing.
    let mut procs = Children::new(dir.path());
    procs.push(
        proffer_quiet()?
            .args(["master", "--listen", &master])
            .args(["--allocation-interval", "100ms"])
            .arg("--work-dir")
            .arg(dir.path().join("master"))
            .spawn()?,
    );
    for i in 0..2 {
        let res = format!("cpus:1;mem:256;ports:[3{i}200-3{i}299]");
        procs.push(
            proffer_quiet()?
                .args(["agent", "--master", &master, "--resources", &res])
                .args(["--hostname", &format!("agent-{i}")])
                .arg("--work-dir")
                .arg(dir.path().join(format!("agent-{i}")))
                .spawn()?,
        );
    }
    let write = |name: &str, body: String| -> Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, body)?;
        Ok(p.to_string_lossy().to_string())
    };
    let first = write("v1.yaml", spec("0.1", "exec sleep 3600"))?;
    let big = write("big.yaml", spec("2", "exec sleep 3600"))?;
    let v2 = write("v2.yaml", spec("0.1", "exec sleep 3601"))?;
    let api = format!("127.0.0.1:{}", free_port()?);
    procs.push(
        proffer_quiet()?
            .args([
                "service", "run", &first, "--master", &master, "--http", &api,
            ])
            .arg("--state")
            .arg(dir.path().join("state"))
            .spawn()?,
    );
    // (`proffer tasks` fails until the master listens.)
    wait_until("two running tasks", || {
        Ok(tasks(&master).is_ok_and(|t| t.len() == 2))
    })?;
    wait_until("deploy COMPLETE", || {
        let out = run(&["service", "plan", "deploy", "--api", &api])?;
        Ok(text(&out).0.starts_with("deploy (serial) COMPLETE"))
    })?;
    let before = tasks(&master)?;

    let out = run(&["service", "plan-update", &big, "--api", &api])?;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    for want in [
        "service sleeper: update (serial: nap serial)\n  ~ pod nap: 2 instance(s)\n      tasks.main.cpus: 0.1 → 2.0\n",
        "     1  restart nap-0 [main] on any agent that fits; the one on agent-",
        "     2  restart nap-1 [main] on any agent that fits; the one on agent-",
        "placement on the current agents (2, role *):\n  FAIL pod nap cannot be placed: an instance asks cpus:2;mem:16 and no agent has enough cpus: the largest agent has cpus:1 (",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    assert!(stderr.contains("(--force to apply anyway)"), "{stderr}");

    let out = run(&["service", "update", &big, "--api", &api])?;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("update refused, nothing was changed: pod nap cannot be placed")
            && stderr.contains("the largest agent has cpus:1"),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(tasks(&master)?, before, "no task was killed");

    let out = run(&["service", "update", &v2, "--dry-run", "--api", &api])?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("tasks.main.cmd: exec sleep 3600 → exec sleep 3601")
            && stdout.contains(
                "  ok   pod nap: 2 instance(s) of cpus:0.1;mem:16; 2 agent(s) can hold one"
            ),
        "{stdout}"
    );
    assert_eq!(tasks(&master)?, before, "a dry run changes nothing");

    let out = run(&["service", "update", &big, "--force", "--api", &api])?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("spec accepted"), "{stdout}");
    assert!(
        stderr.starts_with("forced: pod nap cannot be placed"),
        "{stderr}"
    );
    wait_until("why names the missing cpus", || {
        let out = run(&["service", "why", "--api", &api])?;
        // Start-first: the old tasks run on (0.1 of each agent's cpu) while the replacement
        // waits for room.
        Ok(text(&out)
            .0
            .contains("had cpus:2: the largest had cpus:0.9 (agent-"))
    })?;
    assert_eq!(tasks(&master)?, before, "the old tasks run on");
    Ok(())
}
