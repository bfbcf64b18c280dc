//! What a standby master serves: `GET /health` (role `standby` and who leads), and for every
//! other request a pointer to the leader: HTTP `307` with `Location` on the leader, gRPC
//! `UNAVAILABLE` with the leader's address in the `proffer-leader` metadata entry (503 / no
//! entry while no leader is known).

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use super::http::Health;

/// The gRPC metadata entry that names the leader (`HOST:PORT`) on a standby's `UNAVAILABLE`.
pub use proffer_proto::leader::LEADER_METADATA;

/// State of the standby's handlers.
#[derive(Debug, Clone)]
struct Standby {
    /// Who leads now, as clients reach it.
    leader: watch::Receiver<Option<String>>,
    /// `https` when the masters serve TLS, else `http` (for redirects).
    scheme: &'static str,
}

/// The standby's routes.
pub(crate) fn router(leader: watch::Receiver<Option<String>>, scheme: &'static str) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(elsewhere)
        .with_state(Standby { leader, scheme })
}

async fn health(State(st): State<Standby>) -> Response {
    let leader = st.leader.borrow().clone();
    Json(Health {
        status: "ok",
        role: "standby",
        leader: leader.as_deref(),
        master_id: None,
        error: None,
    })
    .into_response()
}

/// Every other request: to the leader.
async fn elsewhere(State(st): State<Standby>, request: Request) -> Response {
    let leader = st.leader.borrow().clone();
    if proffer_net::listen::is_grpc(&request) {
        return unavailable(leader.as_deref()).into_http::<axum::body::Body>();
    }
    match leader {
        Some(l) => {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let location = format!("{}://{l}{path}", st.scheme);
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location.clone())],
                format!("standby master: the leader is {l}: {location}\n"),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby master: no leader elected yet\n",
        )
            .into_response(),
    }
}

/// The gRPC answer of a standby: `UNAVAILABLE`, with the leader in the `proffer-leader`
/// metadata entry when one is known.
pub fn unavailable(leader: Option<&str>) -> tonic::Status {
    match leader {
        Some(l) => {
            let mut status =
                tonic::Status::unavailable(format!("standby master: the leader is {l}"));
            if let Ok(v) = l.parse() {
                status.metadata_mut().insert(LEADER_METADATA, v);
            }
            status
        }
        None => tonic::Status::unavailable("standby master: no leader elected yet"),
    }
}

/// Serves the standby routes on `listener` until `stop` fires (existing connections are
/// drained in the background; the listener's clone may already serve as leader), under the
/// same connection limits as the leader.
pub(crate) fn spawn(
    listener: tokio::net::TcpListener,
    leader: watch::Receiver<Option<String>>,
    stop: tokio_util::sync::CancellationToken,
    limits: super::ConnLimits,
    tls: Option<proffer_net::tls::ServerTls>,
) -> tokio::task::JoinHandle<()> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let router = router(leader, scheme).layer(axum::extract::DefaultBodyLimit::max(
        super::MAX_MESSAGE_BYTES,
    ));
    tokio::spawn(proffer_net::listen::serve(
        listener, router, limits, tls, stop,
    ))
}

/// A clone of `listener` for one phase (standby or leader) of this master's life.
pub(crate) fn phase_listener(
    listener: &std::net::TcpListener,
) -> std::io::Result<tokio::net::TcpListener> {
    let clone = listener.try_clone()?;
    clone.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grpc_answer_names_the_leader() {
        let s = unavailable(Some("10.0.0.2:5050"));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(
            s.metadata()
                .get(LEADER_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("10.0.0.2:5050")
        );
        let none = unavailable(None);
        assert!(none.metadata().get(LEADER_METADATA).is_none());
        assert!(none.message().contains("no leader"));
    }
}
