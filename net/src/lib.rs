//! Proffer's transport layer, shared by the master, the agent, the SDK and the CLI:
//! - [`pki`]: a cluster CA and the certificates of masters, agents and clients (rcgen), also
//!   used by the Kubernetes framework's PKI;
//! - [`tls`]: rustls server and client configurations from PEM files, the principal a client
//!   certificate proves, and the process-wide client TLS settings every client uses;
//! - [`listen`]: the accept loop (TLS handshakes, connection limits, timeouts) the master and
//!   the agent serve their gRPC + HTTP router on.

pub mod listen;
pub mod pki;
pub mod tls;
pub mod url;
