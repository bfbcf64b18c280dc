//! Generating an OCI runtime spec (`config.json`) for a task with the `oci-spec` crate, and
//! writing the bundle.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use super::error::OciError;

/// Where the task's sandbox appears inside the container (as in Mesos).
pub const SANDBOX_PATH: &str = "/mnt/mesos/sandbox";

/// A host directory bind-mounted into the container (e.g. a persistent volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host path.
    pub host: PathBuf,
    /// The absolute path inside the container.
    pub container: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What the container runs and with what limits.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The root filesystem (absolute host path).
    pub rootfs: PathBuf,
    /// The command and its arguments (non-empty).
    pub args: Vec<String>,
    /// Environment, `NAME=value` (`MESOS_SANDBOX` is added when a sandbox is given).
    pub env: Vec<String>,
    /// Working directory inside the container (`/` when `None`).
    pub cwd: Option<String>,
    /// User id inside the container.
    pub uid: u32,
    /// Group id inside the container.
    pub gid: u32,
    /// The task's sandbox, bind-mounted at [`SANDBOX_PATH`].
    pub sandbox: Option<PathBuf>,
    /// Other bind mounts (volumes).
    pub volumes: Vec<BindMount>,
    /// Hostname (a UTS namespace is always used).
    pub hostname: Option<String>,
    /// The cgroup path (runtime's default when `None`).
    pub cgroups_path: Option<PathBuf>,
    /// CPU limit in cpus (shares = 1024 × cpus, quota = cpus × 100 ms per 100 ms).
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub mem_bytes: Option<u64>,
    /// Join the IPC and UTS namespaces of this host process (a task group's first member's
    /// container init, as a Kubernetes pod's containers share them) instead of new ones.
    pub share_ipc_uts_of: Option<i64>,
}

fn spec_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> OciError {
    move |e| OciError::Spec {
        what,
        reason: e.to_string(),
    }
}

fn invalid(what: &'static str, value: impl ToString, reason: &str) -> OciError {
    OciError::Invalid {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn bind(host: &Path, container: &Path, read_only: bool) -> Result<Mount, OciError> {
    if !container.is_absolute()
        || container
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(invalid(
            "container path",
            container.display(),
            "must be absolute without `..`",
        ));
    }
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if read_only { "ro" } else { "rw" }.to_string());
    MountBuilder::default()
        .destination(container)
        .typ("bind")
        .source(host)
        .options(options)
        .build()
        .map_err(spec_err("mount"))
}

