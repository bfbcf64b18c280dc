//! An etcd v3 client over etcd's gRPC API, with the `etcd-client` crate — the same client as
//! `proffer-master`'s etcd registry and leader election (its `protoc` comes from the
//! workspace's `tools/protoc`) — and the decision a starting member makes about its
//! membership ([`join_decision`]).
//!
//! The endpoints are tried in order, each through its own connection (opened on first use and
//! kept): an endpoint that does not answer in time, or answers that it cannot serve (no leader,
//! unavailable), is passed over for the next one; any other refusal is the answer. So a member
//! that is down or stopped costs at most one timeout per request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{AlarmAction, AlarmType, Certificate, Client, ConnectOptions, Identity};
use etcd_client::{MemberAddResponse, TlsOptions};
use tokio::sync::OnceCell;
use tonic::Code;

use crate::tlsutil::{self, TlsError};

/// An etcd request failure.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered: each one's failure, in order.
    #[error("no etcd endpoint answered {what}: {}", .failures.join("; "))]
    Unreachable {
        /// The request (`put`, `member list`, …).
        what: &'static str,
        /// `endpoint: why` for every endpoint tried.
        failures: Vec<String>,
    },
    /// An endpoint answered with an error.
    #[error("etcd {endpoint}: {what} refused ({code:?}): {message}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The request.
        what: &'static str,
        /// The gRPC status code.
        code: Code,
        /// etcd's message.
        message: String,
    },
    /// The answer lacked what was asked for.
    #[error("etcd {endpoint}: {what}: unexpected answer: {reason}")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// The request.
        what: &'static str,
        /// What was missing.
        reason: String,
    },
    /// The cluster answered but reports itself unhealthy (alarms raised).
    #[error("etcd {endpoint}: unhealthy: {reason}")]
    Unhealthy {
        /// The endpoint.
        endpoint: String,
        /// The alarms.
        reason: String,
    },
    /// No endpoints were given.
    #[error("no etcd endpoints")]
    NoEndpoints,
}

/// TLS material for `https://` endpoints (PEM): the CA that signed etcd's serving
/// certificates and, when etcd requires client authentication, a client certificate and key.
#[derive(Clone)]
pub struct EtcdTls {
    ca_pem: String,
    identity: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl EtcdTls {
    /// TLS trusting `ca_pem`, presenting `client` (`(cert, key)` PEM) when given. The material
    /// is checked now (it must parse as a certificate and key) so that a bad file is refused
    /// when the client is built, not on its first request; `what` names it in the error.
    pub fn new(
        ca_pem: &str,
        client: Option<(&str, &str)>,
        what: &str,
    ) -> Result<EtcdTls, TlsError> {
        tlsutil::client_config(ca_pem, client, what)?;
        Ok(EtcdTls {
            ca_pem: ca_pem.to_string(),
            identity: client.map(|(c, k)| (c.to_string(), k.to_string())),
        })
    }

    fn options(&self) -> TlsOptions {
        let opts = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => opts.identity(Identity::from_pem(cert, key)),
            None => opts,
        }
    }
}

/// One endpoint and its connection, opened on first use.
struct Conn {
    url: String,
    client: OnceCell<Client>,
}

/// A client for a set of etcd endpoints (tried in order). Clones share the connections.
#[derive(Clone)]
pub struct Etcd {
    conns: Arc<[Conn]>,
    tls: Option<EtcdTls>,
    timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<&str> = self.conns.iter().map(|c| c.url.as_str()).collect();
        f.debug_struct("Etcd")
            .field("endpoints", &endpoints)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One member of an etcd cluster, as `member list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// The member name; empty while an added member has not started yet (a member of the
    /// initial bootstrap is named from `--initial-cluster` before it ever started).
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs: published by the member when it starts, so empty until it has.
    pub client_urls: Vec<String>,
}

impl From<&etcd_client::Member> for Member {
    fn from(m: &etcd_client::Member) -> Member {
        Member {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
        }
    }
}

/// The status of a failure that is etcd's answer: a refusal to report. `None` when the
/// endpoint could not serve the request and the next one is asked: not connected, no answer,
/// or etcd's own "unavailable" (no leader, shutting down, request timed out).
fn refusal(e: &etcd_client::Error) -> Option<&tonic::Status> {
    match e {
        etcd_client::Error::GRpcStatus(s)
            if !matches!(
                s.code(),
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Unknown
                    | Code::Internal
            ) =>
        {
            Some(s)
        }
        _ => None,
    }
}

impl Etcd {
    /// A client for `endpoints` (`http(s)://host:port`); `tls` is used for the https ones.
    /// Nothing is dialled until the first request.
    pub fn new(endpoints: Vec<String>, tls: Option<EtcdTls>) -> Etcd {
        let conns: Vec<Conn> = endpoints
            .into_iter()
            .map(|e| Conn {
                url: e.trim_end_matches('/').to_string(),
                client: OnceCell::new(),
            })
            .collect();
        Etcd {
            conns: conns.into(),
            tls,
            timeout: Duration::from_secs(3),
        }
    }

