//! Tasks in containers (a `TaskInfo` with `container.image`): the executor pulls the image into
//! the agent's shared cache (`<work_dir>/images`, one pull at a time across processes by a file
//! lock), makes the task's writable rootfs under its run directory (overlayfs, else a copy),
//! writes the OCI bundle and runs the runtime's foreground `run` as the task's process, so kill,
//! exit status, the event log and recovery after an agent restart work as for plain tasks.
//!
//! The runtime's process is started inside the task's cgroups; the runtime nests the
//! container's cgroup below its own (a relative cgroup path), so the task's cgroup limits hold
//! for the container and its usage counts there. When the task ends: `RUNTIME delete --force`
//! and the rootfs is unmounted ([`Launch::finish`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proffer_proto::v1::{CommandInfo, ContainerInfo, TaskInfo, TaskState};
use serde::{Deserialize, Serialize};

use super::protocol::ExecutorSpec;
use crate::checks::{CheckConfig, CheckKind};
use crate::fetcher;
use crate::image::{Image, ImageStore};
use crate::oci::{self, BindMount, OciRuntime, SANDBOX_PATH, TaskContainer, TaskRootfs};
use crate::process::{self, Termination};

/// What a container task's run directory records about its container (`container.json`):
/// the agent's `/state` shows it.
pub const CONTAINER_FILE: &str = "container.json";

/// Where the directory a task group's members share (`PROFFER_GROUP_SANDBOX`) appears in
/// their containers.
pub const GROUP_PATH: &str = "/mnt/proffer/group";

/// Environment variable naming the OCI runtime binary (else `--oci-runtime`, else detection).
pub const RUNTIME_ENV: &str = "PROFFER_OCI_RUNTIME";

/// Environment variable bounding the image cache in bytes (default
/// [`DEFAULT_IMAGE_CACHE_BYTES`]): after each pull, least recently used images that no live
/// container uses are evicted down to it.
pub const IMAGE_CACHE_ENV: &str = "PROFFER_IMAGE_CACHE_BYTES";

/// The image cache's default bound: 10 GiB.
pub const DEFAULT_IMAGE_CACHE_BYTES: u64 = 10 << 30;

