//! Authentication and authorization in the server shell (issue 18, items 3 and 4).
//!
//! One axum middleware ([`authenticate`]) runs before every route, gRPC and HTTP alike: it
//! picks the gate of the surface called (framework calls, agent sessions, operator reads,
//! operator writes; Mesos's `--authenticate-frameworks`, `--authenticate-agents`,
//! `--authenticate-http-readonly`, `--authenticate-http-readwrite`), turns the `authorization`
//! header or metadata (or a transport identity, [`PeerIdentity`]) into the caller's principal
//! and puts it into the request's extensions as [`Authenticated`]; or refuses the request:
//! HTTP 401 with `WWW-Authenticate`, gRPC `UNAUTHENTICATED`, naming what was missing.
//! `GET /health` is never authenticated (load balancers and standbys' probes).
//!
//! Handlers then authorize with a [`Caller`] (the principal and the [`Authorizer`]): a refusal
//! is [`MasterError::Forbidden`], HTTP 403 / gRPC `PERMISSION_DENIED`, with one audit line.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proffer_master_core::authz::{AUDIT_TARGET, Action, Authorizer};
use proffer_net::pki::Kind;
use proffer_net::tls::PeerSubject;
use proffer_proto::auth::{AuthError, Credentials, Gate};
pub use proffer_proto::auth::{Authenticated, PeerIdentity};

/// The challenge of a refusal that only a client certificate can answer.
const CHALLENGE_TLS: &str = "Mutual TLS";

use crate::core::MasterError;

/// Who must authenticate, against which credentials, and the ACLs.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The principals and their secrets or tokens (`--credentials`); `None`: no one can
    /// authenticate, and presented credentials are ignored.
    pub credentials: Option<Arc<Credentials>>,
    /// Framework calls (the `Scheduler` service) need a principal.
    pub authenticate_frameworks: bool,
    /// Agent sessions (the `Agent` service) need a principal.
    pub authenticate_agents: bool,
    /// Operator changes (HTTP POST/PUT/DELETE, `Operator` calls that change state) need one.
    pub authenticate_http_readwrite: bool,
    /// Operator reads (HTTP GET except `/health`, `GetState`, `GetRoles`, `Why`,
    /// `GetMaintenance`) need one.
    pub authenticate_http_readonly: bool,
    /// The ACLs (`--acls`; default: everything allowed).
    pub authorizer: Arc<Authorizer>,
    /// Agent sessions must come over mutual TLS with a certificate of kind agent (subject
    /// organization `proffer:agent`, see `proffer pki issue --kind agent`); set when the master
    /// serves TLS with a CA.
    pub require_agent_certificates: bool,
}

impl PartialEq for Security {
    fn eq(&self, other: &Self) -> bool {
        let creds = |s: &Security| s.credentials.as_ref().map(|c| c.counts());
        creds(self) == creds(other)
            && self.authenticate_frameworks == other.authenticate_frameworks
            && self.authenticate_agents == other.authenticate_agents
            && self.authenticate_http_readwrite == other.authenticate_http_readwrite
            && self.authenticate_http_readonly == other.authenticate_http_readonly
            && self.authorizer == other.authorizer
            && self.require_agent_certificates == other.require_agent_certificates
    }
}

/// `Operator` methods that only read.
const OPERATOR_READS: &[&str] = &["GetState", "GetRoles", "Why", "GetMaintenance"];

impl Security {
    /// True if any surface requires a principal.
    pub fn requires_authentication(&self) -> bool {
        self.authenticate_frameworks
            || self.authenticate_agents
            || self.authenticate_http_readwrite
            || self.authenticate_http_readonly
    }

