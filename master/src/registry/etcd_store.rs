//! The etcd registry: records under `PREFIX/TABLE/KEY` in an etcd v3 cluster (the
//! distribution's `etcd`), each batch written in one transaction (split in transactions of at
//! most 128 operations, etcd's default `--max-txn-ops`).
//!
//! The etcd client is asynchronous; this backend owns a small runtime of its own and blocks on
//! it, so it must be used from a plain or blocking thread (the registry writer thread, or
//! `spawn_blocking`), never from async code. Not yet: leader election and fencing (writes
//! conditional on holding the leadership), so one master at a time per prefix.

use etcd_client::{Client, GetOptions, Txn, TxnOp};

use super::{CommitStats, Registry, RegistryError, RegistryInfo, RegistryOp, Stored, Table};

/// Operations per etcd transaction (etcd's default `--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;

/// A registry in etcd.
pub struct EtcdRegistry {
    endpoints: Vec<String>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EtcdRegistry {
    /// A registry on `endpoints` (`HOST:PORT` or `http://HOST:PORT`) under `prefix` (e.g.
    /// `/proffer/prod`). Connects on first use (from a blocking thread).
    pub fn new(endpoints: Vec<String>, prefix: &str) -> Result<EtcdRegistry, RegistryError> {
        let location = format!("etcd {}{prefix}", endpoints.join(","));
        if endpoints.is_empty() {
            return Err(RegistryError::Backend {
                location,
                what: "configure",
                reason: "no etcd endpoint given".into(),
            });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Backend {
                location,
                what: "start the etcd client's runtime",
                reason: e.to_string(),
            })?;
        Ok(EtcdRegistry {
            endpoints,
            prefix: prefix.trim_end_matches('/').to_string(),
            runtime,
            client: None,
        })
    }

    fn location(&self) -> String {
        format!("etcd {}{}", self.endpoints.join(","), self.prefix)
    }

    fn fail(&self, what: &'static str) -> impl Fn(String) -> RegistryError + '_ {
        move |reason| RegistryError::Backend {
            location: self.location(),
            what,
            reason,
        }
    }

    /// The connected client (connecting the first time).
    fn client(&mut self) -> Result<Client, RegistryError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let endpoints = self.endpoints.clone();
        let connected = self
            .runtime
            .block_on(async move {
                let opts = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(std::time::Duration::from_secs(5))
                    .with_timeout(std::time::Duration::from_secs(20));
                Client::connect(endpoints, Some(opts)).await
            })
            .map_err(|e| e.to_string())
            .map_err(self.fail("connect"))?;
        self.client = Some(connected.clone());
        Ok(connected)
    }

    fn key(&self, table: Table, key: &str) -> String {
        format!("{}/{}/{key}", self.prefix, table.name())
    }

    /// Splits a stored key into (table, record key).
    fn parse_key<'a>(&self, full: &'a str) -> Option<(Table, &'a str)> {
        let rest = full.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let (table, key) = rest.split_once('/')?;
        let table = Table::ALL.into_iter().find(|t| t.name() == table)?;
        Some((table, key))
    }
}

impl Registry for EtcdRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "etcd".into(),
            location: format!("{}{}", self.endpoints.join(","), self.prefix),
        }
    }

    fn load(&mut self) -> Result<Stored, RegistryError> {
        let mut client = self.client()?;
        let prefix = format!("{}/", self.prefix);
        let resp = self
            .runtime
            .block_on(async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .map_err(|e| e.to_string())
            .map_err(self.fail("read"))?;
        let mut stored = Stored::default();
        for kv in resp.kvs() {
            let full = String::from_utf8_lossy(kv.key()).into_owned();
            let Some((table, key)) = self.parse_key(&full) else {
                continue;
            };
            stored
                .tables
                .entry(table)
                .or_default()
                .insert(key.to_string(), kv.value().to_vec());
        }
        if let Some(mark) = super::check_format(&stored, &self.location())? {
            self.commit(std::slice::from_ref(&mark))?;
            stored.apply(&[mark]);
        }
        Ok(stored)
    }

    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError> {
        let client = self.client()?;
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let txn_ops: Vec<TxnOp> = chunk
                .iter()
                .map(|op| {
                    let key = self.key(op.table, &op.key);
                    match &op.value {
                        Some(v) => TxnOp::put(key, v.clone(), None),
                        None => TxnOp::delete(key, None),
                    }
                })
                .collect();
            let mut c = client.clone();
            self.runtime
                .block_on(async move { c.txn(Txn::new().and_then(txn_ops)).await })
                .map_err(|e| e.to_string())
                .map_err(self.fail("write"))?;
        }
        Ok(CommitStats::of(ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::conformance::suite;

    /// A real etcd on free loopback ports in a temp dir, stopped on drop.
    struct Etcd {
        child: std::process::Child,
        client_url: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0)
    }

    fn start_etcd() -> Option<Etcd> {
        let dir = tempfile::tempdir().ok()?;
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = std::process::Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Etcd {
            child,
            client_url,
            _dir: dir,
        })
    }

    #[test]
    fn etcd_backend_passes_the_suite() {
        let Some(etcd) = start_etcd() else {
            println!("skipped: etcd is not installed (apt-get install etcd-server)");
            return;
        };
        // Wait (bounded) until etcd answers.
        let mut ready = false;
        for _ in 0..200 {
            let mut probe =
                EtcdRegistry::new(vec![etcd.client_url.clone()], "/probe").expect("registry");
            if probe.load().is_ok() {
                ready = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(ready, "etcd did not answer at {}", etcd.client_url);
        let url = etcd.client_url.clone();
        suite(|| {
            Box::new(EtcdRegistry::new(vec![url.clone()], "/proffer/test").expect("registry"))
        });
        // Keys with '/' (role names) and batches larger than one transaction round-trip.
        let mut r = EtcdRegistry::new(vec![url.clone()], "/proffer/big").expect("registry");
        r.load().expect("load");
        let ops: Vec<RegistryOp> = (0..300)
            .map(|i| RegistryOp {
                table: Table::Roles,
                key: format!("eng/team-{i}"),
                value: Some(vec![1, 2, 3]),
            })
            .collect();
        r.commit(&ops).expect("commit 300");
        let got = EtcdRegistry::new(vec![url], "/proffer/big")
            .expect("registry")
            .load()
            .expect("reload");
        assert_eq!(got.table(Table::Roles).count(), 300);
        assert!(got.get(Table::Roles, "eng/team-7").is_some());
    }

    #[test]
    fn an_unreachable_etcd_is_a_clear_error() {
        let mut r = EtcdRegistry::new(vec!["http://127.0.0.1:1".into()], "/x").expect("registry");
        let err = r.load().expect_err("nothing listens on port 1");
        assert!(
            err.to_string().contains("etcd http://127.0.0.1:1/x"),
            "{err}"
        );
        assert!(EtcdRegistry::new(Vec::new(), "/x").is_err());
    }
}
