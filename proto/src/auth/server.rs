//! The server side of authentication: the credentials file and the per-surface gate.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use super::{CHALLENGE, Secret, check_principal, constant_time_eq};

/// Why a credentials file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("credentials file {path}: {reason}")]
    Invalid {
        /// The file (or `<inline>`).
        path: String,
        /// What is wrong (never quotes a secret).
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    #[serde(default)]
    credentials: Vec<BasicJson>,
    #[serde(default)]
    tokens: Vec<TokenJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicJson {
    principal: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenJson {
    principal: String,
    token: String,
}

/// The principals a server knows, with their secrets and bearer tokens
/// (`--credentials FILE`).
#[derive(Clone, Default)]
pub struct Credentials {
    secrets: Vec<(String, Secret)>,
    tokens: Vec<(String, Secret)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let principals: Vec<&str> = self.secrets.iter().map(|(p, _)| p.as_str()).collect();
        let tokens: Vec<&str> = self.tokens.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("Credentials")
            .field("principals", &principals)
            .field("token_principals", &tokens)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads a credentials file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Credentials::parse(&text, &path.display().to_string())
    }

    /// Parses credentials JSON: `{"credentials":[{"principal","secret"}],
    /// "tokens":[{"principal","token"}]}` (both lists optional). `origin` names the file in
    /// errors. Errors never quote a secret.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CredentialsError> {
        let invalid = |reason: String| CredentialsError::Invalid {
            path: origin.to_string(),
            reason,
        };
        // serde_json's messages quote unknown field names and types, never values.
        let file: FileJson = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "not a JSON object of credentials and tokens (line {}, column {}): {}",
                e.line(),
                e.column(),
                serde_error_kind(&e)
            ))
        })?;
        let mut seen = BTreeSet::new();
        let mut secrets = Vec::new();
        for (i, c) in file.credentials.into_iter().enumerate() {
            check_principal(&c.principal)
                .map_err(|r| invalid(format!("credentials[{i}].principal: {r}")))?;
            if c.secret.is_empty() {
                return Err(invalid(format!(
                    "credentials[{i}] (`{}`): the secret is empty",
                    c.principal
                )));
            }
            if !seen.insert(c.principal.clone()) {
                return Err(invalid(format!(
                    "credentials[{i}]: principal `{}` is listed twice",
                    c.principal
                )));
            }
            secrets.push((c.principal, Secret::new(c.secret)));
        }
        let mut tokens: Vec<(String, Secret)> = Vec::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            check_principal(&t.principal)
                .map_err(|r| invalid(format!("tokens[{i}].principal: {r}")))?;
            if t.token.len() < 16 {
                return Err(invalid(format!(
                    "tokens[{i}] (`{}`): a token needs at least 16 characters",
                    t.principal
                )));
            }
            if tokens.iter().any(|(_, s)| s.matches(t.token.as_bytes())) {
                return Err(invalid(format!(
                    "tokens[{i}] (`{}`): the same token is listed twice",
                    t.principal
                )));
            }
            tokens.push((t.principal, Secret::new(t.token)));
        }
        if secrets.is_empty() && tokens.is_empty() {
            return Err(invalid("no credentials and no tokens".into()));
        }
        Ok(Credentials { secrets, tokens })
    }

    /// How many principals with secrets, and how many tokens.
    pub fn counts(&self) -> (usize, usize) {
        (self.secrets.len(), self.tokens.len())
    }

    /// The principal an `authorization` value proves, or why it proves none. Every secret and
    /// token is compared in constant time, and an unknown principal costs a comparison too.
    pub fn verify(&self, authorization: &str) -> Result<String, AuthError> {
        let (scheme, rest) = authorization
            .trim()
            .split_once(' ')
            .ok_or(AuthError::Malformed("expected `Basic …` or `Bearer …`"))?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Malformed("Basic credentials are not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| AuthError::Malformed("Basic credentials are not UTF-8"))?;
            let (principal, secret) = text
                .split_once(':')
                .ok_or(AuthError::Malformed("Basic credentials lack `principal:`"))?;
            let found = self.secrets.iter().find(|(p, _)| p == principal);
            // Compare against something even for an unknown principal.
            let ok = match found {
                Some((_, s)) => s.matches(secret.as_bytes()),
                None => {
                    let _ = constant_time_eq(secret.as_bytes(), secret.as_bytes());
                    false
                }
            };
            if ok {
                Ok(principal.to_string())
            } else {
                Err(AuthError::Rejected(principal.to_string()))
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            // Look at every token: the time does not tell which one (if any) matched.
            let mut owner = None;
            for (p, t) in &self.tokens {
                if t.matches(rest.as_bytes()) && owner.is_none() {
                    owner = Some(p.clone());
                }
            }
            owner.ok_or(AuthError::BadToken)
        } else {
            Err(AuthError::Malformed(
                "unsupported scheme: expected `Basic` or `Bearer`",
            ))
        }
    }
}

