//! Leader election on etcd: a lease kept alive, a campaign with etcd's election API, and the
//! local rule that makes a leader stop before anyone else can lead.
//!
//! Each candidate grants itself a lease of `ttl` and campaigns under the election name with its
//! advertised address as the value. etcd makes the oldest live candidate leader; the leader's
//! election key and its creation revision become the [`Fence`] of its registry writes.
//!
//! **Why a deposed leader never acts:** the lease expires at etcd no earlier than `ttl` after
//! etcd received the last keep-alive, hence no earlier than `ttl` after this master *sent* it.
//! The leader counts itself valid only until `sent + ttl - margin` ([`LeaseClock`]); past that
//! it stops at once (the core task checks the clock before every input and tick), whatever the
//! network or the scheduler did to it — a process paused by `SIGSTOP` and continued finds its
//! clock expired before it does anything. Writes are fenced as well, so even a clock that lied
//! could not overwrite a newer leader's registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{EtcdConfig, EtcdConfigError};
use crate::registry::Fence;

/// Settings of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// The etcd cluster.
    pub etcd: EtcdConfig,
    /// The election's name (an etcd key prefix), e.g. `/proffer/default/leader`.
    pub name: String,
    /// This master's address as clients reach it (`HOST:PORT`), the value of its campaign.
    pub advertise: String,
    /// The lease's time to live: how long after a leader dies (or is cut off from etcd) a
    /// standby can take over. Whole seconds, at least 2 (etcd's minimum is about 1.5 s).
    pub ttl: Duration,
}

/// Errors of the election.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] EtcdConfigError),
    /// The TTL is below etcd's minimum or not whole seconds.
    #[error("the leader lease TTL must be whole seconds and at least 2s, got {0:?}")]
    Ttl(Duration),
    /// etcd refused or could not be reached.
    #[error("etcd {endpoints}: {what}: {reason}")]
    Etcd {
        /// The members.
        endpoints: String,
        /// What was being done.
        what: &'static str,
        /// etcd's error.
        reason: String,
    },
    /// The lease was lost while campaigning.
    #[error("the lease expired while campaigning")]
    LeaseLost,
}

/// Until when a lease is known to be held, as a monotonic deadline. Cheap to read.
#[derive(Debug)]
pub struct LeaseClock {
    base: std::time::Instant,
    /// Milliseconds after `base` until which the lease is held (0: not held).
    valid_until_ms: AtomicU64,
    /// Subtracted from every deadline.
    margin: Duration,
}

impl LeaseClock {
    /// A clock for a lease of `ttl`, granted by a request sent at `sent`.
    pub fn new(ttl: Duration, sent: std::time::Instant) -> LeaseClock {
        let clock = LeaseClock {
            base: sent,
            valid_until_ms: AtomicU64::new(0),
            margin: (ttl / 5).max(Duration::from_millis(200)),
        };
        clock.extend(sent, ttl);
        clock
    }

    /// A keep-alive sent at `sent` was answered with `ttl` left.
    pub fn extend(&self, sent: std::time::Instant, ttl: Duration) {
        let until = sent.saturating_duration_since(self.base) + ttl.saturating_sub(self.margin);
        let ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX);
        self.valid_until_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// The deadline as an instant.
    pub fn valid_until(&self) -> std::time::Instant {
        self.base + Duration::from_millis(self.valid_until_ms.load(Ordering::Acquire))
    }

    /// Whether the lease is still surely held now.
    pub fn is_valid(&self) -> bool {
        std::time::Instant::now() < self.valid_until()
    }

    /// Marks the lease lost (etcd said so).
    pub fn expire(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }
}

/// A lease kept alive in the background; `lost` fires when it may have expired.
#[derive(Debug)]
pub struct Lease {
    /// The lease id.
    pub id: i64,
    /// Its validity.
    pub clock: Arc<LeaseClock>,
    /// Cancelled once the lease may be gone (deadline passed, or etcd said it expired).
    pub lost: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.lost.cancel();
    }
}

/// This master leads: its fence and its lease.
#[derive(Debug)]
pub struct Leadership {
    /// What every registry write must still hold.
    pub fence: Fence,
    /// The lease behind it.
    pub lease: Lease,
}

