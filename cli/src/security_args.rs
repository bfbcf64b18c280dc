//! Authentication and ACL flags (issue 18, items 3 and 4), in one place for every command:
//! - [`ClientAuthArgs`]: `--principal P --secret-file F` (env `PROFFER_PRINCIPAL`,
//!   `PROFFER_SECRET_FILE`, or the secret itself in `PROFFER_SECRET`), global to every
//!   command; set once as the process credential, presented by every client the command makes
//!   (agent sessions, `proffer run`, `proffer service`, `proffer k8s`, operator commands, reads
//!   of agents' sandboxes). A secret without a principal is sent as a bearer token.
//! - [`MasterAuthArgs`]: `proffer master --credentials FILE --acls FILE` and Mesos's
//!   `--authenticate-frameworks`, `--authenticate-agents`, `--authenticate-http-readwrite`,
//!   `--authenticate-http-readonly`.
//! - TLS: `--tls-ca`, `--tls-cert`, `--tls-key` (env `PROFFER_TLS_CA`, …), global too: the
//!   master and the agent serve TLS with them ([`server_tls`]), every client verifies servers
//!   against the CA and presents the certificate (mutual TLS).
//! - [`AgentAuthArgs`]: `proffer agent --credentials FILE --acls FILE
//!   --authenticate-http-readonly` for the agent's own HTTP endpoint (sandbox reads).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use proffer_master::authz::{Acls, Authorizer};
use proffer_master::server::Security;
use proffer_net::tls::{ServerTls, TlsFiles};
use proffer_proto::auth::{Credential, Credentials};

/// Who this command is to masters and agents.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientAuthArgs {
    /// The principal this command authenticates as (HTTP Basic and gRPC `authorization`),
    /// with the secret from --secret-file or the environment variable PROFFER_SECRET.
    #[arg(long, global = true, env = "PROFFER_PRINCIPAL")]
    principal: Option<String>,
    /// A file whose first line is the secret of --principal (without --principal: a bearer
    /// token).
    #[arg(long, global = true, env = "PROFFER_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// The cluster CA (PEM): clients verify masters and agents against it (and use TLS);
    /// masters and agents verify client certificates against it (mutual TLS).
    #[arg(long, global = true, env = "PROFFER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This process's certificate (PEM, `proffer pki issue`): masters and agents serve TLS
    /// with it; clients (agents to masters, frameworks, the CLI) present it.
    #[arg(long, global = true, env = "PROFFER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "PROFFER_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

/// The TLS files of this process (`--tls-ca`, `--tls-cert`, `--tls-key`), set by
/// [`ClientAuthArgs::install`], read by servers ([`server_tls`]).
static TLS_FILES: std::sync::OnceLock<TlsFiles> = std::sync::OnceLock::new();

/// The TLS a server started by this process serves with (None: plain TCP). `master`: a CA
/// without a certificate is refused (a master cannot verify clients without serving TLS).
pub fn server_tls(master: bool) -> anyhow::Result<Option<ServerTls>> {
    let Some(files) = TLS_FILES.get() else {
        return Ok(None);
    };
    let tls = files
        .server_config()
        .context("--tls-cert/--tls-key/--tls-ca")?;
    anyhow::ensure!(
        !(master && tls.is_none() && files.ca.is_some()),
        "--tls-ca on the master needs --tls-cert and --tls-key (its serving certificate: \
         `proffer pki issue --kind master`)"
    );
    Ok(tls)
}

impl ClientAuthArgs {
    /// The credential the flags (and `PROFFER_SECRET`) describe.
    pub fn credential(&self) -> anyhow::Result<Option<Credential>> {
        let env = std::env::var("PROFFER_SECRET").ok();
        Credential::from_sources(
            self.principal.as_deref(),
            self.secret_file.as_deref(),
            env.as_deref(),
        )
        .context("--principal/--secret-file")
    }

