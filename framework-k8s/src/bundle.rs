//! Per-task subsets of the PKI bundle, and serving them to the fetcher.
//!
//! Every task needs a few files of the bundle under fixed sandbox names (etcd member 1 gets
//! `pki/etcd/server-cp-1.crt` as `pki/etcd/server.crt`, …). [`Bundle::files`] is that list, used
//! both when tasks copy from a shared bundle directory and by [`serve`], which answers
//! `GET /pki/<token>/<bundle>.tar` with a tar of exactly those files (keys and kubeconfigs
//! mode 0600) for the agent's fetcher. The token is a per-cluster random secret: the answer is
//! plain HTTP, so the keys travel unencrypted — for a trusted network only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::pki::Host;

/// The files one task receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bundle {
    /// etcd member `i`.
    Etcd(u32),
    /// kube-apiserver instance `i`.
    Apiserver(u32),
    /// kube-controller-manager instance `i`.
    ControllerManager(u32),
    /// kube-scheduler instance `i`.
    Scheduler(u32),
    /// The kubelet of node `INDEX` (digits, or the `{{POD_INDEX}}` template in a spec).
    Kubelet(String),
    /// kube-proxy (any node).
    KubeProxy,
    /// CoreDNS.
    Coredns,
    /// The addons step (kubectl).
    Addons,
}

/// A bundle that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the bundle is missing or unreadable.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A name does not fit a tar header.
    #[error("{0}: name too long for a tar header")]
    Name(String),
}

impl Bundle {
    /// The bundle's name in URLs (`etcd-0`, `kubelet-3`, `kube-proxy`, …).
    pub fn name(&self) -> String {
        match self {
            Bundle::Etcd(i) => format!("etcd-{i}"),
            Bundle::Apiserver(i) => format!("apiserver-{i}"),
            Bundle::ControllerManager(i) => format!("controller-manager-{i}"),
            Bundle::Scheduler(i) => format!("scheduler-{i}"),
            Bundle::Kubelet(i) => format!("kubelet-{i}"),
            Bundle::KubeProxy => "kube-proxy".into(),
            Bundle::Coredns => "coredns".into(),
            Bundle::Addons => "addons".into(),
        }
    }

    /// The bundle named `name` (the inverse of [`Bundle::name`]; node indexes are digits).
    pub fn parse(name: &str) -> Option<Bundle> {
        let indexed = |prefix: &str| -> Option<u32> {
            let rest = name.strip_prefix(prefix)?;
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            rest.parse().ok()
        };
        match name {
            "kube-proxy" => return Some(Bundle::KubeProxy),
            "coredns" => return Some(Bundle::Coredns),
            "addons" => return Some(Bundle::Addons),
            _ => {}
        }
        if let Some(i) = indexed("etcd-") {
            return Some(Bundle::Etcd(i));
        }
        if let Some(i) = indexed("apiserver-") {
            return Some(Bundle::Apiserver(i));
        }
        if let Some(i) = indexed("controller-manager-") {
            return Some(Bundle::ControllerManager(i));
        }
        if let Some(i) = indexed("scheduler-") {
            return Some(Bundle::Scheduler(i));
        }
        indexed("kubelet-").map(|i| Bundle::Kubelet(i.to_string()))
    }

    /// `(bundle-relative source, sandbox destination)` of every file; `None` for a
    /// control-plane index without a host.
    pub fn files(&self, hosts: &[Host]) -> Option<Vec<(String, String)>> {
        let same = |n: &str| (n.to_string(), n.to_string());
        let host = |i: &u32| hosts.get(*i as usize).map(|h| h.name.clone());
        let files = match self {
            Bundle::Etcd(i) => {
                let m = host(i)?;
                vec![
                    same("pki/etcd/ca.crt"),
                    (
                        format!("pki/etcd/server-{m}.crt"),
                        "pki/etcd/server.crt".into(),
                    ),
                    (
                        format!("pki/etcd/server-{m}.key"),
                        "pki/etcd/server.key".into(),
                    ),
                    (format!("pki/etcd/peer-{m}.crt"), "pki/etcd/peer.crt".into()),
                    (format!("pki/etcd/peer-{m}.key"), "pki/etcd/peer.key".into()),
                    same("pki/apiserver-etcd-client.crt"),
                    same("pki/apiserver-etcd-client.key"),
                ]
            }
            Bundle::Apiserver(i) => {
                host(i)?;
                [
                    "ca.crt",
                    "apiserver.crt",
                    "apiserver.key",
                    "sa.pub",
                    "sa.key",
                    "etcd/ca.crt",
                    "apiserver-etcd-client.crt",
                    "apiserver-etcd-client.key",
                    "apiserver-kubelet-client.crt",
                    "apiserver-kubelet-client.key",
                    "front-proxy-ca.crt",
                    "front-proxy-client.crt",
                    "front-proxy-client.key",
                ]
                .iter()
                .map(|n| same(&format!("pki/{n}")))
                .collect()
            }
            Bundle::ControllerManager(i) | Bundle::Scheduler(i) => {
                host(i)?;
                let key = if matches!(self, Bundle::Scheduler(_)) {
                    "scheduler"
                } else {
                    "controller-manager"
                };
                let mut f = vec![
                    same(&format!("{key}.conf")),
                    (format!("pki/{key}.crt"), "pki/serving.crt".into()),
                    (format!("pki/{key}.key"), "pki/serving.key".into()),
                    same("pki/ca.crt"),
                ];
                if key == "controller-manager" {
                    f.push(same("pki/ca.key"));
                    f.push(same("pki/sa.key"));
                }
                f
            }
            Bundle::Kubelet(i) => vec![
                (format!("kubelet-node-{i}.conf"), "kubelet.conf".into()),
                same("pki/ca.crt"),
            ],
            Bundle::KubeProxy => vec![same("kube-proxy.conf")],
            Bundle::Coredns => vec![("admin.conf".into(), "coredns.conf".into())],
            Bundle::Addons => vec![same("admin.conf")],
        };
        Some(files)
    }
}

