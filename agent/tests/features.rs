//! The fetcher against a local HTTP server (extract, checksum, cache), the agent's HTTP
//! endpoint (sandbox browsing with traversal refused, state, metrics, drain) and task groups.

mod common;

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use common::{Harness, http_request, http_server, shell_task};
use proffer_proto::v1::{
    DrainAgent, ReactivateAgent, RunTaskGroup, TaskState, Uri, master_message,
};

fn uri(value: String) -> Uri {
    Uri {
        value,
        ..Default::default()
    }
}

#[tokio::test]
async fn fetcher_extracts_verifies_and_caches() -> Result<()> {
    // A tar.gz with hello.txt, served over HTTP.
    let src = tempfile::tempdir()?;
    std::fs::write(src.path().join("hello.txt"), "hi from the archive\n")?;
    let tgz = src.path().join("bundle.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(src.path())
        .arg("hello.txt")
        .status()?;
    anyhow::ensure!(ok.success(), "tar failed");
    let bytes = std::fs::read(&tgz)?;
    let sha = proffer_agent::fetcher::sha256_of(&tgz).map_err(anyhow::Error::msg)?;
    let (port, count) = http_server(move |path| match path {
        "/bundle.tar.gz" => (200, bytes.clone()),
        "/tool" => (200, b"#!/bin/sh\necho tool ran\n".to_vec()),
        _ => (404, Vec::new()),
    })
    .await?;
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;

    let bundle = |id: &str, sha256: &str| {
        let mut t = shell_task(id, "cat hello.txt && ./tool");
        if let Some(c) = t.command.as_mut() {
            let mut u = uri(format!("http://127.0.0.1:{port}/bundle.tar.gz"));
            u.extract = true;
            u.cache = true;
            u.sha256 = sha256.to_string();
            let mut tool = uri(format!("http://127.0.0.1:{port}/tool"));
            tool.executable = true;
            c.uris = vec![u, tool];
        }
        t
    };
    h.run("fw", bundle("first", &sha))?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "first").join("stdout"))?;
    assert_eq!(out, "hi from the archive\ntool ran\n");
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "archive and tool downloaded once each"
    );

    // The second task gets the archive from the cache (only the uncached tool is fetched).
    h.run("fw", bundle("second", &sha))?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "archive served from the cache"
    );
    let log = std::fs::read_to_string(h.sandbox("fw", "second").join("stderr"))?;
    assert!(log.contains("cache hit"), "{log}");

    // A wrong checksum fails the task before it starts.
    let mut bad = bundle("bad-sum", &"0".repeat(64));
    if let Some(c) = bad.command.as_mut() {
        c.uris[0].cache = false;
    }
    h.run("fw", bad)?;
    h.expect_state(TaskState::TaskStarting).await?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let s = u.status.context("status")?;
    assert_eq!(s.reason, "REASON_FETCHER_FAILED");
    assert!(s.message.contains("sha256 mismatch"), "{}", s.message);

    // A missing file is a fetch failure too.
    let mut missing = shell_task("missing", "true");
    if let Some(c) = missing.command.as_mut() {
        c.uris = vec![uri(format!("http://127.0.0.1:{port}/nope"))];
    }
    h.run("fw", missing)?;
    h.expect_state(TaskState::TaskStarting).await?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let s = u.status.context("status")?;
    assert!(s.message.contains("404"), "{}", s.message);
    h.stop().await
}

