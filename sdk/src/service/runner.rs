//! The scheduler loop: subscribes with the driver (re-using the stored framework id, so a
//! restarted scheduler fails over instead of registering anew), feeds events to the
//! [`ServiceCore`], executes its actions, serves the HTTP API, and ticks once a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proffer_proto::v1;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::core::{Action, CoreConfig, CoreError, ServiceCore};
use super::http::{Shared, now_ms, router_with_master};
use super::spec::ServiceSpec;
use super::store::{StateStore, StoreError};
use crate::driver::{Driver, DriverConfig, DriverError, DriverEvent, refuse_filters};

/// How to run a service.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The master, `HOST:PORT`, or several, comma-separated: the scheduler follows the leader.
    pub master: String,
    /// Directory of the state store.
    pub state_dir: PathBuf,
    /// Core settings (reservations switch, timeouts).
    pub core: CoreConfig,
    /// Serve the HTTP API here (`127.0.0.1:0` picks a port; see [`RunHandle::http_addr`]).
    pub http: Option<SocketAddr>,
    /// Option overrides (also applied to specs posted to `/v1/update`).
    pub options: BTreeMap<String, String>,
    /// Start the uninstall plan right away.
    pub uninstall: bool,
}

/// Why a service run failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The core refused something (spec change, store).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Subscribing failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The HTTP listener could not be bound.
    #[error("cannot serve the HTTP API on {addr}: {reason}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The master ended the stream.
    #[error("the master ended the subscription: {0}")]
    Aborted(String),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Cancelled; the framework stays registered (tasks keep running) for a later failover.
    Stopped,
    /// The uninstall plan completed; the framework was torn down and the store wiped.
    Uninstalled,
}

/// A running service: its shared state and HTTP address.
#[derive(Debug, Clone)]
pub struct RunHandle {
    /// The shared state (plans, tasks, offers).
    pub shared: Arc<Shared>,
    /// Where the HTTP API listens, if enabled.
    pub http_addr: Option<SocketAddr>,
}

/// Prepares a run: opens the store, compiles the plans, binds the HTTP listener. Call
/// [`run_service`] with the result.
pub async fn prepare(
    spec: ServiceSpec,
    cfg: &RunConfig,
) -> Result<(RunHandle, Option<TcpListener>), ServiceError> {
    let store = StateStore::open(&cfg.state_dir)?;
    let mut core = ServiceCore::open(spec, cfg.core.clone(), store)?;
    // Authenticated, the framework reserves under its own principal (see the core).
    core.set_reservation_principal(
        proffer_proto::auth::process_credential()
            .and_then(|c| c.principal())
            .map(str::to_string),
    );
    if cfg.uninstall {
        core.uninstall(now_ms())?;
    }
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        notify: Notify::new(),
        options: cfg.options.clone(),
    });
    let (listener, http_addr) = match cfg.http {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ServiceError::Http {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            let a = l.local_addr().ok();
            (Some(l), a)
        }
        None => (None, None),
    };
    Ok((RunHandle { shared, http_addr }, listener))
}

/// Runs the scheduler until `cancel` or the end of the uninstall plan.
pub async fn run_service(
    handle: RunHandle,
    listener: Option<TcpListener>,
    cfg: RunConfig,
    cancel: CancellationToken,
) -> Result<RunOutcome, ServiceError> {
    let http_cancel = cancel.child_token();
    let server = listener.map(|l| {
        let app = router_with_master(handle.shared.clone(), Some(cfg.master.clone()));
        let c = http_cancel.clone();
        tokio::spawn(async move {
            let r = axum::serve(l, app)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::warn!(%e, "service HTTP API stopped");
            }
        })
    });
    let result = drive(handle, cfg, cancel).await;
    // The API shares the state store: stop it before returning so the store can be reopened.
    http_cancel.cancel();
    if let Some(s) = server {
        let _ = s.await;
    }
    result
}

