//! `proffer k8s upgrade|status|plan|uninstall` with the real binary: argument errors leave the
//! config untouched, and against a real scheduler (in-process master, no agents) an upgrade
//! rewrites the config and changes the running spec's version, `status` and `plan` show the
//! plans, `uninstall` makes the scheduler tear the cluster down.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result};
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_sdk::service::ServiceSpec;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare, run_service};
use tokio_util::sync::CancellationToken;

fn proffer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args(args)
        .output()
        .unwrap()
}

async fn proffer_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        proffer(&a)
    })
    .await
    .unwrap()
}

fn config(version: &str) -> String {
    let mut s = format!(
        "name: cli\nkubernetes-version: {version}\ncontrol-plane-count: 1\nnode-count: 1\nport-base: 40000\nartifacts:\n"
    );
    for c in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "coredns",
        "kubectl",
    ] {
        s.push_str(&format!("  {c}: {{path: /bin/true}}\n"));
    }
    s
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `proffer k8s upgrade` with the deploy flags of a `--local` cluster in `dir`.
fn upgrade_args(dir: &Path, api: &str, version: &str) -> Vec<String> {
    [
        "k8s",
        "upgrade",
        "--config",
        &dir.join("cluster.yaml").display().to_string(),
        "--state",
        &dir.join("state").display().to_string(),
        "--local",
        "--api",
        api,
        "--version",
        version,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn upgrade_argument_errors_leave_the_config_untouched() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, config("v1.31.2"))?;
    let run = |api: &str, v: &str| {
        let a = upgrade_args(dir.path(), api, v);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        proffer(&a)
    };
    let cases = [
        ("127.0.0.1:1", "1.31.3", "kubernetes-version"),
        ("127.0.0.1:1", "v1.31", "kubernetes-version"),
        ("127.0.0.1:1", "v1.31.2", "already at v1.31.2"),
        (
            "127.0.0.1:1",
            "v1.31.3",
            "cannot reach the scheduler at 127.0.0.1:1",
        ),
    ];
    for (api, version, want) in cases {
        let out = run(api, version);
        assert!(!out.status.success(), "{version} accepted");
        assert!(stderr(&out).contains(want), "{version}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&path)?,
            config("v1.31.2"),
            "{version}: config unchanged"
        );
    }
    let out = proffer(&["k8s", "upgrade", "--config", "x", "--state", "y"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--version"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn api_verbs_need_and_name_the_scheduler() {
    for verb in ["status", "plan", "uninstall"] {
        let out = proffer(&["k8s", verb, "--api", "127.0.0.1:1"]);
        assert!(!out.status.success(), "{verb}");
        assert!(
            stderr(&out).contains("cannot reach the scheduler at 127.0.0.1:1"),
            "{verb}: {}",
            stderr(&out)
        );
        let out = Command::new(env!("CARGO_BIN_EXE_proffer"))
            .args(["k8s", verb])
            .env_remove("PROFFER_SERVICE")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{verb} without --api");
        assert!(stderr(&out).contains("--api"), "{verb}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_status_plan_uninstall_against_a_running_scheduler() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, config("v1.31.2"))?;
    let state = dir.path().join("state").display().to_string();
    let cfg_path = path.display().to_string();
    // The spec as `proffer k8s spec` makes it (and the PKI it writes).
    let out = proffer_async(
        [
            "k8s", "spec", "--config", &cfg_path, "--state", &state, "--local",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let spec = ServiceSpec::parse(&String::from_utf8(out.stdout)?, &BTreeMap::new())?;

    // A master without agents and the cluster's scheduler with its HTTP API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let master = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        ServerConfig::new(MasterConfig::default()),
        cancel.clone(),
    ));
    let run = RunConfig {
        master,
        state_dir: dir.path().join("state/scheduler"),
        core: CoreConfig::default(),
        http: Some("127.0.0.1:0".parse()?),
        options: BTreeMap::new(),
        uninstall: false,
    };
    let (handle, l) = prepare(spec, &run).await?;
    let api = handle.http_addr.context("no API address")?.to_string();
    let shared = handle.shared.clone();
    let sched = tokio::spawn(run_service(handle, l, run, CancellationToken::new()));

    let out = proffer_async(upgrade_args(dir.path(), &api, "v1.31.3")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&path)?.contains("\nkubernetes-version: v1.31.3\n"),
        "config rewritten"
    );
    let version = {
        let core = shared.core.lock().unwrap();
        let pod = core.spec().pod("etcd-0").context("etcd-0")?;
        pod.task("member").context("member")?.env["KUBERNETES_VERSION"].clone()
    };
    assert_eq!(version, "v1.31.3", "the running spec was updated");

    let out = proffer_async(["k8s", "status", "--api", &api].map(String::from).to_vec()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // The spec update replaced the deploy plan with the update plan (nothing launched: no
    // agents).
    assert!(text.starts_with("plans: update PENDING"), "{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with("POD")),
        "{text}"
    );

    let out = proffer_async(
        ["k8s", "plan", "--api", &api, "update"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("update (serial)"), "{text}");
    assert!(text.contains("etcd-0"), "{text}");

    let out = proffer_async(
        ["k8s", "uninstall", "--api", &api]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let outcome = tokio::time::timeout(Duration::from_secs(60), sched)
        .await
        .context("the scheduler did not finish uninstalling")???;
    assert_eq!(outcome, RunOutcome::Uninstalled);
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}

#[test]
fn spec_with_serve_pki_fetches_bundles_with_a_stable_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, config("v1.31.2"))?;
    let (cfg, state) = (
        path.display().to_string(),
        dir.path().join("state").display().to_string(),
    );
    let spec = |addr: &str| {
        proffer(&[
            "k8s",
            "spec",
            "--config",
            &cfg,
            "--state",
            &state,
            "--local",
            "--serve-pki",
            addr,
        ])
    };
    let out = spec("0.0.0.0:8081");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wildcard"), "{}", stderr(&out));
    let first = spec("127.0.0.1:8081");
    assert!(first.status.success(), "{}", stderr(&first));
    let token = std::fs::read_to_string(dir.path().join("state/pki-token"))?;
    assert_eq!(token.len(), 32);
    let text = String::from_utf8(first.stdout)?;
    for bundle in [
        "etcd-0",
        "apiserver-0",
        "kubelet-{{POD_INDEX}}",
        "kube-proxy",
    ] {
        let url = format!("http://127.0.0.1:8081/pki/{token}/{bundle}.tar");
        assert!(text.contains(&url), "{url} missing");
    }
    assert!(!text.contains("install -D"), "no copy from the bundle dir");
    let again = spec("127.0.0.1:8081");
    assert_eq!(
        String::from_utf8(again.stdout)?,
        text,
        "same token, same spec"
    );
    Ok(())
}
