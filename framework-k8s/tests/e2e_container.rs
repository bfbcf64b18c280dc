//! A component in a container: the kube-scheduler stand-in runs in an image (a root
//! filesystem directory built here from busybox, the stand-in and the shared libraries the
//! programs link), with its PKI and `k8s-probe` fetched into the sandbox; its readiness check
//! runs inside the container. The rest of the cluster runs on the host. Skips with a message
//! without root, busybox, an OCI runtime or etcd.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::cluster::{K8s, Proffer, ProfferOptions, cluster_yaml, etcd_path, free_block};

/// Copies `file` into `root` at the same absolute path.
fn copy_in(root: &Path, file: &Path) -> Result<()> {
    let rel = file.strip_prefix("/").context("not absolute")?;
    let dest = root.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(file, &dest).with_context(|| format!("copying {}", file.display()))?;
    Ok(())
}

/// The shared libraries `program` loads, by `ldd` (none for a static program).
fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd").arg(program).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// A root filesystem directory with busybox's tools, `program` at `inside`, and the
/// libraries of both and of `also` (a program the task fetches into its sandbox).
fn image(dir: &Path, program: &Path, inside: &str, also: &Path) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    // Relative links (`busybox --install -s` links to the host path of busybox).
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()?;
    if !list.status.success() {
        bail!("busybox --list: {}", list.status);
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = bin.join(applet.trim());
        if !applet.trim().is_empty() && !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    let dest = root.join(inside.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().context("no parent")?)?;
    std::fs::copy(program, &dest)?;
    for p in [Path::new("/bin/busybox"), program, also] {
        for lib in libraries(p)? {
            copy_in(&root, &lib)?;
        }
    }
    std::fs::create_dir_all(root.join("tmp"))?;
    Ok(root)
}

/// Prints the scheduler's sandbox output (why it failed).
fn print_scheduler_output(roots: &[PathBuf]) {
    for r in roots {
        let Ok(fws) = std::fs::read_dir(r.join("sandboxes")) else {
            continue;
        };
        for fw in fws.flatten() {
            for t in std::fs::read_dir(fw.path()).into_iter().flatten().flatten() {
                if t.file_name().to_string_lossy().contains("scheduler") {
                    for f in ["stdout", "stderr"] {
                        let text = std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                        println!("--- {} {f}:\n{text}", t.path().display());
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_runs_in_its_image() -> Result<()> {
    if !proffer_agent::image::fsutil::running_as_root() {
        println!("SKIP the_scheduler_runs_in_its_image: running containers needs root");
        return Ok(());
    }
    if !Path::new("/bin/busybox").exists() {
        println!(
            "SKIP the_scheduler_runs_in_its_image: no /bin/busybox (apt-get install busybox-static)"
        );
        return Ok(());
    }
    if let Err(e) = proffer_agent::oci::detect(None) {
        println!("SKIP the_scheduler_runs_in_its_image: {e}");
        return Ok(());
    }
    let Some(etcd) = etcd_path() else {
        println!(
            "SKIP the_scheduler_runs_in_its_image: no `etcd` on PATH (apt-get install etcd-server)"
        );
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let standin = Path::new(env!("CARGO_BIN_EXE_kube-scheduler-standin"));
    let probe = Path::new(env!("CARGO_BIN_EXE_k8s-probe"));
    let root = image(tmp.path(), standin, "/usr/local/bin/kube-scheduler", probe)?;
    let block = free_block(3600);
    let host_scheduler = format!("kube-scheduler: {{path: {}}}", standin.display());
    let yaml = cluster_yaml(1, 1, block, &etcd);
    anyhow::ensure!(yaml.contains(&host_scheduler), "{yaml}");
    let yaml = yaml.replace(
        &host_scheduler,
        &format!(
            "kube-scheduler: {{image: '{}', path: /usr/local/bin/kube-scheduler}}",
            root.display()
        ),
    );
    let proffer = Proffer::start(&ProfferOptions::new(1, block)).await?;
    let k8s = K8s::install_with(&proffer, yaml, 1, K8s::core(), true).await?;
    let result = async {
        let d = match k8s.wait_deploy(Duration::from_secs(120)).await {
            Ok(d) => d,
            Err(e) => {
                print_scheduler_output(&proffer.roots());
                return Err(e);
            }
        };
        println!(
            "deploy with the scheduler in a container COMPLETE in {:.2?}",
            d.took
        );
        // The scheduler's run directory records its container, in the image.
        let mut records = Vec::new();
        for r in proffer.roots() {
            let tasks = r.join("meta").join("tasks");
            for fw in std::fs::read_dir(&tasks)?.flatten() {
                for t in std::fs::read_dir(fw.path())?.flatten() {
                    let file = t.path().join("container.json");
                    if let Ok(text) = std::fs::read_to_string(&file) {
                        records.push((t.file_name().to_string_lossy().into_owned(), text));
                    }
                }
            }
        }
        assert_eq!(records.len(), 1, "one container: {records:?}");
        let (task, record) = &records[0];
        assert!(task.contains("scheduler"), "{task}");
        assert!(record.contains(&root.display().to_string()), "{record}");
        Ok::<(), anyhow::Error>(())
    }
    .await;
    k8s.finish(proffer, result).await
}
