//! `proffer run --image` end to end: `proffer local` (a master and an agent) runs a task in a
//! busybox image built here with `tar` (an OCI image layout, no registry) by the host's OCI
//! runtime, then in a plain root filesystem directory. Skips with a message without root,
//! busybox or a usable runtime.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proffer_agent::fetcher::sha256_of;

/// Stores `path` as a blob of the layout at `dir`; returns its hex digest and size.
fn blob(dir: &Path, path: &Path) -> Result<(String, u64)> {
    let hex = sha256_of(path).map_err(anyhow::Error::msg)?;
    let size = std::fs::metadata(path)?.len();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::rename(path, blobs.join(&hex))?;
    Ok((hex, size))
}

/// Writes `bytes` to a scratch file under `dir` and stores it as a blob.
fn json_blob(dir: &Path, value: &serde_json::Value) -> Result<(String, u64)> {
    let scratch = dir.join("scratch.json");
    std::fs::write(&scratch, serde_json::to_vec(value)?)?;
    blob(dir, &scratch)
}

/// An OCI layout at `dir` with one layer: busybox as `/bin/sh`, `/bin/cat`, and a marker
/// file only the image has.
fn busybox_image(busybox: &Path, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in ["sh", "cat", "test", "pwd"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("etc/image-marker"), "only-in-the-image\n")?;
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout)?;
    let tar = layout.join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .args(["bin", "etc"])
        .status()?;
    anyhow::ensure!(status.success(), "tar failed: {status}");
    let (layer, layer_size) = blob(&layout, &tar)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let (config, config_size) = json_blob(
        &layout,
        &serde_json::json!({
            "architecture": arch, "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]},
        }),
    )?;
    let (manifest, manifest_size) = json_blob(
        &layout,
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer}"), "size": layer_size}],
        }),
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest}"), "size": manifest_size}],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(layout)
}

/// Kills `proffer local` when the test ends, however it ends.
struct Local(Child);

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `proffer run --image IMAGE --tasks N --cmd CMD` against `master`; its output, once it
/// exited successfully.
fn run_in(master: &str, image: &Path, tasks: u32, cmd: &str) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args(["run", "--master", master, "--mem", "128", "--cmd", cmd])
        .args(["--tasks", &tasks.to_string()])
        .arg("--image")
        .arg(image)
        .output()
        .context("proffer run")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "proffer run failed: {text}");
    Ok(text)
}

#[test]
fn proffer_run_image_runs_the_task_in_the_image() -> Result<()> {
    if !proffer_agent::image::fsutil::running_as_root() {
        println!("SKIP: running containers needs root");
        return Ok(());
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        println!("SKIP: busybox is not installed (apt-get install busybox-static)");
        return Ok(());
    };
    if let Err(e) = proffer_agent::oci::detect(None) {
        println!("SKIP: {e}");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let image = busybox_image(busybox, dir.path())?;
    let log = dir.path().join("local.log");
    let _local = Local(
        Command::new(env!("CARGO_BIN_EXE_proffer"))
            .args(["local", "--no-demo", "--port", "0", "--agents", "1"])
            .arg("--work-dir")
            .arg(dir.path().join("local"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let master = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| {
            l.strip_prefix("master listening on ")
                .and_then(|r| r.split_whitespace().next().map(str::to_string))
        }) {
            break addr;
        }
        if Instant::now() > deadline {
            bail!("proffer local did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Only the image has the marker: the task succeeds only inside it. Without a WorkingDir
    // in the image, the task starts in its sandbox.
    let cmd = "test -f /etc/image-marker && test \"$(pwd)\" = /mnt/mesos/sandbox";
    let text = run_in(&master, &image, 2, cmd)?;
    assert!(text.contains("2/2 tasks finished"), "{text}");

    // A plain root filesystem directory is an image too (the layer's content, unpacked).
    let rootfs = dir.path().join("rootfs");
    let cmd = "test -f /etc/image-marker && echo hi > /etc/written";
    let text = run_in(&master, &rootfs, 1, cmd)?;
    assert!(text.contains("1/1 tasks finished"), "{text}");
    assert!(
        !rootfs.join("etc/written").exists(),
        "the task wrote to its own layer, not to the directory"
    );
    Ok(())
}
