//! The helper programs a deploy launches on the agents — `k8s-probe` (readiness checks),
//! `k8s-etcd-member` (run before each etcd member starts) and the stand-in kube-* programs —
//! as library entry points ([`run`]), and where the deploy finds them ([`Programs`]).
//!
//! The `proffer` binary exposes each as a hidden subcommand (`proffer k8s-probe …`,
//! `proffer kube-apiserver-standin …`), so the binary the README builds carries everything a
//! deploy needs; this crate's `src/bin` programs are thin wrappers of the same functions (the
//! crate's own tests run them).

use std::path::Path;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The readiness-check client.
pub const PROBE: &str = "k8s-probe";
/// The etcd membership helper.
pub const ETCD_MEMBER: &str = "k8s-etcd-member";

/// The components that have a stand-in, and the stand-in program of each.
pub const STANDINS: [(&str, &str); 6] = [
    ("kube-apiserver", "kube-apiserver-standin"),
    ("kube-controller-manager", "kube-controller-manager-standin"),
    ("kube-scheduler", "kube-scheduler-standin"),
    ("kubelet", "kubelet-standin"),
    ("kube-proxy", "kube-proxy-standin"),
    ("coredns", "coredns-standin"),
];

/// Every helper program, by the name it is run under.
pub const ALL: [&str; 8] = [
    PROBE,
    ETCD_MEMBER,
    "kube-apiserver-standin",
    "kube-controller-manager-standin",
    "kube-scheduler-standin",
    "kubelet-standin",
    "kube-proxy-standin",
    "coredns-standin",
];

/// The stand-in program of `component`, if it has one.
pub fn standin_of(component: &str) -> Option<&'static str> {
    STANDINS
        .iter()
        .find(|(c, _)| *c == component)
        .map(|(_, p)| *p)
}

/// Runs the helper program `program` with `args` (`args[0]` is the name it runs under, as a
/// `main`'s arguments); `None` when there is no such program. Each builds its own tokio
/// runtime: call it outside of one.
pub fn run(program: &str, args: Vec<String>) -> Option<ExitCode> {
    use crate::standin::{apiserver, controlplane, coredns, main_with, node};
    let code = match program {
        PROBE => crate::probe::main(args),
        ETCD_MEMBER => crate::etcd_member::main(args),
        "kube-apiserver-standin" => main_with(program, args, apiserver::run),
        "kube-controller-manager-standin" => {
            main_with(program, args, controlplane::run_controller_manager)
        }
        "kube-scheduler-standin" => main_with(program, args, controlplane::run_scheduler),
        "kubelet-standin" => main_with(program, args, node::run_kubelet),
        "kube-proxy-standin" => main_with(program, args, node::run_proxy),
        "coredns-standin" => main_with(program, args, coredns::run),
        _ => return None,
    };
    Some(code)
}

/// The `main` of this crate's `src/bin` wrappers: runs `program` with the process arguments.
pub fn main(program: &str) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    run(program, args).unwrap_or_else(|| {
        eprintln!("{program}: no such helper program");
        ExitCode::FAILURE
    })
}

/// Where the deploy's tasks find the helper programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Programs {
    /// Hidden subcommands of one binary (`proffer`): `'BINARY' k8s-probe …`. The path must
    /// be absolute and the same on every agent.
    Subcommands {
        /// The binary (absolute path).
        binary: String,
    },
    /// Separate programs: `probe` is `k8s-probe` (a path, or a name looked up on the task's
    /// `PATH`), the others are in the same directory (or on `PATH`).
    Separate {
        /// The `k8s-probe` program.
        probe: String,
    },
}

impl Programs {
    /// The shell words that run `program` (quoted for `sh`).
    pub fn command(&self, program: &str) -> String {
        match self {
            Programs::Subcommands { binary } => format!("{} {program}", shell_quote(binary)),
            Programs::Separate { .. } => shell_quote(&self.file(program)),
        }
    }

    /// The file that must exist (and be executable) on the agents to run `program`: the
    /// binary, or the separate program's path (a bare name is looked up on `PATH`).
    pub fn file(&self, program: &str) -> String {
        match self {
            Programs::Subcommands { binary } => binary.clone(),
            Programs::Separate { probe } if program == PROBE => probe.clone(),
            Programs::Separate { probe } => match Path::new(probe).parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.join(program).display().to_string(),
                _ => program.to_string(),
            },
        }
    }

    /// How `program` is run, for people: `/usr/bin/proffer k8s-probe` or the path.
    pub fn describe(&self, program: &str) -> String {
        match self {
            Programs::Subcommands { binary } => format!("{binary} {program}"),
            Programs::Separate { .. } => self.file(program),
        }
    }
}

/// `s` quoted for `sh` (single quotes; a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The absolute path of the running binary, for [`Programs::Subcommands`] (a binary replaced
/// on disk while running, as a rebuild does, is named by its path, without ` (deleted)`).
pub fn current_binary() -> std::io::Result<String> {
    let exe = std::env::current_exe()?;
    let exe = std::path::absolute(exe)?;
    let text = exe.display().to_string();
    Ok(text
        .strip_suffix(" (deleted)")
        .map(str::to_string)
        .unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_and_find_siblings() {
        let sub = Programs::Subcommands {
            binary: "/opt/my proffer/proffer".into(),
        };
        assert_eq!(
            sub.command("kubelet-standin"),
            "'/opt/my proffer/proffer' kubelet-standin"
        );
        assert_eq!(sub.file(PROBE), "/opt/my proffer/proffer");
        let sep = Programs::Separate {
            probe: "/opt/k/k8s-probe".into(),
        };
        assert_eq!(sep.command(PROBE), "'/opt/k/k8s-probe'");
        assert_eq!(sep.command(ETCD_MEMBER), "'/opt/k/k8s-etcd-member'");
        let bare = Programs::Separate {
            probe: "k8s-probe".into(),
        };
        assert_eq!(bare.file(ETCD_MEMBER), "k8s-etcd-member");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_program_runs_and_unknown_ones_do_not() {
        // Without their required flags, each refuses to start (and so was run).
        for p in ALL {
            let code = run(p, vec![p.to_string()]);
            assert_eq!(code, Some(ExitCode::FAILURE), "{p} without flags");
        }
        assert!(run("kubectl", vec![]).is_none());
        assert_eq!(standin_of("kubelet"), Some("kubelet-standin"));
        assert_eq!(standin_of("etcd"), None);
    }
}
