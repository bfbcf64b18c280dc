//! cgroups isolation with real cgroups (skipped, saying why, where the host has none):
//! limits read back from the cgroup files, OOM reported as a memory limitation, pids limit;
//! and refusal of tasks needing an isolator the agent does not have.

mod common;

use anyhow::{Context, Result, bail};
use common::{Harness, cgroups_unavailable, shell_task, spec_of, wait_for_file_containing};
use proffer_agent::IsolationMode;
use proffer_proto::Resources;
use proffer_proto::v1::{KillTask, TaskState, agent_message, master_message};

fn read(path: std::path::PathBuf) -> Result<String> {
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

#[tokio::test]
async fn cpu_memory_and_pids_limits_are_applied() -> Result<()> {
    if let Some(why) = cgroups_unavailable() {
        eprintln!("SKIP cpu_memory_and_pids_limits_are_applied: {why}");
        return Ok(());
    }
    let mut h = Harness::start(|c| c.cgroups_enable_cfs = true).await?;
    match h.recv_msg().await? {
        agent_message::Msg::Register(r) => {
            let isolation = r.info.map(|i| i.isolation).unwrap_or_default();
            assert!(isolation.starts_with("cgroups-v"), "{isolation}");
        }
        other => bail!("expected Register, got {other:?}"),
    }
    h.send(master_message::Msg::Registered(
        proffer_proto::v1::AgentRegistered {
            agent_id: "agent-1".into(),
            master_id: "m".into(),
            ping_interval_ms: 15_000,
            takes_update_batches: false,
        },
    ))?;
    let mut task = shell_task("limited", "echo $$ > pid; exec sleep 60");
    task.resources = Resources::parse("cpus:0.5;mem:64")?.to_proto();
    task.pids_limit = 16;
    h.run("fw", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let pid = wait_for_file_containing(&h.sandbox("fw", "limited").join("pid"), "\n").await?;
    let spec = spec_of(&h, "fw", "limited")?;
    let cg = spec.cgroup.context("no cgroup in the spec")?;
    match cg.version {
        proffer_agent::cgroups::CgroupVersion::V1 => {
            let cpu = cg.dir_of("cpu").context("cpu")?;
            assert_eq!(read(cpu.join("cpu.shares"))?, "512");
            assert_eq!(read(cpu.join("cpu.cfs_period_us"))?, "100000");
            assert_eq!(read(cpu.join("cpu.cfs_quota_us"))?, "50000");
            let mem = cg.dir_of("memory").context("memory")?;
            assert_eq!(
                read(mem.join("memory.limit_in_bytes"))?,
                (64u64 << 20).to_string()
            );
            assert!(
                read(mem.join("cgroup.procs"))?
                    .lines()
                    .any(|l| l == pid.trim()),
                "task in its memory cgroup"
            );
            if let Some(pids) = cg.dir_of("pids") {
                assert_eq!(read(pids.join("pids.max"))?, "16");
            }
        }
        proffer_agent::cgroups::CgroupVersion::V2 => {
            let d = cg.dir_of("unified").context("unified")?;
            assert_eq!(read(d.join("cpu.max"))?, "50000 100000");
            assert_eq!(read(d.join("memory.max"))?, (64u64 << 20).to_string());
            assert_eq!(read(d.join("pids.max"))?, "16");
        }
    }
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw".into(),
        task_id: "limited".into(),
        kill_grace_period_ms: 100,
    }))?;
    h.expect_state(TaskState::TaskKilled).await?;
    for d in cg.dirs() {
        // The executor removes (or pools, under another name) the task's cgroups once the
        // task ended.
        until(&format!("{} is gone", d.display()), || !d.exists()).await?;
    }
    h.stop().await
}

