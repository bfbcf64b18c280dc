//! Bad input and faults on the launch path: commands that cannot be executed fail with the
//! errno named; a launch storm beyond the agent's resources is refused task by task while the
//! agent keeps answering; a supervisor that cannot create a task's event log says why; a thousand
//! tasks killed at once all end KILLED; an agent killed in the middle of a launch batch loses no
//! task and runs none twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use common::{Harness, shell_task, state_of};
use proffer_proto::Resources;
use proffer_proto::v1::{KillTask, StatusUpdate, TaskState, agent_message, master_message};

/// Acknowledges updates until every task in `ids` is terminal; returns each one's terminal
/// update. Fails on a second terminal update for a task (a task reported twice).
async fn until_terminal(
    h: &mut Harness,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<String, StatusUpdate>> {
    let mut ended: BTreeMap<String, StatusUpdate> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    while ended.len() < ids.len() {
        let u = h.next_update().await?;
        h.ack(&u)?;
        let s = u.status.as_ref().context("status")?;
        if !seen.insert(s.uuid.clone()) {
            continue; // a re-sent update (at least once)
        }
        if state_of(&u).is_terminal() {
            let id = s.task_id.clone();
            if !ids.contains(&id) {
                bail!("update for an unknown task {id}: {u:?}");
            }
            if ended.insert(id.clone(), u).is_some() {
                bail!("{id} ended twice");
            }
        }
    }
    Ok(ended)
}

fn message(u: &StatusUpdate) -> String {
    u.status
        .as_ref()
        .map(|s| format!("{} {}", s.reason, s.message))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_cannot_be_executed_fail_naming_the_errno() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\ntrue\n")?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644))?;
    let cases = [
        (
            "missing-path",
            "/nonexistent/proffer-no-such-program --flag".to_string(),
            "ENOENT",
        ),
        (
            "missing-name",
            "proffer-no-such-program-anywhere".to_string(),
            "ENOENT",
        ),
        ("no-permission", script.display().to_string(), "EACCES"),
    ];
    for (id, cmd, _) in &cases {
        h.run_shell("fw", id, cmd)?;
    }
    let ids = cases.iter().map(|(id, _, _)| id.to_string()).collect();
    let ended = until_terminal(&mut h, &ids).await?;
    for (id, cmd, errno) in &cases {
        let u = ended.get(*id).context("ended")?;
        assert_eq!(state_of(u), TaskState::TaskFailed, "{id}: {u:?}");
        let m = message(u);
        assert!(
            m.contains(errno),
            "{id} ({cmd}): `{m}` does not name {errno}"
        );
        let program = cmd.split(' ').next().unwrap_or_default();
        assert!(m.contains(program), "{id}: `{m}` does not name {program}");
    }
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_found_on_the_path_keeps_its_name_as_argv0() -> Result<()> {
    // The supervisor looks the program up once and spawns it by its path (one execve, not
    // one per PATH entry); the task still sees the name it was given.
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "direct", "cat /proc/self/cmdline")?;
    let mut named = shell_task("named", "");
    named.command = Some(proffer_proto::v1::CommandInfo {
        shell: false,
        value: "cat".into(),
        arguments: vec!["my-cat".into(), "/proc/self/cmdline".into()],
        ..Default::default()
    });
    h.run("fw", named)?;
    let ids = ["direct", "named"].map(String::from).into_iter().collect();
    let ended = until_terminal(&mut h, &ids).await?;
    for (id, argv) in [
        ("direct", "cat\0/proc/self/cmdline\0"),
        ("named", "my-cat\0/proc/self/cmdline\0"),
    ] {
        let u = ended.get(id).context("ended")?;
        assert_eq!(state_of(u), TaskState::TaskFinished, "{id}: {u:?}");
        let out = std::fs::read_to_string(h.sandbox("fw", id).join("stdout"))?;
        assert_eq!(out, argv, "{id}");
    }
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_cannot_create_a_tasks_event_log_says_why_and_runs_the_next_task()
-> Result<()> {
    use proffer_agent::executor::protocol::{ExecutorSpec, read_events};
    use proffer_agent::executor::supervisor::{Notice, launch_line};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    // As on a full disk (ENOSPC): the task's event log cannot be created, here because its run
    // directory is below a file. Before, the supervisor only wrote this to its own log, lived
    // on, and the agent waited for the task's events for ever (it stayed STARTING).
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "")?;
    let broken = file.join("run");
    let fine = dir.path().join("run-fine");
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&fine)?;
    std::fs::create_dir_all(&sandbox)?;
    let spec = ExecutorSpec {
        framework_id: "fw".into(),
        agent_id: "a".into(),
        container_id: "c".into(),
        sandbox,
        env: Vec::new(),
        default_kill_grace_ms: 1000,
        cgroup: None,
        fetch_cache: None,
        user: None,
        pid_namespace: false,
    };
    // Its own log is on the full disk too: writing to it fails (ENOSPC) and must not stop it.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
    let mut sup = tokio::process::Command::new(env!("CARGO_BIN_EXE_proffer-agent"))
        .args(["executor", "--supervisor"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(full)
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = sup.stdin.take().context("stdin")?;
    let mut lines = tokio::io::BufReader::new(sup.stdout.take().context("stdout")?).lines();
    for run_dir in [&broken, &fine] {
        let line =
            launch_line(run_dir, &shell_task("t", "true"), &spec).map_err(anyhow::Error::msg)?;
        stdin.write_all(line.as_bytes()).await?;
    }
    stdin.flush().await?;
    let ended = |d: &std::path::Path| {
        read_events(d, 0).is_ok_and(|ev| {
            ev.iter().any(|(e, _)| {
                matches!(
                    e,
                    Ok(proffer_agent::executor::protocol::ExecutorEvent::Exited { .. })
                )
            })
        })
    };
    let mut gave_up = None;
    let bound = std::time::Duration::from_secs(60);
    tokio::time::timeout(bound, async {
        while gave_up.is_none() || !ended(&fine) {
            let line = lines
                .next_line()
                .await?
                .context("the supervisor's stdout closed")?;
            match Notice::parse(&line).map_err(anyhow::Error::msg)? {
                Notice::GaveUp { run_dir, error } => {
                    assert_eq!(run_dir, broken, "{error}");
                    gave_up = Some(error);
                }
                Notice::Events(run_dir) => assert_eq!(run_dir, fine, "events for {line}"),
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("no notice that the task was given up (or the next task did not end)")??;
    let error = gave_up.unwrap_or_default();
    for part in ["opening event log", "Not a directory"] {
        assert!(error.contains(part), "`{error}` does not say {part}");
    }
    // End of stdin: the supervisor exits once its tasks have ended.
    drop(stdin);
    let status = tokio::time::timeout(bound, sup.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_storm_beyond_the_agents_resources_is_refused_task_by_task() -> Result<()> {
    // The harness's agent has cpus:2 and mem:1024: 20 tasks of 0.1 cpu fit, no more.
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let storm = 200;
    for i in 0..storm {
        h.run_shell("fw", &format!("s{i:03}"), "sleep 1000")?;
    }
    let mut refused = BTreeSet::new();
    let mut running = BTreeSet::new();
    while refused.len() + running.len() < storm {
        let u = h.next_update().await?;
        h.ack(&u)?;
        let id = common::task_id_of(&u);
        match state_of(&u) {
            TaskState::TaskStarting => {}
            TaskState::TaskRunning => {
                running.insert(id);
            }
            TaskState::TaskError => {
                let m = message(&u);
                assert!(
                    m.contains("REASON_INVALID_OFFERS") && m.contains("not enough free resources"),
                    "{id}: {m}"
                );
                assert!(m.contains("cpus 0.1"), "names what the task needs: {m}");
                refused.insert(id);
            }
            other => bail!("unexpected {} for {id}: {u:?}", other.name()),
        }
    }
    assert_eq!(running.len(), 20, "as many as fit run: {running:?}");
    assert_eq!(refused.len(), storm - 20);
    // The agent still answers at once, and kills what runs.
    h.barrier().await?;
    for id in &running {
        h.send(master_message::Msg::KillTask(KillTask {
            framework_id: "fw".into(),
            task_id: id.clone(),
            kill_grace_period_ms: 0,
        }))?;
    }
    let ended = until_terminal(&mut h, &running).await?;
    assert!(ended.values().all(|u| state_of(u) == TaskState::TaskKilled));
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_killed_at_once_all_end_killed() -> Result<()> {
    let n = 1000;
    let mut h = Harness::start(|c| {
        // Room for a thousand small tasks; no cgroups, so this stays a test of the launch and
        // kill paths (a thousand cgroups take longer than the rest of the test).
        c.resources = Resources::parse("cpus:100;mem:40000").ok();
        c.isolation = proffer_agent::IsolationMode::Posix;
    })
    .await?;
    h.register("agent-1").await?;
    let ids: BTreeSet<String> = (0..n).map(|i| format!("k{i:04}")).collect();
    for id in &ids {
        h.run("fw", shell_task(id, "sleep 1000"))?;
    }
    let mut running = BTreeSet::new();
    while running.len() < n {
        let u = h.next_update().await?;
        h.ack(&u)?;
        let id = common::task_id_of(&u);
        match state_of(&u) {
            TaskState::TaskStarting => {}
            TaskState::TaskRunning => {
                running.insert(id);
            }
            other => bail!("unexpected {} for {id}: {u:?}", other.name()),
        }
    }
    for id in &ids {
        h.send(master_message::Msg::KillTask(KillTask {
            framework_id: "fw".into(),
            task_id: id.clone(),
            kill_grace_period_ms: 100,
        }))?;
    }
    let ended = until_terminal(&mut h, &ids).await?;
    let not_killed: Vec<_> = ended
        .iter()
        .filter(|(_, u)| state_of(u) != TaskState::TaskKilled)
        .map(|(id, u)| format!("{id}: {}", message(u)))
        .collect();
    assert!(not_killed.is_empty(), "{not_killed:?}");
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_in_the_middle_of_a_launch_batch_loses_no_task_and_runs_none_twice()
-> Result<()> {
    let mut h = Harness::start_process(&["--status-retry-ms", "60000"]).await?;
    h.register("agent-1").await?;
    let n = 120;
    let ids: BTreeSet<String> = (0..n).map(|i| format!("b{i:03}")).collect();
    // Each run appends a line to its sandbox's `runs`: a task run twice has two. The first
    // wave is being started by the supervisor when the second arrives; SIGKILL follows at
    // once, while the agent is in the middle of the second.
    let (first_wave, second_wave): (Vec<&String>, Vec<&String>) =
        ids.iter().partition(|id| id.as_str() < "b060");
    for id in first_wave {
        h.run_shell("fw", id, "echo run >> runs; sleep 2")?;
    }
    let first = h.next_update().await?;
    for id in second_wave {
        h.run_shell("fw", id, "echo run >> runs; sleep 2")?;
    }
    h.kill9()?;
    let mut reported: BTreeSet<String> = BTreeSet::new();
    reported.extend(first.status.map(|s| s.task_id));
    h.spawn_process()?;
    // Updates the killed agent sent before it died may still be queued: skip to Reregister.
    let rereg = loop {
        match h.recv_msg().await? {
            agent_message::Msg::Reregister(r) => break r,
            agent_message::Msg::StatusUpdate(u) => {
                reported.extend(u.status.map(|s| s.task_id));
            }
            other => bail!("expected Reregister, got {other:?}"),
        }
    };
    let known: BTreeSet<String> = rereg
        .tasks
        .iter()
        .filter_map(|t| t.task.as_ref().map(|t| t.task_id.clone()))
        .collect();
    assert_eq!(known.len(), rereg.tasks.len(), "no task listed twice");
    h.send_registered("agent-1", false)?;
    // Every task the restarted agent knows ends, exactly once.
    let ended = until_terminal(&mut h, &known).await?;
    for (id, u) in &ended {
        let s = state_of(u);
        assert!(
            s == TaskState::TaskFinished || s == TaskState::TaskFailed,
            "{id}: {u:?}"
        );
    }
    reported.extend(known.iter().cloned());
    let mut ran = 0;
    for id in &ids {
        let runs = std::fs::read_to_string(h.sandbox("fw", id).join("runs")).unwrap_or_default();
        let count = runs.lines().count();
        assert!(count <= 1, "{id} ran {count} times");
        if count == 1 {
            ran += 1;
            // A task that ran is known to the restarted agent (not lost); one it does not
            // know never ran (the master reports it lost when the agent re-registers).
            assert!(known.contains(id), "{id} ran but the agent forgot it");
            assert_eq!(
                ended.get(id).map(state_of),
                Some(TaskState::TaskFinished),
                "{id} ran to its end under the supervisor"
            );
        }
    }
    println!(
        "agent killed mid batch: {} of {n} tasks known after the restart, {ran} ran (once each)",
        known.len()
    );
    assert!(
        !known.is_empty(),
        "the launch batch was under way: {reported:?}"
    );
    h.stop().await
}

/// Acknowledges the status updates among `msgs`.
fn ack_all(h: &Harness, msgs: &[agent_message::Msg]) -> Result<()> {
    for m in msgs {
        let updates = match m {
            agent_message::Msg::StatusUpdate(u) => std::slice::from_ref(u),
            agent_message::Msg::StatusUpdates(b) => b.updates.as_slice(),
            _ => continue,
        };
        for u in updates {
            h.ack(u)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_journal_cannot_be_written_stops_leaving_its_tasks_to_the_next_one()
-> Result<()> {
    // Writes past 128 × 512 bytes fail (EFBIG, SIGXFSZ ignored), as writes to a full disk fail
    // with ENOSPC: the journal is the file that grows. Before, the agent logged the error and
    // went on sending updates and starting tasks whose checkpoints were not durable.
    let mut h =
        Harness::start_process_with_file_limit(&["--status-retry-ms", "60000"], 128).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "keeper", "sleep 1000")?;
    h.expect_states(&[TaskState::TaskStarting, TaskState::TaskRunning])
        .await?;
    let child = h.take_process().context("agent process")?;
    let mut exited = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    });
    let mut launched: BTreeSet<String> = BTreeSet::new();
    let status = loop {
        anyhow::ensure!(launched.len() < 3000, "the journal never failed");
        for _ in 0..20 {
            let id = format!("t{:04}", launched.len());
            h.run_shell("fw", &id, "echo run >> runs")?;
            launched.insert(id);
        }
        tokio::select! {
            got = h.barrier() => { ack_all(&h, &got?)?; }
            status = &mut exited => break status??,
        }
    };
    assert!(!status.success(), "the agent stops with an error: {status}");
    let log = std::fs::read_to_string(h.work_dir.path().join("agent.log"))?;
    assert!(
        log.contains("checkpoint journal cannot be written"),
        "the agent says why it stopped: {log}"
    );
    // Started again (with room to write), the agent finds its tasks: the keeper still runs.
    h.file_size_blocks = None;
    h.spawn_process()?;
    let rereg = loop {
        match h.recv_msg().await? {
            agent_message::Msg::Reregister(r) => break r,
            other => {
                ack_all(&h, &[other])?;
            }
        }
    };
    let known: BTreeSet<String> = rereg
        .tasks
        .iter()
        .filter_map(|t| t.task.as_ref().map(|t| t.task_id.clone()))
        .collect();
    let keeper = rereg
        .tasks
        .iter()
        .find(|t| t.task.as_ref().is_some_and(|t| t.task_id == "keeper"))
        .context("the restarted agent knows the keeper")?;
    assert_eq!(keeper.state(), TaskState::TaskRunning, "{keeper:?}");
    h.send_registered("agent-1", false)?;
    h.kill("fw", "keeper", 0)?;
    let ended = until_terminal(&mut h, &known).await?;
    let keeper_end = ended.get("keeper").context("keeper ended")?;
    assert_eq!(
        state_of(keeper_end),
        TaskState::TaskKilled,
        "{keeper_end:?}"
    );
    for id in &launched {
        let runs = std::fs::read_to_string(h.sandbox("fw", id).join("runs")).unwrap_or_default();
        assert!(runs.lines().count() <= 1, "{id} ran more than once");
    }
    h.stop().await
}
