//! Finding and driving an OCI runtime binary (`crun` or `runc`): run, state, kill, delete.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde::Deserialize;

use super::error::OciError;

/// Which runtime a binary is (they take the same command line for what is used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `crun` (containers/crun).
    Crun,
    /// `runc` (opencontainers/runc).
    Runc,
}

/// An OCI runtime binary and the state directory it keeps its containers in.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    /// The binary.
    pub path: PathBuf,
    /// Which runtime it is.
    pub kind: RuntimeKind,
    /// The `--root` state directory (the runtime's default when `None`).
    pub state_root: Option<PathBuf>,
}

/// What `RUNTIME state ID` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    /// `creating`, `created`, `running` or `stopped`.
    pub status: String,
    /// The container's init process on the host (0 when stopped).
    #[serde(default)]
    pub pid: i64,
}

/// Names the runtimes are looked up by on `PATH`, in order of preference.
const NAMES: [&str; 2] = ["crun", "runc"];

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn kind_of(path: &Path) -> RuntimeKind {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains("crun") {
        RuntimeKind::Crun
    } else {
        RuntimeKind::Runc
    }
}

/// Why `kind` cannot run containers on this host, if it cannot: `crun` refuses a hybrid
/// cgroup layout (v1 controllers plus a v2 hierarchy that has controllers of its own).
pub fn host_problem(kind: RuntimeKind) -> Option<String> {
    if kind != RuntimeKind::Crun {
        return None;
    }
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    let controllers = std::fs::read_to_string(unified).ok()?;
    (!controllers.trim().is_empty()).then(|| {
        format!(
            "crun does not support hybrid cgroups with controllers ({}) in the v2 hierarchy; use runc",
            controllers.trim()
        )
    })
}

/// Every OCI runtime on `PATH` (`crun` first, then `runc`).
pub fn detect_all() -> Vec<OciRuntime> {
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
    let mut found = Vec::new();
    for name in NAMES {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
        {
            found.push(OciRuntime {
                kind: kind_of(&p),
                path: p,
                state_root: None,
            });
        }
    }
    found
}

/// The runtime at `explicit` (checked to be an executable file), else the first of `crun`,
/// `runc` on `PATH` that can run containers on this host (see [`host_problem`]).
pub fn detect(explicit: Option<&Path>) -> Result<OciRuntime, OciError> {
    if let Some(p) = explicit {
        if !is_executable(p) {
            return Err(OciError::NoRuntime(format!(
                "{} is not an executable file",
                p.display()
            )));
        }
        if let Some(problem) = host_problem(kind_of(p)) {
            return Err(OciError::NoRuntime(format!("{}: {problem}", p.display())));
        }
        return Ok(OciRuntime {
            path: p.to_path_buf(),
            kind: kind_of(p),
            state_root: None,
        });
    }
    let mut problems = Vec::new();
    for runtime in detect_all() {
        match host_problem(runtime.kind) {
            None => return Ok(runtime),
            Some(p) => problems.push(format!("{}: {p}", runtime.path.display())),
        }
    }
    if problems.is_empty() {
        problems.push("neither crun nor runc is on PATH (install the crun or runc package)".into());
    }
    Err(OciError::NoRuntime(problems.join("; ")))
}

/// Checks that a container id is safe to pass to the runtime and to use in paths.
pub fn check_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OciError::Invalid {
            what: "container id",
            value: id.to_string(),
            reason: "use letters, digits, `_`, `.` and `-` only".into(),
        })
    }
}

impl OciRuntime {
    /// This runtime keeping its state under `dir` (`--root`).
    pub fn with_state_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_root = Some(dir.into());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.path);
        if let Some(root) = &self.state_root {
            cmd.arg("--root").arg(root);
        }
        cmd.args(args);
        cmd
    }

    /// Runs the runtime with `args`, capturing its output; fails on a non-zero exit.
    fn call(&self, args: &[&str]) -> Result<String, OciError> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| OciError::Spawn {
                runtime: self.path.clone(),
                args: args.join(" "),
                source,
            })?;
        if !out.status.success() {
            return Err(OciError::Failed {
                command: format!("{} {}", self.path.display(), args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The runtime's version line.
    pub fn version(&self) -> Result<String, OciError> {
        Ok(self
            .call(&["--version"])?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// The command `RUNTIME run --bundle BUNDLE ID` (foreground: it exits with the container's
    /// init process), for the caller to set stdio on and spawn.
    pub fn run_command(&self, bundle: &Path, id: &str) -> Result<Command, OciError> {
        check_id(id)?;
        let mut cmd = self.command(&["run", "--bundle"]);
        cmd.arg(bundle).arg(id).stdin(Stdio::null());
        Ok(cmd)
    }

    /// Runs the container to completion with the given stdout/stderr; returns its exit status
    /// (the runtime exits with the container process's status; 128+N when killed by signal N).
    pub fn run(
        &self,
        bundle: &Path,
        id: &str,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<ExitStatus, OciError> {
        let mut cmd = self.run_command(bundle, id)?;
        cmd.stdout(stdout).stderr(stderr);
        cmd.status().map_err(|source| OciError::Spawn {
            runtime: self.path.clone(),
            args: format!("run --bundle {} {id}", bundle.display()),
            source,
        })
    }

    /// The container's state.
    pub fn state(&self, id: &str) -> Result<ContainerState, OciError> {
        check_id(id)?;
        let text = self.call(&["state", id])?;
        serde_json::from_str(&text).map_err(|e| OciError::Failed {
            command: format!("{} state {id}", self.path.display()),
            status: "unparsable output".into(),
            stderr: e.to_string(),
        })
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the container's init process.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), OciError> {
        check_id(id)?;
        self.call(&["kill", id, signal]).map(drop)
    }

    /// Deletes the container (with `force`, even when it is still running).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        check_id(id)?;
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        self.call(args).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_checked() {
        assert!(check_id("task-1.abc_2").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("../x").is_err());
        assert!(check_id("a b").is_err());
    }

    #[test]
    fn an_explicit_runtime_must_be_executable() {
        let err = detect(Some(Path::new("/nonexistent/crun")))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("/nonexistent/crun")));
    }
}
