//! The tokio shell around the sans-IO [`Master`](crate::core::Master).
//!
//! One TCP port serves both gRPC (the `Scheduler`, `Agent` and `Operator` services of
//! `proffer.v1`, over h2c) and HTTP/JSON (`GET /health`, `GET /state`, `GET /state/tasks`,
//! `GET /roles`, `POST /quota`, `DELETE /quota/ROLE`, `POST /weights`, `GET /why`).
//! A single task owns the core; every connection handler talks to it through a command channel,
//! and the core task stamps each input with the time since the server started.
//!
//! # Layout
//! - `core_task`: the task that owns the `Master`, feeds it commands, ticks it and dispatches outputs.
//! - `scheduler`: the framework-facing `Scheduler` gRPC service.
//! - `agent`: the `Agent` gRPC service (one bidirectional session per agent).
//! - `operator`: the `Operator` gRPC service (state, quota, weights, roles, why).
//! - `http`: the axum HTTP/JSON routes (`/health`, `/state`, `/state/tasks`, `/metrics`).
//! - `metrics`: `/metrics` in the Prometheus text format.
//! - `http_roles`: HTTP/JSON operator routes (`/roles`, `/quota`, `/weights`, `/why`).
//! - `registry_writer`: the thread that commits persist batches and acknowledges them.
//! - `ha`: a master in an HA group: standby until elected (etcd), leader until the lease is lost.
//! - `standby`: what a standby serves (health, redirects to the leader).
//! - `status`: mapping of [`MasterError`](crate::core::MasterError) onto gRPC statuses.
//! - `security`: authentication of every request (one middleware) and the callers' ACL checks.
//! - `mesos_operator`: read snapshots the core publishes, the operator event stream, Mesos's
//!   legacy endpoints (`/master/state`, …) and the v1 operator API (`POST /api/v1`).
//! - `ui`: the web UI at `/` and `/ui` (built-in assets) and its sandbox proxy.

mod agent;
mod core_task;
mod ha;
mod http;
mod http_roles;
mod mesos_api;
mod mesos_operator;
mod metrics;
mod operator;
mod registry_writer;
mod scheduler;
mod security;
mod standby;
mod status;
mod streams;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ha;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_operator;
#[cfg(test)]
mod tests_registry;
#[cfg(test)]
mod tests_reserve;
#[cfg(test)]
mod tests_security;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use proffer_proto::v1::agent_server::AgentServer;
use proffer_proto::v1::operator_server::OperatorServer;
use proffer_proto::v1::scheduler_server::SchedulerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::{Master, MasterConfig};
pub use ha::{HaConfig, serve_ha};
pub use mesos_operator::{
    Change, EventSubscription, OperatorEvent, Published, Publisher, Snapshots,
};
pub use proffer_net::listen::ConnLimits;
pub use security::{Authenticated, PeerIdentity, Security};
pub use standby::{LEADER_METADATA, unavailable as standby_answer};

/// Largest accepted request: gRPC messages and HTTP bodies above this are rejected.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Settings of the server shell.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The core's settings.
    pub master: MasterConfig,
    /// Seed for the core's ids and random choices.
    pub seed: u64,
    /// How often the core's timers run even without input (default 20 ms).
    pub tick_interval: Duration,
    /// This master's address as clients reach it (`HOST:PORT`), shown by `/health` and given
    /// to clients by standbys; None: the listener's address.
    pub advertise: Option<String>,
    /// Authentication and ACLs (default: open, everything allowed).
    pub security: Security,
    /// Limits on connections: how many, header-read, idle and keep-alive timeouts.
    pub connections: ConnLimits,
    /// Largest accepted request: an HTTP body above it is answered 413, a gRPC message
    /// refused with `RESOURCE_EXHAUSTED` (`--max-request-bytes`; default [`MAX_MESSAGE_BYTES`]).
    pub max_request_bytes: usize,
    /// TLS on the master's port (gRPC and HTTP); with a CA, client certificates are verified
    /// and agents must present one (see [`Security::require_agent_certificates`]).
    pub tls: Option<proffer_net::tls::ServerTls>,
}