#[tokio::test]
async fn http_endpoint_browses_sandboxes_and_refuses_traversal() -> Result<()> {
    let port = common::reserved_port()?;
    let mut h = Harness::start(|c| c.http_listen = Some(([127, 0, 0, 1], port).into())).await?;
    h.register("agent-1").await?;
    h.run_shell(
        "fw",
        "t",
        "echo hello-sandbox; ln -s /etc/passwd out; ln -s ../../.. up",
    )?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;

    let (code, body) = http_request(port, "GET", "/files/browse?path=sandboxes/fw/t").await?;
    assert_eq!(code, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body)?;
    let names: Vec<&str> = listing
        .as_array()
        .context("array")?
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"stdout") && names.contains(&"stderr"),
        "{names:?}"
    );
    let (code, body) = http_request(
        port,
        "GET",
        "/files/read?path=sandboxes/fw/t/stdout&offset=6&length=7",
    )
    .await?;
    assert_eq!(code, 200);
    let read: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(read["data"], "sandbox");
    assert_eq!(read["offset"], 6);
    let (code, body) =
        http_request(port, "GET", "/files/download?path=sandboxes/fw/t/stdout").await?;
    assert_eq!((code, body.as_str()), (200, "hello-sandbox\n"));
    let abs = h.sandbox("fw", "t").join("stdout");
    let (code, _) =
        http_request(port, "GET", &format!("/files/read?path={}", abs.display())).await?;
    assert_eq!(code, 200, "absolute paths inside the sandboxes are fine");

    for bad in [
        "sandboxes/fw/t/../../../agent_id",
        "../../etc/passwd",
        "/etc/passwd",
        "agent_id",
        "sandboxes/fw/t/out",
        "sandboxes/fw/t/up/agent_id",
    ] {
        for op in ["browse", "read", "download"] {
            let (code, body) =
                http_request(port, "GET", &format!("/files/{op}?path={bad}")).await?;
            assert_eq!(code, 403, "{op} {bad}: {body}");
        }
    }

    let (code, body) = http_request(port, "GET", "/state").await?;
    assert_eq!(code, 200);
    let state: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(state["agent_id"], "agent-1");
    assert!(state["isolation"].as_str().is_some_and(|s| !s.is_empty()));
    let (code, body) = http_request(port, "GET", "/metrics").await?;
    assert_eq!(code, 200);
    assert!(body.contains("proffer_agent_draining 0"), "{body}");
    // The task ran, so its launch and checkpoints are in the journal, whose size is shown.
    let journal = body
        .lines()
        .find_map(|l| l.strip_prefix("proffer_agent_journal_bytes "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(journal.is_some_and(|n| n > 0), "{body}");
    h.stop().await
}

#[tokio::test]
async fn metrics_show_task_usage_from_cgroups() -> Result<()> {
    if let Some(why) = common::cgroups_unavailable() {
        eprintln!("SKIP metrics_show_task_usage_from_cgroups: {why}");
        return Ok(());
    }
    let port = common::reserved_port()?;
    let mut h = Harness::start(|c| c.http_listen = Some(([127, 0, 0, 1], port).into())).await?;
    h.register("agent-1").await?;
    h.run_shell(
        "fw",
        "busy",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; touch spun; exec sleep 60",
    )?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    common::wait_for_file_containing(&h.sandbox("fw", "busy").join("spun"), "").await?;
    let (_, body) = http_request(port, "GET", "/metrics").await?;
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("proffer_task_cpu_seconds_total{framework_id=\"fw\",task_id=\"busy\"}")
        })
        .with_context(|| format!("no cpu line in {body}"))?;
    let secs: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
    assert!(secs > 0.0, "{line}");
    assert!(
        body.contains("proffer_task_rss_bytes{framework_id=\"fw\",task_id=\"busy\"}"),
        "{body}"
    );
    let (_, state) = http_request(port, "GET", "/state").await?;
    let state: serde_json::Value = serde_json::from_str(&state)?;
    assert!(
        state["tasks"][0]["usage"]["cpu_time_ns"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{state}"
    );
    h.stop().await
}

#[tokio::test]
async fn drain_kills_tasks_and_refuses_new_ones() -> Result<()> {
    let port = common::reserved_port()?;
    let mut h = Harness::start(|c| {
        c.http_listen = Some(([127, 0, 0, 1], port).into());
        c.default_kill_grace = std::time::Duration::from_millis(200);
    })
    .await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "long", "sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    // Only the master drains an agent: the agent's own port has no drain route.
    let (code, _) = http_request(port, "POST", "/drain").await?;
    assert_eq!(
        code, 404,
        "an anonymous POST /drain must not drain the agent"
    );
    h.send(master_message::Msg::Drain(DrainAgent {
        reason: "maintenance".into(),
    }))?;
    h.expect_state(TaskState::TaskKilled).await?;
    h.run_shell("fw", "late", "true")?;
    let u = h.expect_state(TaskState::TaskLost).await?;
    assert_eq!(
        u.status.map(|s| s.reason),
        Some("REASON_AGENT_DRAINING".to_string())
    );
    let (_, body) = http_request(port, "GET", "/metrics").await?;
    assert!(body.contains("proffer_agent_draining 1"), "{body}");
    // Reactivated by the master: new tasks run again.
    h.send(master_message::Msg::Reactivate(ReactivateAgent {}))?;
    h.run_shell("fw", "after", "true")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    let (_, body) = http_request(port, "GET", "/metrics").await?;
    assert!(body.contains("proffer_agent_draining 0"), "{body}");
    h.stop().await
}