    /// The gate of a request to `path` with `method` (`grpc`: a gRPC request).
    fn gate(&self, path: &str, method: &Method, grpc: bool) -> Gate {
        let (required, surface) = if let Some(rpc) = path.strip_prefix("/proffer.v1.Operator/") {
            if OPERATOR_READS.contains(&rpc) {
                (self.authenticate_http_readonly, "operator reads")
            } else {
                (self.authenticate_http_readwrite, "operator changes")
            }
        } else if path.starts_with("/proffer.v1.Scheduler/") || path == "/api/v1/scheduler" {
            (self.authenticate_frameworks, "framework calls")
        } else if path.starts_with("/proffer.v1.Agent/") {
            (self.authenticate_agents, "agent sessions")
        } else if !grpc && (method == Method::GET || method == Method::HEAD) {
            (self.authenticate_http_readonly, "operator reads")
        } else if grpc {
            (self.authenticate_http_readonly, "gRPC calls")
        } else {
            (self.authenticate_http_readwrite, "operator changes")
        };
        Gate::new(self.credentials.clone(), required, surface)
    }
}

/// True for a gRPC request.
pub(crate) fn is_grpc(request: &Request) -> bool {
    proffer_net::listen::is_grpc(request)
}

/// The middleware: authenticates every request but `GET /health` (see the module doc).
pub(crate) async fn authenticate(
    State(security): State<Arc<Security>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let grpc = is_grpc(&request);
    let subject = request.extensions().get::<PeerSubject>().cloned();
    if let Some(s) = &subject {
        // A verified client certificate proves its subject's name as the principal.
        request
            .extensions_mut()
            .insert(PeerIdentity(s.name.clone()));
    }
    if security.require_agent_certificates
        && request.uri().path().starts_with("/proffer.v1.Agent/")
        && !subject.is_some_and(|s| s.groups.iter().any(|g| g == Kind::Agent.organization()))
    {
        let err = AuthError::CertificateRequired {
            surface: "agent sessions",
            kind: "agent",
        };
        tracing::warn!(target: AUDIT_TARGET, decision = "unauthenticated",
            path = %request.uri().path(), "{err}");
        return unauthenticated(&err, grpc, CHALLENGE_TLS);
    }
    let gate = security.gate(request.uri().path(), request.method(), grpc);
    match gate.authenticate_request(&request) {
        Ok(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Err(err) => {
            tracing::warn!(target: AUDIT_TARGET, decision = "unauthenticated",
                path = %request.uri().path(), "{err}");
            unauthenticated(&err, grpc, gate.challenge())
        }
    }
}

/// A refusal for `err`: gRPC `UNAUTHENTICATED`, or HTTP 401 with a challenge.
fn unauthenticated(err: &AuthError, grpc: bool, challenge: &'static str) -> Response {
    if grpc {
        return tonic::Status::unauthenticated(err.to_string()).into_http::<axum::body::Body>();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        axum::Json(serde_json::json!({ "error": err.to_string() })),
    )
        .into_response()
}

/// Who is calling, and the ACLs that decide what it may do.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    principal: Option<String>,
    authorizer: Arc<Authorizer>,
}

impl Caller {
    /// The caller of a gRPC request (anonymous if the middleware did not run).
    pub(crate) fn of<T>(request: &tonic::Request<T>, authorizer: &Arc<Authorizer>) -> Caller {
        Caller {
            principal: request
                .extensions()
                .get::<Authenticated>()
                .and_then(|a| a.0.clone()),
            authorizer: authorizer.clone(),
        }
    }

    /// The principal (`None`: unauthenticated).
    pub(crate) fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The ACLs.
    pub(crate) fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Whether the caller may do `action` on `object` (one audit line).
    pub(crate) fn authorize(
        &self,
        action: Action,
        object: Option<&str>,
    ) -> Result<(), MasterError> {
        Ok(self
            .authorizer
            .authorize(self.principal(), action, object)?)
    }

    /// Logs how much of a view was hidden from the caller (one audit line when anything was).
    pub(crate) fn audit_filtered(&self, view: &str, hidden: usize) {
        if hidden > 0 {
            tracing::info!(target: AUDIT_TARGET, decision = "filtered", view,
                principal = self.principal().unwrap_or(""), hidden,
                "view filtered by the ACLs");
        }
    }
}

impl FromRequestParts<super::http::HttpState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &super::http::HttpState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            principal: parts
                .extensions
                .get::<Authenticated>()
                .and_then(|a| a.0.clone()),
            authorizer: state.authorizer.clone(),
        })
    }
}
