//! TLS and mutual TLS on the shared accept loop, with certificates from the cluster PKI:
//! the right CA connects and a client certificate's subject reaches the handler; a server
//! certificate from another CA is refused by the client; a client certificate from another CA
//! is refused by the server; plain HTTP on the TLS port is told to use TLS.

use std::path::Path;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use proffer_net::listen::{ConnLimits, serve};
use proffer_net::pki::{self, CERT_VALIDITY, Kind};
use proffer_net::tls::{ClientTls, PeerSubject, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn files(dir: &Path, name: Option<&str>) -> TlsFiles {
    TlsFiles {
        cert: name.map(|n| dir.join(format!("{n}.crt"))),
        key: name.map(|n| dir.join(format!("{n}.key"))),
        ca: Some(dir.join("ca.crt")),
    }
}

/// Two PKIs: `ours` (master, alice, agent a1) and `other` (mallory).
fn pkis(root: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let ours = root.join("ours");
    let other = root.join("other");
    pki::init_dir(&ours)?;
    pki::init_dir(&other)?;
    pki::issue_in_dir(&ours, "master", Kind::Master, &[], CERT_VALIDITY)?;
    pki::issue_in_dir(&ours, "alice", Kind::Client, &[], CERT_VALIDITY)?;
    pki::issue_in_dir(&other, "mallory", Kind::Client, &[], CERT_VALIDITY)?;
    pki::issue_in_dir(&other, "impostor", Kind::Master, &[], CERT_VALIDITY)?;
    Ok((ours, other))
}

/// Serves `/who` (the client certificate's subject, or `anonymous`) with `tls`.
async fn start(tls: TlsFiles, cancel: &CancellationToken) -> Result<String> {
    let router = Router::new().route(
        "/who",
        get(|req: axum::extract::Request| async move {
            match req.extensions().get::<PeerSubject>() {
                Some(s) => format!("{} {}", s.name, s.groups.join(",")),
                None => "anonymous".to_string(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let tls = tls.server_config()?.context("a server configuration")?;
    tokio::spawn(serve(
        listener,
        router,
        ConnLimits::default(),
        Some(tls),
        cancel.clone(),
    ));
    Ok(addr)
}

/// GET /who over TLS with `client`: the body, or the connection error.
async fn who(addr: &str, client: &ClientTls) -> Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = client.wrap("127.0.0.1", tcp).await?;
    get_who(&mut tls).await
}

async fn get_who<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<String> {
    s.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    Ok(text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn mutual_tls_proves_the_subject_and_refuses_strangers() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (ours, other) = pkis(root.path())?;
    let cancel = CancellationToken::new();
    let addr = start(files(&ours, Some("master")), &cancel).await?;

    // The cluster CA and a client certificate: the subject reaches the handler.
    let alice = files(&ours, Some("alice")).client()?.context("alice")?;
    assert_eq!(who(&addr, &alice).await?, "alice proffer:client");
    // The cluster CA without a certificate: TLS, anonymous.
    let anon = files(&ours, None).client()?.context("anonymous")?;
    assert_eq!(who(&addr, &anon).await?, "anonymous");

    // A client that trusts another CA refuses our server's certificate.
    let wrong_ca = files(&other, None).client()?.context("other CA")?;
    let err = who(&addr, &wrong_ca).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("certificate")),
        "{err:?}"
    );

    // A client certificate from another CA is refused by the server.
    let mallory = TlsFiles {
        ca: Some(ours.join("ca.crt")),
        ..files(&other, Some("mallory"))
    }
    .client()?
    .context("mallory")?;
    let refused = who(&addr, &mallory).await;
    assert!(
        refused.is_err() || refused.as_deref().is_ok_and(str::is_empty),
        "{refused:?}"
    );

    // Plain HTTP on the TLS port is told what to do.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await?;
    let body = get_who(&mut tcp).await?;
    assert!(
        body.contains("only speaks TLS") && body.contains("--tls-ca"),
        "{body}"
    );
    cancel.cancel();
    Ok(())
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (ours, other) = pkis(root.path())?;
    let cancel = CancellationToken::new();
    // The server presents a certificate the cluster CA did not sign.
    let addr = start(files(&other, Some("impostor")), &cancel).await?;
    let alice = files(&ours, Some("alice")).client()?.context("alice")?;
    let err = who(&addr, &alice).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("UnknownIssuer") || e.contains("invalid peer certificate")),
        "{err:?}"
    );
    cancel.cancel();
    Ok(())
}

#[test]
fn bad_files_are_named_in_the_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = TlsFiles {
        cert: Some(dir.path().join("nope.crt")),
        key: Some(dir.path().join("nope.key")),
        ca: None,
    };
    let err = missing
        .server_config()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("nope.crt"), "{err}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate")?;
    let err = TlsFiles {
        ca: Some(garbage),
        ..Default::default()
    }
    .client()
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("garbage.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
    let half = TlsFiles {
        cert: Some(dir.path().join("a.crt")),
        ..Default::default()
    };
    let err = half
        .server_config()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
    Ok(())
}
