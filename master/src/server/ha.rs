//! A master in a high-availability group: standby until it wins the etcd election, then leader
//! (recovering from the registry exactly as a restarted master does) until it loses the lease
//! or a fenced write is refused, then standby again.
//!
//! Both phases serve on the same port (clones of one listener): the standby answers with
//! pointers to the leader (`standby`), the leader serves everything.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ServerConfig, ServerError, serve_leader, standby};
use crate::etcd::election::{Candidate, ElectionConfig, ElectionError, Leadership};
use crate::registry::{EtcdRegistry, RegistryError};

/// Settings of a master in an HA group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// The election (etcd, name, this master's address, lease TTL).
    pub election: ElectionConfig,
    /// The registry's key prefix in the same etcd.
    pub registry_prefix: String,
}

impl HaConfig {
    /// The usual settings: the election is named `PREFIX/leader`.
    pub fn new(
        etcd: crate::etcd::EtcdConfig,
        registry_prefix: &str,
        advertise: String,
        ttl: Duration,
    ) -> HaConfig {
        let prefix = registry_prefix.trim_end_matches('/').to_string();
        HaConfig {
            election: ElectionConfig {
                etcd,
                name: format!("{prefix}/leader"),
                advertise,
                ttl,
            },
            registry_prefix: prefix,
        }
    }
}

/// How long to wait before trying etcd again after an error.
const RETRY: Duration = Duration::from_secs(1);
/// How often a standby asks etcd who leads.
const LEADER_POLL: Duration = Duration::from_millis(300);

/// Serves a master of an HA group on `listener` until `cancel` fires. On shutdown a leader
/// resigns (revokes its lease), so a standby takes over at once.
pub async fn serve_ha(
    listener: std::net::TcpListener,
    mut config: ServerConfig,
    ha: HaConfig,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    ha.election.validate()?;
    let advertise = ha.election.advertise.clone();
    config.advertise = Some(advertise.clone());
    let (leader_tx, leader_rx) = watch::channel::<Option<String>>(None);
    loop {
        let standby_stop = cancel.child_token();
        standby::spawn(
            standby::phase_listener(&listener).map_err(ServerError::LocalAddr)?,
            leader_rx.clone(),
            standby_stop.clone(),
            config.connections.clone(),
            config.tls.clone(),
        );
        tracing::info!(%addr, %advertise, "standby master: campaigning for the leadership");
        let won = campaign(&ha.election, &leader_tx, &cancel).await;
        let Some((candidate, leadership)) = won else {
            standby_stop.cancel();
            return Ok(());
        };
        standby_stop.cancel();
        leader_tx.send_replace(Some(advertise.clone()));
        tracing::info!(%advertise, lease = leadership.lease.id,
            "elected leader: recovering from the registry");
        let result = lead(&listener, &config, &ha, &leadership, &cancel).await;
        candidate.resign(leadership).await;
        leader_tx.send_replace(None);
        if cancel.is_cancelled() {
            return result;
        }
        match result {
            Ok(()) => tracing::error!("lost the leadership: stepped down; campaigning again"),
            Err(ServerError::Registry(
                e @ (RegistryError::Fenced { .. } | RegistryError::Backend { .. }),
            )) => {
                tracing::error!(error = %e, "cannot lead: stepped down; campaigning again");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The leader phase: serves until the lease is lost, a write is fenced off, or `cancel`.
async fn lead(
    listener: &std::net::TcpListener,
    config: &ServerConfig,
    ha: &HaConfig,
    leadership: &Leadership,
    cancel: &CancellationToken,
) -> Result<(), ServerError> {
    let stop = cancel.child_token();
    let lost = leadership.lease.lost.clone();
    let relay = {
        let stop = stop.clone();
        tokio::spawn(async move {
            lost.cancelled().await;
            stop.cancel();
        })
    };
    let registry = EtcdRegistry::new(ha.election.etcd.clone(), &ha.registry_prefix)?
        .fenced(leadership.fence.clone());
    let result = serve_leader(
        standby::phase_listener(listener).map_err(ServerError::LocalAddr)?,
        config.clone(),
        Some(Box::new(registry)),
        Some(leadership.lease.clock.clone()),
        stop,
    )
    .await;
    relay.abort();
    result
}

/// Campaigns until this master leads (None if `cancel` fired first), keeping `leader` up to
/// date meanwhile. etcd errors are logged and retried.
async fn campaign(
    config: &ElectionConfig,
    leader: &watch::Sender<Option<String>>,
    cancel: &CancellationToken,
) -> Option<(Candidate, Leadership)> {
    loop {
        let attempt = async {
            let candidate = Candidate::connect(config.clone()).await?;
            let poller = tokio::spawn(poll_leader(candidate.clone(), leader.clone()));
            let won = async {
                let lease = candidate.lease().await?;
                candidate.campaign(lease).await
            }
            .await;
            poller.abort();
            Ok::<_, ElectionError>((candidate, won?))
        };
        tokio::select! {
            r = attempt => match r {
                Ok(won) => return Some(won),
                Err(e) => {
                    tracing::warn!(error = %e, "campaign failed; trying again");
                }
            },
            () = cancel.cancelled() => return None,
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = cancel.cancelled() => return None,
        }
    }
}

/// Keeps `leader` up to date with who leads.
async fn poll_leader(candidate: Candidate, leader: watch::Sender<Option<String>>) {
    loop {
        match candidate.leader().await {
            Ok(now) => {
                leader.send_if_modified(|l| {
                    let changed = *l != now;
                    if changed {
                        tracing::info!(leader = ?now, "leader changed");
                        *l = now;
                    }
                    changed
                });
            }
            Err(e) => tracing::debug!(error = %e, "cannot ask etcd who leads"),
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}
