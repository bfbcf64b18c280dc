//! Kubeconfig files (`apiVersion: v1, kind: Config`) with embedded certificate data.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A kubeconfig with one cluster, one user and one context (the shape kubeadm writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Config`.
    pub kind: String,
    /// The clusters.
    pub clusters: Vec<NamedCluster>,
    /// The users.
    pub users: Vec<NamedUser>,
    /// The contexts.
    pub contexts: Vec<NamedContext>,
    /// The current context.
    pub current_context: String,
}

/// A named cluster entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// Name.
    pub name: String,
    /// The cluster.
    pub cluster: ClusterEntry,
}

/// Where the apiserver is and which CA it is signed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterEntry {
    /// `https://host:port`.
    pub server: String,
    /// Base64 of the CA certificate PEM.
    pub certificate_authority_data: String,
}

/// A named user entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    /// Name.
    pub name: String,
    /// The credentials.
    pub user: UserEntry,
}

/// Client-certificate credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserEntry {
    /// Base64 of the client certificate PEM.
    pub client_certificate_data: String,
    /// Base64 of the client key PEM.
    pub client_key_data: String,
}

/// A named context entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// Name.
    pub name: String,
    /// The context.
    pub context: ContextEntry,
}

/// A cluster + user pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEntry {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    pub user: String,
}

/// A kubeconfig that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Not YAML of the right shape.
    #[error("kubeconfig is not valid: {0}")]
    Parse(#[from] serde_norway::Error),
    /// The current context, its cluster or its user is missing.
    #[error("kubeconfig: {0}")]
    Missing(String),
    /// Embedded data is not base64 of UTF-8 text.
    #[error("kubeconfig: `{field}` is not base64 PEM text")]
    Data {
        /// The field.
        field: &'static str,
    },
}

/// What a component needs from its kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The apiserver URL.
    pub server: String,
    /// CA certificate PEM.
    pub ca_pem: String,
    /// Client certificate PEM.
    pub cert_pem: String,
    /// Client key PEM.
    pub key_pem: String,
}

impl Kubeconfig {
    /// A kubeconfig for `user` on `cluster` at `server`.
    pub fn new(cluster: &str, server: &str, user: &str, creds: &Credentials) -> Kubeconfig {
        let context = format!("{user}@{cluster}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster.into(),
                cluster: ClusterEntry {
                    server: server.into(),
                    certificate_authority_data: STANDARD.encode(&creds.ca_pem),
                },
            }],
            users: vec![NamedUser {
                name: user.into(),
                user: UserEntry {
                    client_certificate_data: STANDARD.encode(&creds.cert_pem),
                    client_key_data: STANDARD.encode(&creds.key_pem),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: ContextEntry {
                    cluster: cluster.into(),
                    user: user.into(),
                },
            }],
            current_context: context,
        }
    }

    /// The YAML text.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_default()
    }

    /// Parses kubeconfig YAML.
    pub fn parse(yaml: &str) -> Result<Kubeconfig, KubeconfigError> {
        Ok(serde_norway::from_str(yaml)?)
    }

    /// The server and credentials of the current context.
    pub fn credentials(&self) -> Result<Credentials, KubeconfigError> {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| {
                KubeconfigError::Missing(format!("no context `{}`", self.current_context))
            })?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                KubeconfigError::Missing(format!("no cluster `{}`", ctx.context.cluster))
            })?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| KubeconfigError::Missing(format!("no user `{}`", ctx.context.user)))?;
        Ok(Credentials {
            server: cluster.cluster.server.clone(),
            ca_pem: decode(
                &cluster.cluster.certificate_authority_data,
                "certificate-authority-data",
            )?,
            cert_pem: decode(
                &user.user.client_certificate_data,
                "client-certificate-data",
            )?,
            key_pem: decode(&user.user.client_key_data, "client-key-data")?,
        })
    }
}

fn decode(b64: &str, field: &'static str) -> Result<String, KubeconfigError> {
    STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(KubeconfigError::Data { field })
}