/// The kind of a serde_json error without its excerpt of the input (which may hold a secret).
fn serde_error_kind(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // Messages look like "unknown field `x`, expected … at line 1 column 5": keep the part
    // before " at line"; invalid-type messages quote the value, so they are summarized.
    let head = text.split(" at line ").next().unwrap_or(&text).to_string();
    if head.starts_with("invalid type") || head.starts_with("invalid value") {
        "a field has the wrong type".into()
    } else if head.starts_with("unknown field") {
        // The unknown name may be a secret in the wrong place: name only what was expected.
        match head.split_once(", expected") {
            Some((_, expected)) => format!("an unknown field (expected{expected})"),
            None => "an unknown field".into(),
        }
    } else {
        head
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Authentication is required and the request presents nothing.
    #[error(
        "{surface} require authentication: present a credential (`authorization: Basic …` or `Bearer …`; proffer clients: --principal P --secret-file F)"
    )]
    Missing {
        /// What was called (`framework calls`, `agent sessions`, `operator reads`, …).
        surface: &'static str,
    },
    /// The `authorization` value is not one this server reads.
    #[error("invalid authorization: {0}")]
    Malformed(&'static str),
    /// Wrong secret, or unknown principal.
    #[error("authentication failed for principal `{0}`: unknown principal or wrong secret")]
    Rejected(String),
    /// The bearer token is nobody's.
    #[error("authentication failed: unknown bearer token")]
    BadToken,
    /// Only a client certificate (mutual TLS) can authenticate this caller.
    #[error(
        "{surface} require a client certificate of kind {kind} signed by the cluster CA (`proffer pki issue --kind {kind}`, then --tls-cert and --tls-key)"
    )]
    CertificateRequired {
        /// What was called.
        surface: &'static str,
        /// The certificate kind needed (`agent`).
        kind: &'static str,
    },
}

/// The principal a request was authenticated as (`None`: anonymous, allowed where
/// authentication is not required). Put into request extensions by the servers' middleware.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authenticated(pub Option<String>);

impl Authenticated {
    /// The principal, if any.
    pub fn principal(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The identity a transport proved for a connection (a TLS client certificate's subject, once
/// TLS lands): a request extension the gate takes as the principal when no `authorization` is
/// presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub String);

/// Authentication of one surface (framework calls, agent sessions, HTTP reads, HTTP writes):
/// the credentials known, and whether a principal is required.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    credentials: Option<Arc<Credentials>>,
    required: bool,
    surface: &'static str,
}

impl Gate {
    /// A gate for `surface` (named in refusals) checking against `credentials`.
    pub fn new(
        credentials: Option<Arc<Credentials>>,
        required: bool,
        surface: &'static str,
    ) -> Self {
        Gate {
            credentials,
            required,
            surface,
        }
    }

    /// A gate that lets everyone in anonymously.
    pub fn open(surface: &'static str) -> Self {
        Gate::new(None, false, surface)
    }

    /// Whether a principal is required.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The principal of a request that presents `authorization` (the header or metadata value)
    /// over a connection whose transport proved `peer`. A presented credential is always
    /// checked when the server has credentials (a wrong one is refused even where
    /// authentication is optional); a server without credentials ignores it, as Mesos does.
    /// Without one the peer identity counts; with neither the request is anonymous, refused if
    /// required.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        peer: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        if let (Some(value), Some(creds)) = (authorization, &self.credentials) {
            return creds.verify(value).map(|p| Authenticated(Some(p)));
        }
        if let Some(peer) = peer {
            return Ok(Authenticated(Some(peer.to_string())));
        }
        if self.required {
            return Err(AuthError::Missing {
                surface: self.surface,
            });
        }
        Ok(Authenticated(None))
    }

    /// [`Gate::authenticate`] for an HTTP or gRPC request: its `authorization` header (a
    /// value that is not ASCII is refused as malformed) and the [`PeerIdentity`] its transport
    /// proved, if any. The one place both the master's and the agent's servers read them.
    pub fn authenticate_request<B>(
        &self,
        request: &tonic::codegen::http::Request<B>,
    ) -> Result<Authenticated, AuthError> {
        let presented = match request
            .headers()
            .get(super::AUTHORIZATION)
            .map(|v| v.to_str())
        {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err(AuthError::Malformed("the value is not ASCII")),
        };
        let peer = request
            .extensions()
            .get::<PeerIdentity>()
            .map(|p| p.0.as_str());
        self.authenticate(presented, peer)
    }

    /// The `WWW-Authenticate` challenge for a 401.
    pub fn challenge(&self) -> &'static str {
        CHALLENGE
    }
}
