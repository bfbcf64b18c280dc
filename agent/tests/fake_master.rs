//! The agent against a fake master: registration, task lifecycles with real processes, kills,
//! reconnects. The logic alone (retries and backoff, acknowledgements, write-ahead order, kills
//! by state, unknown tasks, task groups) is tested on virtual time in the agent core's table
//! tests (`agent/src/core/tests/`); these keep the paths that need processes and a session.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{Harness, shell_task, state_of, wait_for_file_containing};
use proffer_proto::Resources;
use proffer_proto::v1::{
    CommandInfo, DestroyVolumes, KillTask, RunTask, ShutdownAgent, ShutdownFramework, TaskInfo,
    TaskState, agent_message, master_message,
};

#[tokio::test]
async fn registers_and_persists_agent_id() -> Result<()> {
    let mut h = Harness::start(|c| c.attributes = vec![("rack".into(), "r1".into())]).await?;
    let info = match h.recv_msg().await? {
        agent_message::Msg::Register(r) => r.info.context("no info")?,
        other => bail!("expected Register, got {other:?}"),
    };
    assert!(info.id.is_empty());
    assert_eq!(info.port, 5051);
    assert_eq!(info.attributes.len(), 1);
    assert_eq!(info.attributes[0].name, "rack");
    assert_eq!(
        Resources::from_proto(&info.resources)?.to_string(),
        Resources::parse("cpus:2;mem:1024;disk:1024;ports:[31000-32000]")?.to_string()
    );
    h.send(master_message::Msg::Registered(
        proffer_proto::v1::AgentRegistered {
            agent_id: "agent-1".into(),
            master_id: "m".into(),
            ping_interval_ms: 15_000,
            takes_update_batches: false,
        },
    ))?;
    // Pong proves the Registered message (and the file write before it) was handled.
    let before = h.barrier().await?;
    assert!(before.is_empty(), "{before:?}");
    let saved = std::fs::read_to_string(h.work_dir.path().join("agent_id"))?;
    assert_eq!(saved.trim(), "agent-1");
    h.stop().await
}

#[tokio::test]
async fn echo_task_runs_to_finished() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "t1", "echo hello; echo oops >&2")?;
    let s = h.expect_state(TaskState::TaskStarting).await?;
    let status = s.status.context("status")?;
    assert_eq!(s.framework_id, "fw1");
    assert_eq!(status.task_id, "t1");
    assert_eq!(status.agent_id, "agent-1");
    assert_eq!(status.uuid.len(), 16);
    assert_eq!(
        status.source,
        proffer_proto::v1::StatusSource::SourceAgent as i32
    );
    h.expect_state(TaskState::TaskRunning).await?;
    let done = h.expect_state(TaskState::TaskFinished).await?;
    let status = done.status.context("status")?;
    assert_eq!(status.reason, "REASON_COMMAND_EXITED");
    assert_eq!(status.exit_code, Some(0));
    let out = std::fs::read_to_string(h.sandbox("fw1", "t1").join("stdout"))?;
    assert_eq!(out, "hello\n");
    let err = std::fs::read_to_string(h.sandbox("fw1", "t1").join("stderr"))?;
    assert_eq!(err, "oops\n");
    h.stop().await
}

#[tokio::test]
async fn task_environment_and_cwd() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-9").await?;
    let mut task = shell_task(
        "env-task",
        r#"echo "$PROFFER_TASK_ID $PROFFER_FRAMEWORK_ID $PROFFER_AGENT_ID $PORT0 $PORTS $FOO"; pwd; echo "$PROFFER_SANDBOX $MESOS_SANDBOX""#,
    );
    task.resources = Resources::parse("cpus:0.1;ports:[31000-31001]")?.to_proto();
    if let Some(c) = task.command.as_mut() {
        c.environment.insert("FOO".into(), "bar".into());
    }
    h.send(master_message::Msg::RunTask(RunTask {
        framework_id: "fw".into(),
        task: Some(Box::new(task)),
    }))?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    let sandbox = h.sandbox("fw", "env-task");
    let out = std::fs::read_to_string(sandbox.join("stdout"))?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "env-task fw agent-9 31000 31000,31001 bar");
    let canon = std::fs::canonicalize(&sandbox)?;
    assert_eq!(std::fs::canonicalize(lines[1])?, canon);
    let s = sandbox.to_string_lossy();
    assert_eq!(lines[2], format!("{s} {s}"));
    h.stop().await
}

