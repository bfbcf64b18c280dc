//! What a deploy runs on the agents, checked on this machine (`proffer k8s check`): the helper
//! programs ([`crate::programs`]), every component's artifact (a program on the agents, a
//! stand-in, or a URL the agents fetch: a `file://` URL's checksum is verified here) and the
//! shell tools the tasks' commands use. On `proffer local` this machine is the agents'; on a
//! cluster of other machines the same paths must hold there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{COMPONENTS, Cluster, local_image_path};
use crate::programs::{ETCD_MEMBER, PROBE, Programs, standin_of};

/// What to install when `etcd` is missing.
pub const ETCD_PACKAGE_HINT: &str = "install it: apt-get install etcd-server (Debian/Ubuntu)";

/// One program or artifact a deploy needs, and whether it is usable here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// What it is for (`etcd`, `kube-apiserver`, `k8s-probe`, `sha256sum`).
    pub name: String,
    /// What runs, for people (`/usr/bin/etcd`, `/usr/bin/proffer kubelet-standin (stand-in)`,
    /// a URL).
    pub what: String,
    /// Why it is not usable; `None` when it is.
    pub problem: Option<String>,
}

/// Everything the deploy of `cluster` with `programs` needs; `fetch_pki` when tasks fetch
/// their PKI files over HTTP (they unpack them with `tar`).
pub fn needs(cluster: &Cluster, programs: &Programs, fetch_pki: bool) -> Vec<Need> {
    let mut out = Vec::new();
    for program in [PROBE, ETCD_MEMBER] {
        out.push(program_need(program, programs, program));
    }
    let mut fetched = false;
    for component in COMPONENTS {
        let Some(a) = cluster.artifact(component) else {
            continue;
        };
        if let Some(image) = &a.image {
            out.push(image_need(component, image));
        }
        if let (Some(path), Some(image)) = (&a.path, &a.image) {
            // A program inside the image: not checkable here.
            out.push(Need {
                name: component.to_string(),
                what: format!("{path} in image {image}"),
                problem: None,
            });
        } else if a.standin {
            let program = standin_of(component).unwrap_or(component);
            let mut need = program_need(component, programs, program);
            need.what.push_str(" (stand-in)");
            out.push(need);
        } else if let Some(url) = &a.url {
            fetched = true;
            out.push(url_need(
                component,
                url,
                a.sha256.as_deref().unwrap_or_default(),
            ));
        } else if let Some(path) = &a.path {
            let mut need = path_need(component, path);
            if component == "etcd"
                && let Some(p) = &mut need.problem
            {
                p.push_str(&format!(" — {ETCD_PACKAGE_HINT}"));
            }
            out.push(need);
        }
    }
    // `mkdir` makes the etcd volume's directory when it lives in the sandbox (the SDK's
    // prelude), `sha256sum` and `cut` the etcd data directory's id.
    let mut tools = vec!["sh", "mkdir", "sha256sum", "cut"];
    tools.extend(if fetch_pki {
        ["tar", "rm"]
    } else {
        ["install", "rm"]
    });
    if fetched {
        tools.push("chmod");
    }
    for tool in tools {
        out.push(path_need(tool, tool));
    }
    out
}

/// A component's image: a local one (path or `file://`) must exist here; a URL is downloaded
/// by the agents.
fn image_need(component: &str, image: &str) -> Need {
    let problem = local_image_path(image).and_then(|path| {
        (!Path::new(path).exists()).then(|| format!("image {path} does not exist"))
    });
    let what = if local_image_path(image).is_some() {
        format!("image {image}")
    } else {
        format!("image {image} (downloaded by the agents)")
    };
    Need {
        name: format!("{component} image"),
        what,
        problem,
    }
}

fn program_need(name: &str, programs: &Programs, program: &str) -> Need {
    let file = programs.file(program);
    Need {
        name: name.to_string(),
        what: programs.describe(program),
        problem: resolve(&file).err(),
    }
}

fn path_need(name: &str, program: &str) -> Need {
    let (what, problem) = match resolve(program) {
        Ok(p) if p.as_os_str() == program => (program.to_string(), None),
        Ok(p) => (format!("{program} ({})", p.display()), None),
        Err(e) => (program.to_string(), Some(e)),
    };
    Need {
        name: name.to_string(),
        what,
        problem,
    }
}

/// A URL artifact: fetched by the agents and checked with `sha256sum -c` before it runs; a
/// `file://` one is checked here (exists, checksum).
fn url_need(name: &str, url: &str, sha256: &str) -> Need {
    let problem = url.strip_prefix("file://").and_then(|path| {
        let path = Path::new(path);
        if !path.is_file() {
            return Some(format!("{} does not exist", path.display()));
        }
        match sha256_of(path) {
            Ok(sum) if sum.eq_ignore_ascii_case(sha256) => None,
            Ok(sum) => Some(format!(
                "checksum mismatch: the file's sha256 is {sum}, the config says {sha256}"
            )),
            Err(e) => Some(e),
        }
    });
    let what = if url.starts_with("file://") {
        format!("{url} (sha256 {sha256})")
    } else {
        format!("{url} (fetched by the agents, sha256 {sha256} checked before it runs)")
    };
    Need {
        name: name.to_string(),
        what,
        problem,
    }
}