    /// The same client (sharing its connections) with another per-request timeout, per
    /// endpoint and connecting included (default 3 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Etcd {
        self.timeout = timeout;
        self
    }

    /// The client of `conn`, connected on first use (lazily: the connection is made by the
    /// first request, and made again by a later one if it breaks).
    async fn client(&self, conn: &Conn) -> Result<Client, etcd_client::Error> {
        let client = conn
            .client
            .get_or_try_init(|| async {
                let mut opts = ConnectOptions::new()
                    .with_connect_timeout(self.timeout)
                    // etcd sends GOAWAY to clients pinging more often than its
                    // --grpc-keepalive-min-time (5 s by default).
                    .with_keep_alive(Duration::from_secs(6), Duration::from_secs(4))
                    .with_keep_alive_while_idle(true);
                if let Some(tls) = self
                    .tls
                    .as_ref()
                    .filter(|_| conn.url.starts_with("https://"))
                {
                    opts = opts.with_tls(tls.options());
                }
                Client::connect([conn.url.as_str()], Some(opts)).await
            })
            .await?;
        Ok(client.clone())
    }

    /// Runs `op` against the endpoints in order until one answers; returns that endpoint and
    /// its answer. `what` names the request in errors.
    async fn call<T, F, Fut>(&self, what: &'static str, op: F) -> Result<(String, T), EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        if self.conns.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let mut failures = Vec::new();
        for conn in self.conns.iter() {
            let attempt = async { op(self.client(conn).await?).await };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(v)) => return Ok((conn.url.clone(), v)),
                Ok(Err(e)) => match refusal(&e) {
                    Some(s) => {
                        return Err(EtcdError::Status {
                            endpoint: conn.url.clone(),
                            what,
                            code: s.code(),
                            message: s.message().to_string(),
                        });
                    }
                    None => failures.push(format!("{}: {e}", conn.url)),
                },
                Err(_) => {
                    failures.push(format!("{}: no answer within {:?}", conn.url, self.timeout))
                }
            }
        }
        Err(EtcdError::Unreachable { what, failures })
    }

    /// Writes `key` = `value`.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), EtcdError> {
        self.call("put", |mut c| async move {
            c.put(key, value, None).await.map(drop)
        })
        .await?;
        Ok(())
    }

    /// Reads `key` (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let (_, value) = self
            .call("get", |mut c| async move {
                let r = c.get(key, None).await?;
                Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
            })
            .await?;
        Ok(value)
    }

    /// The cluster's members.
    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let (_, members) = self
            .call("member list", |mut c| async move {
                let r = c.member_list().await?;
                Ok(r.members().iter().map(Member::from).collect())
            })
            .await?;
        Ok(members)
    }

    /// Removes member `id`.
    pub async fn remove_member(&self, id: u64) -> Result<(), EtcdError> {
        self.call("member remove", |mut c| async move {
            c.member_remove(id).await.map(drop)
        })
        .await?;
        Ok(())
    }

    /// Adds a member with `peer_url`; returns the new member and the members after the change.
    pub async fn add_member(&self, peer_url: &str) -> Result<(Member, Vec<Member>), EtcdError> {
        let (endpoint, r): (String, MemberAddResponse) = self
            .call("member add", |mut c| async move {
                c.member_add([peer_url], None).await
            })
            .await?;
        let member = r.member().ok_or_else(|| EtcdError::Decode {
            endpoint,
            what: "member add",
            reason: "no added member in the answer".into(),
        })?;
        Ok((
            Member::from(member),
            r.member_list().iter().map(Member::from).collect(),
        ))
    }

    /// Whether the cluster reports itself healthy, as `etcdctl endpoint health` decides: a
    /// linearizable read answers (so there is a leader and a quorum) and no alarm is raised.
    pub async fn health(&self) -> Result<(), EtcdError> {
        let (endpoint, alarms) = self
            .call("health", |mut c| async move {
                match c.get("health", None).await {
                    // Permission denied is an answer from a working cluster.
                    Err(etcd_client::Error::GRpcStatus(s))
                        if s.code() == Code::PermissionDenied => {}
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                let r = c.alarm(AlarmAction::Get, AlarmType::None, None).await?;
                Ok(r.alarms()
                    .iter()
                    .map(|a| format!("{:?} on member {:x}", a.alarm(), a.member_id()))
                    .collect::<Vec<_>>())
            })
            .await?;
        if alarms.is_empty() {
            Ok(())
        } else {
            Err(EtcdError::Unhealthy {
                endpoint,
                reason: alarms.join(", "),
            })
        }
    }
}