    /// Sets the credential as the process credential (see `proffer_proto::auth`), and the
    /// TLS files as the process's client TLS (with --tls-ca: every client of this process
    /// uses TLS; see `proffer_net::tls`).
    pub fn install(&self) -> anyhow::Result<()> {
        if let Some(c) = self.credential()? {
            proffer_proto::auth::set_process_credential(c);
        }
        let files = TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        };
        if self.tls_ca.is_some() {
            let client = files.client().context("--tls-ca/--tls-cert/--tls-key")?;
            if let Some(c) = client {
                proffer_net::tls::set_process_tls(c);
            }
        }
        let _ = TLS_FILES.set(files);
        Ok(())
    }
}

/// Authentication and ACLs of `proffer master`.
#[derive(Debug, Clone, clap::Args)]
pub struct MasterAuthArgs {
    /// Principals with their secrets, and bearer tokens (JSON:
    /// {"credentials":[{"principal","secret"}],"tokens":[{"principal","token"}]}).
    #[arg(long, env = "PROFFER_MASTER_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Frameworks must authenticate (needs --credentials).
    #[arg(long, env = "PROFFER_AUTHENTICATE_FRAMEWORKS")]
    authenticate_frameworks: bool,
    /// Agents must authenticate (needs --credentials).
    #[arg(long, env = "PROFFER_AUTHENTICATE_AGENTS")]
    authenticate_agents: bool,
    /// Operator changes (HTTP POST/PUT/DELETE, operator gRPC writes) must authenticate.
    #[arg(long, env = "PROFFER_MASTER_AUTHENTICATE_HTTP_READWRITE")]
    authenticate_http_readwrite: bool,
    /// Operator reads (HTTP GET but /health, GetState, GetRoles, Why, GetMaintenance) must
    /// authenticate.
    #[arg(long, env = "PROFFER_MASTER_AUTHENTICATE_HTTP_READONLY")]
    authenticate_http_readonly: bool,
    /// ACLs (JSON, as Mesos's --acls: "permissive", "register_frameworks", "run_tasks", …).
    #[arg(long, env = "PROFFER_MASTER_ACLS")]
    acls: Option<PathBuf>,
}

impl MasterAuthArgs {
    /// The server's security settings, with the files read and checked.
    pub fn security(&self) -> anyhow::Result<Security> {
        let required = [
            ("--authenticate-frameworks", self.authenticate_frameworks),
            ("--authenticate-agents", self.authenticate_agents),
            (
                "--authenticate-http-readwrite",
                self.authenticate_http_readwrite,
            ),
            (
                "--authenticate-http-readonly",
                self.authenticate_http_readonly,
            ),
        ];
        Ok(Security {
            credentials: load_credentials(self.credentials.as_deref(), &required)?,
            authenticate_frameworks: self.authenticate_frameworks,
            authenticate_agents: self.authenticate_agents,
            authenticate_http_readwrite: self.authenticate_http_readwrite,
            authenticate_http_readonly: self.authenticate_http_readonly,
            authorizer: Arc::new(load_acls(self.acls.as_deref())?),
            require_agent_certificates: false,
        })
    }
}

/// Authentication and ACLs of an agent's HTTP endpoint.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentAuthArgs {
    /// Principals with their secrets, and bearer tokens, for the agent's HTTP endpoint (the
    /// master's file works).
    #[arg(long, env = "PROFFER_AGENT_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Reads of the agent's HTTP endpoint (sandboxes, /state, /metrics; not /health) must
    /// authenticate (needs --credentials).
    #[arg(long, env = "PROFFER_AGENT_AUTHENTICATE_HTTP_READONLY")]
    authenticate_http_readonly: bool,
    /// ACLs of the agent's HTTP endpoint: `access_sandboxes` (the master's file works).
    #[arg(long, env = "PROFFER_AGENT_ACLS")]
    acls: Option<PathBuf>,
}

impl AgentAuthArgs {
    /// The HTTP endpoint's security settings, with the files read and checked.
    pub fn http_security(&self) -> anyhow::Result<proffer_agent::http_auth::HttpSecurity> {
        let required = [(
            "--authenticate-http-readonly",
            self.authenticate_http_readonly,
        )];
        Ok(proffer_agent::http_auth::HttpSecurity {
            credentials: load_credentials(self.credentials.as_deref(), &required)?,
            authenticate_http_readonly: self.authenticate_http_readonly,
            authorizer: Arc::new(load_acls(self.acls.as_deref())?),
            tls: server_tls(false)?,
        })
    }
}

