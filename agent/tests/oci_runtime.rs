//! Real containers: a busybox image built in the test (no registry) is unpacked by the image
//! store and run by the host's OCI runtime (`crun` or `runc`) with a spec from
//! `proffer_agent::oci`. Skips with a message without root, busybox or a usable runtime.

mod support_images;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proffer_agent::image::{Image, ImageStore, fsutil::running_as_root};
use proffer_agent::oci::{self, BindMount, ContainerSpec, OciRuntime, RootfsKind};
use support_images::{busybox_layer, oci_layout};

/// The runtime and the busybox image, or `None` after printing why the test skips.
fn setup(tmp: &Path) -> anyhow::Result<Option<(OciRuntime, Image)>> {
    if !running_as_root() {
        println!("SKIP: running containers needs root");
        return Ok(None);
    }
    let Some(layer) = busybox_layer() else {
        println!("SKIP: busybox is not installed (apt-get install busybox-static)");
        return Ok(None);
    };
    let runtime = match oci::detect(None) {
        Ok(r) => r.with_state_root(tmp.join("runtime-state")),
        Err(e) => {
            println!("SKIP: {e}");
            return Ok(None);
        }
    };
    let layout = oci_layout(
        &tmp.join("image"),
        std::slice::from_ref(&layer),
        std::slice::from_ref(&layer),
    );
    let image = ImageStore::new(tmp.join("cache"))?.pull(&layout)?;
    Ok(Some((runtime, image)))
}

/// Unmounts a task rootfs even when the test fails half-way (a second unmount is harmless).
struct Unmount(oci::TaskRootfs);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = oci::release_rootfs(&self.0);
    }
}

impl std::ops::Deref for Unmount {
    type Target = oci::TaskRootfs;
    fn deref(&self) -> &oci::TaskRootfs {
        &self.0
    }
}

/// Deletes (forcibly) a container even when the test fails half-way.
struct Delete<'a>(&'a OciRuntime, String);

impl Drop for Delete<'_> {
    fn drop(&mut self) {
        let _ = self.0.delete(&self.1, true);
    }
}

fn container_id() -> String {
    format!("proffer-test-{}", uuid::Uuid::new_v4())
}

/// Runs `script` with `sh -c` in a container over `image` and returns (exit code, stdout, stderr).
fn run_script(
    runtime: &OciRuntime,
    image: &Image,
    tmp: &Path,
    script: &str,
    edit: impl FnOnce(&mut ContainerSpec),
    allow_overlay: bool,
) -> anyhow::Result<(Option<i32>, String, String)> {
    let id = container_id();
    let task_dir = tmp.join(&id);
    let sandbox = task_dir.join("sandbox");
    fs::create_dir_all(&sandbox)?;
    let rootfs = Unmount(oci::prepare_rootfs(
        &image.rootfs,
        &task_dir,
        allow_overlay,
    )?);
    let mut spec = ContainerSpec {
        rootfs: rootfs.path.clone(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: image.defaults.env.clone(),
        sandbox: Some(sandbox.clone()),
        ..Default::default()
    };
    edit(&mut spec);
    let bundle = task_dir.join("bundle");
    oci::write_bundle(&bundle, &oci::build_spec(&spec)?)?;
    let (out, err) = (task_dir.join("stdout"), task_dir.join("stderr"));
    let status = runtime.run(
        &bundle,
        &id,
        Stdio::from(fs::File::create(&out)?),
        Stdio::from(fs::File::create(&err)?),
    );
    let _ = runtime.delete(&id, true);
    oci::release_rootfs(&rootfs)?;
    let status = status?;
    Ok((
        status.code(),
        fs::read_to_string(out)?,
        fs::read_to_string(err)?,
    ))
}

#[test]
fn a_container_sees_the_image_root_and_its_sandbox() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((runtime, image)) = setup(tmp.path())? else {
        return Ok(());
    };
    let volume = tmp.path().join("volume");
    fs::create_dir_all(&volume)?;
    fs::write(volume.join("data"), "from-the-volume")?;
    let script = "echo hello-from-container; ls /; cat /etc/image-marker; echo sandbox=$MESOS_SANDBOX; \
                  echo image-env=$FROM_IMAGE; cat /data/data; echo; echo written > $MESOS_SANDBOX/out; \
                  test -e /etc/hostname && echo HOST-FILE-VISIBLE; hostname 2>/dev/null; true";
    let (code, stdout, stderr) = run_script(
        &runtime,
        &image,
        tmp.path(),
        script,
        |s| {
            s.volumes.push(BindMount {
                host: volume.clone(),
                container: "/data".into(),
                read_only: true,
            })
        },
        true,
    )?;
    println!(
        "runtime {:?}: exit {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        runtime.kind
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("hello-from-container"));
    assert!(
        stdout.contains("only-in-the-image"),
        "the image's marker file is visible"
    );
    let root_listing: Vec<&str> = stdout.lines().collect();
    assert!(
        !root_listing.contains(&"usr") && !root_listing.contains(&"home"),
        "host root visible: {stdout}"
    );
    assert!(!stdout.contains("HOST-FILE-VISIBLE"));
    assert!(stdout.contains("sandbox=/mnt/mesos/sandbox") && stdout.contains("image-env=yes"));
    assert!(stdout.contains("from-the-volume"));
    let written = fs::read_dir(tmp.path())?
        .filter_map(Result::ok)
        .map(|e| e.path().join("sandbox/out"))
        .find(|p| p.is_file());
    assert_eq!(
        written.map(fs::read_to_string).transpose()?.as_deref(),
        Some("written\n")
    );
    // The image cache was not written to: the task wrote to its own layer.
    assert!(!image.rootfs.join("mnt/mesos/sandbox/out").exists());
    Ok(())
}

