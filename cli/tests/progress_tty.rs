//! `proffer run` on a terminal (a pseudo-terminal from `openpty`), against a real master and an
//! agent that serves its sandboxes over HTTP: the progress bar is drawn (a count line redrawn
//! with `\r`/ANSI escapes), a failed task gets its line with the end of its stderr, and with
//! `--quiet` only the summary is printed.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::pty::{Winsize, openpty};
use proffer_tests::procs::{Proc, free_port, proffer_bin, state_json, wait_for};

/// How long one `proffer run` may take.
const LIMIT: Duration = Duration::from_secs(90);

/// A master and one agent on loopback; the agent advertises `127.0.0.1:PORT` and serves its
/// HTTP endpoint (sandbox files) on that same address.
struct Cluster {
    master: String,
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

fn cluster() -> Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let master = format!("127.0.0.1:{}", free_port()?);
    let master_dir = dir.path().join("master").display().to_string();
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
        dir.path(),
    )?;
    wait_for("master /state", Duration::from_secs(30), || {
        state_json(&master).ok()
    })?;
    let port = free_port()?.to_string();
    let http = format!("127.0.0.1:{port}");
    let work = dir.path().join("agent").display().to_string();
    let a = Proc::start(
        "agent",
        &[
            "agent",
            "--master",
            &master,
            "--work-dir",
            &work,
            "--resources",
            "cpus:4;mem:2048",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port,
            "--http",
            &http,
            "--gc-max-disk-fraction",
            "1",
        ],
        dir.path(),
    )?;
    wait_for("the agent to register", Duration::from_secs(30), || {
        let s = state_json(&master).ok()?;
        (s["agents"].as_array()?.len() == 1).then_some(())
    })?;
    Ok(Cluster {
        master,
        _procs: vec![m, a],
        _dir: dir,
    })
}

/// Runs `proffer ARGS…` with stdout and stderr on a new pseudo-terminal (120x40); returns
/// the exit status and everything written to the terminal.
fn run_on_tty(args: &[&str]) -> Result<(std::process::ExitStatus, String)> {
    let size = Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).context("openpty")?;
    let mut child = {
        let mut cmd = Command::new(proffer_bin()?);
        cmd.args(args)
            .env("TERM", "xterm-256color")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(pty.slave.try_clone()?))
            .stderr(Stdio::from(pty.slave));
        cmd.spawn().context("spawn proffer")?
        // `cmd` (holding the terminal's slave side) is dropped here: only the child has it.
    };
    let mut master = File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        // EIO once the child (the last holder of the slave side) has exited.
        while let Ok(n) = master.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        out
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("proffer {} took longer than {LIMIT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the terminal reader panicked"))?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// The lines of terminal output (`\r\n` line ends, redraws kept as they are).
fn lines(text: &str) -> Vec<&str> {
    text.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_bar_renders_and_quiet_prints_only_the_summary() -> Result<()> {
    let c = cluster()?;
    let cmd = "sleep 1; case $PROFFER_TASK_ID in *3) echo boom-on-stderr >&2; exit 3;; esac";
    let base = [
        "run", "--master", &c.master, "--tasks", "6", "--cpus", "1", "--cmd", cmd,
    ];
    let (status, out) = run_on_tty(&base)?;
    assert!(!status.success(), "one task fails: {status}\n{out}");
    // The bar: its count line, redrawn in place (carriage return or an ANSI escape).
    assert!(out.contains("/6 tasks done"), "no progress bar:\n{out:?}");
    assert!(
        out.contains('\r') && out.contains("\x1b["),
        "no redraw:\n{out:?}"
    );
    // One line for the failed task, with its stderr read from the agent, and the summary.
    let failed = lines(&out)
        .into_iter()
        .filter(|l| l.contains("FAILED batch-0003 TASK_FAILED"))
        .count();
    assert_eq!(failed, 1, "{out}");
    assert!(out.contains("stderr| boom-on-stderr"), "{out}");
    assert!(out.contains("5/6 tasks finished in"), "{out}");
    assert!(!out.contains("TASK_FINISHED"), "no line per task:\n{out}");

    let quiet: Vec<&str> = base.iter().copied().chain(["--quiet"]).collect();
    let (status, out) = run_on_tty(&quiet)?;
    assert!(!status.success(), "{status}\n{out}");
    assert!(!out.contains("\x1b["), "no bar with --quiet:\n{out:?}");
    let lines = lines(&out);
    assert_eq!(lines.len(), 3, "only the summary:\n{out}");
    assert!(lines[0].starts_with("5/6 tasks finished in"), "{out}");
    assert!(
        lines[1].starts_with("  launched 6, finished 5, failed 1"),
        "{out}"
    );
    assert!(lines[2].starts_with("  offers received"), "{out}");
    Ok(())
}

#[test]
fn lines_without_a_terminal_and_json_for_machines() -> Result<()> {
    let c = cluster()?;
    let cmd = "case $PROFFER_TASK_ID in *1) echo no-such-file >&2; exit 2;; esac";
    let run = |extra: &[&str]| -> Result<(bool, String)> {
        let out = Command::new(proffer_bin()?)
            .args(["run", "--master", &c.master, "--tasks", "3", "--cmd", cmd])
            .args(extra)
            .stdin(Stdio::null())
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (ok, out) = run(&[])?;
    assert!(!ok);
    assert!(!out.contains('\r') && !out.contains("\x1b["), "{out:?}");
    let failure = out
        .lines()
        .find(|l| l.starts_with("FAILED batch-0001"))
        .with_context(|| format!("no failure line:\n{out}"))?;
    assert!(failure.contains("(sandbox sandboxes/"), "{failure}");
    assert!(out.contains("  stderr| no-such-file"), "{out}");

    let (ok, out) = run(&["--json"])?;
    assert!(!ok);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("not JSON lines:\n{out}"))?;
    let last = events.last().context("no output")?;
    assert_eq!(last["event"], "summary", "{out}");
    assert_eq!(
        (last["finished"].as_u64(), last["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(last["failed_tasks"][0], "batch-0001");
    let failure = events
        .iter()
        .find(|e| e["event"] == "failure")
        .context("no failure event")?;
    assert_eq!(failure["stderr"][0], "no-such-file", "{out}");
    assert!(Path::new(failure["sandbox"].as_str().unwrap_or("")).starts_with("sandboxes"));
    Ok(())
}