/// What a starting etcd member does about its membership, decided by [`join_decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Start as configured: `--initial-cluster-state new` with the configured initial cluster
    /// (also right when the data directory already holds the member: etcd then ignores both).
    AsConfigured,
    /// Join the running cluster: `--initial-cluster-state existing` with its members.
    Existing,
    /// The member ran before and lost its data (a replacement on a fresh volume): remove the
    /// old member `id`, add this one again, then start `existing`.
    Replace {
        /// The id of the old member.
        id: u64,
    },
    /// The running cluster does not know this member (an earlier replacement removed it but
    /// did not add it back): add it, then start `existing`.
    Add,
}

/// Decides how a member named `name` with `peer_url` starts, given whether its data directory
/// holds a member already and the running cluster's members (`None`: no other member
/// answered, so the cluster is being bootstrapped).
pub fn join_decision(
    has_data: bool,
    running: Option<&[Member]>,
    name: &str,
    peer_url: &str,
) -> Join {
    let Some(members) = running.filter(|_| !has_data) else {
        return Join::AsConfigured;
    };
    let peer = peer_url.trim_end_matches('/');
    let mine = members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u.trim_end_matches('/') == peer));
    match mine {
        // Listed but never started (no client URLs published): a late member of the initial
        // bootstrap (named from the initial cluster), or added by an earlier attempt of this
        // very replacement (no name yet).
        Some(m) if m.name.is_empty() || m.client_urls.is_empty() => Join::Existing,
        Some(m) if m.name == name => Join::Replace { id: m.id },
        // Another name on our peer URL: the configuration changed; let etcd refuse it.
        Some(_) => Join::AsConfigured,
        None => Join::Add,
    }
}

/// The `--initial-cluster` value for joining a running cluster: every named member with its
/// first peer URL, and this member (`name`) at `peer_url`.
pub fn initial_cluster_of(members: &[Member], name: &str, peer_url: &str) -> String {
    let peer = peer_url.trim_end_matches('/');
    let mut out: Vec<String> = members
        .iter()
        .filter(|m| !m.peer_urls.iter().any(|u| u.trim_end_matches('/') == peer))
        .filter(|m| !m.name.is_empty())
        .filter_map(|m| m.peer_urls.first().map(|u| format!("{}={u}", m.name)))
        .collect();
    out.push(format!("{name}={peer}"));
    out.join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    /// A member; started (with a client URL) when it has a name.
    fn m(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: if name.is_empty() {
                Vec::new()
            } else {
                vec![peer.replace(":2380", ":2379")]
            },
        }
    }

    #[test]
    fn join_decisions() {
        let me = "https://10.0.0.2:2380";
        let running = vec![
            m(1, "cp-0", "https://10.0.0.1:2380"),
            m(2, "cp-1", me),
            m(3, "cp-2", "https://10.0.0.3:2380"),
        ];
        let unstarted = vec![running[0].clone(), m(2, "", me), running[2].clone()];
        // A late member of the initial bootstrap: named, but it never published client URLs
        // (as etcd 3.4 lists it). Treating it as started-then-lost replaced it (member remove
        // + add) while the others were still bootstrapping.
        let late = vec![
            running[0].clone(),
            Member {
                client_urls: Vec::new(),
                ..running[1].clone()
            },
            running[2].clone(),
        ];
        let removed = vec![running[0].clone(), running[2].clone()];
        let cases: Vec<(bool, Option<&[Member]>, Join)> = vec![
            (true, Some(&running), Join::AsConfigured),
            (false, None, Join::AsConfigured),
            (true, None, Join::AsConfigured),
            (false, Some(&running), Join::Replace { id: 2 }),
            (false, Some(&unstarted), Join::Existing),
            (false, Some(&late), Join::Existing),
            (true, Some(&late), Join::AsConfigured),
            (false, Some(&removed), Join::Add),
        ];
        for (has_data, members, want) in cases {
            assert_eq!(
                join_decision(has_data, members, "cp-1", me),
                want,
                "data {has_data}, members {members:?}"
            );
        }
        let renamed = vec![m(2, "other", me)];
        assert_eq!(
            join_decision(false, Some(&renamed), "cp-1", me),
            Join::AsConfigured
        );
    }

    #[test]
    fn initial_cluster_lists_named_members_and_self() {
        let me = "https://10.0.0.2:2380";
        let members = vec![
            m(1, "cp-0", "https://10.0.0.1:2380"),
            m(9, "", me),
            m(3, "cp-2", "https://10.0.0.3:2380"),
        ];
        assert_eq!(
            initial_cluster_of(&members, "cp-1", me),
            "cp-0=https://10.0.0.1:2380,cp-2=https://10.0.0.3:2380,cp-1=https://10.0.0.2:2380"
        );
    }
}
