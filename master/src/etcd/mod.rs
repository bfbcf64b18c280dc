//! Talking to etcd: the connection settings (endpoints, TLS) shared by the etcd registry and
//! the leader election.

pub mod election;
pub mod launch;

use std::path::PathBuf;
use std::time::Duration;

/// How to reach an etcd cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs or `HOST:PORT`s of the members.
    pub endpoints: Vec<String>,
    /// TLS, when etcd serves `https://`.
    pub tls: Option<EtcdTls>,
}

/// TLS settings for etcd (as etcdctl's `--cacert`, `--cert`, `--key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificate (PEM).
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM), when etcd requires client authentication.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key: Option<PathBuf>,
}

/// Errors reading the etcd settings.
#[derive(Debug, thiserror::Error)]
pub enum EtcdConfigError {
    /// No endpoint.
    #[error("no etcd endpoint given")]
    NoEndpoint,
    /// A TLS file cannot be read.
    #[error("cannot read the etcd TLS file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A client certificate without its key or the other way round.
    #[error("--etcd-cert and --etcd-key go together (one was given without the other)")]
    HalfIdentity,
}

impl EtcdConfig {
    /// Endpoints from `etcd://h1:2379,h2:2379` (or a bare comma-separated list); with TLS the
    /// members are dialled over `https://`.
    pub fn parse(spec: &str, tls: Option<EtcdTls>) -> Result<EtcdConfig, EtcdConfigError> {
        let list = spec.strip_prefix("etcd://").unwrap_or(spec);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoint);
        }
        Ok(EtcdConfig { endpoints, tls })
    }

    /// The client options: connect timeout, an optional per-request timeout, TLS.
    pub fn connect_options(
        &self,
        request_timeout: Option<Duration>,
    ) -> Result<etcd_client::ConnectOptions, EtcdConfigError> {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // etcd sends GOAWAY to clients pinging more often than its
            // --grpc-keepalive-min-time (5 s by default).
            .with_keep_alive(Duration::from_secs(6), Duration::from_secs(4))
            .with_keep_alive_while_idle(true);
        if let Some(t) = request_timeout {
            opts = opts.with_timeout(t);
        }
        if let Some(tls) = &self.tls {
            opts = opts.with_tls(tls.options()?);
        }
        Ok(opts)
    }
}

impl EtcdTls {
    fn options(&self) -> Result<etcd_client::TlsOptions, EtcdConfigError> {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| EtcdConfigError::Read {
                path: p.clone(),
                source,
            })
        };
        let mut opts = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca {
            opts = opts.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                opts = opts.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
            }
            (None, None) => {}
            _ => return Err(EtcdConfigError::HalfIdentity),
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let c = EtcdConfig::parse("etcd://a:2379, b:2379,,http://c:1", None).expect("parse");
        assert_eq!(
            c.endpoints,
            ["http://a:2379", "http://b:2379", "http://c:1"]
        );
        let tls = EtcdConfig::parse("a:2379", Some(EtcdTls::default())).expect("parse");
        assert_eq!(tls.endpoints, ["https://a:2379"]);
        assert!(matches!(
            EtcdConfig::parse("etcd://", None),
            Err(EtcdConfigError::NoEndpoint)
        ));
        let half = EtcdConfig {
            endpoints: vec!["https://a:1".into()],
            tls: Some(EtcdTls {
                ca: None,
                cert: Some("/c".into()),
                key: None,
            }),
        };
        assert!(matches!(
            half.connect_options(None),
            Err(EtcdConfigError::HalfIdentity)
        ));
        let missing = EtcdConfig {
            endpoints: vec!["https://a:1".into()],
            tls: Some(EtcdTls {
                ca: Some("/nonexistent/ca.pem".into()),
                ..EtcdTls::default()
            }),
        };
        let err = missing.connect_options(None).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
