//! An etcd v3 client over etcd's JSON gRPC gateway (`POST /v3/kv/put`, `/v3/kv/range`,
//! `/v3/cluster/member/list|add|remove`, `GET /health`; keys and values base64), and the
//! decision a starting member makes about its membership ([`join_decision`]).
//!
//! The gateway is used instead of a gRPC client crate so that no system `protoc` is needed at
//! build time; it is part of every etcd ≥ 3.4 server and speaks the same v3 API.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::http::{self, HttpError};

/// An etcd request failure.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered; the last error.
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(#[source] HttpError),
    /// An endpoint answered with an error.
    #[error("etcd {endpoint} answered {status}: {body}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("etcd {endpoint}: unexpected answer `{body}`")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// The body.
        body: String,
    },
    /// No endpoints were given.
    #[error("no etcd endpoints")]
    NoEndpoints,
}

/// A client for a set of etcd endpoints (tried in order).
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
}

#[derive(Deserialize)]
struct Kv {
    #[serde(default)]
    value: String,
}

/// One member of an etcd cluster, as `/v3/cluster/member/list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// The member id (a uint64, as a decimal string in the gateway's JSON).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The member name; empty while an added member has not started yet (a member of the
    /// initial bootstrap is named from `--initial-cluster` before it ever started).
    #[serde(default)]
    pub name: String,
    /// Its peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Its client URLs: published by the member when it starts, so empty until it has.
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

#[derive(Deserialize)]
struct MembersResponse {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct AddResponse {
    #[serde(default)]
    member: Option<Member>,
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Health {
    health: String,
}

impl Etcd {
    /// A client for `endpoints` (`http(s)://host:port`); `tls` is needed for https ones.
    pub fn new(endpoints: Vec<String>, tls: Option<Arc<rustls::ClientConfig>>) -> Etcd {
        Etcd {
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            tls,
            timeout: Duration::from_secs(3),
        }
    }

    /// The same client with another per-request timeout (default 3 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Etcd {
        self.timeout = timeout;
        self
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(String, String), EtcdError> {
        let mut last = None;
        for ep in &self.endpoints {
            let url = format!("{ep}{path}");
            match http::request(method, &url, body.clone(), self.tls.clone(), self.timeout).await {
                Ok(r) if r.status == 200 => return Ok((ep.clone(), r.body)),
                Ok(r) => {
                    return Err(EtcdError::Status {
                        endpoint: ep.clone(),
                        status: r.status,
                        body: r.body,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(EtcdError::NoEndpoints, EtcdError::Unreachable))
    }

    /// Writes `key` = `value`.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), EtcdError> {
        let body =
            serde_json::json!({"key": STANDARD.encode(key), "value": STANDARD.encode(value)});
        self.call("POST", "/v3/kv/put", Some(body.to_string()))
            .await?;
        Ok(())
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let body = serde_json::json!({"key": STANDARD.encode(key)});
        let (endpoint, text) = self
            .call("POST", "/v3/kv/range", Some(body.to_string()))
            .await?;
        let decode = || EtcdError::Decode {
            endpoint: endpoint.clone(),
            body: text.clone(),
        };
        let r: RangeResponse = serde_json::from_str(&text).map_err(|_| decode())?;
        match r.kvs.first() {
            None => Ok(None),
            Some(kv) => STANDARD.decode(&kv.value).map(Some).map_err(|_| decode()),
        }
    }

    /// The cluster's members.
    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let (endpoint, text) = self
            .call("POST", "/v3/cluster/member/list", Some("{}".into()))
            .await?;
        serde_json::from_str::<MembersResponse>(&text)
            .map(|r| r.members)
            .map_err(|_| EtcdError::Decode {
                endpoint,
                body: text,
            })
    }

    /// Removes member `id`.
    pub async fn remove_member(&self, id: &str) -> Result<(), EtcdError> {
        let body = serde_json::json!({ "ID": id });
        self.call("POST", "/v3/cluster/member/remove", Some(body.to_string()))
            .await?;
        Ok(())
    }

    /// Adds a member with `peer_url`; returns the new member and the members after the change.
    pub async fn add_member(&self, peer_url: &str) -> Result<(Member, Vec<Member>), EtcdError> {
        let body = serde_json::json!({ "peerURLs": [peer_url] });
        let (endpoint, text) = self
            .call("POST", "/v3/cluster/member/add", Some(body.to_string()))
            .await?;
        match serde_json::from_str::<AddResponse>(&text) {
            Ok(AddResponse {
                member: Some(m),
                members,
            }) => Ok((m, members)),
            _ => Err(EtcdError::Decode {
                endpoint,
                body: text,
            }),
        }
    }

    /// Whether the cluster reports itself healthy (`GET /health`).
    pub async fn health(&self) -> Result<(), EtcdError> {
        let (endpoint, text) = self.call("GET", "/health", None).await?;
        match serde_json::from_str::<Health>(&text) {
            Ok(h) if h.health == "true" => Ok(()),
            _ => Err(EtcdError::Decode {
                endpoint,
                body: text,
            }),
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
        id: String,
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
        Some(m) if m.name == name => Join::Replace { id: m.id.clone() },
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
    fn m(id: &str, name: &str, peer: &str) -> Member {
        Member {
            id: id.into(),
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
            m("1", "cp-0", "https://10.0.0.1:2380"),
            m("2", "cp-1", me),
            m("3", "cp-2", "https://10.0.0.3:2380"),
        ];
        let unstarted = vec![running[0].clone(), m("2", "", me), running[2].clone()];
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
            (false, Some(&running), Join::Replace { id: "2".into() }),
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
        let renamed = vec![m("2", "other", me)];
        assert_eq!(
            join_decision(false, Some(&renamed), "cp-1", me),
            Join::AsConfigured
        );
    }

    #[test]
    fn initial_cluster_lists_named_members_and_self() {
        let me = "https://10.0.0.2:2380";
        let members = vec![
            m("1", "cp-0", "https://10.0.0.1:2380"),
            m("9", "", me),
            m("3", "cp-2", "https://10.0.0.3:2380"),
        ];
        assert_eq!(
            initial_cluster_of(&members, "cp-1", me),
            "cp-0=https://10.0.0.1:2380,cp-2=https://10.0.0.3:2380,cp-1=https://10.0.0.2:2380"
        );
    }

    #[test]
    fn member_list_json_parses() {
        let text = r#"{"header":{"cluster_id":"1"},"members":[{"ID":"1234","name":"cp-0","peerURLs":["https://127.0.0.1:2380"],"clientURLs":["https://127.0.0.1:2379"]},{"ID":"99","peerURLs":["https://127.0.0.1:2390"]}]}"#;
        let r: MembersResponse = serde_json::from_str(text).unwrap();
        assert_eq!(r.members[0], m("1234", "cp-0", "https://127.0.0.1:2380"));
        assert_eq!(r.members[1], m("99", "", "https://127.0.0.1:2390"));
    }
}
