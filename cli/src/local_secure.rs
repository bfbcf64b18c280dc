//! `proffer local --secure`: the local cluster with everything on — a cluster CA in the work
//! dir, TLS on the master and on every agent's HTTP endpoint, agents proving themselves with
//! client certificates (mutual TLS), and an `admin` principal whose secret is required for
//! every framework call and operator read or change.
//!
//! Files (in `WORK/secure/`): `pki/ca.crt`, `pki/{master,agents,admin}.{crt,key}`,
//! `credentials.json` and `admin.secret` (both mode 0600), and `env.sh`, which sets the
//! `PROFFER_*` variables that make every `proffer` command in a shell a client of it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use proffer_net::pki::{self, CERT_VALIDITY, Kind};
use proffer_net::tls::{ClientTls, ServerTls, TlsFiles};
use proffer_proto::auth::{Credential, Credentials};

/// The principal `proffer local --secure` creates.
pub const ADMIN: &str = "admin";

/// What the master and the agents of a secure local cluster serve and present.
#[derive(Debug, Clone)]
pub struct Secure {
    /// The master's TLS (verifies client certificates).
    pub master_tls: ServerTls,
    /// The master's authentication: every surface, against `credentials.json`.
    pub security: proffer_master::server::Security,
    /// How agents reach the master: the CA and the agents' certificate.
    pub agent_client: ClientTls,
    /// The agents' HTTP endpoints: TLS, reads authenticated.
    pub agent_http: proffer_agent::http_auth::HttpSecurity,
    /// The admin's client TLS and credential, which this process's own clients (the demo
    /// framework, the Kubernetes framework) use.
    admin_tls: ClientTls,
    admin: Credential,
    /// The environment file.
    pub env_file: PathBuf,
}

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: Some(dir.join(format!("{name}.crt"))),
        key: Some(dir.join(format!("{name}.key"))),
        ca: Some(dir.join("ca.crt")),
    }
}

/// A random secret: 24 bytes from the kernel, hex.
fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the admin secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates (or, on a kept work dir, reuses) the PKI and credentials under `work/secure`.
pub fn setup(work: &Path) -> anyhow::Result<Secure> {
    let root = work.join("secure");
    let dir = root.join("pki");
    if !dir.join("ca.crt").exists() {
        pki::init_dir(&dir)?;
        for (name, kind) in [
            ("master", Kind::Master),
            ("agents", Kind::Agent),
            (ADMIN, Kind::Client),
        ] {
            pki::issue_in_dir(&dir, name, kind, &[], CERT_VALIDITY)?;
        }
    }
    let secret_file = root.join("admin.secret");
    let creds_file = root.join("credentials.json");
    if !secret_file.exists() {
        let secret = random_secret()?;
        pki::write_file(&secret_file, format!("{secret}\n").as_bytes(), true)?;
        let json = serde_json::json!({"credentials": [{"principal": ADMIN, "secret": secret}]});
        pki::write_file(&creds_file, json.to_string().as_bytes(), true)?;
    }
    let credentials = Arc::new(Credentials::load(&creds_file)?);
    let admin = Credential::from_sources(Some(ADMIN), Some(&secret_file), None)?
        .context("the admin credential")?;
    let server = |name: &str| -> anyhow::Result<ServerTls> {
        files(&dir, name)
            .server_config()?
            .with_context(|| format!("the {name} certificate"))
    };
    let client = |name: &str| -> anyhow::Result<ClientTls> {
        files(&dir, name)
            .client()?
            .with_context(|| format!("the {name} client certificate"))
    };
    let security = proffer_master::server::Security {
        credentials: Some(credentials.clone()),
        authenticate_frameworks: true,
        authenticate_agents: true,
        authenticate_http_readwrite: true,
        authenticate_http_readonly: true,
        require_agent_certificates: true,
        ..Default::default()
    };
    let agent_http = proffer_agent::http_auth::HttpSecurity {
        credentials: Some(credentials),
        authenticate_http_readonly: true,
        tls: Some(server("agents")?),
        ..Default::default()
    };
    let env_file = root.join("env.sh");
    let env = format!(
        "# Source this file to talk to the secure `proffer local` cluster:\n\
         export PROFFER_TLS_CA={d}/ca.crt\n\
         export PROFFER_TLS_CERT={d}/{ADMIN}.crt\n\
         export PROFFER_TLS_KEY={d}/{ADMIN}.key\n\
         export PROFFER_PRINCIPAL={ADMIN}\n\
         export PROFFER_SECRET_FILE={s}\n",
        d = dir.display(),
        s = secret_file.display()
    );
    pki::write_file(&env_file, env.as_bytes(), false)?;
    Ok(Secure {
        master_tls: server("master")?,
        security,
        agent_client: client("agents")?,
        agent_http,
        admin_tls: client(ADMIN)?,
        admin,
        env_file,
    })
}

impl Secure {
    /// Makes this process's own clients (the demo framework, `--k8s`) present the admin's
    /// certificate and credential, unless flags set others already.
    pub fn install_admin(&self) {
        proffer_net::tls::set_process_tls(self.admin_tls.clone());
        let _ = proffer_proto::auth::set_process_credential(self.admin.clone());
    }
}
