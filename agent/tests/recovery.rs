//! Executors survive the agent: SIGKILL the agent process with tasks running, start it again,
//! and every task is re-attached and reported exactly once; an executor's death fails its task.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{Harness, state_of, wait_for_file_containing};
use proffer_proto::v1::{KillTask, TaskState, agent_message, master_message};

const TASKS: usize = 20;

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().chars().next()))
        .flatten()
        .is_some_and(|c| c != 'Z')
}

async fn read_pid(path: &Path) -> Result<i32> {
    Ok(wait_for_file_containing(path, "\n").await?.trim().parse()?)
}

/// Acknowledges updates until every task in `ids` was reported RUNNING.
async fn until_running(h: &mut Harness, ids: &BTreeSet<String>) -> Result<()> {
    let mut running = BTreeSet::new();
    while running.len() < ids.len() {
        let u = h.next_update().await?;
        let id = u
            .status
            .as_ref()
            .map(|s| s.task_id.clone())
            .unwrap_or_default();
        match state_of(&u) {
            TaskState::TaskStarting => {}
            TaskState::TaskRunning => {
                running.insert(id);
            }
            other => bail!("unexpected {} for {id}: {u:?}", other.name()),
        }
        h.ack(&u)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_agent_recovers_running_and_finished_tasks() -> Result<()> {
    // Retries are not what this test is about (re-registration re-sends what is
    // unacknowledged at once); a 2 s retry raced the acknowledgements on a loaded machine and
    // made an update come twice after the restart.
    let mut h = Harness::start_process(&["--status-retry-ms", "60000"]).await?;
    h.register("agent-1").await?;
    let mut ids: BTreeSet<String> = (0..TASKS).map(|i| format!("t{i}")).collect();
    for id in &ids {
        h.run_shell("fw", id, "echo $$ > pid; exec sleep 120")?;
    }
    // Finishes only when the test says so (while the agent is down).
    h.run_shell(
        "fw",
        "quick",
        "echo $$ > pid; while [ ! -f go ]; do sleep 0.02; done",
    )?;
    // Finishes at once; its FINISHED is left unacknowledged across the crash.
    h.run_shell("fw", "done", "true")?;
    ids.insert("quick".into());
    let mut done_finished = None;
    let mut running = BTreeSet::new();
    // Updates already seen: under load a retry may be sent before its acknowledgement lands.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while running.len() < ids.len() || done_finished.is_none() {
        let u = h.next_update().await?;
        if let Some(s) = &u.status {
            if seen.contains(&s.uuid) {
                continue;
            }
            seen.push(s.uuid.clone());
        }
        let id = u
            .status
            .as_ref()
            .map(|s| s.task_id.clone())
            .unwrap_or_default();
        match (state_of(&u), id.as_str()) {
            (TaskState::TaskFinished, "done") => {
                done_finished = Some(u);
                continue;
            }
            // Only the tasks in `ids` count: "done" also reports RUNNING, and counting it
            // let the loop end before the last long-running task was reported RUNNING (whose
            // first RUNNING then came only after the restart).
            (TaskState::TaskRunning, _) if ids.contains(&id) => {
                running.insert(id);
            }
            (TaskState::TaskRunning, "done") => {}
            (TaskState::TaskStarting, _) => {}
            (other, _) => bail!("unexpected {} for {id}", other.name()),
        }
        h.ack(&u)?;
    }
    let done_finished = done_finished.context("no FINISHED for done")?;
    let mut pids = BTreeMap::new();
    for id in &ids {
        pids.insert(
            id.clone(),
            read_pid(&h.sandbox("fw", id).join("pid")).await?,
        );
    }

    // Every acknowledgement is processed (only retries of the unacknowledged FINISHED of
    // "done" may come before the Pong). Status updates are at-least-once: under load a retry
    // (same uuid) can race the acknowledgements; those are acknowledged too, and the barrier
    // repeated until only "done" remains unacknowledged.
    loop {
        let mut extra = false;
        for m in h.barrier().await? {
            match m {
                agent_message::Msg::StatusUpdate(u) if u == done_finished => {}
                agent_message::Msg::StatusUpdate(u) => {
                    h.ack(&u)?;
                    extra = true;
                }
                other => bail!("unexpected before the crash: {other:?}"),
            }
        }
        if !extra {
            break;
        }
    }
    h.kill9()?;
    for (id, pid) in &pids {
        assert!(pid_alive(*pid), "task {id} (pid {pid}) died with the agent");
    }
    // "quick" ends while the agent is down; its executor records it.
    std::fs::write(h.sandbox("fw", "quick").join("go"), "")?;
    let events = h.work_dir.path().join("meta/tasks/fw/quick/events.jsonl");
    wait_for_file_containing(&events, "\"exited\"").await?;

    h.spawn_process()?;
    let rereg = match h.recv_msg().await? {
        agent_message::Msg::Reregister(r) => r,
        other => bail!("expected Reregister, got {other:?}"),
    };
    assert_eq!(rereg.info.as_ref().map(|i| i.id.as_str()), Some("agent-1"));
    let listed: Vec<String> = rereg
        .tasks
        .iter()
        .filter_map(|t| t.task.as_ref().map(|t| t.task_id.clone()))
        .collect();
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), TASKS + 2, "{listed:?}");
    assert_eq!(unique.len(), TASKS + 2, "no duplicates: {listed:?}");
    for t in &rereg.tasks {
        let id = t.task.as_ref().map(|t| t.task_id.as_str()).unwrap_or("");
        if id.starts_with('t') {
            assert_eq!(t.state, TaskState::TaskRunning as i32, "{id}");
        }
    }
    h.send_registered("agent-1", false)?;
    // Exactly two updates: the unacknowledged FINISHED of "done" again (same uuid), and the
    // FINISHED of "quick" that happened while the agent was down.
    let mut got = BTreeMap::new();
    while got.len() < 2 {
        let u = h.next_update().await?;
        let id = u
            .status
            .as_ref()
            .map(|s| s.task_id.clone())
            .unwrap_or_default();
        h.ack(&u)?;
        // Every RUNNING was acknowledged before the crash: none may come again.
        assert_eq!(state_of(&u), TaskState::TaskFinished, "{u:?}");
        if got.insert(id.clone(), u).is_some() {
            bail!("{id} reported twice");
        }
    }
    assert_eq!(
        got.get("done"),
        Some(&done_finished),
        "the checkpointed update is re-sent as is"
    );
    assert!(got.contains_key("quick"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = h.barrier().await?;
    assert!(rest.is_empty(), "nothing duplicated: {rest:?}");
    for id in ids.iter().filter(|i| i.starts_with('t')) {
        let pid = read_pid(&h.sandbox("fw", id).join("pid")).await?;
        assert_eq!(Some(&pid), pids.get(id), "{id} was not restarted");
        assert!(pid_alive(pid), "{id} still runs");
    }

    // The re-attached executors still obey kills.
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw".into(),
        task_id: "t0".into(),
        kill_grace_period_ms: 100,
    }))?;
    let u = h.expect_state(TaskState::TaskKilled).await?;
    assert_eq!(u.status.map(|s| s.task_id), Some("t0".to_string()));
    h.stop().await?;
    // SIGTERM to the agent kills the tasks (kill_tasks_on_shutdown is on by default).
    for (id, pid) in &pids {
        assert!(
            !pid_alive(*pid),
            "{id} (pid {pid}) outlived the stopped agent"
        );
    }
    Ok(())
}

