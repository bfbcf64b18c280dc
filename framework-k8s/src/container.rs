//! Components in containers: the helper programs a containerized task runs, as it sees them.
//!
//! A task in an image sees its own root filesystem, so the deploy's helper programs on the
//! agents (`k8s-probe`, `k8s-etcd-member`, the stand-ins) are not visible in it. The agent's
//! fetcher copies each program the task needs into the sandbox (a `file://` URI), which the
//! container sees at [`SANDBOX`]; the task runs them from there. A program given by a bare
//! name (looked up on `PATH`) is left to the image's `PATH`. The programs still need their
//! shared libraries in the image (the `proffer` binary links the C library dynamically).

use crate::programs::{Programs, shell_quote};

/// Where a container sees its sandbox (the agent's bind mount, as Mesos's).
pub const SANDBOX: &str = "/mnt/mesos/sandbox";

/// The programs as a task in a container runs them, the URIs the agent fetches into its
/// sandbox for them, and the shell steps that make them executable. `needed` names the
/// programs the task runs (for [`Programs::Separate`], each is a file of its own).
pub fn programs_in_sandbox(
    host: &Programs,
    needed: &[&str],
) -> (Programs, Vec<String>, Vec<String>) {
    let mut uris = Vec::new();
    let mut steps = Vec::new();
    let mut fetch = |file: &str| -> Option<String> {
        if !file.starts_with('/') {
            return None;
        }
        let name = file.rsplit('/').next().unwrap_or(file).to_string();
        let uri = format!("file://{file}");
        if !uris.contains(&uri) {
            uris.push(uri);
            steps.push(format!("chmod +x {}", shell_quote(&name)));
        }
        Some(format!("{SANDBOX}/{name}"))
    };
    let programs = match host {
        Programs::Subcommands { binary } => Programs::Subcommands {
            binary: fetch(binary).unwrap_or_else(|| binary.clone()),
        },
        Programs::Separate { probe } => {
            for program in needed {
                fetch(&host.file(program));
            }
            Programs::Separate {
                probe: fetch(probe).unwrap_or_else(|| probe.clone()),
            }
        }
    };
    (programs, uris, steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::{ETCD_MEMBER, PROBE};

    #[test]
    fn one_binary_is_fetched_once_and_run_from_the_sandbox() {
        let host = Programs::Subcommands {
            binary: "/opt/proffer/bin/proffer".into(),
        };
        let (p, uris, steps) = programs_in_sandbox(&host, &[PROBE, "kubelet-standin"]);
        assert_eq!(uris, ["file:///opt/proffer/bin/proffer"]);
        assert_eq!(steps, ["chmod +x 'proffer'"]);
        assert_eq!(p.command(PROBE), "'/mnt/mesos/sandbox/proffer' k8s-probe");
    }

    #[test]
    fn separate_programs_are_fetched_each_and_bare_names_stay_on_path() {
        let host = Programs::Separate {
            probe: "/opt/k/k8s-probe".into(),
        };
        let (p, uris, _) = programs_in_sandbox(&host, &[PROBE, ETCD_MEMBER]);
        assert_eq!(
            uris,
            ["file:///opt/k/k8s-probe", "file:///opt/k/k8s-etcd-member"]
        );
        assert_eq!(
            p.command(ETCD_MEMBER),
            "'/mnt/mesos/sandbox/k8s-etcd-member'"
        );
        let bare = Programs::Separate {
            probe: "k8s-probe".into(),
        };
        let (p, uris, steps) = programs_in_sandbox(&bare, &[PROBE]);
        assert!(uris.is_empty() && steps.is_empty());
        assert_eq!(p, bare);
    }
}