static RUNTIME_OVERRIDE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every container of this executor process use the runtime at `path` (the executor's
/// `--oci-runtime`). The first call wins.
pub fn set_runtime_override(path: PathBuf) {
    let _ = RUNTIME_OVERRIDE.set(path);
}

/// The runtime binary asked for: `--oci-runtime`, else `$PROFFER_OCI_RUNTIME`, else `None`
/// (auto-detect).
fn runtime_override() -> Option<PathBuf> {
    RUNTIME_OVERRIDE
        .get()
        .cloned()
        .or_else(|| std::env::var_os(RUNTIME_ENV).map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
}

/// The container of a task, as recorded in `container.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The image URI the task named.
    pub image: String,
    /// The image id (manifest digest, or config digest for `docker save`), `sha256:<hex>`;
    /// `dir:<path>` for a plain root filesystem directory ([`Image::digest`]).
    pub digest: String,
    /// The runtime binary.
    pub runtime: String,
    /// `overlay` or `copy`.
    pub rootfs: String,
    /// The runtime's container id.
    pub container_id: String,
}

/// Reads a run directory's `container.json`, if the task ran in a container.
pub fn read_record(run_dir: &Path) -> Option<ContainerRecord> {
    let bytes = std::fs::read(run_dir.join(CONTAINER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A prepared container: what [`Launch::finish`] cleans up.
#[derive(Debug)]
pub struct Launch {
    runtime: OciRuntime,
    id: String,
    rootfs: TaskRootfs,
    /// Its task group's shared namespaces, left when the container is cleaned up.
    group: Option<super::group_ns::Member>,
}

impl Launch {
    /// Sends `signal` (`TERM`, `KILL`) to the container's init through the runtime.
    pub fn signal(&self, signal: &str) {
        let _ = self.runtime.kill(&self.id, signal);
    }

    /// The check run inside the container: a command check becomes `RUNTIME exec ID /bin/sh
    /// -c COMMAND` (the container's env, user and working dir); HTTP and TCP checks reach the
    /// task on the host's network as they are.
    pub fn in_container(&self, mut cfg: CheckConfig) -> CheckConfig {
        if let CheckKind::Command(cmd) = &cfg.kind {
            let mut line = vec![quote(&self.runtime.path.display().to_string())];
            if let Some(root) = &self.runtime.state_root {
                line.extend(["--root".to_string(), quote(&root.display().to_string())]);
            }
            line.extend([
                "exec".to_string(),
                quote(&self.id),
                "/bin/sh".to_string(),
                "-c".to_string(),
                quote(cmd),
            ]);
            cfg.kind = CheckKind::Command(format!("exec {}", line.join(" ")));
        }
        cfg
    }

    /// Deletes the container (forcibly: nothing of it survives) and releases its rootfs.
    pub fn finish(&self) {
        if let Err(e) = self.runtime.delete(&self.id, true) {
            tracing::debug!(container_id = %self.id, error = %e, "runtime delete");
        }
        if let Err(e) = oci::release_rootfs(&self.rootfs) {
            tracing::warn!(container_id = %self.id, error = %e, "releasing the rootfs");
        }
        if let Some(member) = &self.group {
            super::group_ns::leave(member);
        }
    }
}

/// `s` single-quoted for `/bin/sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn launch_failed(message: String) -> Termination {
    Termination {
        state: TaskState::TaskFailed,
        reason: "REASON_CONTAINER_LAUNCH_FAILED",
        message,
        exit_code: None,
    }
}

/// The agent's work directory, from a run directory (`<work>/meta/tasks/<fw>/<task>`).
fn work_dir_of(run_dir: &Path) -> Option<&Path> {
    let tasks = run_dir.parent()?.parent()?;
    let meta = tasks.parent()?;
    (tasks.file_name()? == "tasks" && meta.file_name()? == "meta").then(|| meta.parent())?
}

/// Where the image is on this host: a local path (plain, or `file://`), or an `http(s)://` URL
/// downloaded by the fetcher into `download_dir` (its sha256 checked when given).
fn local_image(
    info: &ContainerInfo,
    download_dir: &Path,
    spec: &ExecutorSpec,
    log: &mut dyn Write,
) -> Result<PathBuf, String> {
    let uri = info.image.trim();
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let u = proffer_proto::v1::Uri {
            value: uri.to_string(),
            cache: true,
            sha256: info.image_sha256.clone(),
            ..Default::default()
        };
        let name = fetcher::output_name(&u)?;
        let cache = spec.fetch_cache.as_ref().map(|(dir, max)| fetcher::Cache {
            dir: dir.clone(),
            max_bytes: *max,
        });
        fetcher::fetch_all(std::slice::from_ref(&u), download_dir, cache.as_ref(), log)?;
        return Ok(download_dir.join(name));
    }
    let path = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
    if !path.is_absolute() {
        return Err(format!(
            "image {uri:?}: expected an absolute path, file://PATH or http(s)://URL"
        ));
    }
    if !info.image_sha256.is_empty() && path.is_file() {
        let got = fetcher::sha256_of(&path)?;
        if !got.eq_ignore_ascii_case(info.image_sha256.trim()) {
            return Err(format!(
                "image {uri}: sha256 mismatch: expected {}, got {got}",
                info.image_sha256.trim()
            ));
        }
    }
    Ok(path)
}

/// The image cache's bound (`$PROFFER_IMAGE_CACHE_BYTES`, else the default).
fn image_cache_limit() -> u64 {
    std::env::var(IMAGE_CACHE_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_IMAGE_CACHE_BYTES)
}

/// The image ids of the agent's containers that have not ended: run directories
/// (`<work>/meta/tasks/<fw>/<task>`) with a `container.json` and no `exited` event.
fn images_in_use(work_dir: &Path) -> Vec<String> {
    let tasks = work_dir.join("meta").join("tasks");
    let run_dirs = std::fs::read_dir(&tasks)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|fw| std::fs::read_dir(fw.path()).into_iter().flatten().flatten())
        .map(|t| t.path());
    let mut ids = Vec::new();
    for dir in run_dirs {
        let Some(record) = read_record(&dir) else {
            continue;
        };
        let ended = super::protocol::read_events(&dir, 0).is_ok_and(|events| {
            events
                .iter()
                .any(|(e, _)| matches!(e, Ok(super::protocol::ExecutorEvent::Exited { .. })))
        });
        if !ended {
            ids.push(record.digest.trim_start_matches("sha256:").to_string());
        }
    }
    ids
}

/// Pulls `source` into the store at `<work>/images`, holding `<work>/images.lock` (one pull
/// at a time on the agent: the store's staging directory is shared), then evicts what no
/// live container uses down to the cache's bound. The lock is returned: hold it until the
/// task's `container.json` names the image, so no other pull's eviction takes it meanwhile.
fn pull_locked(
    work_dir: &Path,
    source: &Path,
) -> Result<(Image, nix::fcntl::Flock<std::fs::File>), String> {
    use nix::fcntl::{Flock, FlockArg};
    let root = work_dir.join("images");
    let parent = root.parent().unwrap_or(&root);
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let lock_path = root.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking {}: {e}", lock_path.display()))?;
    let store = ImageStore::new(&root).map_err(|e| e.to_string())?;
    let image = store.pull(source).map_err(|e| e.to_string())?;
    let limit = image_cache_limit();
    // Finding the images in use reads every run directory: only when over the bound.
    if store.total_size().is_ok_and(|size| size > limit) {
        let mut in_use = images_in_use(work_dir);
        in_use.push(image.id.clone());
        if let Err(e) = store.gc(limit, &in_use) {
            tracing::warn!(error = %e, "image cache collection");
        }
    }
    Ok((image, lock))
}

/// The image's command, replaced or completed by the task's (Docker's and Mesos's rules):
/// `shell` → `/bin/sh -c VALUE` inside the image; a `value` → the whole command line
/// (`value` then `arguments[1..]`, argv[0] included as in Mesos); only `arguments` → they
/// replace the image's `Cmd`; nothing → the image's entrypoint and cmd.
fn task_command(c: Option<&CommandInfo>) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let Some(c) = c else { return (None, None) };
    if c.shell && !c.value.is_empty() {
        return (
            Some(vec!["/bin/sh".into(), "-c".into(), c.value.clone()]),
            None,
        );
    }
    if !c.value.is_empty() {
        let cmd = std::iter::once(c.value.clone())
            .chain(c.arguments.iter().skip(1).cloned())
            .collect();
        return (Some(cmd), None);
    }
    if c.arguments.is_empty() {
        (None, None)
    } else {
        (None, Some(c.arguments.clone()))
    }
}

