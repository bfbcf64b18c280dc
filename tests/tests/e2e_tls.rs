//! End to end with the real binary (issue 18, items 1, 2 and 5): `proffer local --secure`
//! (a cluster CA in its work dir, TLS on the master and the agents, agents with client
//! certificates, an `admin` credential required everywhere), used from other processes as its
//! `env.sh` says: `proffer run` and `proffer state` work; without the credential they are
//! refused (401 / UNAUTHENTICATED), without the CA they are told the port speaks TLS; an agent
//! without a client certificate of kind agent is refused; a certificate made by another CA
//! does not get through the handshake.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use proffer_tests::procs::{Proc, free_port, proffer_bin, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

/// The `export K=V` lines of `env.sh`.
fn env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// `proffer ARGS…` with exactly the `PROFFER_*` variables of `env`.
fn proffer(env: &BTreeMap<String, String>, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(proffer_bin()?);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PROFFER_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env).args(args).stdin(Stdio::null());
    cmd.output().context("running proffer")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn proffer_local_secure_serves_tls_and_mutual_tls_with_credentials() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("local");
    let port = free_port()?;
    let master = format!("127.0.0.1:{port}");
    let port_s = port.to_string();
    let work_s = work.to_str().context("utf-8 path")?;
    let mut local = Proc::start(
        "local",
        &[
            "local",
            "--secure",
            "--no-demo",
            "--agents",
            "1",
            "--port",
            &port_s,
            "--work-dir",
            work_s,
        ],
        dir.path(),
    )?;
    let env_sh = work.join("secure/env.sh");
    let env = wait_for("env.sh", LIMIT, || env_file(&env_sh).ok())?;
    assert_eq!(env.len(), 5, "{env:?}");
    // The admin reaches the master once it (and its agent) are up.
    wait_for("the secure master and its agent", LIMIT, || {
        let out = proffer(&env, &["state", "--master", &master]).ok()?;
        (out.status.success() && text(&out).contains("1 agents")).then_some(())
    })?;

    let out = proffer(
        &env,
        &[
            "run",
            "--master",
            &master,
            "--tasks",
            "3",
            "--cmd",
            "echo tls-ok",
            "--quiet",
        ],
    )?;
    assert!(out.status.success(), "proffer run over TLS: {}", text(&out));

    // The CA alone: TLS works, but every call needs the credential.
    let mut ca_only = env.clone();
    ca_only.retain(|k, _| k == "PROFFER_TLS_CA");
    let out = proffer(&ca_only, &["state", "--master", &master])?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("require authentication"),
        "{}",
        text(&out)
    );
    // No CA: told the port speaks TLS.
    let out = proffer(&BTreeMap::new(), &["state", "--master", &master])?;
    assert!(text(&out).contains("only speaks TLS"), "{}", text(&out));

    // An agent with the CA and the admin's (client) certificate and credential is not an agent.
    let mut not_agent: Vec<String> = vec![
        "agent".into(),
        "--master".into(),
        master.clone(),
        "--work-dir".into(),
        dir.path().join("stranger").display().to_string(),
        "--resources".into(),
        "cpus:1;mem:128".into(),
    ];
    let mut cmd = Command::new(proffer_bin()?);
    cmd.envs(&env).args(not_agent.drain(..));
    let log = std::fs::File::create(dir.path().join("stranger.log"))?;
    let mut stranger = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    let refused = wait_for("the stranger agent refused", LIMIT, || {
        let log = std::fs::read_to_string(dir.path().join("stranger.log")).ok()?;
        log.contains("require a client certificate of kind agent")
            .then_some(())
    });
    let _ = stranger.kill();
    let _ = stranger.wait();
    refused?;

    // A certificate from another CA does not get through the handshake.
    let other = dir.path().join("other-pki");
    let other_s = other.to_str().context("utf-8 path")?;
    proffer_tests::procs::run_ok(&["pki", "init", other_s])?;
    proffer_tests::procs::run_ok(&[
        "pki", "issue", "--dir", other_s, "--name", "mallory", "--kind", "client",
    ])?;
    let mut mallory = env.clone();
    mallory.insert("PROFFER_TLS_CERT".into(), format!("{other_s}/mallory.crt"));
    mallory.insert("PROFFER_TLS_KEY".into(), format!("{other_s}/mallory.key"));
    let out = proffer(&mallory, &["state", "--master", &master])?;
    assert!(!out.status.success(), "{}", text(&out));

    // Ctrl-C stops the local cluster cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(local.pid()),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = wait_for("proffer local to exit", LIMIT, || {
        local.child.try_wait().ok().flatten()
    })?;
    assert!(status.success(), "{status}");
    Ok(())
}

/// Kubernetes on a secure local cluster: the framework authenticates as `admin` and reserves
/// per pod under it (`admin/k8s-local.POD`); the deploy completes.
#[test]
fn kubernetes_deploys_on_a_secure_local_cluster() -> Result<()> {
    if !proffer_master::etcd::launch::etcd_installed() {
        println!("skipped: etcd is not installed (apt-get install etcd-server)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("local");
    let work_s = work.to_str().context("utf-8 path")?;
    let out = proffer(
        &BTreeMap::new(),
        &[
            "local",
            "--secure",
            "--k8s",
            "--exit-after-demo",
            "--port",
            "0",
            "--work-dir",
            work_s,
        ],
    )?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deploy COMPLETE"), "{}", text(&out));
    Ok(())
}
