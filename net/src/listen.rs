//! The accept loop: at most [`ConnLimits::max_connections`] open connections (beyond it a new
//! connection is closed at once, the open ones are unaffected), HTTP/1 header-read timeout,
//! HTTP/2 keep-alive pings with a timeout (half-open connections are dropped), and an idle
//! timeout (no byte read or written for that long: the connection is closed).
//!
//! With a TLS configuration every connection is TLS: the handshake must finish within the
//! header-read timeout, and a verified client certificate's subject goes into each request's
//! extensions as a [`PeerSubject`].

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::tls::PeerSubject;

/// Limits on connections.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLimits {
    /// Most connections open at once (default 10,000); lowered, with a warning, to fit the
    /// process's file-descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// An HTTP/1 request's header must arrive within this (default 30 s).
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (default 5 min).
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged (default 30 s).
    pub keep_alive_interval: Duration,
    /// An HTTP/2 ping unanswered this long closes the connection (default 20 s).
    pub keep_alive_timeout: Duration,
    /// Most long-lived streams (framework subscriptions, agent sessions) open at once per
    /// authenticated principal, or per peer IP address when unauthenticated (default 10,000).
    pub max_streams_per_principal: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(20),
            max_streams_per_principal: 10_000,
        }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `cancel` fires; then stops
/// accepting, asks every connection to shut down gracefully and returns once they are all
/// closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<crate::tls::ServerTls>,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config()));
    let max = fd_bounded(limits.max_connections, open_files_limit());
    let permits = Arc::new(Semaphore::new(max));
    let conns = TaskTracker::new();
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, max, refused,
                    "too many connections: closing a new one");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let limits = limits.clone();
        let cancel = cancel.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            connection(stream, peer, router, &limits, acceptor, cancel).await;
            drop(permit);
        });
    }
    // Stop accepting now (another phase may serve a clone of this listener).
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// File descriptors kept for everything but connections (registry, logs, etcd, sandboxes).
const RESERVED_FDS: usize = 256;

/// The process's soft limit on open files (Linux: `/proc/self/limits`), if known.
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

/// The soft "Max open files" in the text of `/proc/self/limits` (None: unlimited or absent).
fn parse_open_files(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `max` connections, lowered (with a warning) so that they fit in the file-descriptor limit
/// with [`RESERVED_FDS`] (or half the limit, if that is more) to spare: running out of descriptors would stop the master accepting
/// anything, its own files included.
fn fd_bounded(max: usize, fd_limit: Option<usize>) -> usize {
    let Some(fds) = fd_limit else { return max };
    let fit = fds.saturating_sub(RESERVED_FDS).max(fds / 2).max(1);
    if fit < max {
        tracing::warn!(
            max_connections = max,
            open_files_limit = fds,
            using = fit,
            "the open-files limit (ulimit -n) is too low for --max-connections; raise it"
        );
        return fit;
    }
    max
}

/// Serves one connection until it ends, idles out or (gracefully) the server stops; with an
/// acceptor, after its TLS handshake.
async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: &ConnLimits,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    let start = Instant::now();
    // A client speaking plain HTTP or gRPC to a TLS port is told so, in its own protocol.
    let plain_to_tls = match &acceptor {
        Some(_) => !starts_with_tls(&stream, limits.header_read_timeout).await,
        None => false,
    };
    let activity = Arc::new(AtomicU64::new(0));
    let io = Tracked {
        inner: stream,
        start,
        last: activity.clone(),
    };
    let conn = Conn {
        peer,
        start,
        activity,
        limits,
        cancel,
    };
    let Some(acceptor) = acceptor else {
        return conn.serve(io, router, None).await;
    };
    if plain_to_tls {
        return conn.serve(io, tls_required(), None).await;
    }
    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io)).await;
    match handshake {
        Ok(Ok(tls)) => {
            let subject = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| crate::tls::subject_of_der(leaf).ok())
                .map(|(name, groups)| PeerSubject { name, groups });
            conn.serve(tls, router, subject).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// True if the first byte the client sends is a TLS handshake record (0x16); false for
/// anything else (plain HTTP/1, the HTTP/2 preface), also when nothing comes in `wait`.
async fn starts_with_tls(stream: &TcpStream, wait: Duration) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        // Closed, failed or silent: let the TLS handshake fail or time out as usual.
        _ => true,
    }
}

/// What a plain-text client of a TLS port is told.
const TLS_REQUIRED: &str = "this server only speaks TLS: connect with https, giving the \
    cluster CA (proffer: --tls-ca FILE or PROFFER_TLS_CA)";

/// A router answering every request with [`TLS_REQUIRED`]: gRPC `FAILED_PRECONDITION` or
/// HTTP 400.
fn tls_required() -> Router {
    Router::new().fallback(|request: axum::extract::Request| async move {
        if is_grpc(&request) {
            tonic::Status::failed_precondition(TLS_REQUIRED).into_http::<axum::body::Body>()
        } else {
            axum::response::IntoResponse::into_response((
                axum::http::StatusCode::BAD_REQUEST,
                format!("{TLS_REQUIRED}\n"),
            ))
        }
    })
}

/// True for a gRPC request (`Content-Type: application/grpc…`).
pub fn is_grpc<B>(request: &axum::http::Request<B>) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// One accepted connection's context.
struct Conn<'a> {
    peer: std::net::SocketAddr,
    start: Instant,
    activity: Arc<AtomicU64>,
    limits: &'a ConnLimits,
    cancel: CancellationToken,
}

impl Conn<'_> {
    /// Serves HTTP/1 or HTTP/2 on `io` until it ends, idles out or the server stops.
    async fn serve<I>(self, io: I, router: Router, subject: Option<PeerSubject>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (peer, limits) = (self.peer, self.limits);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(s) = &subject {
                req.extensions_mut().insert(s.clone());
            }
            router.clone().oneshot(req)
        });
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.keep_alive_interval)
            .keep_alive_timeout(limits.keep_alive_timeout);
        let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
        let mut idle = pin!(idle_expired(
            self.start,
            &self.activity,
            limits.idle_timeout
        ));
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    return;
                }
                () = self.cancel.cancelled(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = idle.as_mut() => {
                    tracing::debug!(%peer, idle = ?limits.idle_timeout, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// Returns once no byte has moved for `idle` (measured from `start` plus `last` ms).
async fn idle_expired(start: Instant, last: &AtomicU64, idle: Duration) {
    loop {
        let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A stream that notes when a byte last moved (ms since `start`).
struct Tracked {
    inner: TcpStream,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_in_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(
            parse_open_files("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(fd_bounded(10_000, Some(1024)), 768);
        assert_eq!(fd_bounded(10_000, Some(1_048_576)), 10_000);
        assert_eq!(fd_bounded(10_000, None), 10_000);
        assert_eq!(fd_bounded(10, Some(100)), 10);
        assert_eq!(fd_bounded(1_000, Some(100)), 50);
    }
}