/// The hex sha256 of a file, by `sha256sum` (the tool the agents check with).
fn sha256_of(path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sha256sum {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| format!("sha256sum {}: no output", path.display()))
}

/// The file `program` runs (a path, or a name looked up on `PATH` as `execvp` does), if it
/// exists and is executable.
pub fn resolve(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).map(|()| p);
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(program))
        .find(|p| executable(p).is_ok())
        .ok_or_else(|| format!("`{program}` is not on PATH"))
}

fn executable(p: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", p.display()),
        _ => format!("{}: {e}", p.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", p.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", p.display()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::config::ClusterConfig;

    fn cluster(artifacts: &str) -> Cluster {
        ClusterConfig::parse(&format!("name: t\nartifacts:\n{artifacts}"), None).unwrap()
    }

    fn problem<'a>(needs: &'a [Need], name: &str) -> Option<&'a str> {
        needs
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no need {name}: {needs:?}"))
            .problem
            .as_deref()
    }

    #[test]
    fn a_missing_local_image_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("base.tar");
        std::fs::write(&present, "x").unwrap();
        let c = cluster(&format!(
            "  etcd: {{image: '{}/missing.tar'}}\n  kube-apiserver: {{standin: true, image: 'file://{}'}}\n  \
             kube-proxy: {{path: /usr/local/bin/kube-proxy, image: 'https://example.com/i.tar'}}\n  \
             kube-controller-manager: {{standin: true}}\n  kube-scheduler: {{standin: true}}\n  \
             kubelet: {{standin: true}}\n  coredns: {{standin: true}}\n  kubectl: {{path: 'true'}}\n",
            dir.path().display(),
            present.display(),
        ));
        let programs = Programs::Separate {
            probe: "true".into(),
        };
        let needs = needs(&c, &programs, true);
        let etcd = problem(&needs, "etcd image").unwrap();
        assert!(etcd.contains("missing.tar does not exist"), "{etcd}");
        assert_eq!(problem(&needs, "etcd"), None, "a program inside the image");
        assert_eq!(problem(&needs, "kube-apiserver image"), None);
        assert_eq!(
            problem(&needs, "kube-proxy image"),
            None,
            "downloaded by the agents"
        );
        assert_eq!(problem(&needs, "kube-proxy"), None, "inside the image");
    }

    #[test]
    fn programs_artifacts_and_checksums_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let sum = sha256_of(&exe).unwrap();
        let bad = "0".repeat(64);
        let c = cluster(&format!(
            "  etcd: {{path: /nonexistent/etcd}}\n  kube-apiserver: {{standin: true}}\n  \
             kube-controller-manager: {{url: 'file://{e}', sha256: '{sum}'}}\n  \
             kube-scheduler: {{url: 'file://{e}', sha256: '{bad}'}}\n  kubelet: {{path: '{p}'}}\n  \
             kube-proxy: {{url: 'https://example.com/kube-proxy', sha256: '{bad}'}}\n  \
             coredns: {{path: '{e}'}}\n  kubectl: {{path: 'true'}}\n",
            e = exe.display(),
            p = plain.display(),
        ));
        let programs = Programs::Subcommands {
            binary: exe.display().to_string(),
        };
        let needs = needs(&c, &programs, false);
        let etcd = problem(&needs, "etcd").unwrap();
        assert!(etcd.contains("does not exist"), "{etcd}");
        assert!(etcd.contains("apt-get install etcd-server"), "{etcd}");
        assert_eq!(problem(&needs, "k8s-probe"), None);
        assert_eq!(problem(&needs, "kube-apiserver"), None);
        assert_eq!(problem(&needs, "kube-controller-manager"), None);
        let s = problem(&needs, "kube-scheduler").unwrap();
        assert!(s.contains("checksum mismatch") && s.contains(&sum), "{s}");
        let k = problem(&needs, "kubelet").unwrap();
        assert!(k.contains("is not executable"), "{k}");
        assert_eq!(problem(&needs, "kube-proxy"), None, "fetched by the agents");
        assert_eq!(problem(&needs, "coredns"), None);
        assert_eq!(problem(&needs, "kubectl"), None, "`true` is on PATH");
        assert_eq!(problem(&needs, "chmod"), None);
        let sep = Programs::Separate {
            probe: dir.path().join("k8s-probe").display().to_string(),
        };
        let needs = super::needs(&c, &sep, true);
        assert!(problem(&needs, "k8s-etcd-member").is_some_and(|p| p.contains("does not exist")));
        assert!(
            problem(&needs, "kube-apiserver")
                .is_some_and(|p| p.contains("kube-apiserver-standin does not exist"))
        );
        assert_eq!(problem(&needs, "tar"), None);
    }
}
