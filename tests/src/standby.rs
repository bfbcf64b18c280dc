//! A fake standby master: a gRPC server on 127.0.0.1 that serves the `Scheduler`, `Agent` and
//! `Operator` services of `proffer.v1` and answers every call as a standby does — with
//! `UNAVAILABLE` and the leader's address in the `proffer-leader` metadata entry (none when
//! it is told no leader is known). For client tests that need no etcd.
//!
//! Kept free of this crate's other modules (like `ports.rs`), so a crate this one depends on
//! could include it by path.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;

/// A running fake standby; stopped when dropped.
pub struct Standby {
    /// Its address, `127.0.0.1:PORT`.
    pub addr: String,
    calls: Arc<AtomicUsize>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl Standby {
    /// Starts a standby that names `leader` (`HOST:PORT`; `None`: no leader elected yet).
    pub async fn start(leader: Option<&str>) -> std::io::Result<Standby> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let calls = Arc::new(AtomicUsize::new(0));
        let answer = Answer {
            leader: leader.map(str::to_string),
            calls: calls.clone(),
        };
        let stop = CancellationToken::new();
        let router = tonic::transport::Server::builder()
            .add_service(TurnAway::<SchedulerName>::new(answer.clone()))
            .add_service(TurnAway::<AgentName>::new(answer.clone()))
            .add_service(TurnAway::<OperatorName>::new(answer));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let shutdown = stop.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
        });
        Ok(Standby {
            addr,
            calls,
            stop,
            server,
        })
    }

    /// How many gRPC calls it has turned away.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop.cancel();
        self.server.abort();
    }
}

/// The status a standby answers with: the real master's answer.
pub fn unavailable(leader: Option<&str>) -> tonic::Status {
    proffer_master::server::standby_answer(leader)
}

/// What every call gets, and the call counter.
#[derive(Debug, Clone)]
struct Answer {
    leader: Option<String>,
    calls: Arc<AtomicUsize>,
}

/// The gRPC service name a [`TurnAway`] is routed under.
trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

struct SchedulerName;
impl ServiceName for SchedulerName {
    const NAME: &'static str = "proffer.v1.Scheduler";
}

struct AgentName;
impl ServiceName for AgentName {
    const NAME: &'static str = "proffer.v1.Agent";
}

struct OperatorName;
impl ServiceName for OperatorName {
    const NAME: &'static str = "proffer.v1.Operator";
}

/// Answers every method of service `N` with the standby's status (a trailers-only response,
/// as tonic sends for a handler's error), without reading the request.
struct TurnAway<N> {
    answer: Answer,
    name: PhantomData<fn() -> N>,
}

impl<N> TurnAway<N> {
    fn new(answer: Answer) -> Self {
        TurnAway {
            answer,
            name: PhantomData,
        }
    }
}

impl<N> Clone for TurnAway<N> {
    fn clone(&self) -> Self {
        TurnAway::new(self.answer.clone())
    }
}

impl<N: ServiceName> NamedService for TurnAway<N> {
    const NAME: &'static str = N::NAME;
}

impl<N> tonic::codegen::Service<http::Request<Body>> for TurnAway<N> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
        self.answer.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(unavailable(self.answer.leader.as_deref()).into_http()))
    }
}
