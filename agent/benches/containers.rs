//! Container benchmarks (prints figures; `cargo bench -p proffer-agent --bench containers`;
//! needs root, busybox and runc or crun, else says why and exits):
//! 1. image pull into the cache: cold (verify sha256, unpack, assemble the rootfs) and warm
//!    (cached), for a 10 MB and a 100 MB image;
//! 2. task rootfs: overlayfs mount vs a copy of the image rootfs;
//! 3. container launch: `RUNTIME run` of `true` until it exits, and until `state` says
//!    running for `sleep`, p50/p99, beside a plain process (`busybox sh -c true`) in the same run;
//! 4. through the agent (a fake master, the real executor): task launch → TASK_RUNNING for a
//!    task in an image with a warm cache, beside plain tasks in the same run, and the first
//!    launch with a cold cache (a fresh agent) of a 10 MB and a 100 MB image.
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support_images/mod.rs"]
mod support_images;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proffer_agent::image::{ImageStore, fsutil::running_as_root};
use proffer_agent::oci::{self, ContainerSpec, OciRuntime};
use support_images::{Layer, busybox_layer, oci_layout};

const RUNS: usize = 30;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} p50 {:>8.2} ms  p99 {:>8.2} ms  (n={})",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        samples.len()
    );
}

/// Deterministic incompressible bytes (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn image_of_size(dir: &Path, base: &[u8], mb: usize) -> std::path::PathBuf {
    let mut layer = Layer::new();
    layer.dir("data/", 0o755);
    for i in 0..mb {
        layer.file(
            &format!("data/blob{i}"),
            &noise(1 << 20, i as u64 + 1),
            0o644,
        );
    }
    let data = layer.finish();
    let layers = [base.to_vec(), data];
    oci_layout(dir, &layers, &layers)
}

fn main() -> anyhow::Result<()> {
    if !running_as_root() {
        println!("containers bench: SKIP (needs root)");
        return Ok(());
    }
    let Some(base) = busybox_layer() else {
        println!("containers bench: SKIP (busybox is not installed)");
        return Ok(());
    };
    let runtime = match oci::detect(None) {
        Ok(r) => r,
        Err(e) => {
            println!("containers bench: SKIP ({e})");
            return Ok(());
        }
    };
    let tmp = tempfile::tempdir()?;
    let runtime = runtime.with_state_root(tmp.path().join("state"));
    println!(
        "runtime: {} ({})",
        runtime.path.display(),
        runtime.version()?
    );
    let store = ImageStore::new(tmp.path().join("cache"))?;
    for mb in [10, 100] {
        let layout = image_of_size(&tmp.path().join(format!("img{mb}")), &base, mb);
        let t = Instant::now();
        store.pull(&layout)?;
        let cold = t.elapsed();
        let t = Instant::now();
        store.pull(&layout)?;
        println!(
            "pull {mb:>3} MB image: cold {:>8.1} ms, warm {:>6.2} ms",
            ms(cold),
            ms(t.elapsed())
        );
    }
    let small = oci_layout(
        &tmp.path().join("small"),
        std::slice::from_ref(&base),
        std::slice::from_ref(&base),
    );
    let image = store.pull(&small)?;
    let (mut overlay, mut copy) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        for (allow, samples) in [(true, &mut overlay), (false, &mut copy)] {
            let dir = tmp.path().join(format!("rootfs-{allow}-{i}"));
            let t = Instant::now();
            let rootfs = oci::prepare_rootfs(&image.rootfs, &dir, allow)?;
            samples.push(t.elapsed());
            oci::release_rootfs(&rootfs)?;
        }
    }
    report("task rootfs: overlayfs mount", overlay);
    report("task rootfs: copy (busybox image, 1 MB)", copy);
    launches(&runtime, &image.rootfs, tmp.path())?;
    let images = [
        small,
        image_of_size(&tmp.path().join("agent-img10"), &base, 10),
        image_of_size(&tmp.path().join("agent-img100"), &base, 100),
    ];
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(agent_launches(&images))
}

/// Cold launches per image size (each on a fresh agent: an empty image cache).
const COLD_RUNS: usize = 5;