#[tokio::test]
async fn nonzero_exit_fails_with_exit_code() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "t3", "exit 3")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let status = u.status.context("status")?;
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(status.message, "command exited with status 3");
    h.stop().await
}

#[tokio::test]
async fn foreign_signal_fails_naming_the_signal() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "sig", "kill -KILL $$")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let status = u.status.context("status")?;
    assert!(status.message.contains("SIGKILL"), "{}", status.message);
    assert_eq!(status.exit_code, None);
    h.stop().await
}

#[tokio::test]
async fn spawn_failure_and_invalid_ids_are_reported() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let task = TaskInfo {
        task_id: "nope".into(),
        command: Some(CommandInfo {
            value: "/definitely/not/a/program".into(),
            shell: false,
            arguments: vec!["prog".into(), "arg".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    h.send(master_message::Msg::RunTask(RunTask {
        framework_id: "fw".into(),
        task: Some(Box::new(task)),
    }))?;
    h.expect_state(TaskState::TaskStarting).await?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let status = u.status.context("status")?;
    assert_eq!(status.reason, "REASON_COMMAND_EXECUTOR_FAILED");
    assert!(
        status.message.contains("No such file"),
        "{}",
        status.message
    );

    for (fw, task) in [
        ("fw", "../escape"),
        ("fw", ""),
        ("a/b", "t"),
        ("fw", "nul\0"),
    ] {
        h.run_shell(fw, task, "true")?;
        let u = h.expect_state(TaskState::TaskError).await?;
        let status = u.status.context("status")?;
        assert_eq!(status.reason, "REASON_TASK_INVALID");
        assert!(status.message.contains("id"), "{}", status.message);
    }
    assert!(!h.work_dir.path().join("escape").exists());
    h.stop().await
}

#[tokio::test]
async fn kill_escalates_to_sigkill_after_grace() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "stubborn", "trap '' TERM; echo ready; sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    // Only kill once the shell has installed its trap.
    wait_for_file_containing(&h.sandbox("fw1", "stubborn").join("stdout"), "ready").await?;
    // A duplicate RunTask for a running task is ignored.
    h.run_shell("fw1", "stubborn", "true")?;
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw1".into(),
        task_id: "stubborn".into(),
        kill_grace_period_ms: 200,
    }))?;
    let u = h.expect_state(TaskState::TaskKilled).await?;
    let status = u.status.context("status")?;
    assert_eq!(status.reason, "REASON_TASK_KILLED");
    // SIGTERM was ignored, so only the SIGKILL after the grace period could end it.
    assert!(status.message.contains("SIGKILL"), "{}", status.message);
    let rest = h.barrier().await?;
    assert!(rest.is_empty(), "nothing else expected: {rest:?}");
    h.stop().await
}

