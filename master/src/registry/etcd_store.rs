//! The etcd registry: records under `PREFIX/TABLE/KEY` in an etcd v3 cluster (the
//! distribution's `etcd`), each batch written in one transaction (split in transactions of at
//! most 128 operations, etcd's default `--max-txn-ops`).
//!
//! Writes are **fenced** when the master leads through an etcd election
//! ([`EtcdRegistry::fenced`]): every transaction succeeds only while the election key of this
//! master's leadership still exists with the revision it was created at, so a deposed leader
//! can never overwrite what a newer one wrote ([`RegistryError::Fenced`], never retried).
//!
//! The etcd client is asynchronous; this backend owns a small runtime of its own and blocks on
//! it, so it must be used from a plain or blocking thread (the registry writer thread, or
//! `spawn_blocking`), never from async code.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::{CommitStats, Registry, RegistryError, RegistryInfo, RegistryOp, Stored, Table};
use crate::etcd::EtcdConfig;

/// Operations per etcd transaction (etcd's default `--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;
/// A stored key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Keys per read when loading.
const LOAD_PAGE: i64 = 2_000;

/// The leadership a fenced write must still hold: the election key and its creation revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The election key (`NAME/LEASE_ID`).
    pub key: Vec<u8>,
    /// The revision that key was created at.
    pub create_revision: i64,
}

/// A registry in etcd.
pub struct EtcdRegistry {
    config: EtcdConfig,
    prefix: String,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    fence: Option<Fence>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &self.prefix)
            .field("fence", &self.fence)
            .finish()
    }
}

impl EtcdRegistry {
    /// A registry on `config`'s members under `prefix` (e.g. `/proffer/prod`). Connects on
    /// first use (from a blocking thread).
    pub fn new(config: EtcdConfig, prefix: &str) -> Result<EtcdRegistry, RegistryError> {
        let location = format!("etcd {}{prefix}", config.endpoints.join(","));
        if config.endpoints.is_empty() {
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
            config,
            prefix: prefix.trim_end_matches('/').to_string(),
            runtime,
            client: None,
            fence: None,
        })
    }

    /// This registry with every write fenced on `fence` (the leadership won in an election).
    pub fn fenced(mut self, fence: Fence) -> EtcdRegistry {
        self.fence = Some(fence);
        self
    }

    fn location(&self) -> String {
        format!("etcd {}{}", self.config.endpoints.join(","), self.prefix)
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
        let opts = self
            .config
            .connect_options(Some(std::time::Duration::from_secs(20)))
            .map_err(|e| e.to_string())
            .map_err(self.fail("configure"))?;
        let endpoints = self.config.endpoints.clone();
        let connected = self
            .runtime
            .block_on(async move { Client::connect(endpoints, Some(opts)).await })
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

    /// Every key under the prefix, read in pages of [`LOAD_PAGE`] keys at one revision (a
    /// single answer is capped at 4 MiB by the client, about 22,000 agent records).
    fn read_all(&mut self) -> Result<Vec<KeyValue>, RegistryError> {
        let client = self.client()?;
        let prefix = format!("{}/", self.prefix).into_bytes();
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last += 1; // '/' + 1: the first key after the prefix's range
        }
        let mut from = prefix;
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LOAD_PAGE)
                .with_sort(etcd_client::SortTarget::Key, etcd_client::SortOrder::Ascend);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let mut c = client.clone();
            let key = from.clone();
            let resp = self
                .runtime
                .block_on(async move { c.get(key, Some(opts)).await })
                .map_err(|e| e.to_string())
                .map_err(self.fail("read"))?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            for kv in resp.kvs() {
                out.push((kv.key().to_vec(), kv.value().to_vec()));
            }
            match out.last() {
                Some((last, _)) if more => {
                    from = last.clone();
                    from.push(0); // the next key after the last one read
                }
                _ => return Ok(out),
            }
        }
    }

    /// One transaction: `ops`, conditional on the fence when there is one.
    fn txn(&self, ops: &[&RegistryOp]) -> Txn {
        let txn_ops: Vec<TxnOp> = ops
            .iter()
            .map(|op| {
                let key = self.key(op.table, &op.key);
                match &op.value {
                    Some(v) => TxnOp::put(key, v.clone(), None),
                    None => TxnOp::delete(key, None),
                }
            })
            .collect();
        let txn = Txn::new();
        let txn = match &self.fence {
            Some(f) => txn.when(vec![Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.create_revision,
            )]),
            None => txn,
        };
        txn.and_then(txn_ops)
    }
}

/// The last op on each key of `ops`, in the order of those last ops.
fn last_per_key(ops: &[RegistryOp]) -> Vec<&RegistryOp> {
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<&RegistryOp> = ops
        .iter()
        .rev()
        .filter(|op| seen.insert((op.table, op.key.as_str())))
        .collect();
    last.reverse();
    last
}

