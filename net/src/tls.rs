//! TLS with rustls (ring): server configurations for the master and the agent (optionally
//! verifying client certificates against the cluster CA: mutual TLS), client configurations
//! that verify servers against the cluster CA and may present a certificate, and the
//! principal a verified client certificate proves ([`PeerSubject`]: its subject CN, and its
//! organizations as groups).
//!
//! Every client in a process (agent sessions, the SDK driver, operator calls, HTTP reads of
//! sandboxes) uses the process's [`ClientTls`] once [`set_process_tls`] was called, so one set
//! of flags (`--tls-ca`, `--tls-cert`, `--tls-key`) covers a whole command.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file ("certificate", "private key", "CA").
        what: &'static str,
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A certificate that does not parse as X.509.
    #[error("certificate: {0}")]
    Certificate(String),
}

fn file_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(String) -> TlsError + 'a {
    move |reason| TlsError::File {
        what,
        path: path.display().to_string(),
        reason,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_of(what, path, &read_file(what, path)?)
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_err(what, path)(e.to_string()))
}

/// The certificates of the PEM text `pem` read from `path` (at least one).
fn certs_of(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, path)(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(what, path)("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_of(path, &read_file("private key", path)?)
}

/// The private key of the PEM text `pem` read from `path`.
fn key_of(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| file_err("private key", path)(e.to_string()))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    roots_of(ca, &read_file("CA", ca)?)
}

/// A root store of the CA certificates in the PEM text `pem` read from `ca`.
fn roots_of(ca: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs_of("CA", ca, pem)? {
        store
            .add(c)
            .map_err(|e| file_err("CA", ca)(e.to_string()))?;
    }
    Ok(store)
}

/// The PEM files of a TLS identity and the CA it trusts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// The cluster CA (PEM).
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// True if nothing is set.
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none()
    }

    /// The certificate and key, both given or neither.
    fn identity(&self) -> Result<Option<(&Path, &Path)>, TlsError> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Config(
                "--tls-cert needs --tls-key (the certificate's private key)".into(),
            )),
            (None, Some(_)) => Err(TlsError::Config(
                "--tls-key needs --tls-cert (the key's certificate)".into(),
            )),
        }
    }

    /// A server configuration: serve with the certificate; with a CA, also ask clients for a
    /// certificate and verify any they present (whether one is required is the server's
    /// decision per surface, see [`PeerSubject`]). None without a certificate (a CA alone
    /// makes a client, not a server).
    pub fn server_config(&self) -> Result<Option<ServerTls>, TlsError> {
        let Some((cert, key)) = self.identity()? else {
            return Ok(None);
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(read_certs("certificate", cert)?, read_key(key)?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(ServerTls {
            config: Arc::new(config),
            verifies_clients: self.ca.is_some(),
        }))
    }

    /// The client side: verify servers against the CA, present the certificate if given.
    /// None when no CA is given (plain connections); a certificate without a CA is refused.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        let identity = self.identity()?;
        let Some(ca) = &self.ca else {
            if identity.is_some() {
                return Err(TlsError::Config(
                    "--tls-cert without --tls-ca: the client needs the cluster CA to verify \
                     the master"
                        .into(),
                ));
            }
            return Ok(None);
        };
        // Each file is read once: the PEM text serves both rustls and tonic.
        let ca_pem = read_file("CA", ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots_of(ca, &ca_pem)?);
        let (mut rustls_config, identity) = match identity {
            Some((c, k)) => {
                let (cert_pem, key_pem) =
                    (read_file("certificate", c)?, read_file("private key", k)?);
                let config = builder
                    .with_client_auth_cert(
                        certs_of("certificate", c, &cert_pem)?,
                        key_of(k, &key_pem)?,
                    )
                    .map_err(|e| TlsError::Config(format!("{}: {e}", c.display())))?;
                (config, Some((cert_pem, key_pem)))
            }
            None => (builder.with_no_client_auth(), None),
        };
        // [`ClientTls::wrap`] serves the HTTP/1.1 clients; tonic has its own configuration.
        rustls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(ClientTls {
            ca_pem,
            identity,
            rustls: Arc::new(rustls_config),
        }))
    }
}

/// A server's TLS configuration (compared by identity).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    verifies_clients: bool,
}

impl ServerTls {
    /// The rustls configuration.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// True if client certificates are verified against a CA (mutual TLS is possible).
    pub fn verifies_clients(&self) -> bool {
        self.verifies_clients
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("verifies_clients", &self.verifies_clients)
            .finish_non_exhaustive()
    }
}

/// A client's TLS settings: the CA that verifies servers and the certificate it presents.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    rustls: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// tonic's settings for a connection to `host`.
    pub fn tonic(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .domain_name(host);
        if let Some((cert, key)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        c
    }

    /// Opens a TLS connection over `tcp` to `host` (HTTP/1.1 clients).
    pub async fn wrap<S>(
        &self,
        host: &str,
        tcp: S,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        tokio_rustls::TlsConnector::from(self.rustls.clone())
            .connect(name, tcp)
            .await
    }
}

static PROCESS_TLS: OnceLock<ClientTls> = OnceLock::new();

/// Sets the TLS every client of this process uses (once; later calls are ignored).
pub fn set_process_tls(tls: ClientTls) {
    let _ = PROCESS_TLS.set(tls);
}

/// The process's client TLS, if set.
pub fn process_tls() -> Option<&'static ClientTls> {
    PROCESS_TLS.get()
}

/// `https` when the process uses TLS, else `http`.
pub fn scheme() -> &'static str {
    if process_tls().is_some() {
        "https"
    } else {
        "http"
    }
}

/// The host part of `HOST:PORT` (`[v6]:port` gives `v6`).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A gRPC endpoint for `master` (`HOST:PORT`, or a URL), over TLS when the process uses it.
pub fn grpc_endpoint(master: &str) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    grpc_endpoint_with(master, process_tls())
}

/// A gRPC endpoint for `master` (`HOST:PORT`, or a URL), over TLS when `tls` is set.
pub fn grpc_endpoint_with(
    master: &str,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (url, authority) = match master.split_once("://") {
        Some((_, rest)) => (master.to_string(), rest.trim_end_matches('/')),
        None => (format!("{scheme}://{master}"), master),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url)?;
    match tls {
        Some(tls) => endpoint.tls_config(tls.tonic(host_of(authority))),
        None => Ok(endpoint),
    }
}

/// A stream to `addr` (`HOST:PORT`): TCP, wrapped in TLS when the process uses it.
pub async fn connect(addr: &str) -> io::Result<Box<dyn Stream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    match process_tls() {
        Some(tls) => Ok(Box::new(tls.wrap(host_of(addr), tcp).await?)),
        None => Ok(Box::new(tcp)),
    }
}

/// A byte stream (TCP or TLS).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Who a verified client certificate says the peer is: its subject CN (the principal) and
/// organizations (e.g. `proffer:agent`). Put in each request's extensions by [`crate::listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSubject {
    /// The subject common name.
    pub name: String,
    /// The subject organizations.
    pub groups: Vec<String>,
}

/// The subject CN and organizations of a DER certificate.
pub fn subject_of_der(der: &[u8]) -> Result<(String, Vec<String>), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::Certificate("no subject common name".into()))?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Ok((name, groups))
}

/// [`subject_of_der`] of the first certificate of a PEM text.
pub fn subject_of_pem(pem: &str) -> Result<(String, Vec<String>), TlsError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    subject_of_der(&der)
}