/// Whether a sandbox file is secret (mode 0600): keys and kubeconfigs.
pub fn is_secret(dst: &str) -> bool {
    dst.ends_with(".key") || dst.ends_with(".conf")
}

/// A ustar archive of `files` read from `dir` (regular files only, secrets 0600, others 0644,
/// mtime 0 so the same bundle is the same bytes).
pub fn tar(dir: &Path, files: &[(String, String)]) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for (src, dst) in files {
        let path = dir.join(src);
        let data = std::fs::read(&path).map_err(|e| BundleError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut h = [0u8; 512];
        if dst.len() > 100 {
            return Err(BundleError::Name(dst.clone()));
        }
        h[..dst.len()].copy_from_slice(dst.as_bytes());
        let mode = if is_secret(dst) { 0o600 } else { 0o644 };
        let mut field = |at: usize, len: usize, v: u64| {
            let s = format!("{v:0width$o}\0", width = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        field(100, 8, mode);
        field(108, 8, 0);
        field(116, 8, 0);
        field(124, 12, data.len() as u64);
        field(136, 12, 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

/// The answer to `GET path`: the tar of the named bundle when `path` is
/// `/pki/<token>/<bundle>.tar`, 404 otherwise (a wrong token looks like a missing bundle).
pub fn answer(dir: &Path, hosts: &[Host], token: &str, path: &str) -> (u16, Vec<u8>) {
    let not_found = || (404, b"not found\n".to_vec());
    let Some(rest) = path
        .strip_prefix("/pki/")
        .and_then(|r| r.strip_prefix(token))
        .and_then(|r| r.strip_prefix('/'))
    else {
        return not_found();
    };
    let Some(files) = rest
        .strip_suffix(".tar")
        .and_then(Bundle::parse)
        .and_then(|b| b.files(hosts))
    else {
        return not_found();
    };
    match tar(dir, &files) {
        Ok(bytes) => (200, bytes),
        Err(e) => (500, format!("{e}\n").into_bytes()),
    }
}

/// Serves the bundles of the PKI in `dir` on `listener` (plain HTTP) until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dir: PathBuf,
    hosts: Vec<Host>,
    token: String,
) {
    let handler: crate::http::BinaryHandler =
        Arc::new(move |req: &crate::http::RequestInfo| answer(&dir, &hosts, &token, &req.path));
    crate::http::serve_binary(listener, None, handler).await;
}

/// A random token (32 hex digits from `/dev/urandom`).
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in [
            Bundle::Etcd(2),
            Bundle::Apiserver(0),
            Bundle::ControllerManager(1),
            Bundle::Scheduler(0),
            Bundle::Kubelet("17".into()),
            Bundle::KubeProxy,
            Bundle::Coredns,
            Bundle::Addons,
        ] {
            assert_eq!(Bundle::parse(&b.name()), Some(b.clone()), "{b:?}");
        }
        for bad in ["etcd-", "etcd-x", "kubelet-../x", "apiserver-1a", "ca", ""] {
            assert_eq!(Bundle::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn tar_round_trips_through_tar() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pki")).unwrap();
        std::fs::write(dir.path().join("pki/ca.crt"), "CERT").unwrap();
        std::fs::write(dir.path().join("admin.conf"), vec![b'x'; 700]).unwrap();
        let files = vec![
            ("pki/ca.crt".to_string(), "pki/ca.crt".to_string()),
            ("admin.conf".to_string(), "coredns.conf".to_string()),
        ];
        let bytes = tar(dir.path(), &files).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("b.tar");
        std::fs::write(&archive, &bytes).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xpf")
            .arg(&archive)
            .arg("-C")
            .arg(out.path())
            .status()
            .unwrap();
        assert!(st.success());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(out.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(
            std::fs::read_to_string(out.path().join("pki/ca.crt")).unwrap(),
            "CERT"
        );
        assert_eq!(
            std::fs::read(out.path().join("coredns.conf"))
                .unwrap()
                .len(),
            700
        );
        assert_eq!(mode("coredns.conf"), 0o600);
        assert_eq!(mode("pki/ca.crt") & 0o600, 0o600);
    }
}