#[test]
fn exit_codes_limits_and_a_copied_rootfs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((runtime, image)) = setup(tmp.path())? else {
        return Ok(());
    };
    let (code, _, stderr) = run_script(&runtime, &image, tmp.path(), "exit 3", |_| {}, true)?;
    assert_eq!(code, Some(3), "stderr: {stderr}");
    // Without overlayfs the rootfs is a copy; writes there leave the cache untouched.
    let (code, stdout, stderr) = run_script(
        &runtime,
        &image,
        tmp.path(),
        "echo changed > /etc/image-marker; cat /etc/image-marker; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        |s| s.mem_bytes = Some(64 << 20),
        false,
    )?;
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("changed"));
    assert_eq!(
        fs::read_to_string(image.rootfs.join("etc/image-marker"))?,
        "only-in-the-image\n"
    );
    assert!(
        stdout.contains(&(64u64 << 20).to_string()),
        "memory limit not visible: {stdout}"
    );
    Ok(())
}

#[test]
fn a_running_container_is_killed_and_deleted() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((runtime, image)) = setup(tmp.path())? else {
        return Ok(());
    };
    let id = container_id();
    let task_dir = tmp.path().join(&id);
    let rootfs = Unmount(oci::prepare_rootfs(&image.rootfs, &task_dir, true)?);
    let spec = ContainerSpec {
        rootfs: rootfs.path.clone(),
        args: vec!["sleep".into(), "600".into()],
        ..Default::default()
    };
    let bundle = task_dir.join("bundle");
    oci::write_bundle(&bundle, &oci::build_spec(&spec)?)?;
    let mut child = runtime
        .run_command(&bundle, &id)?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _container = Delete(&runtime, id.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if runtime
            .state(&id)
            .is_ok_and(|s| s.status == "running" && s.pid > 0)
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "container {id} never reached running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    runtime.kill(&id, "KILL")?;
    let status = child.wait()?;
    assert!(!status.success(), "killed container exited {status}");
    runtime.delete(&id, true)?;
    assert!(
        runtime.state(&id).is_err(),
        "container still known after delete"
    );
    oci::release_rootfs(&rootfs)?;
    assert_eq!(
        rootfs.kind == RootfsKind::Overlay,
        fs::read_dir(task_dir.join("upper")).is_ok()
    );
    Ok(())
}

#[test]
fn a_missing_runtime_is_a_clear_error() {
    let err = oci::detect(Some(Path::new("/nonexistent/runc")))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("no OCI runtime") && err.contains("/nonexistent/runc"),
        "{err}"
    );
}

#[test]
fn a_task_runs_with_the_image_entrypoint_env_workdir_and_user() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((runtime, image)) = setup(tmp.path())? else {
        return Ok(());
    };
    let id = container_id();
    let task_dir = tmp.path().join(&id);
    let rootfs = Unmount(oci::prepare_rootfs(&image.rootfs, &task_dir, true)?);
    // The image's entrypoint is `/bin/sh -c`; the task's args replace its Cmd.
    let task = oci::TaskContainer {
        args: Some(vec![
            "echo cmd-$FROM_IMAGE-$EXTRA; id -u; id -g; pwd".into(),
        ]),
        env: vec!["EXTRA=task".into()],
        rootfs: rootfs.path.clone(),
        ..Default::default()
    };
    let bundle = task_dir.join("bundle");
    oci::write_bundle(
        &bundle,
        &oci::build_spec(&oci::container_spec(&image, &task)?)?,
    )?;
    let out = task_dir.join("stdout");
    let status = runtime.run(
        &bundle,
        &id,
        Stdio::from(fs::File::create(&out)?),
        Stdio::inherit(),
    );
    let _ = runtime.delete(&id, true);
    oci::release_rootfs(&rootfs)?;
    assert!(status?.success());
    let lines: Vec<String> = fs::read_to_string(out)?
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, vec!["cmd-yes-task", "1000", "1000", "/work"]);
    Ok(())
}

#[test]
fn the_memory_limit_kills_a_container_that_exceeds_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some((runtime, image)) = setup(tmp.path())? else {
        return Ok(());
    };
    // `dd` allocates and fills a 64 MB buffer: fine without a limit, killed under 16 MB.
    let script = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null && echo survived";
    let (code, stdout, stderr) = run_script(&runtime, &image, tmp.path(), script, |_| {}, true)?;
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), "survived"),
        "stderr: {stderr}"
    );
    let limited = |s: &mut ContainerSpec| s.mem_bytes = Some(16 << 20);
    let (code, stdout, stderr) = run_script(&runtime, &image, tmp.path(), script, limited, true)?;
    assert_eq!(
        code,
        Some(137),
        "SIGKILL by the OOM killer; stdout: {stdout} stderr: {stderr}"
    );
    assert!(!stdout.contains("survived"));
    Ok(())
}