#[tokio::test]
async fn shutdown_framework_kills_only_its_tasks() -> Result<()> {
    let mut h = Harness::start(|c| c.default_kill_grace = Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    h.run_shell("doomed", "a", "sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.run_shell("other", "b", "sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.send(master_message::Msg::ShutdownFramework(ShutdownFramework {
        framework_id: "doomed".into(),
    }))?;
    let u = h.expect_state(TaskState::TaskKilled).await?;
    assert_eq!(u.framework_id, "doomed");
    // The other framework's task is still running: it is listed on re-registration.
    h.drop_session()?;
    match h.recv_msg().await? {
        agent_message::Msg::Reregister(r) => {
            let ids: Vec<_> = r
                .tasks
                .iter()
                .map(|t| {
                    (
                        t.framework_id.clone(),
                        t.task.as_ref().map(|t| t.task_id.clone()),
                    )
                })
                .collect();
            assert_eq!(ids, vec![("other".to_string(), Some("b".to_string()))]);
        }
        other => bail!("expected Reregister, got {other:?}"),
    }
    h.stop().await
}

#[tokio::test]
async fn reconnects_and_reregisters_with_running_tasks() -> Result<()> {
    let mut h = Harness::start(|c| c.default_kill_grace = Duration::from_millis(200)).await?;
    h.register("agent-7").await?;
    h.run_shell("fw1", "long", "sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.drop_session()?;
    let (session, m) = h.recv().await?;
    assert_eq!(session, 2);
    let r = match m.msg {
        Some(agent_message::Msg::Reregister(r)) => r,
        other => bail!("expected Reregister, got {other:?}"),
    };
    assert_eq!(r.info.context("info")?.id, "agent-7");
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(r.tasks[0].framework_id, "fw1");
    assert_eq!(
        r.tasks[0].task.as_ref().map(|t| t.task_id.as_str()),
        Some("long")
    );
    assert_eq!(r.tasks[0].state, TaskState::TaskRunning as i32);
    h.send(master_message::Msg::Registered(
        proffer_proto::v1::AgentRegistered {
            agent_id: "agent-7".into(),
            master_id: "m2".into(),
            ping_interval_ms: 15_000,
            takes_update_batches: false,
        },
    ))?;
    // The task keeps working across the reconnect: kill it on the new session.
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw1".into(),
        task_id: "long".into(),
        kill_grace_period_ms: 0,
    }))?;
    h.expect_state(TaskState::TaskKilled).await?;
    h.stop().await
}

#[tokio::test]
async fn unacked_update_is_resent_after_reconnect() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "t", "true")?;
    let starting = h.next_update().await?;
    assert_eq!(state_of(&starting), TaskState::TaskStarting);
    h.drop_session()?;
    match h.recv_msg().await? {
        agent_message::Msg::Reregister(_) => {}
        other => bail!("expected Reregister, got {other:?}"),
    }
    h.send(master_message::Msg::Registered(
        proffer_proto::v1::AgentRegistered {
            agent_id: "agent-1".into(),
            master_id: "m2".into(),
            ping_interval_ms: 15_000,
            takes_update_batches: false,
        },
    ))?;
    // Resent at once on re-registration (the retry interval is the default 10 s).
    // The same update; its `latest_state` is the task's state when re-sent (it may have
    // finished meanwhile).
    let again = h.next_update().await?;
    assert_eq!(again.status, starting.status);
    assert!(again.latest_state.is_some(), "{again:?}");
    h.ack(&again)?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    h.stop().await
}