/// The task's environment inside the container: its variables with the sandbox paths
/// replaced by [`SANDBOX_PATH`] and [`GROUP_PATH`] (`MESOS_SANDBOX` is set by the spec).
fn container_env(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| k != "MESOS_SANDBOX")
        .map(|(k, v)| match k.as_str() {
            "PROFFER_SANDBOX" => format!("{k}={SANDBOX_PATH}"),
            "PROFFER_GROUP_SANDBOX" => format!("{k}={GROUP_PATH}"),
            _ => format!("{k}={v}"),
        })
        .collect()
}

/// Without a `WorkingDir` in the image, the task starts in its sandbox (as plain tasks do,
/// and as Mesos runs tasks in images).
fn sandbox_cwd_by_default(c: &mut oci::ContainerSpec) {
    if c.cwd.as_deref().is_none_or(str::is_empty) {
        c.cwd = Some(SANDBOX_PATH.to_string());
    }
}

/// Persistent volumes, bind-mounted at `<sandbox>/<container_path>` inside the container (the
/// agent links them into the sandbox on the host), and a task group's shared directory at
/// [`GROUP_PATH`].
fn volumes(task: &TaskInfo, work_dir: &Path, env: &[(String, String)]) -> Vec<BindMount> {
    let group = env
        .iter()
        .find(|(k, _)| k == "PROFFER_GROUP_SANDBOX")
        .map(|(_, dir)| BindMount {
            host: PathBuf::from(dir),
            container: PathBuf::from(GROUP_PATH),
            read_only: false,
        });
    task.resources
        .iter()
        .filter_map(|r| r.volume.as_ref())
        .map(|v| BindMount {
            host: work_dir.join("volumes").join(&v.id),
            container: Path::new(SANDBOX_PATH).join(&v.container_path),
            read_only: false,
        })
        .chain(group)
        .collect()
}