/// A master taking part in the election.
#[derive(Clone)]
pub struct Candidate {
    config: ElectionConfig,
    client: Client,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("config", &self.config)
            .finish()
    }
}

impl ElectionConfig {
    /// Checks the settings that retrying cannot fix.
    pub fn validate(&self) -> Result<(), ElectionError> {
        if self.ttl.subsec_nanos() != 0 || self.ttl < Duration::from_secs(2) {
            return Err(ElectionError::Ttl(self.ttl));
        }
        self.etcd.connect_options(None)?;
        Ok(())
    }
}

impl Candidate {
    /// Connects to etcd.
    pub async fn connect(config: ElectionConfig) -> Result<Candidate, ElectionError> {
        config.validate()?;
        // No request timeout: a campaign blocks until it wins.
        let opts = config.etcd.connect_options(None)?;
        let client = Client::connect(config.etcd.endpoints.clone(), Some(opts))
            .await
            .map_err(|e| etcd_error(&config, "connect", &e))?;
        Ok(Candidate { config, client })
    }

    /// The election's settings.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// The current leader's address, if any.
    pub async fn leader(&self) -> Result<Option<String>, ElectionError> {
        let mut c = self.client.clone();
        let resp = tokio::time::timeout(Duration::from_secs(5), c.leader(self.config.name.clone()))
            .await
            .map_err(|_| timeout_error(&self.config, "ask who leads"))?;
        match resp {
            Ok(r) => Ok(r
                .kv()
                .and_then(|kv| kv.value_str().ok())
                .map(str::to_string)),
            Err(e) if e.to_string().contains("no leader") => Ok(None),
            Err(e) => Err(etcd_error(&self.config, "ask who leads", &e)),
        }
    }

    /// Grants a lease and keeps it alive in the background.
    pub async fn lease(&self) -> Result<Lease, ElectionError> {
        let ttl_s = i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut c = self.client.clone();
        let sent = std::time::Instant::now();
        let granted = tokio::time::timeout(Duration::from_secs(5), c.lease_grant(ttl_s, None))
            .await
            .map_err(|_| timeout_error(&self.config, "grant a lease"))?
            .map_err(|e| etcd_error(&self.config, "grant a lease", &e))?;
        let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(0));
        let clock = Arc::new(LeaseClock::new(ttl, sent));
        let lost = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(keep_alive(
                c,
                granted.id(),
                ttl,
                clock.clone(),
                lost.clone(),
            )),
            tokio::spawn(watchdog(clock.clone(), lost.clone())),
        ];
        Ok(Lease {
            id: granted.id(),
            clock,
            lost,
            tasks,
        })
    }

    /// Campaigns with `lease` until this master leads (etcd answers once every older
    /// candidate's key is gone).
    pub async fn campaign(&self, mut lease: Lease) -> Result<Leadership, ElectionError> {
        let mut c = self.client.clone();
        let won = tokio::select! {
            r = c.campaign(self.config.name.clone(), self.config.advertise.clone(), lease.id) => r,
            () = lease.lost.cancelled() => return Err(ElectionError::LeaseLost),
        }
        .map_err(|e| etcd_error(&self.config, "campaign", &e))?;
        let key = won
            .leader()
            .ok_or_else(|| etcd_error(&self.config, "campaign", &"no leader key in the answer"))?;
        // The key vanishing (lease revoked, or deleted by hand) ends the leadership at once,
        // without waiting for the next keep-alive.
        let fence = Fence {
            key: key.key().to_vec(),
            create_revision: key.rev(),
        };
        lease.tasks.push(tokio::spawn(watch_key(
            self.client.clone(),
            fence.clone(),
            lease.clock.clone(),
            lease.lost.clone(),
        )));
        if !lease.clock.is_valid() {
            return Err(ElectionError::LeaseLost);
        }
        Ok(Leadership { fence, lease })
    }

    /// Gives the leadership up at once (revokes the lease, so a standby takes over without
    /// waiting for the TTL). Best effort: an unreachable etcd lets the lease expire instead.
    pub async fn resign(&self, leadership: Leadership) {
        let id = leadership.lease.id;
        drop(leadership);
        let mut c = self.client.clone();
        match tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(id)).await {
            Ok(Ok(_)) => tracing::info!("resigned the leadership (lease revoked)"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not revoke the lease; it expires by itself")
            }
            Err(_) => tracing::warn!("revoking the lease timed out; it expires by itself"),
        }
    }
}