#[tokio::test]
async fn shutdown_agent_kills_tasks_and_registers_afresh() -> Result<()> {
    let mut h = Harness::start(|c| c.default_kill_grace = Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "t", "echo $$ > pid; sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let pid_file = h.sandbox("fw1", "t").join("pid");
    let pid: i32 = wait_for_file_containing(&pid_file, "\n")
        .await?
        .trim()
        .parse()?;
    h.send(master_message::Msg::Shutdown(ShutdownAgent {
        reason: "removed".into(),
    }))?;
    // A new session with a fresh Register (no id), and the id file is gone.
    h.register("agent-2").await?;
    assert_eq!(h.sessions(), 2);
    h.barrier().await?;
    let saved = std::fs::read_to_string(h.work_dir.path().join("agent_id"))?;
    assert_eq!(saved.trim(), "agent-2");
    // The old task's process goes away.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break; // a zombie awaiting its reaper is dead
        }
        if tokio::time::Instant::now() > deadline {
            bail!("task process {pid} survived ShutdownAgent");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await
}

#[tokio::test]
async fn cancel_kills_running_tasks() -> Result<()> {
    let mut h = Harness::start(|c| c.default_kill_grace = Duration::from_millis(200)).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "t", "echo $$ > pid; sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let pid_file = h.sandbox("fw1", "t").join("pid");
    let pid: i32 = wait_for_file_containing(&pid_file, "\n")
        .await?
        .trim()
        .parse()?;
    h.stop().await?;
    // run() returned only after the task ended (reaped), so the pid is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    Ok(())
}

#[tokio::test]
async fn keeps_dialing_until_the_master_comes_up() -> Result<()> {
    // The fake master hangs up on the first three connections: the agent's dials fail and
    // it backs off and retries until one gets through.
    let mut h = Harness::start_failing_first_dials(3, |_| {}).await?;
    h.register("agent-late").await?;
    assert_eq!(h.sessions(), 1, "failed dials never reached the server");
    h.barrier().await?;
    let saved = std::fs::read_to_string(h.work_dir.path().join("agent_id"))?;
    assert_eq!(saved.trim(), "agent-late");
    h.stop().await
}

#[tokio::test]
async fn reregistration_lists_ended_tasks_until_their_terminal_update_is_acked() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    h.run_shell("fw1", "quick", "true")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let finished = h.next_update().await?;
    assert_eq!(state_of(&finished), TaskState::TaskFinished);
    // Not acknowledged yet: the task is still reported, in its terminal state.
    h.drop_session()?;
    let r = match h.recv_msg().await? {
        agent_message::Msg::Reregister(r) => r,
        other => bail!("expected Reregister, got {other:?}"),
    };
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(r.tasks[0].state, TaskState::TaskFinished as i32);
    h.send(master_message::Msg::Registered(
        proffer_proto::v1::AgentRegistered {
            agent_id: "agent-1".into(),
            master_id: "m".into(),
            ping_interval_ms: 15_000,
            takes_update_batches: false,
        },
    ))?;
    let again = h.expect_state(TaskState::TaskFinished).await?;
    assert_eq!(again, finished);
    h.barrier().await?;
    // Acknowledged: the task is forgotten.
    h.drop_session()?;
    match h.recv_msg().await? {
        agent_message::Msg::Reregister(r) => assert!(r.tasks.is_empty(), "{:?}", r.tasks),
        other => bail!("expected Reregister, got {other:?}"),
    }
    h.stop().await
}

#[tokio::test]
async fn destroyed_volume_is_deleted_once_no_task_uses_it() -> Result<()> {
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let mut task = shell_task("writer", "echo old-data > mnt/data/file; sleep 60");
    task.resources = Resources::parse("cpus:0.1;mem:32;disk(web)[data:mnt/data]:10")?.to_proto();
    h.run("fw1", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let volumes = h.work_dir.path().join("volumes");
    wait_for_file_containing(&volumes.join("data/file"), "old-data").await?;
    let destroy = |ids: &[&str]| {
        master_message::Msg::DestroyVolumes(DestroyVolumes {
            volume_ids: ids.iter().map(|s| s.to_string()).collect(),
        })
    };
    // While the task runs the volume is kept.
    h.send(destroy(&["data"]))?;
    h.barrier().await?;
    assert!(volumes.join("data/file").is_file(), "in-use volume kept");
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw1".into(),
        task_id: "writer".into(),
        kill_grace_period_ms: 0,
    }))?;
    h.expect_state(TaskState::TaskKilled).await?;
    // Now it goes; a bad id next to it touches nothing; a repeat is harmless.
    h.send(destroy(&["data", "..", "../sandboxes"]))?;
    h.barrier().await?;
    assert!(!volumes.join("data").exists(), "volume directory deleted");
    assert!(h.work_dir.path().join("sandboxes").is_dir());
    h.send(destroy(&["data"]))?;
    let rest = h.barrier().await?;
    assert!(rest.is_empty(), "nothing else expected: {rest:?}");
    h.stop().await
}