/// A `true` task, in `image` when given.
fn true_task(id: &str, image: Option<&Path>) -> proffer_proto::v1::TaskInfo {
    let mut t = common::shell_task(id, "true");
    t.resources = proffer_proto::Resources::parse("cpus:0.1;mem:128")
        .map(|r| r.to_proto())
        .unwrap_or_default();
    t.container = image.map(|i| proffer_proto::v1::ContainerInfo {
        image: i.display().to_string(),
        image_sha256: String::new(),
    });
    t
}

/// Sends the task and returns how long until its TASK_RUNNING (it must then finish).
async fn launch_to_running(
    h: &mut common::Harness,
    task: proffer_proto::v1::TaskInfo,
) -> anyhow::Result<Duration> {
    use proffer_proto::v1::TaskState;
    let t = Instant::now();
    h.run("fw", task)?;
    let mut running = None;
    loop {
        let u = h.next_update().await?;
        h.ack(&u)?;
        match common::state_of(&u) {
            TaskState::TaskRunning => running = Some(t.elapsed()),
            TaskState::TaskFinished => {
                return running.ok_or_else(|| anyhow::anyhow!("FINISHED without RUNNING"));
            }
            TaskState::TaskStaging | TaskState::TaskStarting => {}
            other => anyhow::bail!("task ended {other:?}: {:?}", u.status),
        }
    }
}

/// Launch → TASK_RUNNING through the agent: `images` are the busybox image, 10 MB, 100 MB.
async fn agent_launches(images: &[std::path::PathBuf; 3]) -> anyhow::Result<()> {
    let mut h = common::Harness::start(|_| {}).await?;
    h.register("agent-1").await?;
    // The first launch pulls the image: the rest find it in the cache.
    launch_to_running(&mut h, true_task("warmup", Some(&images[0]))).await?;
    let (mut warm, mut plain) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        warm.push(launch_to_running(&mut h, true_task(&format!("c{i}"), Some(&images[0]))).await?);
        plain.push(launch_to_running(&mut h, true_task(&format!("p{i}"), None)).await?);
    }
    h.stop().await?;
    report("agent: container task → RUNNING, warm cache", warm);
    report("agent: plain task → RUNNING, same run", plain);
    for (mb, image) in [(10, &images[1]), (100, &images[2])] {
        let mut cold = Vec::new();
        for i in 0..COLD_RUNS {
            let mut h = common::Harness::start(|_| {}).await?;
            h.register("agent-1").await?;
            cold.push(
                launch_to_running(&mut h, true_task(&format!("cold{i}"), Some(image))).await?,
            );
            h.stop().await?;
        }
        report(&format!("agent: first launch, cold cache, {mb} MB"), cold);
    }
    Ok(())
}

fn launches(runtime: &OciRuntime, image_rootfs: &Path, tmp: &Path) -> anyhow::Result<()> {
    let (mut exited, mut running, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..RUNS {
        let dir = tmp.join(format!("task-{i}"));
        let rootfs = oci::prepare_rootfs(image_rootfs, &dir, true)?;
        let mut spec = ContainerSpec {
            rootfs: rootfs.path.clone(),
            args: vec!["true".into()],
            ..Default::default()
        };
        oci::write_bundle(&dir.join("bundle"), &oci::build_spec(&spec)?)?;
        let id = format!("bench-true-{i}");
        let t = Instant::now();
        runtime.run(&dir.join("bundle"), &id, Stdio::null(), Stdio::null())?;
        exited.push(t.elapsed());
        runtime.delete(&id, true)?;

        spec.args = vec!["sleep".into(), "60".into()];
        oci::write_bundle(&dir.join("bundle2"), &oci::build_spec(&spec)?)?;
        let id = format!("bench-sleep-{i}");
        let t = Instant::now();
        let mut child = runtime
            .run_command(&dir.join("bundle2"), &id)?
            .stdout(Stdio::null())
            .spawn()?;
        while !runtime
            .state(&id)
            .is_ok_and(|s| s.status == "running" && s.pid > 0)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        running.push(t.elapsed());
        runtime.kill(&id, "KILL")?;
        child.wait()?;
        runtime.delete(&id, true)?;
        oci::release_rootfs(&rootfs)?;
        fs::remove_dir_all(&dir)?;

        let t = Instant::now();
        Command::new(image_rootfs.join("bin/busybox"))
            .args(["sh", "-c", "true"])
            .status()?;
        plain.push(t.elapsed());
    }
    report("container `true`: run until exit", exited);
    report("container `sleep`: run until state=running", running);
    report("plain process `sh -c true` until exit", plain);
    Ok(())
}
