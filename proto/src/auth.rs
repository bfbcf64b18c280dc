//! Authentication (issue 18, item 3): who a caller is (its *principal*) and how it proves it.
//!
//! One place for both sides, used by the master, the agent, the SDK and the CLI:
//! - a client holds a [`Credential`] (a principal with a secret, sent as HTTP Basic, or a bearer
//!   token) and presents it in the `authorization` header on HTTP and the `authorization`
//!   metadata entry on gRPC ([`Authorize`], a tonic interceptor);
//! - a server loads [`Credentials`] (`--credentials FILE`, Mesos shape plus bearer tokens) and a
//!   [`Gate`] per surface (frameworks, agents, HTTP read-write, HTTP read-only) turns a request's
//!   `authorization` value (and, later, a TLS client certificate's subject: `peer`) into the
//!   caller's principal, or refuses it.
//!
//! Secrets are compared in constant time (`subtle`) and never printed: every type holding one
//! redacts it in its `Debug` output.
//!
//! ```json
//! {"credentials": [{"principal": "ops", "secret": "s3cret"}],
//!  "tokens": [{"principal": "ci", "token": "2f6c…"}]}
//! ```

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use base64::Engine as _;
use subtle::ConstantTimeEq;

/// The HTTP header and gRPC metadata entry carrying a credential.
pub const AUTHORIZATION: &str = "authorization";

/// The `WWW-Authenticate` challenge of a 401 answer.
pub const CHALLENGE: &str = "Basic realm=\"proffer\", Bearer realm=\"proffer\"";

/// A secret (a password or a bearer token): compared in constant time, never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself (to send it; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True if `candidate` is this secret; the time taken does not depend on where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Constant-time equality of two byte strings (the length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Why a credential could not be built or loaded on the client side.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The secret file could not be read.
    #[error("cannot read the secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A principal was given without a secret.
    #[error(
        "principal `{0}` needs a secret: --secret-file FILE or the environment variable PROFFER_SECRET"
    )]
    NoSecret(String),
    /// The secret is empty.
    #[error("the secret is empty")]
    EmptySecret,
    /// The principal is not a valid principal.
    #[error("invalid principal `{principal}`: {reason}")]
    BadPrincipal {
        /// The principal given.
        principal: String,
        /// Why.
        reason: String,
    },
}

/// What a client presents: a principal with its secret (HTTP Basic), or a bearer token (no
/// principal: the server knows whose token it is).
#[derive(Clone)]
pub struct Credential {
    principal: Option<String>,
    secret: Secret,
}

impl Credential {
    /// A principal and its secret, sent as `Basic base64(principal:secret)`.
    pub fn basic(
        principal: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<Self, CredentialError> {
        let principal = principal.into();
        check_principal(&principal).map_err(|reason| CredentialError::BadPrincipal {
            principal: principal.clone(),
            reason,
        })?;
        let secret = secret.into();
        if secret.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Credential {
            principal: Some(principal),
            secret: Secret(secret),
        })
    }

    /// A bearer token, sent as `Bearer TOKEN`.
    pub fn bearer(token: impl Into<String>) -> Result<Self, CredentialError> {
        let token = token.into();
        if token.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Credential {
            principal: None,
            secret: Secret(token),
        })
    }

    /// The credential the command-line flags describe: `principal` with the secret from
    /// `secret_file` (first line, trailing newline dropped) or else `secret_env`; a secret
    /// without a principal is a bearer token; neither is `None`.
    pub fn from_sources(
        principal: Option<&str>,
        secret_file: Option<&Path>,
        secret_env: Option<&str>,
    ) -> Result<Option<Self>, CredentialError> {
        let secret = match secret_file {
            Some(path) => Some(read_secret(path)?),
            None => secret_env.map(str::to_string),
        };
        match (principal.filter(|p| !p.is_empty()), secret) {
            (Some(p), Some(s)) => Credential::basic(p, s).map(Some),
            (Some(p), None) => Err(CredentialError::NoSecret(p.to_string())),
            (None, Some(s)) => Credential::bearer(s).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The principal, when one is named (not for a bearer token).
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The `authorization` header value.
    pub fn authorization(&self) -> String {
        match &self.principal {
            Some(p) => {
                let pair = format!("{p}:{}", self.secret.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            None => format!("Bearer {}", self.secret.expose()),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("principal", &self.principal)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Reads a secret file: its first line, without the line end.
fn read_secret(path: &Path) -> Result<String, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::SecretFile {
        path: path.display().to_string(),
        source,
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(CredentialError::EmptySecret);
    }
    Ok(line.to_string())
}

/// Checks a principal: not empty, and a valid reservation principal (no whitespace, control
/// characters or `( ) [ ] { } , ; : =`), so it fits in HTTP Basic and in ACLs.
pub fn check_principal(principal: &str) -> Result<(), String> {
    if principal.is_empty() {
        return Err("the principal is empty".into());
    }
    crate::resources::reservation::validate_principal(principal)
}

static PROCESS_CREDENTIAL: OnceLock<Credential> = OnceLock::new();

/// Sets the credential every client in this process presents when it is given none of its
/// own (the `proffer` binary sets it once from `--principal`/`--secret-file`). Returns false
/// if one was already set (it is kept).
pub fn set_process_credential(credential: Credential) -> bool {
    PROCESS_CREDENTIAL.set(credential).is_ok()
}

/// The credential set by [`set_process_credential`], if any.
pub fn process_credential() -> Option<&'static Credential> {
    PROCESS_CREDENTIAL.get()
}

/// `explicit`, or else the process credential: what a client built from `explicit` presents.
pub fn effective(explicit: Option<&Credential>) -> Option<&Credential> {
    match explicit {
        Some(c) => Some(c),
        None => process_credential(),
    }
}

/// A tonic interceptor that puts a credential into every request's `authorization` metadata.
#[derive(Clone, Default)]
pub struct Authorize {
    value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Authorize {
    /// Presents `credential` (or the process credential when `None`; nothing if neither).
    pub fn new(credential: Option<&Credential>) -> Self {
        let value = effective(credential).and_then(|c| {
            let mut v =
                tonic::metadata::MetadataValue::try_from(c.authorization().as_str()).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Authorize { value }
    }

    /// True if requests carry a credential.
    pub fn presents(&self) -> bool {
        self.value.is_some()
    }
}

impl fmt::Debug for Authorize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("presents", &self.value.is_some())
            .finish()
    }
}

impl tonic::service::Interceptor for Authorize {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.value {
            request.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(request)
    }
}

/// A channel whose requests carry a credential ([`Authorize`]).
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Authorize>;

mod server;
pub use server::{AuthError, Authenticated, Credentials, CredentialsError, Gate, PeerIdentity};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