impl ServerConfig {
    /// A configuration with the given core settings, seed 0 and a 20 ms tick.
    pub fn new(master: MasterConfig) -> Self {
        ServerConfig {
            master,
            seed: 0,
            tick_interval: Duration::from_millis(20),
            advertise: None,
            security: Security::default(),
            connections: ConnLimits::default(),
            max_request_bytes: MAX_MESSAGE_BYTES,
            tls: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new(MasterConfig::default())
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener has no usable local address.
    #[error("cannot read the listener's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// Serving connections failed.
    #[error("serving on {addr} failed: {source}")]
    Serve {
        /// The address served.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The zero tick interval would spin.
    #[error("tick interval must be positive")]
    ZeroTick,
    /// The registry cannot be read or recovered from: the master refuses to start rather than
    /// start empty.
    #[error("cannot recover the master from its registry")]
    Registry(#[from] crate::registry::RegistryError),
    /// The leader election failed in a way retrying cannot fix (bad settings).
    #[error("leader election: {0}")]
    Election(#[from] crate::etcd::election::ElectionError),
    /// The registry writer thread could not be started.
    #[error("cannot start the registry writer: {0}")]
    Writer(#[source] std::io::Error),
}

/// Serves the master on `listener` until `cancel` fires, then shuts down gracefully: stops
/// accepting, ends every framework stream and agent session, stops the core task, and returns
/// once all connection tasks are done.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    serve_with_registry(listener, config, None, cancel).await
}

/// Unix time in ms now (the server's clock for the core: wall-clock time, so the registry's
/// times stay meaningful across restarts).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`serve`] with a registry: the master recovers from it before listening (refusing to start
/// if it cannot) and persists every change there before acting on it. `None` persists nothing.
pub async fn serve_with_registry(
    listener: TcpListener,
    config: ServerConfig,
    registry: Option<Box<dyn crate::registry::Registry>>,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    serve_leader(listener, config, registry, None, cancel).await
}

/// [`serve_with_registry`] under a leader lease: the master stops at once (as if `cancel`
/// fired) when `lease` runs out, and when a fenced registry write is refused.
pub(crate) async fn serve_leader(
    listener: TcpListener,
    config: ServerConfig,
    registry: Option<Box<dyn crate::registry::Registry>>,
    lease: Option<std::sync::Arc<crate::etcd::election::LeaseClock>>,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    if config.tick_interval.is_zero() {
        return Err(ServerError::ZeroTick);
    }
    let addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    let tracker = TaskTracker::new();
    let (core, commands) = core_task::CoreHandle::new();
    let start = tokio::time::Instant::now();
    let start_ms = unix_ms();
    let mut writer = None;
    let (master, persist, registry_status) = match registry {
        None => (Master::new(config.master, config.seed), None, None),
        Some(mut reg) => {
            // Loaded and recovered on a blocking thread (a networked backend blocks on its
            // client); on error the backend is dropped there too (it may own a runtime).
            let master_config = config.master.clone();
            let seed = config.seed;
            let (reg, stored, master) = tokio::task::spawn_blocking(move || {
                let stored = reg.load()?;
                let master = Master::recover(
                    master_config,
                    seed,
                    &stored,
                    crate::core::Timestamp(start_ms),
                )?;
                Ok::<_, crate::registry::RegistryError>((reg, stored, master))
            })
            .await
            .map_err(|e| ServerError::Writer(std::io::Error::other(e.to_string())))??;
            let status = std::sync::Arc::new(registry_writer::RegistryStatus::new(
                reg.info(),
                master.recoveries(),
            ));
            tracing::info!(backend = %status.info.backend, location = %status.info.location,
                records = stored.record_count(), recoveries = master.recoveries(), "registry loaded");
            let (tx, thread) =
                registry_writer::spawn(reg, core.clone(), status.clone(), cancel.clone())
                    .map_err(ServerError::Writer)?;
            writer = Some(thread);
            (master, Some(tx), Some(status))
        }
    };
    let mut master = master;
    master.set_authorizer((*config.security.authorizer).clone());
    let security = Arc::new(config.security.clone());
    let master_id = master.master_id().to_owned();
    let http_registry = registry_status.clone();
    let lease_for_http = lease.clone();
    tracker.spawn(core_task::run(
        master,
        commands,
        core_task::Clock {
            tick_interval: config.tick_interval,
            start,
            start_ms,
            persist,
            registry: registry_status,
            lease: lease.clone(),
        },
        cancel.clone(),
    ));

    let shared = Shared {
        core,
        tracker: tracker.clone(),
        shutdown: cancel.clone(),
        authorizer: security.authorizer.clone(),
        streams: streams::StreamSlots::new(config.connections.max_streams_per_principal),
    };
    let grpc = tonic::service::Routes::new(
        SchedulerServer::new(scheduler::SchedulerService::new(shared.clone()))
            .max_decoding_message_size(config.max_request_bytes),
    )
    .add_service(
        AgentServer::new(agent::AgentService::new(shared.clone()))
            .max_decoding_message_size(config.max_request_bytes),
    )
    .add_service(
        OperatorServer::new(operator::OperatorService::new(shared.clone()))
            .max_decoding_message_size(config.max_request_bytes),
    )
    .into_axum_router();
    let router = grpc
        .merge(http::routes(
            shared.core.clone(),
            master_id.clone(),
            http::Leading {
                advertise: config
                    .advertise
                    .clone()
                    .unwrap_or_else(|| addr.to_string())
                    .into(),
                stop: cancel.clone(),
                lease: lease_for_http,
            },
            http_registry,
            security.authorizer.clone(),
        ))
        .merge(mesos_api::routes(
            shared.clone(),
            &config.advertise.clone().unwrap_or_else(|| addr.to_string()),
            config.max_request_bytes,
        ))
        .fallback(http::fallback)
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            security.clone(),
            security::authenticate,
        ));

    tracing::info!(%addr, %master_id, authentication = security.requires_authentication(),
        acls = !security.authorizer.allows_everything(), "master listening (gRPC and HTTP)");
    proffer_net::listen::serve(
        listener,
        router,
        config.connections.clone(),
        config.tls.clone(),
        cancel.clone(),
    )
    .await;
    // Whatever ended serving, stop the core and the session tasks too.
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    // The core task is done, so the writer's channel is closed: it ends and closes the registry.
    if let Some(thread) = writer {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    tracing::info!(%addr, "master stopped");
    Ok(())
}

/// What every service handler needs: the core, the task tracker and the shutdown signal.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    core: core_task::CoreHandle,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// The ACLs, for the services' checks.
    authorizer: Arc<proffer_master_core::authz::Authorizer>,
    /// Open long-lived streams per principal (or peer).
    streams: Arc<streams::StreamSlots>,
}