fn etcd_error(
    config: &ElectionConfig,
    what: &'static str,
    e: &dyn std::fmt::Display,
) -> ElectionError {
    ElectionError::Etcd {
        endpoints: config.etcd.endpoints.join(","),
        what,
        reason: e.to_string(),
    }
}

fn timeout_error(config: &ElectionConfig, what: &'static str) -> ElectionError {
    etcd_error(config, what, &"no answer within 5s")
}

/// Sends a keep-alive every `ttl / 3` and extends `clock` with each answer; re-opens the
/// keep-alive stream when it breaks (another etcd member may answer); stops (cancelling
/// `lost`) when etcd says the lease is gone. The watchdog ends the lease at its deadline.
async fn keep_alive(
    client: Client,
    id: i64,
    ttl: Duration,
    clock: Arc<LeaseClock>,
    lost: CancellationToken,
) {
    let every = ttl / 3;
    let mut channel: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    loop {
        let sent = std::time::Instant::now();
        let round = async {
            if channel.is_none() {
                channel = Some(client.clone().lease_keep_alive(id).await?);
            }
            let Some((keeper, stream)) = channel.as_mut() else {
                return Ok(None);
            };
            keeper.keep_alive().await?;
            stream.message().await
        };
        match tokio::time::timeout(every, round).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                let left = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0));
                clock.extend(sent, left);
            }
            Ok(Ok(Some(_))) => {
                tracing::error!(lease = id, "etcd says the lease has expired");
                clock.expire();
                lost.cancel();
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                tracing::warn!(
                    lease = id,
                    "the lease keep-alive stream broke; re-opening it"
                );
                channel = None;
            }
            Err(_) => {
                tracing::warn!(lease = id, "no keep-alive answer from etcd in time");
                channel = None;
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(Instant::from_std(sent + every)) => {}
            () = lost.cancelled() => return,
        }
    }
}

/// Ends the leadership (expiring `clock`, cancelling `lost`) when the election key is deleted.
/// The watch starts at the current revision (etcd serves such a watcher at once; one from an
/// older revision is caught up in batches, ~100 ms late) and the key is checked right after,
/// so a deletion in between is not missed. A broken watch is re-opened the same way.
async fn watch_key(client: Client, fence: Fence, clock: Arc<LeaseClock>, lost: CancellationToken) {
    loop {
        let watch = client.clone().watch(fence.key.clone(), None).await;
        match still_ours(&client, &fence).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("the election key is gone: no longer the leader");
                clock.expire();
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the election key; the lease's deadline still applies")
            }
        }
        if let Ok(mut stream) = watch {
            while let Ok(Some(resp)) = stream.message().await {
                let deleted = resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == etcd_client::EventType::Delete);
                if deleted {
                    tracing::error!("the election key was deleted: no longer the leader");
                    clock.expire();
                    lost.cancel();
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = lost.cancelled() => return,
        }
    }
}

/// Whether the election key still exists as created when this master won.
async fn still_ours(client: &Client, fence: &Fence) -> Result<bool, etcd_client::Error> {
    let resp = client.clone().get(fence.key.clone(), None).await?;
    Ok(resp
        .kvs()
        .first()
        .is_some_and(|kv| kv.create_revision() == fence.create_revision))
}

/// Cancels `lost` once `clock`'s deadline passes.
async fn watchdog(clock: Arc<LeaseClock>, lost: CancellationToken) {
    loop {
        let until = clock.valid_until();
        if std::time::Instant::now() >= until {
            tracing::error!("the leader lease's deadline passed without a keep-alive answer");
            lost.cancel();
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(Instant::from_std(until)) => {}
            () = lost.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_out_a_margin_before_the_ttl() {
        let t0 = std::time::Instant::now();
        let c = LeaseClock::new(Duration::from_secs(5), t0);
        assert_eq!(c.valid_until(), t0 + Duration::from_secs(4));
        c.extend(t0 + Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(c.valid_until(), t0 + Duration::from_secs(6));
        // An older answer never shortens the deadline.
        c.extend(t0 + Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(c.valid_until(), t0 + Duration::from_secs(6));
        c.expire();
        assert!(!c.is_valid());
    }
}