/// Builds the runtime spec: the task's process, user, env and cwd; the rootfs; the sandbox and
/// volumes bind-mounted; PID, mount, UTS and IPC namespaces and the host's network; the cgroup
/// path and cpu/memory limits.
pub fn build_spec(task: &ContainerSpec) -> Result<Spec, OciError> {
    if task.args.is_empty() {
        return Err(invalid(
            "command",
            "",
            "no command: the task and the image give none",
        ));
    }
    if !task.rootfs.is_absolute() {
        return Err(invalid(
            "rootfs",
            task.rootfs.display(),
            "must be an absolute path",
        ));
    }
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    env.extend(task.env.iter().cloned());
    let mut mounts = oci_spec::runtime::get_default_mounts();
    if let Some(sandbox) = &task.sandbox {
        env.push(format!("MESOS_SANDBOX={SANDBOX_PATH}"));
        mounts.push(bind(sandbox, Path::new(SANDBOX_PATH), false)?);
    }
    for v in &task.volumes {
        mounts.push(bind(&v.host, &v.container, v.read_only)?);
    }
    let user = UserBuilder::default()
        .uid(task.uid)
        .gid(task.gid)
        .build()
        .map_err(spec_err("user"))?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(task.args.clone())
        .env(env)
        .cwd(task.cwd.clone().unwrap_or_else(|| "/".to_string()))
        .user(user)
        .no_new_privileges(true)
        .build()
        .map_err(spec_err("process"))?;
    let root = RootBuilder::default()
        .path(&task.rootfs)
        .readonly(false)
        .build()
        .map_err(spec_err("root"))?;
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(cpus) = task.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            return Err(invalid("cpus", cpus, "must be a positive number"));
        }
        let cpu = LinuxCpuBuilder::default()
            .shares((cpus * 1024.0).round().max(2.0) as u64)
            .quota((cpus * 100_000.0).round().max(1000.0) as i64)
            .period(100_000u64)
            .build()
            .map_err(spec_err("cpu"))?;
        resources = resources.cpu(cpu);
    }
    if let Some(mem) = task.mem_bytes {
        let limit = i64::try_from(mem).map_err(|_| invalid("memory limit", mem, "too large"))?;
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(spec_err("memory"))?,
        );
    }
    let mut spec = Spec::default();
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_hostname(Some(
        task.hostname
            .clone()
            .unwrap_or_else(|| "proffer".to_string()),
    ));
    let mut linux = spec.linux().clone().unwrap_or_default();
    if task.share_ipc_uts_of.is_some_and(|pid| pid <= 0) {
        return Err(invalid(
            "namespace holder",
            task.share_ipc_uts_of.unwrap_or_default(),
            "must be a process id",
        ));
    }
    let namespaces = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| ns.typ() != LinuxNamespaceType::Network)
        .map(|mut ns| {
            let name = match ns.typ() {
                LinuxNamespaceType::Ipc => "ipc",
                LinuxNamespaceType::Uts => "uts",
                _ => return ns,
            };
            if let Some(pid) = task.share_ipc_uts_of {
                ns.set_path(Some(PathBuf::from(format!("/proc/{pid}/ns/{name}"))));
            }
            ns
        })
        .collect();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources.build().map_err(spec_err("resources"))?));
    linux.set_cgroups_path(task.cgroups_path.clone());
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Writes `spec` as `config.json` in the bundle directory `bundle` (created if missing).
pub fn write_bundle(bundle: &Path, spec: &Spec) -> Result<PathBuf, OciError> {
    fs::create_dir_all(bundle).map_err(OciError::io("creating bundle", bundle))?;
    let path = bundle.join("config.json");
    spec.save(&path).map_err(spec_err("config.json"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> ContainerSpec {
        ContainerSpec {
            rootfs: PathBuf::from("/cache/rootfs"),
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["A=1".into()],
            sandbox: Some(PathBuf::from("/work/sandbox")),
            volumes: vec![BindMount {
                host: PathBuf::from("/vol"),
                container: PathBuf::from("/data"),
                read_only: false,
            }],
            cpus: Some(0.5),
            mem_bytes: Some(64 << 20),
            uid: 1000,
            gid: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn the_spec_carries_the_task() -> Result<(), OciError> {
        let spec = build_spec(&task())?;
        let json = serde_json::to_value(&spec).map_err(|e| invalid("json", e, "encode"))?;
        assert_eq!(json["root"]["path"], "/cache/rootfs");
        assert_eq!(json["process"]["user"]["uid"], 1000);
        let env = json["process"]["env"].to_string();
        assert!(env.contains("MESOS_SANDBOX=/mnt/mesos/sandbox") && env.contains("A=1"));
        let mounts = json["mounts"].to_string();
        assert!(
            mounts.contains("/mnt/mesos/sandbox")
                && mounts.contains("/work/sandbox")
                && mounts.contains("/data")
        );
        let ns = json["linux"]["namespaces"].to_string();
        assert!(
            ns.contains("pid") && ns.contains("mount") && ns.contains("uts") && ns.contains("ipc")
        );
        assert!(!ns.contains("network"), "host networking: {ns}");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        Ok(())
    }

    #[test]
    fn a_group_member_joins_the_holders_ipc_and_uts_namespaces() -> Result<(), OciError> {
        let mut t = task();
        t.share_ipc_uts_of = Some(4242);
        let json =
            serde_json::to_value(build_spec(&t)?).map_err(|e| invalid("json", e, "encode"))?;
        let namespaces = json["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let path = |typ: &str| {
            namespaces
                .iter()
                .find(|ns| ns["type"] == typ)
                .map(|ns| ns["path"].clone())
        };
        assert_eq!(path("ipc"), Some(serde_json::json!("/proc/4242/ns/ipc")));
        assert_eq!(path("uts"), Some(serde_json::json!("/proc/4242/ns/uts")));
        assert_eq!(
            path("pid"),
            Some(serde_json::Value::Null),
            "its own PID namespace"
        );
        assert_eq!(path("mount"), Some(serde_json::Value::Null));
        t.share_ipc_uts_of = Some(0);
        assert!(build_spec(&t).is_err_and(|e| e.to_string().contains("process id")));
        Ok(())
    }

    #[test]
    fn bad_tasks_are_refused_with_a_reason() {
        let mut t = task();
        t.args.clear();
        assert!(build_spec(&t).is_err_and(|e| e.to_string().contains("no command")));
        let mut t = task();
        t.volumes[0].container = PathBuf::from("../etc");
        assert!(build_spec(&t).is_err_and(|e| e.to_string().contains("../etc")));
        let mut t = task();
        t.cpus = Some(f64::NAN);
        assert!(build_spec(&t).is_err());
    }
}
