//! PEM loading, certificate inspection and checks (signed by a CA, SAN covers an address), and
//! rustls configurations (ring provider) for serving and for clients trusting a CA.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate or key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// No PEM certificate could be read.
    #[error("{what}: no PEM certificate found")]
    NoCert {
        /// Which file or field.
        what: String,
    },
    /// No PEM private key could be read.
    #[error("{what}: no PEM private key found")]
    NoKey {
        /// Which file or field.
        what: String,
    },
    /// The certificate is not valid DER/X.509.
    #[error("{what}: not an X.509 certificate: {reason}")]
    Parse {
        /// Which file or field.
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// The certificate is not signed by the CA.
    #[error("{what}: certificate (subject `{subject}`) is not signed by the CA `{ca}`")]
    NotSignedBy {
        /// Which file or field.
        what: String,
        /// The certificate's subject.
        subject: String,
        /// The CA's subject.
        ca: String,
    },
    /// The serving certificate does not cover an address.
    #[error("{what}: certificate SANs {sans:?} do not cover `{host}`")]
    SanMismatch {
        /// Which file or field.
        what: String,
        /// The address.
        host: String,
        /// The certificate's SANs.
        sans: Vec<String>,
    },
    /// rustls refused the material.
    #[error("{what}: {reason}")]
    Rustls {
        /// Which file or field.
        what: String,
        /// rustls's message.
        reason: String,
    },
}

/// What a certificate says, for checks and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertInfo {
    /// Subject common name.
    pub cn: String,
    /// Subject organizations.
    pub orgs: Vec<String>,
    /// Issuer common name.
    pub issuer_cn: String,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// IP SANs.
    pub ip_sans: Vec<IpAddr>,
    /// Basic constraints CA flag.
    pub is_ca: bool,
    /// Key usage keyCertSign.
    pub key_cert_sign: bool,
    /// Key usage digitalSignature.
    pub digital_signature: bool,
    /// Extended key usage serverAuth.
    pub server_auth: bool,
    /// Extended key usage clientAuth.
    pub client_auth: bool,
}

/// The first certificate of a PEM text, as DER.
pub fn cert_der(pem: &str, what: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| TlsError::NoCert { what: what.into() })
}

/// The private key of a PEM text.
pub fn key_der(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| TlsError::NoKey { what: what.into() })
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, TlsError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| TlsError::Parse {
            what: what.into(),
            reason: e.to_string(),
        })
}

fn cn_of(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The subject CN of a DER certificate, if it parses.
pub fn der_cn(der: &[u8]) -> Option<String> {
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, c)| cn_of(c.subject()))
}

/// Reads what a PEM certificate says.
pub fn inspect(pem: &str, what: &str) -> Result<CertInfo, TlsError> {
    let der = cert_der(pem, what)?;
    let c = parse(&der, what)?;
    let mut info = CertInfo {
        cn: cn_of(c.subject()),
        orgs: c
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect(),
        issuer_cn: cn_of(c.issuer()),
        ..CertInfo::default()
    };
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => info.dns_sans.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        info.ip_sans.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        info.ip_sans.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    if let Ok(Some(bc)) = c.basic_constraints() {
        info.is_ca = bc.value.ca;
    }
    if let Ok(Some(ku)) = c.key_usage() {
        info.key_cert_sign = ku.value.key_cert_sign();
        info.digital_signature = ku.value.digital_signature();
    }
    if let Ok(Some(eku)) = c.extended_key_usage() {
        info.server_auth = eku.value.server_auth;
        info.client_auth = eku.value.client_auth;
    }
    Ok(info)
}

/// Checks that `cert_pem` is signed by `ca_pem` (issuer name and signature).
pub fn verify_signed_by(cert_pem: &str, ca_pem: &str, what: &str) -> Result<(), TlsError> {
    let der = cert_der(cert_pem, what)?;
    let ca_der = cert_der(ca_pem, &format!("{what} CA"))?;
    let cert = parse(&der, what)?;
    let ca = parse(&ca_der, &format!("{what} CA"))?;
    let ok = cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    if ok {
        Ok(())
    } else {
        Err(TlsError::NotSignedBy {
            what: what.into(),
            subject: cert.subject().to_string(),
            ca: ca.subject().to_string(),
        })
    }
}

/// Checks that a serving certificate's SANs cover `host` (an IP or a DNS name; `*.` wildcards
/// match one label).
pub fn check_san(cert_pem: &str, host: &str, what: &str) -> Result<(), TlsError> {
    let info = inspect(cert_pem, what)?;
    let covered = match host.parse::<IpAddr>() {
        Ok(ip) => info.ip_sans.contains(&ip),
        Err(_) => info.dns_sans.iter().any(|d| {
            d.eq_ignore_ascii_case(host)
                || d.strip_prefix("*.").is_some_and(|rest| {
                    host.split_once('.')
                        .is_some_and(|(_, h)| h.eq_ignore_ascii_case(rest))
                })
        }),
    };
    if covered {
        Ok(())
    } else {
        let mut sans = info.dns_sans;
        sans.extend(info.ip_sans.iter().map(IpAddr::to_string));
        Err(TlsError::SanMismatch {
            what: what.into(),
            host: host.into(),
            sans,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_err(what: &str) -> impl FnOnce(rustls::Error) -> TlsError + '_ {
    move |e| TlsError::Rustls {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// A TLS server configuration serving `cert_pem`/`key_pem`. With `client_ca_pem`, client
/// certificates signed by that CA are verified when presented (anonymous clients are allowed,
/// as the real components allow them on their health endpoints).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    what: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = vec![cert_der(cert_pem, what)?];
    let key = key_der(key_pem, what)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err(what))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert_der(ca, what)?).map_err(rustls_err(what))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls {
                what: what.into(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(rustls_err(what))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TLS client configuration trusting only `ca_pem`, optionally presenting a client
/// certificate.
pub fn client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    what: &str,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert_der(ca_pem, what)?)
        .map_err(rustls_err(what))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err(what))?
        .with_root_certificates(roots);
    let cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert_der(cert, what)?], key_der(key, what)?)
            .map_err(rustls_err(what))?,
    };
    Ok(Arc::new(cfg))
}
