//! Kubernetes from the binary the README builds (`proffer`, nothing else): `proffer local --k8s
//! --exit-after-demo` reaches COMPLETE and exits 0 (the kube-* programs are `proffer`'s
//! stand-in subcommands, etcd is the distribution's); without etcd it refuses at once, naming
//! the package. `proffer k8s install` against `proffer local` reaches COMPLETE, and a
//! `scale-nodes` given none of the install's flags (here `--probe`) restarts no control-plane
//! task. The tests with etcd skip, saying so, when `etcd` is not installed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

const PROFFER: &str = env!("CARGO_BIN_EXE_proffer");

/// The helper programs, as the names `proffer` answers to (argv[0]) or takes as subcommands.
const PROGRAMS: [&str; 8] = [
    "k8s-probe",
    "k8s-etcd-member",
    "kube-apiserver-standin",
    "kube-controller-manager-standin",
    "kube-scheduler-standin",
    "kubelet-standin",
    "kube-proxy-standin",
    "coredns-standin",
];

fn etcd_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("etcd").is_file()))
}

fn proffer() -> Command {
    let mut c = Command::new(PROFFER);
    c.env_remove("PROFFER_SERVICE").env_remove("PROFFER_MASTER");
    c
}

/// Runs to the end (killed after `limit`).
fn run(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Ok(out?),
        Err(_) => {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
            bail!("{cmd:?} did not end within {limit:?}")
        }
    }
}

fn text_of(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `limit` passes.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Command lines of the processes whose working directory is under `root` (tasks left behind).
fn processes_under(root: &Path) -> Vec<String> {
    proffer_tests::leftovers::processes_under(root)
        .into_iter()
        .map(|(_, cmd)| cmd)
        .collect()
}

#[test]
fn local_k8s_exit_after_demo_reaches_complete() -> Result<()> {
    if !etcd_installed() {
        eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let start = Instant::now();
    let out = run(
        proffer()
            .args([
                "local",
                "--k8s",
                "--exit-after-demo",
                "--port",
                "0",
                "--work-dir",
            ])
            .arg(work.path()),
        Duration::from_secs(180),
    )?;
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "STAND-INS, not the real programs: kube-apiserver, kube-controller-manager, \
         kube-scheduler, kubelet, kube-proxy, coredns",
        "Real: etcd (",
        "deploy: etcd-0 COMPLETE",
        // (A phase line such as `deploy: node COMPLETE` is printed only while the plan is not
        // yet COMPLETE: the node and DNS phases may complete in one poll, then the summary
        // line stands for them.)
        "deploy COMPLETE: 8/8 steps complete",
    ] {
        assert!(stdout.contains(want), "no `{want}` in:\n{all}");
    }
    // The stand-ins were said before anything was deployed.
    let said = stdout.find("STAND-INS").unwrap_or(usize::MAX);
    assert!(said < stdout.find("deploy:").unwrap_or(0), "{all}");
    eprintln!(
        "proffer local --k8s --exit-after-demo: {:?}",
        start.elapsed()
    );
    // Every task stopped with the agents.
    let left = wait_for("the tasks to end", Duration::from_secs(10), || {
        let left = processes_under(work.path());
        left.is_empty().then_some(())
    });
    assert!(
        left.is_ok(),
        "left running: {:?}",
        processes_under(work.path())
    );
    Ok(())
}

/// A directory for `PATH` with the shell tools the tasks use, but no etcd.
fn tools_without_etcd() -> Result<tempfile::TempDir> {
    let bin = tempfile::tempdir()?;
    for tool in ["sh", "mkdir", "sha256sum", "cut", "install", "rm", "true"] {
        let path = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .with_context(|| format!("no {tool}"))?;
        std::os::unix::fs::symlink(path, bin.path().join(tool))?;
    }
    Ok(bin)
}

#[test]
fn local_k8s_without_etcd_names_the_package() -> Result<()> {
    let bin = tools_without_etcd()?;
    let work = tempfile::tempdir()?;
    let out = run(
        proffer()
            .args([
                "local",
                "--k8s",
                "--exit-after-demo",
                "--port",
                "0",
                "--work-dir",
            ])
            .arg(work.path())
            .env("PATH", bin.path()),
        Duration::from_secs(60),
    )?;
    let all = text_of(&out);
    assert!(!out.status.success(), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("etcd: `etcd` is not on PATH — install it: apt-get install etcd-server"),
        "{all}"
    );
    assert!(!all.contains("following plan"), "nothing deployed: {all}");
    Ok(())
}

#[test]
fn local_k8s_exit_after_demo_names_the_failed_step_and_its_stderr() -> Result<()> {
    // An `etcd` that cannot start: the deploy's first step fails.
    let bin = tools_without_etcd()?;
    let etcd = bin.path().join("etcd");
    std::fs::write(
        &etcd,
        "#!/bin/sh\necho 'etcd: boom: cannot start (a fake etcd)' >&2\nexit 3\n",
    )?;
    std::fs::set_permissions(&etcd, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let work = tempfile::tempdir()?;
    let out = run(
        proffer()
            .args([
                "local",
                "--k8s",
                "--exit-after-demo",
                "--port",
                "0",
                "--work-dir",
            ])
            .arg(work.path())
            .env("PATH", bin.path()),
        Duration::from_secs(120),
    )?;
    let all = text_of(&out);
    assert!(!out.status.success(), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "error: deploy failed: step etcd-0-0:[member]: task etcd-0-0-member failed 3 times"
        ),
        "{all}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED etcd-0-0-member TASK_FAILED"),
        "{all}"
    );
    assert!(
        stdout.contains("stderr| etcd: boom: cannot start (a fake etcd)"),
        "{all}"
    );
    Ok(())
}

