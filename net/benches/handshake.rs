//! The cost of TLS on Proffer's accept loop, side by side in one run (this machine is noisy):
//! new connections per second (TCP connect + handshake + one HTTP/1.1 request + close) and
//! requests per second on one kept-alive connection, for plain TCP, TLS, and mutual TLS (a
//! client certificate verified against the cluster CA), against `proffer_net::listen::serve`.
//!
//! `cargo bench -p proffer-net --bench handshake` (env `HANDSHAKE_SECONDS`, default 3 per row).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use proffer_net::listen::{ConnLimits, serve};
use proffer_net::pki::{self, CERT_VALIDITY, Kind};
use proffer_net::tls::{ClientTls, TlsFiles};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one response (headers + Content-Length body) from `r`.
async fn response<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<()> {
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        anyhow::ensure!(r.read_line(&mut line).await? > 0, "connection closed");
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(())
}

async fn request<S: tokio::io::AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) -> Result<()> {
    s.get_mut().write_all(REQUEST).await?;
    response(s).await
}

/// One new connection (TLS with `tls`), one request.
async fn one_connection(addr: &str, tls: Option<&ClientTls>) -> Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(t) => request(&mut BufReader::new(t.wrap("127.0.0.1", tcp).await?)).await,
        None => request(&mut BufReader::new(tcp)).await,
    }
}

async fn start(tls: Option<TlsFiles>, cancel: &CancellationToken) -> Result<String> {
    let router = Router::new().route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let tls = match tls {
        Some(f) => Some(f.server_config()?.context("server TLS")?),
        None => None,
    };
    tokio::spawn(serve(
        listener,
        router,
        ConnLimits::default(),
        tls,
        cancel.clone(),
    ));
    Ok(addr)
}

/// Rate of `f` over `secs` seconds.
async fn rate<F, Fut>(secs: f64, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        f().await?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Requests per second on one kept-alive connection.
async fn kept_rate<S: tokio::io::AsyncRead + AsyncWrite + Unpin>(
    mut s: BufReader<S>,
    secs: f64,
) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        request(&mut s).await?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let secs: f64 = std::env::var("HANDSHAKE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    pki::init_dir(d)?;
    pki::issue_in_dir(d, "master", Kind::Master, &[], CERT_VALIDITY)?;
    pki::issue_in_dir(d, "bench", Kind::Client, &[], CERT_VALIDITY)?;
    let files = |name: Option<&str>| TlsFiles {
        cert: name.map(|n| d.join(format!("{n}.crt"))),
        key: name.map(|n| d.join(format!("{n}.key"))),
        ca: Some(d.join("ca.crt")),
    };
    let cancel = CancellationToken::new();
    let plain = start(None, &cancel).await?;
    let tls = start(Some(files(Some("master"))), &cancel).await?;
    let server_only = files(None).client()?.context("client TLS")?;
    let mutual = files(Some("bench")).client()?.context("client mTLS")?;

    println!("proffer-net accept loop, one client, {secs} s per row (loopback, ECDSA P-256, ring)");
    println!(
        "{:<14} {:>18} {:>22}",
        "transport", "new connections/s", "requests/s (kept)"
    );
    let rows: [(&str, &str, Option<&ClientTls>); 3] = [
        ("plain TCP", &plain, None),
        ("TLS", &tls, Some(&server_only)),
        ("mutual TLS", &tls, Some(&mutual)),
    ];
    for (name, addr, client) in rows {
        let conns = rate(secs, || one_connection(addr, client)).await?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let kept = match client {
            Some(t) => kept_rate(BufReader::new(t.wrap("127.0.0.1", tcp).await?), secs).await?,
            None => kept_rate(BufReader::new(tcp), secs).await?,
        };
        println!("{name:<14} {conns:>18.0} {kept:>22.0}");
    }
    cancel.cancel();
    Ok(())
}
