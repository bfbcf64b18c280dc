//! The web UI: hand-written HTML, CSS and vanilla JavaScript built into the binary
//! (`include_str!`; no node toolchain, nothing from a CDN), served at `/`, `/ui` and `/ui/…`,
//! plus the sandbox proxy the UI reads task output through (`sandbox`).
//!
//! | route | reply |
//! |---|---|
//! | `GET /`, `/ui`, `/ui/`, `/ui/…` (not an asset) | the page (`index.html`; pages are `#/…` routes) |
//! | `GET /ui/assets/NAME` | `app.js`, `style.css`, `favicon.svg` |
//! | `GET /ui/api/sandbox/read?framework_id=&task_id=&path=&offset=&length=` | the agent's `/files/read` of a file in the task's sandbox |
//! | `GET /ui/api/sandbox/browse?framework_id=&task_id=&path=` | the agent's `/files/browse` of a directory in it |
//! | `GET /ui/api/sandbox/download?framework_id=&task_id=&path=` | the agent's `/files/download` of a file in it (streamed) |
//!
//! Every asset carries its content type, `Cache-Control: no-cache` with a strong `ETag` (a
//! browser revalidates and gets `304 Not Modified` until the binary changes), `nosniff` and a
//! content security policy allowing only this origin's scripts, styles and requests. The page
//! reads the master's JSON routes (`/state`, `/roles`, `/why`, `/maintenance`) with the
//! browser's credentials (same origin: Basic authentication works as for any route).

mod sandbox;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::http::HttpState;

/// One built-in file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asset {
    /// Its name under `/ui/assets/` (the page itself is `index.html`).
    pub(crate) name: &'static str,
    /// The `Content-Type`.
    pub(crate) content_type: &'static str,
    /// The bytes.
    pub(crate) body: &'static str,
}

/// The page.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("assets/index.html"),
};

/// The files under `/ui/assets/`.
const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/favicon.svg"),
    },
];

/// The content security policy of every UI response: this origin only, no inline script.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The asset called `name` under `/ui/assets/`, if there is one.
pub(crate) fn asset(name: &str) -> Option<Asset> {
    ASSETS.iter().copied().find(|a| a.name == name)
}

/// A strong entity tag of `body` (FNV-1a 64 of the bytes): changes when the binary's copy does.
pub(crate) fn etag(body: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

/// The entity tag of a built-in file, computed once per file.
fn cached_etag(asset: Asset) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(INDEX)
            .chain(ASSETS)
            .map(|a| (a.name, etag(a.body)))
            .collect()
    });
    tags.iter()
        .find(|(name, _)| *name == asset.name)
        .map_or("\"0\"", |(_, tag)| tag.as_str())
}

/// True if an `If-None-Match` header value names `tag` (or is `*`).
pub(crate) fn matches_etag(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// The UI's routes (merged into the HTTP router).
pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(page))
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/assets/{name}", get(asset_route))
        .route("/ui/api/sandbox/{op}", get(sandbox::proxy))
        .route("/ui/api/{*rest}", get(unknown_api))
        .route("/ui/{*rest}", get(page))
}

/// `asset` as a response: `304` when `headers` already hold its current version.
pub(crate) fn serve(asset: Asset, headers: &HeaderMap) -> Response {
    let tag = cached_etag(asset);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches_etag(v, tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn page(headers: HeaderMap) -> Response {
    serve(INDEX, &headers)
}

async fn asset_route(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match asset(&name) {
        Some(a) => serve(a, &headers),
        None => (
            StatusCode::NOT_FOUND,
            format!("no UI asset named {name:?}\n"),
        )
            .into_response(),
    }
}

async fn unknown_api(Path(rest): Path<String>) -> Response {
    sandbox::error(
        StatusCode::NOT_FOUND,
        format!("no UI API route /ui/api/{rest}"),
    )
}
