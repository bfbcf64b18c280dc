//! An etcd v3 client over etcd's JSON gRPC gateway (`POST /v3/kv/put`, `/v3/kv/range`,
//! `GET /health`; keys and values base64).
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
