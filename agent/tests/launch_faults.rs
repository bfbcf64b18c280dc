//! Bad input and faults on the launch path: commands that cannot be executed fail with the
//! errno named; a launch storm beyond the agent's resources is refused task by task while the
//! agent keeps answering; a thousand tasks killed at once all end KILLED; an agent killed in
//! the middle of a launch batch loses no task and runs none twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use common::{Harness, shell_task, state_of};
use proffer_proto::Resources;
use proffer_proto::v1::{
    AgentRegistered, KillTask, StatusUpdate, TaskState, agent_message, master_message,
};

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
    h.send(master_message::Msg::Registered(AgentRegistered {
        agent_id: "agent-1".into(),
        master_id: "m".into(),
        ping_interval_ms: 15_000,
        takes_update_batches: false,
    }))?;
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
