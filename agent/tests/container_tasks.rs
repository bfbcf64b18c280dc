//! Tasks in containers through the real agent (driven by a fake master): a busybox image built
//! in the test (no registry) is pulled by the task's executor and run by the host's OCI
//! runtime. Skips with a message without root, busybox or a usable runtime.

mod common;
mod support_images;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Harness, shell_task};
use proffer_agent::image::fsutil::running_as_root;
use proffer_proto::v1::{ContainerInfo, TaskInfo, TaskState, agent_message, master_message};
use support_images::{busybox_layer, oci_layout};

/// The busybox image layout under `dir`, or `None` after printing why the test skips.
fn image(dir: &Path) -> Option<PathBuf> {
    if !running_as_root() {
        println!("SKIP: running containers needs root");
        return None;
    }
    let Some(layer) = busybox_layer() else {
        println!("SKIP: busybox is not installed (apt-get install busybox-static)");
        return None;
    };
    if let Err(e) = proffer_agent::oci::detect(None) {
        println!("SKIP: {e}");
        return None;
    }
    Some(oci_layout(
        &dir.join("image"),
        std::slice::from_ref(&layer),
        std::slice::from_ref(&layer),
    ))
}

/// A shell task in the image at `image`.
fn container_task(task_id: &str, image: &Path, command: &str) -> TaskInfo {
    let mut t = shell_task(task_id, command);
    // The runtime's own process shares the task's memory cgroup.
    t.resources = proffer_proto::Resources::parse("cpus:0.1;mem:128")
        .map(|r| r.to_proto())
        .unwrap_or_default();
    t.container = Some(ContainerInfo {
        image: image.display().to_string(),
        image_sha256: String::new(),
    });
    t
}