impl Registry for EtcdRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "etcd".into(),
            location: format!("{}{}", self.config.endpoints.join(","), self.prefix),
        }
    }

    fn load(&mut self) -> Result<Stored, RegistryError> {
        let kvs = self.read_all()?;
        let mut stored = Stored::default();
        for (key, value) in kvs {
            let full = String::from_utf8_lossy(&key).into_owned();
            let Some((table, key)) = self.parse_key(&full) else {
                continue;
            };
            stored
                .tables
                .entry(table)
                .or_default()
                .insert(key.to_string(), value);
        }
        if let Some(mark) = super::check_format(&stored, &self.location())? {
            self.commit(std::slice::from_ref(&mark))?;
            stored.apply(&[mark]);
        }
        Ok(stored)
    }

    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError> {
        let client = self.client()?;
        // etcd refuses a transaction naming a key twice; the last op on a key is its outcome.
        let last = last_per_key(ops);
        for chunk in last.chunks(MAX_TXN_OPS) {
            let txn = self.txn(chunk);
            let mut c = client.clone();
            let resp = self
                .runtime
                .block_on(async move { c.txn(txn).await })
                .map_err(|e| e.to_string())
                .map_err(self.fail("write"))?;
            if !resp.succeeded() {
                return Err(RegistryError::Fenced {
                    location: self.location(),
                });
            }
        }
        Ok(CommitStats::of(ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::conformance::suite;

    fn cfg(url: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![url.to_string()],
            tls: None,
        }
    }

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
            let mut probe = EtcdRegistry::new(cfg(&etcd.client_url), "/probe").expect("registry");
            if probe.load().is_ok() {
                ready = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(ready, "etcd did not answer at {}", etcd.client_url);
        let url = etcd.client_url.clone();
        suite(|| Box::new(EtcdRegistry::new(cfg(&url), "/proffer/test").expect("registry")));
        // Keys with '/' (role names) and batches larger than one transaction round-trip.
        let mut r = EtcdRegistry::new(cfg(&url), "/proffer/big").expect("registry");
        r.load().expect("load");
        let ops: Vec<RegistryOp> = (0..4500)
            .map(|i| RegistryOp {
                table: Table::Roles,
                key: format!("eng/team-{i}"),
                value: Some(vec![1, 2, 3]),
            })
            .collect();
        r.commit(&ops).expect("commit 4500");
        let got = EtcdRegistry::new(cfg(&url), "/proffer/big")
            .expect("registry")
            .load()
            .expect("reload");
        assert_eq!(got.table(Table::Roles).count(), 4500, "read in pages");
        assert!(got.get(Table::Roles, "eng/team-7").is_some());
    }

    #[test]
    fn fenced_writes_succeed_only_while_the_fence_key_lives() {
        let Some(etcd) = start_etcd() else {
            println!("skipped: etcd is not installed (apt-get install etcd-server)");
            return;
        };
        let url = etcd.client_url.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut client = rt.block_on(async {
            for _ in 0..200 {
                if let Ok(mut c) = Client::connect([url.clone()], None).await
                    && c.get("probe", None).await.is_ok()
                {
                    return c;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("etcd did not answer at {url}");
        });
        let put = rt
            .block_on(client.put("/f/leader/1", "me", None))
            .expect("put");
        let rev = put.header().map(|h| h.revision()).expect("revision");
        let fence = Fence {
            key: b"/f/leader/1".to_vec(),
            create_revision: rev,
        };
        let op = |k: &str| RegistryOp {
            table: Table::Roles,
            key: k.into(),
            value: Some(vec![1]),
        };
        let mut r = EtcdRegistry::new(cfg(&url), "/f")
            .expect("registry")
            .fenced(fence.clone());
        r.load().expect("load");
        r.commit(&[op("web")]).expect("the fence holds");
        // Deposed: the key is gone (then re-created by someone else: a newer revision).
        rt.block_on(client.delete("/f/leader/1", None))
            .expect("delete");
        let err = r.commit(&[op("db")]).expect_err("fenced off");
        assert!(matches!(err, RegistryError::Fenced { .. }), "{err}");
        rt.block_on(client.put("/f/leader/1", "other", None))
            .expect("put");
        let err = r.commit(&[op("db")]).expect_err("still fenced off");
        assert!(matches!(err, RegistryError::Fenced { .. }), "{err}");
        let got = EtcdRegistry::new(cfg(&url), "/f")
            .expect("registry")
            .load()
            .expect("load");
        assert!(got.get(Table::Roles, "web").is_some());
        assert!(
            got.get(Table::Roles, "db").is_none(),
            "a deposed leader wrote"
        );
    }

    #[test]
    fn an_unreachable_etcd_is_a_clear_error() {
        let mut r = EtcdRegistry::new(cfg("http://127.0.0.1:1"), "/x").expect("registry");
        let err = r.load().expect_err("nothing listens on port 1");
        assert!(
            err.to_string().contains("etcd http://127.0.0.1:1/x"),
            "{err}"
        );
        assert!(EtcdRegistry::new(EtcdConfig::default(), "/x").is_err());
    }
}