#[test]
fn check_verifies_programs_artifacts_and_etcd() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cluster.yaml");
    // The stand-ins come from this very binary: fine. etcd missing: the package is named.
    let text =
        readme_config(20000).replace("etcd: {path: etcd}", "etcd: {path: /nonexistent/etcd}");
    std::fs::write(&config, text)?;
    let out = run(
        proffer().args(["k8s", "check", "--config"]).arg(&config),
        Duration::from_secs(30),
    )?;
    let all = text_of(&out);
    assert!(!out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("etcd").starts_with("  PROBLEM"), "{all}");
    assert!(
        line("etcd")
            .contains("/nonexistent/etcd does not exist — install it: apt-get install etcd-server"),
        "{all}"
    );
    for ok in [
        "k8s-probe",
        "k8s-etcd-member",
        "kube-apiserver",
        "coredns",
        "kubectl",
        "sha256sum",
    ] {
        assert!(line(ok).starts_with("  ok"), "{ok}: {all}");
    }
    assert!(
        line("kubelet").contains(&format!("{PROFFER} kubelet-standin (stand-in)")),
        "{all}"
    );
    assert!(stdout.contains("STAND-INS, not the real programs"), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of the"),
        "{all}"
    );
    // --probe naming programs that are not there.
    let out = run(
        proffer()
            .args([
                "k8s",
                "check",
                "--probe",
                "/nonexistent/k8s-probe",
                "--config",
            ])
            .arg(&config),
        Duration::from_secs(30),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/nonexistent/kube-apiserver-standin does not exist"),
        "{}",
        text_of(&out)
    );
    Ok(())
}

/// A child process stopped with SIGINT (and waited for) when dropped.
struct Bg {
    child: Child,
    log: PathBuf,
}

impl Bg {
    fn start(cmd: &mut Command, log: PathBuf) -> Result<Bg> {
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Bg { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to end by itself.
    fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        wait_for("the process to end", limit, || {
            self.child.try_wait().ok().flatten()
        })
        .with_context(|| self.log())
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), nix::sys::signal::Signal::SIGINT);
            if self.wait(Duration::from_secs(30)).is_err() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A free block of 11 loopback ports in 12000-20000 (not where `proffer local --k8s` looks).
fn free_block() -> Result<u16> {
    let first = std::process::id() % 700;
    (0..700)
        .map(|k| 12000 + (first + k) % 700 * 11)
        .find(|&b| {
            (b..b + 11).all(|p| std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok())
        })
        .map(|b| b as u16)
        .context("no free port block")
}

/// The cluster.yaml of the README: stand-ins, the distribution's etcd, small resources.
fn readme_config(port_base: u16) -> String {
    let mut s = format!(
        "name: readme\ncontrol-plane-count: 1\nnode-count: 1\nport-base: {port_base}\n\
         resources:\n  etcd: {{cpus: 0.2, memory: 256, disk: 64}}\n  \
         kube-apiserver: {{cpus: 0.2, memory: 256}}\n  kubelet: {{cpus: 0.1, memory: 64}}\n  \
         kube-controller-manager: {{cpus: 0.1, memory: 64}}\n  kube-scheduler: {{cpus: 0.1, memory: 64}}\n\
         artifacts:\n  etcd: {{path: etcd}}\n  kubectl: {{path: 'true'}}\n"
    );
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "coredns",
    ] {
        s.push_str(&format!("  {c}: {{standin: true}}\n"));
    }
    s
}