/// Safe defaults (issue 18, item 5): a server listening on `addr` that is reachable from other
/// machines (anything but loopback) must use TLS or authentication, unless `--insecure`.
pub fn check_exposure(
    server: &str,
    addr: std::net::SocketAddr,
    tls: bool,
    authenticates: bool,
    insecure: bool,
) -> anyhow::Result<()> {
    if addr.ip().is_loopback() || tls || authenticates || insecure {
        if insecure && !addr.ip().is_loopback() && !tls && !authenticates {
            tracing::warn!(%addr, "{server} is open to anyone who reaches {addr}: no TLS, no authentication (--insecure)");
        }
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve {server} on {addr} without TLS or authentication: anyone who reaches \
         it could control the cluster.\n  \
         Set up a PKI:   proffer pki init pki && proffer pki issue --dir pki --name master --kind master --host HOSTNAME\n  \
         then serve:     --tls-ca pki/ca.crt --tls-cert pki/master.crt --tls-key pki/master.key\n  \
         and/or require credentials: --credentials FILE --authenticate-frameworks --authenticate-agents --authenticate-http-readwrite\n  \
         (or listen on 127.0.0.1, or pass --insecure to accept the risk)"
    )
}

/// Reads `--credentials`; a flag of `required` that is set needs it.
fn load_credentials(
    path: Option<&Path>,
    required: &[(&str, bool)],
) -> anyhow::Result<Option<Arc<Credentials>>> {
    let Some(path) = path else {
        if let Some((flag, _)) = required.iter().find(|(_, on)| *on) {
            anyhow::bail!(
                "{flag} needs --credentials FILE (JSON: {{\"credentials\":[{{\"principal\":\"…\",\"secret\":\"…\"}}]}})"
            );
        }
        return Ok(None);
    };
    let creds = Credentials::load(path)?;
    let (principals, tokens) = creds.counts();
    tracing::info!(file = %path.display(), principals, tokens, "credentials loaded");
    Ok(Some(Arc::new(creds)))
}

/// Reads `--acls` (none: everything allowed).
fn load_acls(path: Option<&Path>) -> anyhow::Result<Authorizer> {
    let Some(path) = path else {
        return Ok(Authorizer::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --acls {}", path.display()))?;
    let acls = Acls::parse(&text, &path.display().to_string())?;
    tracing::info!(file = %path.display(), permissive = acls.permissive, "ACLs loaded");
    Ok(Authorizer::new(acls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Master {
        #[command(flatten)]
        args: MasterAuthArgs,
    }

    #[test]
    fn master_flags_load_credentials_and_acls() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let creds = dir.path().join("credentials.json");
        std::fs::write(
            &creds,
            r#"{"credentials":[{"principal":"ops","secret":"s3cret"}]}"#,
        )?;
        let acls = dir.path().join("acls.json");
        std::fs::write(&acls, r#"{"permissive": false}"#)?;
        let m = Master::try_parse_from([
            "m",
            "--credentials",
            creds.to_str().unwrap_or_default(),
            "--acls",
            acls.to_str().unwrap_or_default(),
            "--authenticate-frameworks",
        ])?;
        let sec = m.args.security()?;
        assert!(sec.authenticate_frameworks && !sec.authenticate_agents);
        assert_eq!(sec.credentials.map(|c| c.counts()), Some((1, 0)));
        assert!(!sec.authorizer.acls().permissive);
        let err = Master::try_parse_from(["m", "--authenticate-agents"])?
            .args
            .security()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--authenticate-agents needs --credentials"),
            "{err}"
        );
        std::fs::write(&acls, r#"{"run_task": []}"#)?;
        let err = Master::try_parse_from(["m", "--acls", acls.to_str().unwrap_or_default()])?
            .args
            .security()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("unknown action"), "{err}");
        Ok(())
    }
}
