//! The Mesos v1 operator API (`POST /api/v1`) and the legacy JSON endpoints of the real
//! `proffer` binary, driven by `tests/python/mesos_operator_client.py`, a stdlib-only client
//! written from Mesos's published operator API docs: it subscribes to the event stream, calls
//! every read and a quota change, checks the refusals of bad input and the legacy endpoints,
//! then watches tasks started by `proffer run` being added and finishing on the stream.
//! The same cluster serves the CLI views: `proffer agents`, `proffer frameworks`,
//! `proffer logs`, `proffer events` and `proffer completions`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use proffer_proto::mesos::v1::master as mm;
use proffer_proto::prost::Message;
use proffer_tests::ports::free_port;
use proffer_tests::procs::{Cluster, Proc, run, run_ok, state_json, wait_for};

const AGENT_RES: &str = "cpus:2;mem:1024";
const LIMIT: Duration = Duration::from_secs(60);

/// `python3`, if installed (the Python part is skipped with a message otherwise).
fn python3() -> Option<PathBuf> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("python3"))
}

/// A master and one agent that advertises 127.0.0.1 and serves its file API there.
fn cluster() -> Result<(Cluster, Proc)> {
    let cluster = Cluster::start(0, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let port = free_port()?.to_string();
    let work = cluster.dir.path().join("agent-http");
    std::fs::create_dir_all(&work)?;
    let work = work.to_string_lossy().to_string();
    let http = format!("127.0.0.1:{port}");
    let agent = Proc::start(
        "agent-http",
        &[
            "agent",
            "--master",
            &cluster.master,
            "--work-dir",
            &work,
            "--resources",
            AGENT_RES,
            "--hostname",
            "127.0.0.1",
            "--port",
            &port,
            "--http",
            &http,
            "--gc-max-disk-fraction",
            "1",
        ],
        cluster.dir.path(),
    )?;
    wait_for("the agent to register", LIMIT, || {
        let s = state_json(&cluster.master).ok()?;
        s["agents"]
            .as_array()?
            .iter()
            .any(|a| a["connected"] == true)
            .then_some(())
    })?;
    Ok((cluster, agent))
}

fn proffer_run(master: &str, tasks: &str) -> Result<()> {
    let out = run(&[
        "run",
        "--master",
        master,
        "--tasks",
        tasks,
        "--cmd",
        "echo hello from $PROFFER_TASK_ID; echo oops >&2",
        "--name",
        "opsrun",
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "proffer run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn python_operator_client_and_cli_views() -> Result<()> {
    let (cluster, _agent) = cluster()?;
    let master = cluster.master.clone();
    match python3() {
        Some(python) => python_client(&python, &cluster)?,
        None => {
            println!("SKIPPED (Python part): python3 is not installed");
            proffer_run(&master, "2")?;
        }
    }

    // `proffer agents`: a table with the agent, and JSON.
    let out = run_ok(&["agents", "--master", &master])?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("ADDRESS") && table.contains("127.0.0.1:"),
        "{table}"
    );
    let out = run_ok(&["agents", "--master", &master, "--json"])?;
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    let out = run_ok(&["frameworks", "--master", &master, "--json"])?;
    let frameworks: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(frameworks.is_array(), "{frameworks}");
    let out = run_ok(&["frameworks", "--master", &master])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("SHARE"));

    // `proffer logs`: stdout and stderr of a finished task, through the agent's file API.
    let state = state_json(&master)?;
    let task = state["completed_tasks"]
        .as_array()
        .and_then(|l| l.iter().find_map(|t| t["id"].as_str()))
        .context("no completed task")?
        .to_string();
    let out = run_ok(&["logs", &task, "--master", &master])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("hello from {task}")), "{stdout}");
    let out = run_ok(&["logs", &task, "--stderr", "--follow", "--master", &master])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("oops"));
    let out = run(&["logs", "no-such-task", "--master", &master])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task `no-such-task`"));

    // `proffer events`: the stream's first event.
    let out = run_ok(&["events", "--master", &master, "--json", "--count", "1"])?;
    let first: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(first["type"], "SUBSCRIBED", "{first}");
    let out = run_ok(&["events", "--master", &master, "--count", "1"])?;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SUBSCRIBED"));

    protobuf_calls(&master)?;

    // `proffer completions`.
    for shell in ["bash", "zsh", "fish"] {
        let out = run_ok(&["completions", shell])?;
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("proffer") && script.contains("events"),
            "{shell}"
        );
    }
    Ok(())
}

