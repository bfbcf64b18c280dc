//! Certificate authorities and certificates, generated with rcgen (ECDSA P-256 keys, PEM).
//!
//! The cluster PKI of `proffer pki init DIR` / `proffer pki issue` ([`init_dir`],
//! [`issue_in_dir`]): `DIR/ca.crt` and `DIR/ca.key`, then `DIR/NAME.crt` and `DIR/NAME.key`
//! per certificate. A certificate's subject CN is its name (the principal it proves) and its
//! organization its [`Kind`] (`proffer:master`, `proffer:agent`, `proffer:client`). Key files
//! are written with mode 0600.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A PKI generation, reading or writing failure.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters of a certificate (or a key or CA did not parse).
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A request that cannot be honoured.
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// Certificate PEM.
    pub cert_pem: String,
    /// PKCS#8 private key PEM (empty for a CA loaded only to verify).
    pub key_pem: String,
}

/// A certificate authority: its certificate and key, able to sign.
pub struct Ca {
    /// The CA certificate and key.
    pub pair: CertKey,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.pair.cert_pem)
            .finish_non_exhaustive()
    }
}

/// What one certificate is for.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Names it in errors ("apiserver", "agent-1").
    pub what: String,
    /// Subject common name.
    pub cn: String,
    /// Subject organization, if any.
    pub org: Option<String>,
    /// Subject alternative names.
    pub sans: Vec<SanType>,
    /// TLS server authentication.
    pub server: bool,
    /// TLS client authentication.
    pub client: bool,
    /// Lifetime from now (backdated 5 minutes for clock skew).
    pub validity: Duration,
}

/// `map_err` helper naming the certificate.
pub fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

fn base_params(cn: &str, org: Option<&str>, validity: Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after =
        now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 4));
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p
}

impl Ca {
    /// A new self-signed CA named `cn`.
    pub fn generate(cn: &str, validity: Duration) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(gen_err(cn))?;
        let mut p = base_params(cn, None, validity);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let cert = p.self_signed(&key).map_err(gen_err(cn))?;
        let pair = CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Ca {
            pair,
            issuer: Issuer::new(p, key),
        })
    }

    /// A CA from its certificate and key PEM (to sign more certificates).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(gen_err("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(gen_err("the CA"))?;
        Ok(Ca {
            pair: CertKey {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
            issuer,
        })
    }

    /// Signs a new key pair's certificate as `spec` says.
    pub fn issue(&self, spec: &CertSpec) -> Result<CertKey, PkiError> {
        let what = spec.what.as_str();
        let key = KeyPair::generate().map_err(gen_err(what))?;
        let mut p = base_params(&spec.cn, spec.org.as_deref(), spec.validity);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        p.subject_alt_names = spec.sans.clone();
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).map_err(gen_err(what))?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A DNS-name SAN.
pub fn dns(name: &str, what: &str) -> Result<SanType, PkiError> {
    Ok(SanType::DnsName(
        name.to_string().try_into().map_err(gen_err(what))?,
    ))
}

/// A SAN from text: an IP address if it parses as one, a DNS name otherwise.
pub fn san(text: &str, what: &str) -> Result<SanType, PkiError> {
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => dns(text, what),
    }
}

/// Writes one file, creating its directory; mode 0600 when `secret`, else 0644. An existing
/// file is replaced (its mode is reset too).
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), PkiError> {
    let werr = |source| PkiError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(werr)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(werr)?;
    f.write_all(contents).map_err(werr)?;
    Ok(())
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// What a cluster certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A master: serves (gRPC + HTTP) and is a client of other masters.
    Master,
    /// An agent: serves its HTTP API and is a client of the masters (mutual TLS).
    Agent,
    /// A client (framework, CLI, operator): client authentication only.
    Client,
}

impl Kind {
    /// The subject organization that marks the kind (`proffer:agent`, …).
    pub fn organization(self) -> &'static str {
        match self {
            Kind::Master => "proffer:master",
            Kind::Agent => "proffer:agent",
            Kind::Client => "proffer:client",
        }
    }

    /// Parses `master`, `agent` or `client`.
    pub fn parse(text: &str) -> Result<Kind, PkiError> {
        match text {
            "master" => Ok(Kind::Master),
            "agent" => Ok(Kind::Agent),
            "client" => Ok(Kind::Client),
            other => Err(PkiError::Invalid(format!(
                "unknown certificate kind `{other}`: expected master, agent or client"
            ))),
        }
    }
}