#[tokio::test]
async fn memory_limit_exceeded_fails_with_a_memory_reason() -> Result<()> {
    if let Some(why) = cgroups_unavailable() {
        eprintln!("SKIP memory_limit_exceeded_fails_with_a_memory_reason: {why}");
        return Ok(());
    }
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    // dd fills a 256 MB buffer: far over the 32 MB limit.
    let mut task = shell_task("hog", "dd if=/dev/zero of=/dev/null bs=256M count=1");
    task.resources = Resources::parse("cpus:0.1;mem:32")?.to_proto();
    h.run("fw", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let status = u.status.context("status")?;
    assert_eq!(
        status.reason, "REASON_CONTAINER_LIMITATION_MEMORY",
        "{status:?}"
    );
    assert!(
        status.message.contains("memory limit of 32 MB"),
        "{}",
        status.message
    );
    h.stop().await
}

#[tokio::test]
async fn tasks_needing_missing_isolators_are_refused() -> Result<()> {
    let mut h = Harness::start(|c| c.isolation = IsolationMode::Posix).await?;
    match h.recv_msg().await? {
        agent_message::Msg::Register(r) => {
            let isolation = r.info.map(|i| i.isolation).unwrap_or_default();
            assert!(isolation.contains("no cgroups"), "{isolation}");
        }
        other => bail!("expected Register, got {other:?}"),
    }
    h.send(master_message::Msg::Registered(
        proffer_proto::v1::AgentRegistered {
            agent_id: "agent-1".into(),
            master_id: "m".into(),
            ping_interval_ms: 15_000,
            takes_update_batches: false,
        },
    ))?;
    let mut task = shell_task("forky", "true");
    task.pids_limit = 10;
    h.run("fw", task)?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let status = u.status.context("status")?;
    assert_eq!(status.reason, "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(status.message.contains("pids limit"), "{}", status.message);
    let mut task = shell_task("ghost-user", "true");
    if let Some(c) = task.command.as_mut() {
        c.user = "no-such-user-here".into();
    }
    h.run("fw", task)?;
    let u = h.expect_state(TaskState::TaskFailed).await?;
    let message = u.status.map(|s| s.message).unwrap_or_default();
    assert!(message.contains("no-such-user-here"), "{message}");
    h.stop().await
}

#[tokio::test]
async fn task_runs_as_another_user_when_root() -> Result<()> {
    if !proffer_agent::process::is_root() {
        eprintln!("SKIP task_runs_as_another_user_when_root: not running as root");
        return Ok(());
    }
    let Ok((uid, _)) = proffer_agent::process::lookup_user("nobody") else {
        eprintln!("SKIP task_runs_as_another_user_when_root: no user `nobody`");
        return Ok(());
    };
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    // Writing in the sandbox proves it was handed to the user.
    let mut task = shell_task("as-nobody", "id -u > me; cat me");
    if let Some(c) = task.command.as_mut() {
        c.user = "nobody".into();
    }
    h.run("fw", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "as-nobody").join("stdout"))?;
    assert_eq!(out.trim(), uid.to_string());
    h.stop().await
}

#[tokio::test]
async fn pid_namespace_makes_the_task_pid_1() -> Result<()> {
    if let Err(why) = proffer_agent::process::check_pid_namespace() {
        eprintln!("SKIP pid_namespace_makes_the_task_pid_1: {why}");
        return Ok(());
    }
    let mut h = Harness::start(|c| c.pid_namespace = true).await?;
    h.register("agent-1").await?;
    h.run_shell("fw", "ns", "echo $$; ls /proc | grep -c '^[0-9]'")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.expect_state(TaskState::TaskFinished).await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "ns").join("stdout"))?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"1"), "{out}");
    let visible: usize = lines.get(1).context("process count")?.parse()?;
    assert!(
        visible <= 4,
        "only the task's own processes are visible: {out}"
    );
    // Kills still work through unshare.
    h.run_shell("fw", "ns-long", "sleep 60")?;
    h.expect_state(TaskState::TaskStarting).await?;
    h.expect_state(TaskState::TaskRunning).await?;
    h.send(master_message::Msg::KillTask(KillTask {
        framework_id: "fw".into(),
        task_id: "ns-long".into(),
        kill_grace_period_ms: 100,
    }))?;
    h.expect_state(TaskState::TaskKilled).await?;
    h.stop().await
}

/// The directory under `parent` whose inode is `ino` (a cgroup keeps its inode when renamed).
fn named_by_inode(parent: &std::path::Path, ino: u64) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .find(|e| e.metadata().is_ok_and(|m| m.is_dir() && m.ino() == ino))
        .and_then(|e| e.file_name().into_string().ok())
}

/// Waits until `cond` holds (bounded by `common::WAIT`).
async fn until(what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + common::WAIT;
    while !cond() {
        if std::time::Instant::now() >= deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_finished_tasks_cgroups_serve_the_next_task_and_end_with_the_supervisor() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let Some(why) = cgroups_unavailable() {
        eprintln!("SKIP a_finished_tasks_cgroups_serve_the_next_task: {why}");
        return Ok(());
    }
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let mut inodes = Vec::new();
    let mut parent = None;
    for id in ["first", "second"] {
        let mut task = shell_task(id, "exec sleep 60");
        task.resources = Resources::parse("cpus:0.1;mem:32")?.to_proto();
        h.run("fw", task)?;
        h.expect_state(TaskState::TaskStarting).await?;
        h.expect_state(TaskState::TaskRunning).await?;
        let cg = spec_of(&h, "fw", id)?
            .cgroup
            .context("no cgroup in the spec")?;
        if cg.version == proffer_agent::cgroups::CgroupVersion::V2 {
            eprintln!("SKIP reuse: cgroups v2 cannot rename a cgroup, so none is reused");
            return h.stop().await;
        }
        let dir = cg.dir_of("memory").context("memory")?;
        let ino = std::fs::metadata(&dir)?.ino();
        let memory = dir.parent().context("parent")?.to_path_buf();
        h.kill("fw", id, 100)?;
        h.expect_state(TaskState::TaskKilled).await?;
        // Kept idle under a pool name (same inode), not removed.
        until("the task's cgroup is idle in the pool", || {
            named_by_inode(&memory, ino).is_some_and(|n| n.starts_with("pool-"))
        })
        .await?;
        inodes.push(ino);
        parent = Some(memory);
    }
    assert_eq!(
        inodes[0], inodes[1],
        "the second task ran in the first one's cgroup"
    );
    let (parent, ino) = (parent.context("no task ran")?, inodes[0]);
    // The agent stops, the supervisor's stdin closes, it ends and removes its idle cgroups.
    h.stop().await?;
    until("the supervisor removed its idle cgroups", || {
        named_by_inode(&parent, ino).is_none()
    })
    .await
}