#[tokio::test]
async fn executor_death_fails_the_task_and_kills_it() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "t", "echo $$ > pid; exec sleep 120")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let task_pid = read_pid(&h.sandbox("fw", "t").join("pid")).await?;
    let cp = serde_json::to_value(checkpoint_of(&h, "fw", "t")?)?;
    let executor_pid = cp["executor"]["pid"].as_i64().context("executor pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(executor_pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let status = u.status.context("status")?;
    assert_eq!(status.reason, "REASON_EXECUTOR_TERMINATED");
    assert!(status.message.contains("executor"), "{}", status.message);
    let deadline = std::time::Instant::now() + common::WAIT;
    while pid_alive(task_pid) {
        if std::time::Instant::now() > deadline {
            bail!("the task outlived its executor");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await
}

#[tokio::test]
async fn agent_stopped_with_keep_tasks_leaves_them_to_the_next_agent() -> Result<()> {
    let mut h = Harness::start_process(&["--keep-tasks"]).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "k", "echo $$ > pid; exec sleep 120")?;
    let ids: BTreeSet<String> = ["k".to_string()].into_iter().collect();
    until_running(&mut h, &ids).await?;
    let pid = read_pid(&h.sandbox("fw", "k").join("pid")).await?;
    h.barrier().await?; // every acknowledgement is processed
    // A graceful stop that keeps tasks (SIGTERM with --keep-tasks).
    let child = h.take_process().context("process")?;
    let raw = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGTERM)?;
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "{status}");
    assert!(pid_alive(pid), "the task outlived the agent");
    h.spawn_process()?;
    match h.recv_msg().await? {
        agent_message::Msg::Reregister(r) => {
            assert_eq!(r.tasks.len(), 1);
            assert_eq!(r.tasks[0].state, TaskState::TaskRunning as i32);
        }
        other => bail!("expected Reregister, got {other:?}"),
    }
    h.send_registered("agent-1", false)?;
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw".into(),
        task_id: "k".into(),
        kill_grace_period_ms: 100,
    }))?;
    h.expect_state(TaskState::TaskKilled).await?;
    assert!(!pid_alive(pid));
    h.stop().await
}