/// The CA's name in `proffer pki init`.
pub const CA_NAME: &str = "proffer-cluster-ca";
/// Default lifetime of the cluster CA (10 years).
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Default lifetime of an issued certificate (1 year).
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

/// Creates the cluster CA in `dir` (`ca.crt`, `ca.key`); refuses to replace an existing one.
pub fn init_dir(dir: &Path) -> Result<Ca, PkiError> {
    let crt = dir.join("ca.crt");
    if crt.exists() {
        return Err(PkiError::Invalid(format!(
            "{} exists already: a second CA would not verify the certificates of the first \
             (delete the directory to start over)",
            crt.display()
        )));
    }
    let ca = Ca::generate(CA_NAME, CA_VALIDITY)?;
    write_file(&crt, ca.pair.cert_pem.as_bytes(), false)?;
    write_file(&dir.join("ca.key"), ca.pair.key_pem.as_bytes(), true)?;
    Ok(ca)
}

/// The CA of `dir` (made by [`init_dir`]).
pub fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    Ca::from_pem(&read(&dir.join("ca.crt"))?, &read(&dir.join("ca.key"))?)
}

/// Checks a certificate name: it becomes a file name and a principal.
fn check_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(PkiError::Invalid(format!(
            "bad certificate name `{name}`: use 1-64 letters, digits, '-', '_' or '.', not \
             starting with '.'"
        )))
    }
}

/// Issues `DIR/NAME.crt` and `DIR/NAME.key` signed by the CA of `dir`: CN `name`, O the
/// kind's organization. Masters and agents serve too: their SANs are `localhost`,
/// `127.0.0.1` and `hosts` (names or addresses). Returns the certificate and key paths.
pub fn issue_in_dir(
    dir: &Path,
    name: &str,
    kind: Kind,
    hosts: &[String],
    validity: Duration,
) -> Result<(PathBuf, PathBuf), PkiError> {
    check_name(name)?;
    let ca = load_ca(dir)?;
    let serves = kind != Kind::Client;
    let mut sans = Vec::new();
    if serves {
        sans.push(dns("localhost", name)?);
        sans.push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
        for h in hosts {
            let s = san(h, name)?;
            if !sans.contains(&s) {
                sans.push(s);
            }
        }
    } else if !hosts.is_empty() {
        return Err(PkiError::Invalid(
            "--host is for master and agent certificates (a client certificate serves nothing)"
                .into(),
        ));
    }
    let spec = CertSpec {
        what: name.to_string(),
        cn: name.to_string(),
        org: Some(kind.organization().to_string()),
        sans,
        server: serves,
        client: true,
        validity,
    };
    let ck = ca.issue(&spec)?;
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    write_file(&crt, ck.cert_pem.as_bytes(), false)?;
    write_file(&key, ck.key_pem.as_bytes(), true)?;
    Ok((crt, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_issue_writes_files_with_modes() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        init_dir(dir.path())?;
        assert!(init_dir(dir.path()).is_err(), "a second init is refused");
        let (crt, key) = issue_in_dir(
            dir.path(),
            "agent-1",
            Kind::Agent,
            &["10.0.0.7".into(), "node7".into()],
            CERT_VALIDITY,
        )?;
        let mode = |p: &Path| -> anyhow::Result<u32> {
            Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
        };
        assert_eq!(mode(&key)?, 0o600);
        assert_eq!(mode(&crt)?, 0o644);
        assert_eq!(mode(&dir.path().join("ca.key"))?, 0o600);
        let pem = std::fs::read_to_string(&crt)?;
        let (name, groups) = crate::tls::subject_of_pem(&pem)?;
        assert_eq!(name, "agent-1");
        assert_eq!(groups, vec!["proffer:agent".to_string()]);
        Ok(())
    }

    #[test]
    fn bad_names_and_kinds_are_refused_with_the_reason() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        init_dir(dir.path())?;
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
            let err = issue_in_dir(dir.path(), bad, Kind::Client, &[], CERT_VALIDITY)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("bad certificate name"), "{bad}: {err}");
        }
        let err = Kind::parse("root").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("expected master, agent or client")));
        let err = issue_in_dir(dir.path(), "c", Kind::Client, &["h".into()], CERT_VALIDITY)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--host is for master and agent"), "{err}");
        let missing = issue_in_dir(
            &dir.path().join("nope"),
            "c",
            Kind::Client,
            &[],
            CERT_VALIDITY,
        );
        assert!(missing.is_err_and(|e| e.to_string().contains("ca.crt")));
        Ok(())
    }
}