/// Prepares the container of `task` (image, rootfs, bundle) and returns the command running
/// it in the foreground; on failure, the task's terminal state
/// (`REASON_CONTAINER_LAUNCH_FAILED` with what was wrong).
pub fn prepare(
    spec: &ExecutorSpec,
    task: &TaskInfo,
    info: &ContainerInfo,
    run_dir: &Path,
    wait_for_go: bool,
) -> Result<(tokio::process::Command, Launch), Termination> {
    let fail = |what: &str, e: String| launch_failed(format!("container: {what}: {e}"));
    let work_dir = work_dir_of(run_dir).ok_or_else(|| {
        fail(
            "run directory",
            format!("{} is not under <work>/meta/tasks", run_dir.display()),
        )
    })?;
    let runtime = oci::detect(runtime_override().as_deref())
        .map_err(|e| fail("runtime", e.to_string()))?
        .with_state_root(work_dir.join("oci"));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.sandbox.join("stderr"))
        .map_err(|e| fail("opening sandbox stderr", e.to_string()))?;
    let source =
        local_image(info, &run_dir.join("image"), spec, &mut log).map_err(|e| fail("image", e))?;
    let (image, pull_lock) =
        pull_locked(work_dir, &source).map_err(|e| fail(&format!("image {}", info.image), e))?;
    let wanted = info.image_sha256.trim();
    if !wanted.is_empty() && image.is_plain_dir() {
        return Err(fail(
            &format!("image {}", info.image),
            format!("a root filesystem directory has no digest to check against sha256 {wanted}"),
        ));
    }
    if !wanted.is_empty() && source.is_dir() && !image.id.eq_ignore_ascii_case(wanted) {
        return Err(fail(
            &format!("image {}", info.image),
            format!(
                "sha256 mismatch: expected {wanted}, the image id is {}",
                image.id
            ),
        ));
    }
    let rootfs = oci::prepare_rootfs(&image.rootfs, run_dir, true)
        .map_err(|e| fail("rootfs", e.to_string()))?;
    let (command, args) = task_command(task.command.as_ref());
    let want = TaskContainer {
        args,
        command,
        env: container_env(&spec.env),
        user: spec.user.clone(),
        rootfs: rootfs.path.clone(),
        sandbox: Some(spec.sandbox.clone()),
        volumes: volumes(task, work_dir, &spec.env),
        ..Default::default()
    };
    let mut launch = Launch {
        runtime,
        id: spec.container_id.clone(),
        rootfs,
        group: None,
    };
    let share_ipc_uts_of = match group_namespaces(spec, work_dir) {
        Ok(joined) => joined.map(|(pid, member)| {
            launch.group = Some(member);
            pid
        }),
        Err(e) => {
            launch.finish();
            return Err(fail("task group namespaces", e));
        }
    };
    let bundle = match configure(
        spec,
        info,
        &image,
        &want,
        &launch,
        run_dir,
        share_ipc_uts_of,
    ) {
        Ok(b) => b,
        Err((what, e)) => {
            launch.finish();
            return Err(fail(what, e));
        }
    };
    drop(pull_lock);
    match runtime_command(&launch, &bundle, &spec.sandbox, wait_for_go) {
        Ok(cmd) => Ok((cmd, launch)),
        Err(e) => {
            launch.finish();
            Err(fail("runtime command", e))
        }
    }
}