/// Runs the Python client while `proffer run` launches two tasks; checks its summary.
fn python_client(python: &PathBuf, cluster: &Cluster) -> Result<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/mesos_operator_client.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args([
            "--master",
            &cluster.master,
            "--expect-tasks",
            "2",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running the Python client")?;
    // Its stderr says when the stream is open (and carries its error, if any).
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(LIMIT)
            .context("the Python client never said `subscribed`")?;
        let ready = line == "subscribed";
        lines.push(line);
        if ready {
            break;
        }
        if lines.iter().any(|l| l.starts_with("error:")) {
            break;
        }
    }
    if lines.iter().all(|l| l != "subscribed") {
        let _ = child.kill();
    } else {
        proffer_run(&cluster.master, "2")?;
    }
    let out = child.wait_with_output()?;
    let _ = reader.join();
    lines.extend(rx.try_iter());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{}\nmaster log:\n{}",
        lines.join("\n"),
        cluster.log("master")
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim()).context("the client's summary")?;
    assert_eq!(summary["version"], "1.11.0", "{summary}");
    assert_eq!(summary["subscribed_agents"], 1, "{summary}");
    assert_eq!(summary["quota_set"], true, "{summary}");
    assert_eq!(summary["endpoints"], true, "{summary}");
    assert_eq!(summary["tasks_added"], 2, "{summary}");
    assert_eq!(summary["tasks_finished"], 2, "{summary}");
    assert!(
        summary["events"]["TASK_ADDED"].as_u64() >= Some(2),
        "{summary}"
    );
    assert_eq!(summary["refusals"]["wrong_content_type"], 415, "{summary}");
    Ok(())
}

/// `POST /api/v1` in protobuf both ways over a raw HTTP/1.1 connection: a `GET_STATE` and a
/// malformed body.
fn protobuf_calls(master: &str) -> Result<()> {
    use std::io::{Read, Write};
    let post = |body: &[u8]| -> Result<(String, Vec<u8>)> {
        let mut stream = std::net::TcpStream::connect(master)?;
        stream.set_read_timeout(Some(LIMIT))?;
        let head = format!(
            "POST /api/v1 HTTP/1.1\r\nHost: {master}\r\nContent-Type: application/x-protobuf\r\n\
             Accept: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of the HTTP head")?;
        Ok((
            String::from_utf8_lossy(&raw[..end]).to_string(),
            raw[end + 4..].to_vec(),
        ))
    };
    let call = mm::Call {
        r#type: Some(mm::call::Type::GetState as i32),
        ..Default::default()
    };
    let (head, body) = post(&call.encode_to_vec())?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/x-protobuf"), "{head}");
    let response = mm::Response::decode(body.as_slice())?;
    assert_eq!(response.r#type, Some(mm::response::Type::GetState as i32));
    let state = response.get_state.context("no get_state")?;
    let agents = state.get_agents.map(|a| a.agents).unwrap_or_default();
    assert_eq!(agents.len(), 1, "{agents:?}");
    let completed = state
        .get_tasks
        .map(|t| t.completed_tasks)
        .unwrap_or_default();
    assert!(completed.len() >= 2, "{completed:?}");
    let (head, body) = post(&[0xff, 0xff, 0xff])?;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("Failed to parse"));
    Ok(())
}
