//! `proffer local --masters N`: a local etcd cluster (the distribution's `etcd`, on loopback
//! ports in the work dir) and N `proffer master` processes forming an HA group, so anyone can
//! watch a failover on one box (`kill -9` the leader's pid).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use proffer_master::etcd::launch::EtcdCluster;

/// Lease TTL of the local masters: a killed leader is replaced within about this long.
pub const LOCAL_LEASE_TTL: &str = "3s";

/// The running group.
pub struct Masters {
    /// `HOST:PORT` of every master, comma-separated (what clients take as `--master`).
    pub list: String,
    children: Vec<tokio::process::Child>,
    _etcd: EtcdCluster,
}

impl Masters {
    /// Starts a 3-member etcd in `work_dir/etcd` and `count` masters (the first on
    /// `first_port`, the others on free ports), each logging to `work_dir/master-I.log`.
    pub async fn start(
        count: usize,
        first_port: u16,
        work_dir: &Path,
        allocation_interval: &str,
        seed: u64,
    ) -> anyhow::Result<Masters> {
        let etcd_dir = work_dir.join("etcd");
        let etcd = tokio::task::spawn_blocking(move || EtcdCluster::start(&etcd_dir, 3))
            .await
            .context("starting etcd")??;
        crate::output::text(&format!("etcd (3 members): {}", etcd.endpoints()));
        let exe = std::env::current_exe().context("cannot find the proffer binary")?;
        let mut addrs = Vec::with_capacity(count);
        let mut children = Vec::with_capacity(count);
        for i in 0..count {
            let port = if i == 0 { first_port } else { 0 };
            let port = if port == 0 { free_port()? } else { port };
            let addr = format!("127.0.0.1:{port}");
            let log_path = work_dir.join(format!("master-{i}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            let child = tokio::process::Command::new(&exe)
                .arg("master")
                .args(["--listen", &addr])
                .args(["--registry", &format!("etcd://{}", etcd.endpoints())])
                .args(["--registry-prefix", "/proffer/local"])
                .args(["--leader-lease-ttl", LOCAL_LEASE_TTL])
                .args(["--allocation-interval", allocation_interval])
                .args(["--seed", &(seed.wrapping_add(i as u64)).to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("log file")?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start master {i} ({})", exe.display()))?;
            crate::output::text(&format!(
                "master {i}: {addr} (pid {}), log {}",
                child.id().unwrap_or(0),
                log_path.display()
            ));
            addrs.push(addr);
            children.push(child);
        }
        let group = Masters {
            list: addrs.join(","),
            children,
            _etcd: etcd,
        };
        let leader = wait_for_leader(&addrs, Duration::from_secs(60)).await?;
        crate::output::text(&format!("leader: {leader}"));
        Ok(group)
    }

    /// Stops the masters (SIGTERM, then SIGKILL after 10 s) and etcd.
    pub async fn stop(mut self) {
        for child in &self.children {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Waits until one of `addrs` says (`GET /health`) it leads; returns it.
async fn wait_for_leader(addrs: &[String], limit: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        for addr in addrs {
            if health(addr)
                .await
                .is_ok_and(|h| h.contains("\"role\":\"leader\""))
            {
                return Ok(addr.clone());
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no master leads after {}s (see the master-*.log files in the work dir)",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of `GET /health` on `addr`.
async fn health(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut raw)).await??;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// A free loopback port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