#[tokio::test]
async fn a_failing_task_kills_the_rest_of_its_group() -> Result<()> {
    let mut h =
        Harness::start(|c| c.default_kill_grace = std::time::Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    h.send(master_message::Msg::RunTaskGroup(RunTaskGroup {
        framework_id: "fw".into(),
        tasks: vec![
            shell_task("server", "sleep 60"),
            shell_task("sidecar", "sleep 0.3; exit 2"),
        ],
    }))?;
    let mut seen = std::collections::BTreeMap::new();
    while !(seen.get("server") == Some(&TaskState::TaskKilled)
        && seen.get("sidecar") == Some(&TaskState::TaskFailed))
    {
        let u = h.next_update().await?;
        h.ack(&u)?;
        let id = common::task_id_of(&u);
        seen.insert(id, common::state_of(&u));
        anyhow::ensure!(seen.len() <= 2, "{seen:?}");
    }
    // Members share the group's directory.
    h.send(master_message::Msg::RunTaskGroup(RunTaskGroup {
        framework_id: "fw".into(),
        tasks: vec![
            shell_task("writer", "echo shared-data > \"$PROFFER_GROUP_SANDBOX/msg\""),
            shell_task("reader", "while [ ! -s \"$PROFFER_GROUP_SANDBOX/msg\" ]; do sleep 0.02; done; cat \"$PROFFER_GROUP_SANDBOX/msg\""),
        ],
    }))?;
    h.until_finished(2).await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "reader").join("stdout"))?;
    assert_eq!(out, "shared-data\n");
    assert!(h.sandbox("fw", "group-writer").join("msg").exists());
    // An invalid member refuses the whole group.
    h.send(master_message::Msg::RunTaskGroup(RunTaskGroup {
        framework_id: "fw".into(),
        tasks: vec![shell_task("ok", "true"), shell_task("bad/id", "true")],
    }))?;
    for _ in 0..2 {
        let u = h.expect_state(TaskState::TaskError).await?;
        assert_eq!(
            u.status.map(|s| s.reason),
            Some("REASON_TASK_GROUP_INVALID".to_string())
        );
    }
    h.stop().await
}

#[tokio::test]
async fn sandboxes_of_forgotten_tasks_are_garbage_collected() -> Result<()> {
    let mut h = Harness::start(|c| c.gc_delay = std::time::Duration::from_millis(300)).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "short", "echo bye")?;
    h.run_shell("fw", "long", "sleep 60")?;
    let mut finished = false;
    let mut running = 0;
    while !finished || running < 2 {
        let u = h.next_update().await?;
        h.ack(&u)?;
        match common::state_of(&u) {
            TaskState::TaskFinished => finished = true,
            TaskState::TaskRunning => running += 1,
            _ => {}
        }
    }
    let short = h.sandbox("fw", "short");
    let deadline = std::time::Instant::now() + common::WAIT;
    while short.exists() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "sandbox never collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Its run directory goes with it (it outlived the task until then).
    let run_dirs = h.work_dir.path().join("meta/tasks/fw");
    let deadline = std::time::Instant::now() + common::WAIT;
    while run_dirs.join("short").exists() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "run directory never collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A running task's sandbox is kept however old it is.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(h.sandbox("fw", "long").exists());
    assert!(run_dirs.join("long").exists());
    h.stop().await
}