/// The containers the runtime knows in the agent's state root (`RUNTIME --root … list`).
fn runtime_containers(work_dir: &Path) -> Result<String> {
    let runtime = proffer_agent::oci::detect(None)?;
    let out = std::process::Command::new(&runtime.path)
        .arg("--root")
        .arg(work_dir.join("oci"))
        .args(["list", "-q"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls until the agent's runtime lists some container (`any`) or none (deadline 10 s).
async fn wait_containers(work_dir: &Path, any: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = runtime_containers(work_dir)?;
        if listed.is_empty() != any {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waiting for containers (any: {any}): {listed:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the agent's runtime lists no container.
async fn wait_no_containers(work_dir: &Path) -> Result<()> {
    wait_containers(work_dir, false).await
}

/// The busybox image and an agent harness registered as `agent-1`; `None` (having said why)
/// when containers cannot run here. The directory holds the image: keep it while it runs.
async fn started() -> Result<Option<(tempfile::TempDir, PathBuf, Harness)>> {
    let tmp = tempfile::tempdir()?;
    let Some(image) = image(tmp.path()) else {
        return Ok(None);
    };
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    Ok(Some((tmp, image, h)))
}

/// Waits until no container is left on the agent, then stops it.
async fn stop_clean(h: Harness) -> Result<()> {
    wait_no_containers(h.work_dir.path()).await?;
    h.stop().await
}

#[tokio::test]
async fn a_task_runs_in_its_image_and_writes_its_sandbox() -> Result<()> {
    let Some((tmp, image, mut h)) = started().await? else {
        return Ok(());
    };
    // The test's own directory is on the host only; the marker is in the image only.
    let host_only = tmp.path().display().to_string();
    let script = format!(
        "cat /etc/image-marker && test ! -e {host_only} && echo in=$MESOS_SANDBOX:$PROFFER_TASK_ID \
         > $MESOS_SANDBOX/out && id -u"
    );
    h.run("fw", container_task("c1", &image, &script))?;
    let done = h
        .expect_states(&[
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished,
        ])
        .await?;
    let sandbox = h.sandbox("fw", "c1");
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))?;
    let stderr = std::fs::read_to_string(sandbox.join("stderr"))?;
    assert_eq!(
        done.status.as_ref().and_then(|s| s.exit_code),
        Some(0),
        "{stderr}"
    );
    // The image's config says User 1000:1000.
    assert_eq!(stdout, "only-in-the-image\n1000\n", "{stderr}");
    let out = std::fs::read_to_string(sandbox.join("out"))?;
    assert_eq!(out, "in=/mnt/mesos/sandbox:c1\n");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(
        h.work_dir.path().join("meta/tasks/fw/c1/container.json"),
    )?)?;
    assert!(
        record["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{record}"
    );

    h.run("fw", container_task("c2", &image, "exit 3"))?;
    let failed = h
        .expect_states(&[
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed,
        ])
        .await?;
    assert_eq!(failed.status.as_ref().and_then(|s| s.exit_code), Some(3));
    stop_clean(h).await
}

/// The TASK_FAILED of a task that cannot start: its reason and message.
async fn launch_failure(h: &mut Harness, task: TaskInfo) -> Result<(String, String)> {
    h.run("fw", task)?;
    loop {
        let u = h.next_update().await?;
        let s = u.status.clone().context("status")?;
        h.ack(&u)?;
        match TaskState::try_from(s.state) {
            Ok(TaskState::TaskFailed) => return Ok((s.reason, s.message)),
            Ok(TaskState::TaskStarting) => {}
            other => bail!("expected TASK_FAILED, got {other:?}: {}", s.message),
        }
    }
}

#[tokio::test]
async fn bad_images_and_a_missing_runtime_fail_the_launch_with_the_reason() -> Result<()> {
    let Some((tmp, image, mut h)) = started().await? else {
        return Ok(());
    };
    let not_an_image = tmp.path().join("not-an-image");
    std::fs::create_dir_all(&not_an_image)?;
    let (reason, message) =
        launch_failure(&mut h, container_task("bad", &not_an_image, "true")).await?;
    assert_eq!(reason, "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(message.contains("not-an-image"), "{message}");

    // A second layer that climbs out of the image root is refused before anything runs.
    let (Some(base), evil) = (
        busybox_layer(),
        support_images::Layer::new()
            .file("../../escaped", b"x", 0o644)
            .finish(),
    ) else {
        bail!("busybox vanished");
    };
    let evil_image = oci_layout(
        &tmp.path().join("evil-image"),
        &[base.clone(), evil.clone()],
        &[base, evil],
    );
    let (reason, message) =
        launch_failure(&mut h, container_task("evil", &evil_image, "true")).await?;
    assert_eq!(reason, "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(message.contains("`..` in path"), "{message}");

    let mut wrong = container_task("digest", &image, "true");
    if let Some(c) = wrong.container.as_mut() {
        c.image_sha256 = "00".repeat(32);
    }
    let (reason, message) = launch_failure(&mut h, wrong).await?;
    assert_eq!(reason, "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(message.contains("sha256 mismatch"), "{message}");
    h.stop().await?;

    let mut h = Harness::start(|c| {
        c.executor = proffer_agent::ExecutorLauncher::Binary {
            program: env!("CARGO_BIN_EXE_proffer-agent").into(),
            args: vec![
                "executor".into(),
                "--oci-runtime".into(),
                "/nonexistent/runc".into(),
            ],
        }
    })
    .await?;
    h.register("agent-1").await?;
    let (reason, message) =
        launch_failure(&mut h, container_task("noruntime", &image, "true")).await?;
    assert_eq!(reason, "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(message.contains("/nonexistent/runc"), "{message}");
    h.stop().await
}

#[tokio::test]
async fn a_killed_container_task_leaves_no_container() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(image) = image(tmp.path()) else {
        return Ok(());
    };
    let port = common::reserved_port()?;
    let mut h = Harness::start(|c| c.http_listen = Some(([127, 0, 0, 1], port).into())).await?;
    h.register("agent-1").await?;
    h.run("fw", container_task("k", &image, "sleep 1000"))?;
    h.expect_states(&[TaskState::TaskStarting, TaskState::TaskRunning])
        .await?;
    // RUNNING is sent once the runtime's process starts: the container follows.
    wait_containers(h.work_dir.path(), true).await?;
    // The agent's /state names the task's image, digest and runtime.
    let (code, body) = common::http_request(port, "GET", "/state").await?;
    assert_eq!(code, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body)?;
    let task = state["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["task_id"] == "k"))
        .context("task k in /state")?;
    let container = &task["container"];
    assert_eq!(container["image"], image.display().to_string(), "{task}");
    assert!(
        container["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{task}"
    );
    assert!(
        container["runtime"]
            .as_str()
            .is_some_and(|r| r.ends_with("runc") || r.ends_with("crun")),
        "{task}"
    );
    h.kill("fw", "k", 300)?;
    h.expect_state(TaskState::TaskKilled).await?;
    wait_no_containers(h.work_dir.path()).await?;
    let rootfs = h.work_dir.path().join("meta/tasks/fw/k/rootfs");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(
        !mounts.contains(&rootfs.display().to_string()),
        "the rootfs is unmounted"
    );
    h.stop().await
}

#[tokio::test]
async fn a_container_task_survives_an_agent_restart_and_finishes_once() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(image) = image(tmp.path()) else {
        return Ok(());
    };
    let mut h = Harness::start_process(&["--status-retry-ms", "60000"]).await?;
    h.register("agent-1").await?;
    let script = "while [ ! -e /mnt/mesos/sandbox/go ]; do sleep 0.05; done; echo went";
    h.run("fw", container_task("r", &image, script))?;
    let starting = h.expect_state(TaskState::TaskStarting).await?;
    h.ack(&starting)?;
    let running = h.expect_state(TaskState::TaskRunning).await?;
    h.ack(&running)?;
    h.barrier().await?;
    h.kill9()?;
    h.spawn_process()?;
    loop {
        match h.recv_msg().await? {
            agent_message::Msg::Reregister(_) => break,
            agent_message::Msg::StatusUpdate(_) => {}
            other => bail!("expected Reregister, got {other:?}"),
        }
    }
    h.send_registered("agent-1", false)?;
    std::fs::write(h.sandbox("fw", "r").join("go"), "")?;
    let done = h.expect_state(TaskState::TaskFinished).await?;
    h.ack(&done)?;
    let out = std::fs::read_to_string(h.sandbox("fw", "r").join("stdout"))?;
    assert_eq!(out, "went\n");
    // Exactly once: nothing else is sent after the acknowledgement.
    for m in h.barrier().await? {
        if let agent_message::Msg::StatusUpdate(u) = m {
            bail!("a second update after FINISHED: {u:?}");
        }
    }
    stop_clean(h).await
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_reported_as_plain_tasks_are() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(image) = image(tmp.path()) else {
        return Ok(());
    };
    if let Some(why) = common::cgroups_unavailable() {
        println!("SKIP: {why}");
        return Ok(());
    }
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    // `dd` allocates and fills a 256 MB buffer under the task's 128 MB.
    let script = "dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null && echo survived";
    h.run("fw", container_task("oom", &image, script))?;
    let u = h
        .expect_states(&[
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed,
        ])
        .await?;
    let status = u.status.context("status")?;
    assert_eq!(
        status.reason, "REASON_CONTAINER_LIMITATION_MEMORY",
        "{}",
        status.message
    );
    let stdout = std::fs::read_to_string(h.sandbox("fw", "oom").join("stdout"))?;
    assert!(!stdout.contains("survived"));
    stop_clean(h).await
}

#[tokio::test]
async fn a_command_health_check_runs_inside_the_container() -> Result<()> {
    use proffer_proto::v1::HealthCheck;
    use proffer_proto::v1::health_check::CheckType;
    let Some((_tmp, image, mut h)) = started().await? else {
        return Ok(());
    };
    let mut task = container_task("hc", &image, "sleep 1000");
    // Only the image has the marker: the check passes only inside the container.
    task.health_check = Some(HealthCheck {
        r#type: CheckType::Command as i32,
        command: Some(proffer_proto::v1::CommandInfo {
            value: "test -f /etc/image-marker".into(),
            shell: true,
            ..Default::default()
        }),
        delay_ms: Some(0),
        interval_ms: Some(100),
        timeout_ms: Some(30_000),
        consecutive_failures: Some(3),
        grace_period_ms: Some(60_000),
        ..Default::default()
    });
    h.run("fw", task)?;
    h.expect_state(TaskState::TaskStarting).await?;
    loop {
        let u = h.expect_state(TaskState::TaskRunning).await?;
        h.ack(&u)?;
        let s = u.status.context("status")?;
        match s.healthy {
            Some(true) => break,
            Some(false) => bail!("unhealthy: {}", s.message),
            None => {}
        }
    }
    h.kill("fw", "hc", 100)?;
    h.expect_state(TaskState::TaskKilled).await?;
    stop_clean(h).await
}

#[tokio::test]
async fn a_persistent_volume_is_mounted_in_the_container_and_outlives_the_task() -> Result<()> {
    let Some((_tmp, image, mut h)) = started().await? else {
        return Ok(());
    };
    let with_volume = |id: &str, script: &str| -> Result<TaskInfo> {
        let mut t = container_task(id, &image, script);
        t.resources =
            proffer_proto::Resources::parse("cpus:0.1;mem:128;disk(web)[v1:data]:10")?.to_proto();
        Ok(t)
    };
    let writer = with_volume("writer", "echo kept > /mnt/mesos/sandbox/data/file")?;
    h.run("fw", writer)?;
    let done = h
        .expect_states(&[
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished,
        ])
        .await;
    let stderr = std::fs::read_to_string(h.sandbox("fw", "writer").join("stderr"))?;
    done.context(stderr)?;
    let host = h.work_dir.path().join("volumes/v1/file");
    assert_eq!(std::fs::read_to_string(&host)?, "kept\n");
    let reader = with_volume("reader", "cat /mnt/mesos/sandbox/data/file")?;
    h.run("fw", reader)?;
    h.expect_states(&[
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskFinished,
    ])
    .await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "reader").join("stdout"))?;
    assert_eq!(out, "kept\n");
    h.stop().await
}

#[tokio::test]
async fn a_docker_save_archive_over_http_is_fetched_checked_and_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    if image(tmp.path()).is_none() {
        return Ok(());
    }
    let layer = busybox_layer().context("busybox")?;
    let archive = tmp.path().join("app.tar");
    support_images::docker_archive(&archive, std::slice::from_ref(&layer));
    let bytes = std::fs::read(&archive)?;
    let digest = support_images::sha256(&bytes);
    let (port, served) = common::http_server(move |path| match path {
        "/app.tar" => (200, bytes.clone()),
        _ => (404, Vec::new()),
    })
    .await?;
    let mut h = Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    let url = format!("http://127.0.0.1:{port}/app.tar");
    let mut task = container_task("web", Path::new("/unused"), "cat /etc/image-marker");
    task.container = Some(ContainerInfo {
        image: url.clone(),
        image_sha256: digest,
    });
    h.run("fw", task)?;
    h.expect_states(&[
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskFinished,
    ])
    .await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "web").join("stdout"))?;
    assert_eq!(out, "only-in-the-image\n");
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    let mut bad = container_task("web-bad", Path::new("/unused"), "true");
    bad.container = Some(ContainerInfo {
        image: url,
        image_sha256: "ab".repeat(32),
    });
    let (reason, message) = launch_failure(&mut h, bad).await?;
    assert_eq!(reason, "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(message.contains("sha256"), "{message}");
    h.stop().await
}

#[tokio::test]
async fn the_image_cache_evicts_images_no_live_container_uses() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(first) = image(tmp.path()) else {
        return Ok(());
    };
    let base = busybox_layer().context("busybox")?;
    let extra = support_images::Layer::new()
        .file("etc/second", b"2\n", 0o644)
        .finish();
    let second = oci_layout(
        &tmp.path().join("second"),
        &[base.clone(), extra.clone()],
        &[base, extra],
    );
    // A one-byte bound: each pull evicts every image no live container uses.
    let mut h = Harness::start(|c| {
        c.executor = proffer_agent::ExecutorLauncher::Binary {
            program: "/usr/bin/env".into(),
            args: vec![
                "PROFFER_IMAGE_CACHE_BYTES=1".into(),
                env!("CARGO_BIN_EXE_proffer-agent").into(),
                "executor".into(),
            ],
        }
    })
    .await?;
    h.register("agent-1").await?;
    let work = h.work_dir.path().to_path_buf();
    let digest = |task: &str| -> Result<String> {
        let path = work.join(format!("meta/tasks/fw/{task}/container.json"));
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let digest = record["digest"].as_str().context("digest")?;
        Ok(digest.trim_start_matches("sha256:").to_string())
    };
    let rootfs = |id: &str| work.join("images/rootfs/sha256").join(id);
    // One task keeps running in the first image while the second is pulled.
    h.run("fw", container_task("live", &first, "sleep 1000"))?;
    h.expect_states(&[TaskState::TaskStarting, TaskState::TaskRunning])
        .await?;
    h.run("fw", container_task("done", &second, "cat /etc/second"))?;
    h.expect_states(&[
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskFinished,
    ])
    .await?;
    let (first_id, second_id) = (digest("live")?, digest("done")?);
    assert!(
        rootfs(&first_id).is_dir(),
        "in use by a live container: kept"
    );
    assert!(rootfs(&second_id).is_dir(), "just pulled: kept");
    // The next pull (the first image again) evicts the second: its task has ended.
    h.run("fw", container_task("again", &first, "true"))?;
    h.expect_states(&[
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskFinished,
    ])
    .await?;
    assert!(rootfs(&first_id).is_dir());
    assert!(!rootfs(&second_id).exists(), "no live container: evicted");
    h.kill("fw", "live", 100)?;
    h.expect_state(TaskState::TaskKilled).await?;
    stop_clean(h).await
}

#[tokio::test]
async fn members_of_a_task_group_share_a_directory_across_containers() -> Result<()> {
    let Some((_tmp, image, mut h)) = started().await? else {
        return Ok(());
    };
    let reader_script = "while [ ! -s $PROFFER_GROUP_SANDBOX/msg ]; do sleep 0.02; done; \
                         cat $PROFFER_GROUP_SANDBOX/msg";
    h.send(master_message::Msg::RunTaskGroup(
        proffer_proto::v1::RunTaskGroup {
            framework_id: "fw".into(),
            tasks: vec![
                container_task("writer", &image, "echo shared > $PROFFER_GROUP_SANDBOX/msg"),
                container_task("reader", &image, reader_script),
            ],
        },
    ))?;
    h.until_finished(2).await?;
    let out = std::fs::read_to_string(h.sandbox("fw", "reader").join("stdout"))?;
    assert_eq!(out, "shared\n");
    h.stop().await
}

#[tokio::test]
async fn members_of_a_task_group_share_ipc_and_uts_namespaces_but_not_pid() -> Result<()> {
    let Some((_tmp, image, mut h)) = started().await? else {
        return Ok(());
    };
    // Each member prints its namespaces and publishes them, then waits for the other's, so
    // both run at once.
    let member = |me: &str, other: &str| {
        let script = format!(
            "G=$PROFFER_GROUP_SANDBOX; L=\"$(readlink /proc/self/ns/ipc) \
             $(readlink /proc/self/ns/uts) $(readlink /proc/self/ns/pid) $(hostname)\"; \
             echo \"$L\"; echo \"$L\" > $G/{me}.tmp && mv $G/{me}.tmp $G/{me}; \
             while [ ! -s $G/{other} ]; do sleep 0.02; done"
        );
        container_task(me, &image, &script)
    };
    h.send(master_message::Msg::RunTaskGroup(
        proffer_proto::v1::RunTaskGroup {
            framework_id: "fw".into(),
            tasks: vec![member("a", "b"), member("b", "a")],
        },
    ))?;
    h.until_finished(2).await?;
    let line = |task: &str| -> Result<Vec<String>> {
        let out = std::fs::read_to_string(h.sandbox("fw", task).join("stdout"))?;
        let words: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        anyhow::ensure!(words.len() == 4, "{task}: {out:?}");
        Ok(words)
    };
    let (a, b) = (line("a")?, line("b")?);
    assert_eq!(a[0], b[0], "one IPC namespace: {a:?} {b:?}");
    assert_eq!(a[1], b[1], "one UTS namespace: {a:?} {b:?}");
    assert_eq!(a[3], b[3], "one hostname: {a:?} {b:?}");
    assert_ne!(a[2], b[2], "a PID namespace each: {a:?} {b:?}");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc")?;
    assert_ne!(
        a[0],
        host_ipc.display().to_string(),
        "not the host's IPC namespace"
    );
    // The last member out stops the namespace holder and removes the group's record.
    let groups = h.work_dir.path().join("oci-groups").join("fw");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records: Vec<_> = std::fs::read_dir(&groups)?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| e.path())
            .collect();
        if records.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("group records left: {records:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await
}
