//! A small HTTP/1.1 client and health server on hyper, plain or over rustls.
//!
//! Enough for health endpoints, `k8s-probe` and the stand-ins' probes; not a general
//! HTTP stack (no redirects, no pooling: one connection per request).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP failure.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host:port/path`.
    #[error("bad URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Connecting, the TLS handshake or the exchange failed.
    #[error("{url}: {reason}")]
    Io {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {0:?}", .timeout)]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
}

/// A parsed `http(s)://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`?
    pub tls: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 / 443).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses a URL.
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = |reason: &str| HttpError::Url {
            url: url.into(),
            reason: reason.into(),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("scheme must be http or https"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Url {
            tls,
            host: host.into(),
            port,
            path: path.into(),
        })
    }
}

/// An HTTP response: status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (lossy UTF-8).
    pub body: String,
}

/// Sends one request. `tls` is required for `https` URLs.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, request_inner(method, url, body, tls)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            url: url.into(),
            timeout,
        }),
    }
}

async fn request_inner(
    method: &str,
    url: &str,
    body: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Response, HttpError> {
    let u = Url::parse(url)?;
    let io = |e: &dyn std::fmt::Display| HttpError::Io {
        url: url.into(),
        reason: e.to_string(),
    };
    let tcp = TcpStream::connect((u.host.as_str(), u.port))
        .await
        .map_err(|e| io(&e))?;
    let host_header = if u.host.contains(':') {
        format!("[{}]:{}", u.host, u.port)
    } else {
        format!("{}:{}", u.host, u.port)
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(&u.path)
        .header("host", host_header);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| io(&e))?;
    if u.tls {
        let cfg = tls.ok_or_else(|| io(&"https URL without a TLS configuration"))?;
        let name = ServerName::try_from(u.host.clone()).map_err(|e| io(&e))?;
        let stream = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| io(&format!("TLS: {e}")))?;
        exchange(stream, req).await.map_err(|e| io(&e))
    } else {
        exchange(tcp, req).await.map_err(|e| io(&e))
    }
}

async fn exchange<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> Result<Response, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// What a request carried that a handler may look at.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The path (without query).
    pub path: String,
    /// The client certificate's subject CN, when one was presented (TLS only).
    pub client_cn: Option<String>,
}

/// Answers a request with a status and a body.
pub type Handler = Arc<dyn Fn(&RequestInfo) -> (u16, String) + Send + Sync>;

/// Answers a request with a status and a binary body.
pub type BinaryHandler = Arc<dyn Fn(&RequestInfo) -> (u16, Vec<u8>) + Send + Sync>;

/// Serves `handler` on `listener` forever, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
) {
    let binary: BinaryHandler = Arc::new(move |req: &RequestInfo| {
        let (status, body) = handler(req);
        (status, body.into_bytes())
    });
    serve_with(listener, tls, binary, "text/plain; charset=utf-8").await;
}

/// As [`serve`], for binary answers (`application/octet-stream`).
pub async fn serve_binary(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: BinaryHandler,
) {
    serve_with(listener, tls, handler, "application/octet-stream").await;
}

async fn serve_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: BinaryHandler,
    content_type: &'static str,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(a) => {
                    let Ok(stream) = a.accept(tcp).await else {
                        return;
                    };
                    let cn = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|der| crate::tlsutil::der_cn(der));
                    serve_conn(stream, handler, cn, content_type).await;
                }
                None => serve_conn(tcp, handler, None, content_type).await,
            }
        });
    }
}

async fn serve_conn<S>(
    stream: S,
    handler: BinaryHandler,
    client_cn: Option<String>,
    content_type: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let info = RequestInfo {
            path: req.uri().path().to_string(),
            client_cn: client_cn.clone(),
        };
        let (status, body) = handler(&info);
        let resp = hyper::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())));
        async move { Ok::<_, Infallible>(resp) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("https://10.0.0.1:6443/readyz").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "10.0.0.1", 6443, "/readyz")
        );
        let u = Url::parse("http://[::1]:2379").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 2379, "/")
        );
        assert_eq!(Url::parse("https://k").unwrap().port, 443);
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://:80").is_err());
        assert!(Url::parse("http://h:99999").is_err());
    }
}
