//! The pure step between an image and a runtime spec: what a task in an image runs (Docker's
//! rules for entrypoint/cmd, env merging, working dir and user).

use std::path::PathBuf;

use super::error::OciError;
use super::spec::{BindMount, ContainerSpec};
use crate::image::{Image, user};

/// What a task asks for, on top of its image's defaults.
#[derive(Debug, Clone, Default)]
pub struct TaskContainer {
    /// Arguments replacing the image's `Cmd` (the entrypoint stays), when given.
    pub args: Option<Vec<String>>,
    /// Replaces the image's entrypoint too (the whole command line), when given.
    pub command: Option<Vec<String>>,
    /// Environment `NAME=value`, overriding the image's variables of the same name.
    pub env: Vec<String>,
    /// User (`uid[:gid]` or names in the image's passwd), overriding the image's `User`.
    pub user: Option<String>,
    /// The task's per-task root filesystem (from [`super::prepare_rootfs`]).
    pub rootfs: PathBuf,
    /// The sandbox directory.
    pub sandbox: Option<PathBuf>,
    /// Volumes.
    pub volumes: Vec<BindMount>,
    /// CPU limit.
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub mem_bytes: Option<u64>,
    /// Cgroup path.
    pub cgroups_path: Option<PathBuf>,
}

/// Merges `NAME=value` lists: later lists override earlier ones, order of first appearance kept.
pub fn merge_env(layers: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in layers {
        for var in *list {
            let name = var.split('=').next().unwrap_or_default();
            match out.iter_mut().find(|v| v.split('=').next() == Some(name)) {
                Some(existing) => existing.clone_from(var),
                None => out.push(var.clone()),
            }
        }
    }
    out
}

/// The container spec for `task` in `image`.
pub fn container_spec(image: &Image, task: &TaskContainer) -> Result<ContainerSpec, OciError> {
    let args = match &task.command {
        Some(cmd) => cmd.clone(),
        None => image.defaults.command(task.args.as_deref()),
    };
    let user = task.user.as_deref().or(image.defaults.user.as_deref());
    let (uid, gid) = user::resolve_in(&image.rootfs, user).map_err(|e| OciError::Invalid {
        what: "user",
        value: user.unwrap_or_default().to_string(),
        reason: e.to_string(),
    })?;
    Ok(ContainerSpec {
        rootfs: task.rootfs.clone(),
        args,
        env: merge_env(&[&image.defaults.env, &task.env]),
        cwd: image.defaults.working_dir.clone(),
        uid,
        gid,
        sandbox: task.sandbox.clone(),
        volumes: task.volumes.clone(),
        hostname: None,
        cgroups_path: task.cgroups_path.clone(),
        cpus: task.cpus,
        mem_bytes: task.mem_bytes,
        share_ipc_uts_of: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageDefaults;

    fn image() -> Image {
        Image {
            id: "x".into(),
            rootfs: PathBuf::from("/nonexistent"),
            layers: Vec::new(),
            defaults: ImageDefaults {
                entrypoint: vec!["/bin/app".into()],
                cmd: vec!["--serve".into()],
                env: vec!["A=1".into(), "B=2".into()],
                working_dir: Some("/srv".into()),
                user: Some("1000:1000".into()),
            },
        }
    }

    #[test]
    fn the_task_overrides_the_image_defaults() -> Result<(), OciError> {
        let task = TaskContainer {
            args: Some(vec!["--check".into()]),
            env: vec!["B=3".into(), "C=4".into()],
            ..Default::default()
        };
        let spec = container_spec(&image(), &task)?;
        assert_eq!(spec.args, vec!["/bin/app", "--check"]);
        assert_eq!(spec.env, vec!["A=1", "B=3", "C=4"]);
        assert_eq!(
            (spec.uid, spec.gid, spec.cwd.as_deref()),
            (1000, 1000, Some("/srv"))
        );
        let spec = container_spec(&image(), &TaskContainer::default())?;
        assert_eq!(spec.args, vec!["/bin/app", "--serve"]);
        let whole = TaskContainer {
            command: Some(vec!["sh".into()]),
            user: Some("0".into()),
            ..Default::default()
        };
        let spec = container_spec(&image(), &whole)?;
        assert_eq!((spec.args, spec.uid), (vec!["sh".to_string()], 0));
        Ok(())
    }

    #[test]
    fn an_unknown_user_name_is_refused() {
        let task = TaskContainer {
            user: Some("ghost".into()),
            ..Default::default()
        };
        let e = container_spec(&image(), &task)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ghost"), "{e}");
    }
}