/// `proffer k8s status --state S --json`, if it answers.
fn status(state: &Path) -> Option<Value> {
    let out = proffer()
        .args(["k8s", "status", "--json", "--state"])
        .arg(state)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn plan_status(v: &Value, plan: &str) -> Option<String> {
    v["plans"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == plan)
        .and_then(|p| p["status"].as_str())
        .map(str::to_string)
}

/// Running tasks: name → task id.
fn running(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v["pods"]
        .as_object()
        .into_iter()
        .flat_map(|pods| pods.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["task_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn install_from_the_readme_build_then_scale_without_the_install_flags() -> Result<()> {
    if !etcd_installed() {
        eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let local = Bg::start(
        proffer()
            .args(["local", "--no-demo", "--port", "0", "--work-dir"])
            .arg(dir.path().join("local")),
        dir.path().join("local.log"),
    )?;
    let master = wait_for("proffer local's master", Duration::from_secs(30), || {
        local.log().lines().find_map(|l| {
            let rest = l.strip_prefix("master listening on ")?;
            rest.split_whitespace().next().map(str::to_string)
        })
    })?;
    // `--probe` names a k8s-probe (here a link to proffer, which then is k8s-probe); the
    // stand-ins come from the same directory.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin)?;
    for p in PROGRAMS {
        std::os::unix::fs::symlink(PROFFER, bin.join(p))?;
    }
    let probe = bin.join("k8s-probe").display().to_string();
    let config = dir.path().join("cluster.yaml");
    std::fs::write(&config, readme_config(free_block()?))?;
    let state = dir.path().join("state");

    let out = run(
        proffer()
            .args(["k8s", "check", "--probe", &probe, "--config"])
            .arg(&config),
        Duration::from_secs(30),
    )?;
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kube-apiserver-standin (stand-in)"),
        "{}",
        text_of(&out)
    );

    let mut install = Bg::start(
        proffer()
            .args([
                "k8s",
                "install",
                "--local",
                "--probe",
                &probe,
                "--http",
                "127.0.0.1:0",
            ])
            .args(["--master", &master, "--config"])
            .arg(&config)
            .arg("--state")
            .arg(&state),
        dir.path().join("install.log"),
    )?;
    let deployed = wait_for("the deploy plan", Duration::from_secs(90), || {
        status(&state).filter(|v| plan_status(v, "deploy").as_deref() == Some("COMPLETE"))
    })
    .with_context(|| install.log())?;
    let before = running(&deployed);
    let control_plane: Vec<&(String, String)> = before
        .iter()
        .filter(|(name, _)| !name.starts_with("node") && !name.starts_with("coredns"))
        .collect();
    assert_eq!(control_plane.len(), 4, "{before:?}");

    // No --probe, --local, --config or --api: all from what the install ran with.
    let out = run(
        proffer()
            .args(["k8s", "scale-nodes", "--state"])
            .arg(&state)
            .arg("2"),
        Duration::from_secs(30),
    )?;
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains("differs from what the cluster was installed with"),
        "{all}"
    );
    assert!(std::fs::read_to_string(&config)?.contains("\nnode-count: 2\n"));
    let scaled = wait_for("the update plan", Duration::from_secs(60), || {
        status(&state).filter(|v| {
            plan_status(v, "update").as_deref() == Some("COMPLETE")
                && running(v).iter().any(|(n, _)| n.starts_with("node-1"))
        })
    })
    .with_context(|| install.log())?;
    let after = running(&scaled);
    for task in control_plane {
        assert!(after.contains(task), "{task:?} restarted: {after:?}");
    }

    let out = run(
        proffer().args(["k8s", "uninstall", "--state"]).arg(&state),
        Duration::from_secs(30),
    )?;
    assert!(out.status.success(), "{}", text_of(&out));
    let ended = install.wait(Duration::from_secs(60))?;
    assert!(ended.success(), "{}", install.log());
    assert!(
        install.log().contains("k8s: uninstalled"),
        "{}",
        install.log()
    );
    drop(local);
    Ok(())
}
