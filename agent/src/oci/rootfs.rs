//! A task's writable root filesystem over a read-only image rootfs: an overlayfs mount (lower =
//! the image, upper and work dirs in the task's directory) where mounting one works, else a
//! copy of the image rootfs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::OciError;
use crate::image::fsutil;

/// How a task's rootfs was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// An overlayfs mount; must be unmounted by [`release_rootfs`].
    Overlay,
    /// A private copy of the image rootfs.
    Copy,
}

/// A task's root filesystem.
#[derive(Debug, Clone)]
pub struct TaskRootfs {
    /// The directory to give the runtime as the rootfs (`<task_dir>/rootfs`).
    pub path: PathBuf,
    /// How it was made.
    pub kind: RootfsKind,
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), OciError> {
    let joined = [lower, upper, work]
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    if joined.iter().any(|p| p.contains([',', ':'])) {
        return Err(OciError::Invalid {
            what: "overlay path",
            value: joined.join(" "),
            reason: "contains `,` or `:`".into(),
        });
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        joined[0], joined[1], joined[2]
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(target)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| OciError::Spawn {
            runtime: PathBuf::from("mount"),
            args: options.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OciError::Failed {
            command: format!("mount -t overlay -o {options} {}", target.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn mkdir(p: &Path) -> Result<(), OciError> {
    std::fs::create_dir_all(p).map_err(OciError::io("creating directory", p))
}

/// Makes `<task_dir>/rootfs`: an overlay over `image_rootfs` when `allow_overlay` and mounting
/// works, else a copy of it.
pub fn prepare_rootfs(
    image_rootfs: &Path,
    task_dir: &Path,
    allow_overlay: bool,
) -> Result<TaskRootfs, OciError> {
    let path = task_dir.join("rootfs");
    mkdir(&path)?;
    if allow_overlay {
        let (upper, work) = (task_dir.join("upper"), task_dir.join("work"));
        mkdir(&upper)?;
        mkdir(&work)?;
        match mount_overlay(image_rootfs, &upper, &work, &path) {
            Ok(()) => {
                return Ok(TaskRootfs {
                    path,
                    kind: RootfsKind::Overlay,
                });
            }
            Err(e) => tracing::info!(error = %e, "overlayfs unavailable; copying the image rootfs"),
        }
    }
    fsutil::copy_tree(image_rootfs, &path).map_err(|e| OciError::Spec {
        what: "rootfs copy",
        reason: e.to_string(),
    })?;
    Ok(TaskRootfs {
        path,
        kind: RootfsKind::Copy,
    })
}

/// Unmounts an overlay rootfs (a copy is left for the sandbox GC).
pub fn release_rootfs(rootfs: &TaskRootfs) -> Result<(), OciError> {
    if rootfs.kind != RootfsKind::Overlay {
        return Ok(());
    }
    let out = Command::new("umount")
        .arg(&rootfs.path)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| OciError::Spawn {
            runtime: PathBuf::from("umount"),
            args: rootfs.path.display().to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OciError::Failed {
            command: format!("umount {}", rootfs.path.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