async fn drive(
    handle: RunHandle,
    cfg: RunConfig,
    cancel: CancellationToken,
) -> Result<RunOutcome, ServiceError> {
    let shared = handle.shared.clone();
    let (framework, stored_id) = {
        let core = lock(&shared);
        let spec = core.spec();
        let id = core.framework_id()?.unwrap_or_default();
        let info = v1::FrameworkInfo {
            id: id.clone(),
            name: spec.name.clone(),
            user: std::env::var("USER").unwrap_or_default(),
            roles: vec![spec.role.clone()],
            failover_timeout: spec.failover_timeout,
            hostname: cfg.core.framework_host.clone(),
            ..Default::default()
        };
        (info, id)
    };
    let (driver, mut events) = tokio::select! {
        _ = cancel.cancelled() => return Ok(RunOutcome::Stopped),
        r = Driver::subscribe(DriverConfig::new(cfg.master.clone(), framework)) => r?,
    };
    let fid = driver.framework_id();
    if fid != stored_id {
        tracing::info!(framework_id = %fid, "subscribed as a new framework");
    } else {
        tracing::info!(framework_id = %fid, "failed over to the existing framework");
    }
    lock(&shared).set_framework_id(&fid)?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(RunOutcome::Stopped),
            _ = tick.tick() => lock(&shared).tick(now_ms()),
            _ = shared.notify.notified() => {}
            ev = events.next() => match ev {
                None => return Err(ServiceError::Aborted("event stream ended".into())),
                Some(ev) => handle_event(&shared, &driver, ev).await?,
            },
        }
        execute(&shared, &driver).await?;
        if lock(&shared).torn_down() {
            return Ok(RunOutcome::Uninstalled);
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, ServiceCore> {
    shared.core.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle_event(
    shared: &Shared,
    driver: &Driver,
    ev: DriverEvent,
) -> Result<(), ServiceError> {
    let now = now_ms();
    match ev {
        DriverEvent::Event(e) => match e.event {
            Some(v1::event::Event::Subscribed(_)) => lock(shared).on_subscribed(now),
            Some(v1::event::Event::Offers(o)) => lock(shared).handle_offers(now, &o.offers)?,
            Some(v1::event::Event::Update(u)) => {
                if let Some(status) = u.status {
                    lock(shared).handle_status(now, &status)?;
                    if let Err(e) = driver.acknowledge(&status).await {
                        tracing::warn!(%e, task_id = %status.task_id, "acknowledge failed");
                    }
                }
            }
            Some(v1::event::Event::Failure(f)) => {
                tracing::warn!(agent_id = %f.agent_id, message = %f.message, "agent lost");
                lock(shared).agent_lost(now, &f.agent_id);
            }
            Some(v1::event::Event::Error(err)) => return Err(ServiceError::Aborted(err.message)),
            _ => {}
        },
        DriverEvent::Disconnected { reason } => {
            tracing::warn!(%reason, "disconnected from the master")
        }
        DriverEvent::Resubscribed { framework_id } => {
            tracing::info!(%framework_id, "re-subscribed");
            lock(shared).on_subscribed(now);
        }
    }
    Ok(())
}

/// Runs the core's queued actions, feeding accept results back.
async fn execute(shared: &Shared, driver: &Driver) -> Result<(), ServiceError> {
    loop {
        let actions = lock(shared).take_actions();
        if actions.is_empty() {
            return Ok(());
        }
        for a in actions {
            match a {
                Action::Accept {
                    offer_ids,
                    operations,
                    refuse_seconds,
                    tasks,
                } => {
                    let r = driver
                        .accept(offer_ids, operations, Some(refuse_filters(refuse_seconds)))
                        .await
                        .map_err(|e| e.to_string());
                    if let Err(e) = &r {
                        tracing::warn!(%e, ?tasks, "accept failed");
                    }
                    lock(shared).accept_result(now_ms(), &tasks, r)?;
                }
                Action::Decline {
                    offer_ids,
                    refuse_seconds,
                } => log_err(
                    "decline",
                    driver
                        .decline(offer_ids, Some(refuse_filters(refuse_seconds)))
                        .await,
                ),
                Action::Kill { task_id, agent_id } => {
                    log_err("kill", driver.kill(&task_id, &agent_id).await);
                }
                Action::Revive => log_err("revive", driver.revive().await),
                Action::Suppress => log_err("suppress", driver.suppress().await),
                Action::Reconcile(tasks) => log_err("reconcile", driver.reconcile(tasks).await),
                Action::Teardown => log_err("teardown", driver.teardown().await),
            }
        }
    }
}

fn log_err(what: &str, r: Result<(), DriverError>) {
    if let Err(e) = r {
        tracing::warn!(%e, "{what} failed");
    }
}