/// A task id used again after its first task was forgotten (its run directory not yet
/// garbage-collected) runs afresh: the old event log is not read as the new task's.
#[tokio::test]
async fn a_task_id_used_again_after_its_task_ended_runs_afresh() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    for (round, cmd) in [(1, "echo one"), (2, "echo two; exit 3")] {
        h.run_shell("fw", "again", cmd)?;
        let mut states = Vec::new();
        while !states.last().is_some_and(|s: &TaskState| s.is_terminal()) {
            let u = h.next_update().await?;
            h.ack(&u)?;
            states.push(common::state_of(&u));
        }
        let end = if round == 1 {
            TaskState::TaskFinished
        } else {
            TaskState::TaskFailed
        };
        assert_eq!(
            states,
            vec![TaskState::TaskStarting, TaskState::TaskRunning, end],
            "round {round}"
        );
        // Forgotten once its end is acknowledged; the run directory stays for the collector.
        let deadline = std::time::Instant::now() + common::WAIT;
        while proffer_agent::journal::read(h.work_dir.path())?
            .contains_key(&proffer_agent::core::TaskKey::new("fw", "again"))
        {
            anyhow::ensure!(std::time::Instant::now() < deadline, "never forgotten");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(h.work_dir.path().join("meta/tasks/fw/again").exists());
    }
    h.stop().await
}

/// A framework with no task left on the agent gets its supervising executor ended at the next
/// garbage collection (it would otherwise stay for the agent's lifetime), and its next task
/// starts a new one.
#[tokio::test]
async fn an_idle_frameworks_supervisor_ends_and_a_new_task_starts_another() -> Result<()> {
    let mut h = Harness::start(|c| c.gc_delay = std::time::Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    let mut supervisors = Vec::new();
    for id in ["first", "second"] {
        // The shell's parent is the supervisor that spawned it.
        h.run_shell("fw", id, "echo $PPID > ppid")?;
        h.expect_states(&[
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished,
        ])
        .await?;
        let ppid =
            common::wait_for_file_containing(&h.sandbox("fw", id).join("ppid"), "\n").await?;
        let pid: u32 = ppid.trim().parse()?;
        // Acknowledged and forgotten: nothing of "fw" is left, so its supervisor is let go.
        let deadline = std::time::Instant::now() + common::WAIT;
        while proffer_agent::containerizer::alive(pid, None) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the idle supervisor {pid} never ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        supervisors.push(pid);
    }
    assert_ne!(
        supervisors[0], supervisors[1],
        "the second task had a new supervisor"
    );
    h.stop().await
}

/// To a master that takes batches, the updates of one group commit go in one message, in
/// order; every update still arrives once and is acknowledged on its own.
#[tokio::test]
async fn a_commits_updates_go_in_one_message_to_a_master_that_takes_batches() -> Result<()> {
    use proffer_proto::v1::agent_message::Msg;
    let mut h = Harness::start(|_| {}).await?;
    h.register_as("agent-1", true).await?;
    // A group's tasks are launched by one message, so their first updates share a commit.
    let ids: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    h.send(master_message::Msg::RunTaskGroup(RunTaskGroup {
        framework_id: "fw".into(),
        tasks: ids.iter().map(|id| shell_task(id, "true")).collect(),
    }))?;
    let mut states: std::collections::BTreeMap<String, Vec<TaskState>> = Default::default();
    let mut largest_batch = 0;
    while states
        .values()
        .filter(|s| s.last() == Some(&TaskState::TaskFinished))
        .count()
        < ids.len()
    {
        let updates = match h.recv_msg().await? {
            Msg::StatusUpdates(b) => {
                largest_batch = largest_batch.max(b.updates.len());
                b.updates
            }
            Msg::StatusUpdate(u) => vec![u],
            other => anyhow::bail!("expected status updates, got {other:?}"),
        };
        for u in updates {
            h.ack(&u)?;
            let id = common::task_id_of(&u);
            states.entry(id).or_default().push(common::state_of(&u));
        }
    }
    assert!(
        largest_batch > 1,
        "no batch: largest message held {largest_batch} update(s)"
    );
    for (id, s) in &states {
        assert_eq!(
            s,
            &[
                TaskState::TaskStarting,
                TaskState::TaskRunning,
                TaskState::TaskFinished
            ],
            "{id}: each update once, in order"
        );
    }
    h.stop().await
}
