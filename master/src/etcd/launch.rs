//! Starting a local etcd cluster from the distribution's `etcd` binary, on loopback ports in a
//! directory: for `proffer local --masters 3`, the tests and the benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Debian/Ubuntu package that has the `etcd` binary.
pub const ETCD_PACKAGE: &str = "etcd-server";

/// Errors starting etcd.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The binary is not installed.
    #[error("`etcd` is not installed (on Debian or Ubuntu: apt-get install {ETCD_PACKAGE})")]
    NotInstalled,
    /// A member could not be started.
    #[error("cannot start etcd member {name}: {source}")]
    Spawn {
        /// The member.
        name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A directory could not be made, or no port was free.
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not answer in time.
    #[error("etcd at {endpoints} did not become healthy within {secs}s (logs in {dir})")]
    NotReady {
        /// The client URLs.
        endpoints: String,
        /// How long we waited.
        secs: u64,
        /// Where the member logs are.
        dir: String,
    },
}

/// One member of a local cluster.
#[derive(Debug)]
pub struct Member {
    /// Its name (`etcd0`, …).
    pub name: String,
    /// Its client URL.
    pub client_url: String,
    child: Option<Child>,
}

/// A local etcd cluster; its members are killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The members.
    pub members: Vec<Member>,
    dir: PathBuf,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Whether an `etcd` binary is on the PATH.
pub fn etcd_installed() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback port (bound then released; good enough on one box).
fn free_port(dir: &Path) -> Result<u16, LaunchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| LaunchError::Prepare {
            path: dir.to_path_buf(),
            source,
        })
}

impl EtcdCluster {
    /// Starts `size` members with data and logs under `dir` and waits (up to 30 s) until every
    /// member answers. Blocks: from async code, call it in `spawn_blocking`.
    pub fn start(dir: &Path, size: usize) -> Result<EtcdCluster, LaunchError> {
        if !etcd_installed() {
            return Err(LaunchError::NotInstalled);
        }
        std::fs::create_dir_all(dir).map_err(|source| LaunchError::Prepare {
            path: dir.to_path_buf(),
            source,
        })?;
        let ports: Vec<(u16, u16)> = (0..size.max(1))
            .map(|_| Ok((free_port(dir)?, free_port(dir)?)))
            .collect::<Result<_, LaunchError>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("etcd{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            dir: dir.to_path_buf(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let member = cluster.spawn(i, *client, *peer, &initial)?;
            cluster.members.push(member);
        }
        // On a thread of its own: the probe has a runtime, which cannot nest in a caller's.
        std::thread::scope(|s| {
            s.spawn(|| cluster.wait_ready(Duration::from_secs(30)))
                .join()
                .unwrap_or(Err(LaunchError::NotReady {
                    endpoints: cluster.endpoints(),
                    secs: 30,
                    dir: cluster.dir.display().to_string(),
                }))
        })?;
        Ok(cluster)
    }

    fn spawn(
        &self,
        i: usize,
        client: u16,
        peer: u16,
        initial: &str,
    ) -> Result<Member, LaunchError> {
        let name = format!("etcd{i}");
        let data = self.dir.join(format!("{name}.data"));
        let log_path = self.dir.join(format!("{name}.log"));
        let prepare = |source| LaunchError::Prepare {
            path: log_path.clone(),
            source,
        };
        let log = std::fs::File::create(&log_path).map_err(prepare)?;
        let log2 = log.try_clone().map_err(prepare)?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "proffer-local"])
            // Fast elections on loopback.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                name: name.clone(),
                source,
            })?;
        Ok(Member {
            name,
            client_url,
            child: Some(child),
        })
    }

    /// The client URLs, comma-separated (for `--registry etcd://…`, without the scheme).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.trim_start_matches("http://"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` (a crashed etcd node).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until every member answers a read.
    fn wait_ready(&self, limit: Duration) -> Result<(), LaunchError> {
        let deadline = std::time::Instant::now() + limit;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| LaunchError::Prepare {
                path: self.dir.clone(),
                source,
            })?;
        for m in &self.members {
            loop {
                let url = m.client_url.clone();
                let ok = runtime.block_on(async move {
                    let opts = etcd_client::ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(1))
                        .with_timeout(Duration::from_secs(1));
                    match etcd_client::Client::connect([url], Some(opts)).await {
                        Ok(mut c) => c.get("/proffer-ready-probe", None).await.is_ok(),
                        Err(_) => false,
                    }
                });
                if ok {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(LaunchError::NotReady {
                        endpoints: self.endpoints(),
                        secs: limit.as_secs(),
                        dir: self.dir.display().to_string(),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}
