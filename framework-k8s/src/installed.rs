//! What a cluster was installed with, remembered in its state directory
//! (`STATE/install.json`): the config file, where the helper programs are, the control-plane
//! hosts and the deploy options. The verbs that regenerate the spec of a running cluster
//! (`scale-nodes`, `upgrade`, `spec`) start from it, so they send the spec the scheduler runs
//! apart from their change, without repeating the install's flags: a flag left out would
//! otherwise change every task's command (`--probe` is in every readiness check) and roll the
//! whole control plane.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pki::Host;
use crate::programs::Programs;

/// The file in the state directory.
pub const FILE: &str = "install.json";

/// What `proffer k8s install` was run with (resolved: absolute paths, hosts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Installed {
    /// The cluster.yaml (absolute path).
    pub config: PathBuf,
    /// Where tasks find `k8s-probe`, `k8s-etcd-member` and the stand-ins.
    pub programs: Programs,
    /// The control-plane hosts.
    pub control_plane: Vec<Host>,
    /// All agents on one machine (`--local`).
    pub local: bool,
    /// Nodes one agent may host.
    pub nodes_per_agent: u32,
    /// Where the PKI bundles are served (`--serve-pki`).
    #[serde(default)]
    pub serve_pki: Option<SocketAddr>,
    /// Whether the install reserved resources and volumes.
    #[serde(default = "yes")]
    pub reservations: bool,
    /// The master(s) the scheduler subscribed to.
    #[serde(default)]
    pub master: Option<String>,
    /// The scheduler's HTTP API, when it served one (`--http`).
    #[serde(default)]
    pub api: Option<String>,
}

fn yes() -> bool {
    true
}

/// The record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InstalledError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a record.
    #[error("{path}: not an install record: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

impl Installed {
    /// The record's path in `state`.
    pub fn path(state: &Path) -> PathBuf {
        state.join(FILE)
    }

    /// The record in `state`, `None` when there is none (not installed, or installed by a
    /// version that did not keep one).
    pub fn load(state: &Path) -> Result<Option<Installed>, InstalledError> {
        let path = Installed::path(state);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(InstalledError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| InstalledError::Parse {
                path: path.display().to_string(),
                source,
            })
    }

    /// Writes the record to `state` (through a temporary file: a failure leaves the old one).
    pub fn save(&self, state: &Path) -> Result<(), InstalledError> {
        let path = Installed::path(state);
        let io = |source| InstalledError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state).map_err(io)?;
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Installed::load(dir.path()).unwrap(), None);
        let rec = Installed {
            config: "/etc/k8s/cluster.yaml".into(),
            programs: Programs::Separate {
                probe: "/opt/k8s-probe".into(),
            },
            control_plane: vec![Host {
                name: "cp-0".into(),
                ip: Some([127, 0, 0, 1].into()),
            }],
            local: true,
            nodes_per_agent: 2,
            serve_pki: Some("127.0.0.1:8081".parse().unwrap()),
            reservations: true,
            master: Some("127.0.0.1:5050".into()),
            api: None,
        };
        rec.save(&dir.path().join("new")).unwrap();
        assert_eq!(Installed::load(&dir.path().join("new")).unwrap(), Some(rec));
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        let e = Installed::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not an install record"), "{e}");
    }
}
