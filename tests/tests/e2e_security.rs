//! End to end with the real `proffer` binary and authentication on (issue 18, items 3 and 4):
//! `proffer master --credentials --acls --authenticate-*`, an agent and `proffer run` that
//! present `--principal/--secret-file`, operator commands refused without a credential or by
//! the ACLs, and allowed with the right one (flags or `PROFFER_PRINCIPAL`/`PROFFER_SECRET`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use proffer_tests::ports::free_port;
use proffer_tests::procs::{Proc, http_get, proffer_bin, wait_for};

const CREDENTIALS: &str = r#"{"credentials": [
    {"principal": "ops", "secret": "ops-secret"},
    {"principal": "web", "secret": "web-secret"},
    {"principal": "dev", "secret": "dev-secret"},
    {"principal": "agent", "secret": "agent-secret"}
]}"#;

const ACLS: &str = r#"{
  "register_frameworks": [
    {"principals": {"values": ["web"]}, "roles": {"values": ["web"]}},
    {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
  ],
  "register_agents": [
    {"principals": {"values": ["agent"]}, "agents": {"type": "ANY"}},
    {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}
  ],
  "update_quotas": [
    {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
    {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
  ]
}"#;

/// `proffer ARGS…` with extra environment variables, to completion.
fn proffer(args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let mut cmd = Command::new(proffer_bin()?);
    cmd.args(args).stdin(Stdio::null()).env("RUST_LOG", "warn");
    for var in ["PROFFER_PRINCIPAL", "PROFFER_SECRET", "PROFFER_SECRET_FILE"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().context("run proffer")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, content: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, content)?;
    Ok(path.to_string_lossy().into_owned())
}

#[test]
fn a_secured_cluster_runs_tasks_for_principals_and_refuses_the_rest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let creds = write(d, "credentials.json", CREDENTIALS)?;
    let acls = write(d, "acls.json", ACLS)?;
    let secret = |p: &str| write(d, &format!("{p}.secret"), &format!("{p}-secret\n"));
    let (ops, web, dev, agent) = (
        secret("ops")?,
        secret("web")?,
        secret("dev")?,
        secret("agent")?,
    );
    let master = format!("127.0.0.1:{}", free_port()?);
    let master_dir = d.join("master").to_string_lossy().into_owned();
    let _master = Proc::start(
        "master",
        &[
            "master",
            "--listen",
            &master,
            "--work-dir",
            &master_dir,
            "--allocation-interval",
            "100ms",
            "--credentials",
            &creds,
            "--acls",
            &acls,
            "--authenticate-frameworks",
            "--authenticate-agents",
            "--authenticate-http-readwrite",
            "--authenticate-http-readonly",
        ],
        d,
    )?;
    wait_for("master /health", Duration::from_secs(30), || {
        http_get(&master, "/health").ok()
    })?;
    // /state needs a principal now.
    let (status, _) = http_get(&master, "/state")?;
    assert!(status.contains("401"), "{status}");
    let agent_dir = d.join("agent0").to_string_lossy().into_owned();
    let _agent = Proc::start(
        "agent0",
        &[
            "agent",
            "--master",
            &master,
            "--work-dir",
            &agent_dir,
            "--resources",
            "cpus:2;mem:512",
            "--isolation",
            "posix",
            "--principal",
            "agent",
            "--secret-file",
            &agent,
        ],
        d,
    )?;
    let as_ops = ["--principal", "ops", "--secret-file", ops.as_str()];
    wait_for("the agent to register", Duration::from_secs(30), || {
        let mut args = vec!["state", "--master", master.as_str(), "--json"];
        args.extend(as_ops);
        let out = proffer(&args, &[]).ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let agents = state["agents"].as_array()?;
        agents.iter().any(|a| a["connected"] == true).then_some(())
    })?;
    // Without a credential an operator command is refused, saying what is missing.
    let out = proffer(&["state", "--master", &master], &[])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("operator reads require authentication"),
        "{}",
        text(&out)
    );
    // proffer run as `web` in its role runs its tasks.
    let out = proffer(
        &[
            "run",
            "--master",
            &master,
            "--tasks",
            "2",
            "--cmd",
            "true",
            "--role",
            "web",
            "--principal",
            "web",
            "--secret-file",
            &web,
            "--quiet",
        ],
        &[],
    )?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2/2 tasks finished"), "{}", text(&out));
    // In another role it is refused by register_frameworks.
    let out = proffer(
        &[
            "run",
            "--master",
            &master,
            "--tasks",
            "1",
            "--cmd",
            "true",
            "--role",
            "prod",
            "--principal",
            "web",
            "--secret-file",
            &web,
            "--quiet",
        ],
        &[],
    )?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("principal `web` may not register_frameworks (role `prod`)"),
        "{}",
        text(&out)
    );
    // Quotas: dev is refused by update_quotas, ops (here from the environment) is allowed.
    let quota = [
        "quota",
        "set",
        "web",
        "--guarantee",
        "cpus:1",
        "--master",
        &master,
    ];
    let mut as_dev = quota.to_vec();
    as_dev.extend(["--principal", "dev", "--secret-file", &dev]);
    let out = proffer(&as_dev, &[])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("principal `dev` may not update_quotas (role `web`)"),
        "{}",
        text(&out)
    );
    let out = proffer(
        &quota,
        &[
            ("PROFFER_PRINCIPAL", "ops"),
            ("PROFFER_SECRET", "ops-secret"),
        ],
    )?;
    assert!(out.status.success(), "{}", text(&out));
    // proffer teardown reaches the master as ops (an unknown framework: 404, said).
    let out = proffer(
        &["teardown", "nope", "--master", &master],
        &[
            ("PROFFER_PRINCIPAL", "ops"),
            ("PROFFER_SECRET", "ops-secret"),
        ],
    )?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no framework named `nope`"),
        "{}",
        text(&out)
    );
    // A wrong secret is refused.
    let out = proffer(
        &["state", "--master", &master],
        &[("PROFFER_PRINCIPAL", "ops"), ("PROFFER_SECRET", "nope")],
    )?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("authentication failed for principal `ops`"),
        "{}",
        text(&out)
    );
    Ok(())
}