/// Writes the bundle (the runtime spec of `want` in `image`) and `container.json`, and gives
/// the sandbox and volumes to the container's user; returns the bundle directory, or what
/// failed and why.
fn configure(
    spec: &ExecutorSpec,
    info: &ContainerInfo,
    image: &Image,
    want: &TaskContainer,
    launch: &Launch,
    run_dir: &Path,
    share_ipc_uts_of: Option<i64>,
) -> Result<PathBuf, (&'static str, String)> {
    let bundle = run_dir.join("bundle");
    let mut cspec =
        oci::container_spec(image, want).map_err(|e| ("runtime spec", e.to_string()))?;
    sandbox_cwd_by_default(&mut cspec);
    cspec.share_ipc_uts_of = share_ipc_uts_of;
    oci::build_spec(&cspec)
        .and_then(|built| oci::write_bundle(&bundle, &built))
        .map_err(|e| ("runtime spec", e.to_string()))?;
    if cspec.uid != 0 {
        // The sandbox and volumes belong to the container's user (as Mesos does), so it can
        // write them.
        let dirs = std::iter::once(spec.sandbox.as_path())
            .chain(cspec.volumes.iter().map(|v| v.host.as_path()));
        for dir in dirs {
            let _ = std::os::unix::fs::chown(dir, Some(cspec.uid), Some(cspec.gid));
        }
    }
    let record = ContainerRecord {
        image: info.image.clone(),
        digest: image.digest(),
        runtime: launch.runtime.path.display().to_string(),
        rootfs: format!("{:?}", launch.rootfs.kind).to_lowercase(),
        container_id: launch.id.clone(),
    };
    serde_json::to_vec_pretty(&record)
        .map_err(std::io::Error::other)
        .and_then(|b| super::protocol::write_replace(&run_dir.join(CONTAINER_FILE), &b))
        .map_err(|e| ("recording the container", e.to_string()))?;
    Ok(bundle)
}

/// For a member of a task group: the holder process whose IPC and UTS namespaces it joins
/// and its membership (`None` for a task outside a group; [`super::group_ns`]).
fn group_namespaces(
    spec: &ExecutorSpec,
    work_dir: &Path,
) -> Result<Option<(i64, super::group_ns::Member)>, String> {
    let Some((_, group_dir)) = spec.env.iter().find(|(k, _)| k == "PROFFER_GROUP_SANDBOX") else {
        return Ok(None);
    };
    super::group_ns::join(work_dir, Path::new(group_dir), &spec.container_id).map(Some)
}

/// `RUNTIME --root STATE run --bundle BUNDLE ID`, built like a task's command (stdout and
/// stderr to the sandbox, own process group, waiting for its cgroups when needed).
fn runtime_command(
    launch: &Launch,
    bundle: &Path,
    sandbox: &Path,
    wait_for_go: bool,
) -> Result<tokio::process::Command, String> {
    let program = launch.runtime.path.display().to_string();
    let mut arguments = vec![program.clone()];
    if let Some(root) = &launch.runtime.state_root {
        arguments.extend(["--root".to_string(), root.display().to_string()]);
    }
    arguments.extend([
        "run".to_string(),
        "--bundle".to_string(),
        bundle.display().to_string(),
        launch.id.clone(),
    ]);
    let runner = TaskInfo {
        command: Some(CommandInfo {
            value: program,
            shell: false,
            arguments,
            ..Default::default()
        }),
        ..Default::default()
    };
    process::build_command(&runner, &[], sandbox, wait_for_go, None, false, None)
        .map_err(|e| e.to_string())
}