/// Write-ahead: when an update derived from an executor event reaches the master, the task's
/// checkpoint already holds both the update and the log offset just past that event, so an
/// agent crash at any later point neither loses the update nor turns the event into a second
/// update. A restart (SIGKILL) right after the RUNNING is seen, still unacknowledged, re-sends
/// the same RUNNING (same uuid) and nothing else.
#[tokio::test]
async fn an_update_is_checkpointed_with_its_log_offset_before_it_is_sent() -> Result<()> {
    update_checkpointed_then_restarted(false).await
}

/// An agent upgraded from one that kept each task's checkpoint in `agent.json` (before the
/// journal) recovers its tasks from those files: the same RUNNING is re-sent.
#[tokio::test]
async fn a_checkpoint_in_agent_json_from_an_older_agent_is_recovered() -> Result<()> {
    update_checkpointed_then_restarted(true).await
}

/// See the two tests above; `legacy`: the checkpoint is moved from the journal to the run
/// directory's `agent.json` while the agent is down.
async fn update_checkpointed_then_restarted(legacy: bool) -> Result<()> {
    let mut h = Harness::start_process(&["--status-retry-ms", "60000"]).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "w", "exec sleep 120")?;
    let starting = h.expect_state(TaskState::TaskStarting).await?;
    h.ack(&starting)?;
    let running = h.expect_state(TaskState::TaskRunning).await?;
    let uuid = running.status.as_ref().map(|s| s.uuid.clone());
    let run_dir = h.work_dir.path().join("meta/tasks/fw/w");
    let cp = serde_json::to_value(checkpoint_of(&h, "fw", "w")?)?;
    let events = std::fs::read_to_string(run_dir.join("events.jsonl"))?;
    let started_end = events
        .find("\"started\"")
        .and_then(|i| events[i..].find('\n').map(|n| i + n + 1))
        .context("no started event in the log")?;
    assert_eq!(
        cp["offset"].as_u64(),
        Some(u64::try_from(started_end)?),
        "offset past the started event: {cp}"
    );
    assert_eq!(
        cp["updates"].as_array().map(Vec::len),
        Some(1),
        "the RUNNING is queued: {cp}"
    );

    h.kill9()?;
    if legacy {
        // What an agent before the journal left: `task.pb`, `spec.json` and `agent.json`.
        let mut journal = proffer_agent::journal::read_all(h.work_dir.path())?;
        let (task, spec) = journal
            .remove(&proffer_agent::core::TaskKey::new("fw", "w"))
            .and_then(|r| r.launch)
            .context("no launch in the journal")?;
        proffer_agent::executor::protocol::write_launch_files(&run_dir, &task, &spec)?;
        std::fs::write(run_dir.join("agent.json"), serde_json::to_vec(&cp)?)?;
        std::fs::remove_file(proffer_agent::journal::path(h.work_dir.path()))?;
    }
    h.spawn_process()?;
    match h.recv_msg().await? {
        agent_message::Msg::Reregister(_) => {}
        other => bail!("expected Reregister, got {other:?}"),
    }
    h.send_registered("agent-1", false)?;
    let again = h.expect_state(TaskState::TaskRunning).await?;
    assert_eq!(
        again.status.as_ref().map(|s| s.uuid.clone()),
        uuid,
        "the same update, not a new one"
    );
    h.ack(&again)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = h.barrier().await?;
    assert!(rest.is_empty(), "nothing more: {rest:?}");
    h.stop().await
}

/// The task's latest checkpoint in the agent's journal.
fn checkpoint_of(
    h: &Harness,
    framework_id: &str,
    task_id: &str,
) -> Result<proffer_agent::checkpoint::TaskCheckpoint> {
    let mut journal = proffer_agent::journal::read(h.work_dir.path())?;
    journal
        .remove(&proffer_agent::core::TaskKey::new(framework_id, task_id))
        .with_context(|| format!("no checkpoint of {task_id} in the journal"))
}