/// Whether the container was OOM-killed: the runtime exited 137 (SIGKILL) without a kill
/// request while the task's memory cgroup hit its limit (v1: `memory.failcnt`, or the peak
/// usage at the limit; the kernel counts the kill in the container's own cgroup, which the
/// runtime removes; on v2 the hierarchical `memory.events` is read by
/// [`crate::cgroups::Cgroup::finish`]).
pub fn oom_killed(cgroup: Option<&crate::cgroups::CgroupSpec>, exit_code: Option<i32>) -> bool {
    let Some(dir) = cgroup.and_then(|c| c.dir_of("memory")) else {
        return false;
    };
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let at_limit = match (
        read("memory.max_usage_in_bytes"),
        read("memory.limit_in_bytes"),
    ) {
        (Some(peak), Some(limit)) => peak >= limit,
        _ => false,
    };
    exit_code == Some(137) && (read("memory.failcnt").is_some_and(|n| n > 0) || at_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_checks_run_inside_the_container() {
        let launch = Launch {
            runtime: OciRuntime {
                path: PathBuf::from("/usr/sbin/runc"),
                kind: oci::RuntimeKind::Runc,
                state_root: Some(PathBuf::from("/w/oci")),
            },
            id: "c1".into(),
            rootfs: TaskRootfs {
                path: PathBuf::from("/w/r"),
                kind: oci::RootfsKind::Copy,
            },
            group: None,
        };
        let cfg = CheckConfig {
            kind: CheckKind::Command("test -f '/x'".into()),
            delay: std::time::Duration::ZERO,
            interval: std::time::Duration::ZERO,
            timeout: std::time::Duration::ZERO,
            consecutive_failures: 1,
            grace: std::time::Duration::ZERO,
        };
        let inside = launch.in_container(cfg.clone());
        assert_eq!(
            inside.kind,
            CheckKind::Command(
                r"exec '/usr/sbin/runc' --root '/w/oci' exec 'c1' /bin/sh -c 'test -f '\''/x'\'''"
                    .into()
            )
        );
        let tcp = CheckConfig {
            kind: CheckKind::Tcp(80),
            ..cfg
        };
        assert_eq!(launch.in_container(tcp.clone()), tcp);
    }

    #[test]
    fn the_work_dir_comes_from_the_run_dir() {
        assert_eq!(
            work_dir_of(Path::new("/w/meta/tasks/fw/t")),
            Some(Path::new("/w"))
        );
        assert_eq!(work_dir_of(Path::new("/w/other/tasks/fw/t")), None);
        assert_eq!(work_dir_of(Path::new("/t")), None);
    }

    #[test]
    fn task_commands_replace_or_complete_the_image_command() {
        let c = |value: &str, shell: bool, args: &[&str]| CommandInfo {
            value: value.into(),
            shell,
            arguments: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            task_command(Some(&c("echo $A", true, &[]))),
            (s(&["/bin/sh", "-c", "echo $A"]), None)
        );
        assert_eq!(
            task_command(Some(&c("/bin/ls", false, &["ls", "-l"]))),
            (s(&["/bin/ls", "-l"]), None)
        );
        assert_eq!(
            task_command(Some(&c("", false, &["--serve"]))),
            (None, s(&["--serve"]))
        );
        assert_eq!(task_command(Some(&c("", true, &[]))), (None, None));
        assert_eq!(task_command(None), (None, None));
    }

    #[test]
    fn the_sandbox_is_the_working_dir_unless_the_image_names_one() {
        let mut c = oci::ContainerSpec::default();
        sandbox_cwd_by_default(&mut c);
        assert_eq!(c.cwd.as_deref(), Some(SANDBOX_PATH));
        c.cwd = Some("/srv".into());
        sandbox_cwd_by_default(&mut c);
        assert_eq!(c.cwd.as_deref(), Some("/srv"));
    }

    #[test]
    fn sandbox_paths_are_the_container_s() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("MESOS_SANDBOX".to_string(), "/host/s".to_string()),
            ("PROFFER_SANDBOX".to_string(), "/host/s".to_string()),
            ("PROFFER_GROUP_SANDBOX".to_string(), "/host/g".to_string()),
        ];
        assert_eq!(
            container_env(&env),
            vec![
                "A=1".to_string(),
                format!("PROFFER_SANDBOX={SANDBOX_PATH}"),
                format!("PROFFER_GROUP_SANDBOX={GROUP_PATH}")
            ]
        );
    }

    #[test]
    fn relative_image_paths_are_refused() {
        let spec_dir = std::env::temp_dir();
        let spec = ExecutorSpec {
            framework_id: "f".into(),
            agent_id: "a".into(),
            container_id: "c".into(),
            sandbox: spec_dir.clone(),
            env: Vec::new(),
            default_kill_grace_ms: 0,
            cgroup: None,
            fetch_cache: None,
            user: None,
            pid_namespace: false,
        };
        let info = ContainerInfo {
            image: "images/app.tar".into(),
            image_sha256: String::new(),
        };
        let mut sink = Vec::new();
        let e = local_image(&info, &spec_dir, &spec, &mut sink).err();
        assert!(e.is_some_and(|e| e.contains("absolute path")));
    }
}
