//! The subscription: opening the event stream (on the leader among the masters) and the
//! background task that reads it, re-subscribing — to the leader a standby names at once,
//! otherwise to the next master with backoff — when it breaks.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use proffer_proto::auth::{AuthChannel, Authorize, Credential};
use proffer_proto::leader::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MasterList, leader_hint};
use proffer_proto::v1;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Channel;

use super::error::{DriverError, chain};
use super::{DriverConfig, DriverEvent};

/// How long to wait for a TCP connection to the master.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the SUBSCRIBED event after opening the stream.
const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(30);
/// Missing this many heartbeat intervals counts as a broken stream.
const HEARTBEAT_MISSES: u32 = 3;

/// Opens a channel to `master` (`HOST:PORT` or a full URL; TLS when the process uses it, see
/// `proffer_net::tls`), failing fast when unreachable.
pub(crate) async fn connect(master: &str) -> Result<Channel, DriverError> {
    let endpoint =
        proffer_net::tls::grpc_endpoint(master).map_err(|e| DriverError::InvalidAddress {
            address: master.to_string(),
            message: chain(&e),
        })?;
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| DriverError::Connect {
            address: master.to_string(),
            message: chain(&e),
        })
}

/// An open event stream and the SUBSCRIBED event that started it.
pub(crate) struct Opened {
    pub stream: Streaming<v1::Event>,
    pub subscribed: v1::Subscribed,
    pub first: v1::Event,
}

/// Calls `Subscribe` and waits for the SUBSCRIBED event.
pub(crate) async fn open(
    client: &SchedulerClient<AuthChannel>,
    address: &str,
    framework: &v1::FrameworkInfo,
) -> Result<Opened, DriverError> {
    let mut client = client.clone();
    let request = v1::SubscribeRequest {
        framework_info: Some(framework.clone()),
    };
    let response = client
        .subscribe(request)
        .await
        .map_err(|s| DriverError::subscribe(address, &s))?;
    let mut stream = response.into_inner();
    let first = tokio::time::timeout(SUBSCRIBED_TIMEOUT, stream.message())
        .await
        .map_err(|_| DriverError::Protocol {
            message: format!(
                "no SUBSCRIBED event within {}s",
                SUBSCRIBED_TIMEOUT.as_secs()
            ),
        })?
        .map_err(|s| DriverError::subscribe(address, &s))?
        .ok_or_else(|| DriverError::Protocol {
            message: "event stream ended before SUBSCRIBED".into(),
        })?;
    match &first.event {
        Some(v1::event::Event::Subscribed(s)) => {
            let subscribed = s.clone();
            Ok(Opened {
                stream,
                subscribed,
                first,
            })
        }
        Some(v1::event::Event::Error(e)) => Err(DriverError::Refused {
            message: e.message.clone(),
        }),
        other => Err(DriverError::Protocol {
            message: format!("first event was not SUBSCRIBED: {other:?}"),
        }),
    }
}

/// The client of the master a subscription is open on, and the subscription.
pub(crate) type Subscription = (SchedulerClient<AuthChannel>, Opened);

/// One subscription attempt on `master`, over a fresh channel (so nothing of a previous
/// master's connection is reused).
pub(crate) async fn attempt(
    master: &str,
    framework: &v1::FrameworkInfo,
    credential: Option<&Credential>,
) -> Result<Subscription, DriverError> {
    let client =
        SchedulerClient::with_interceptor(connect(master).await?, Authorize::new(credential));
    let opened = open(&client, master, framework).await?;
    Ok((client, opened))
}

/// The first subscription: tries the masters in order, following a standby's hint to the
/// leader, each at most once and without waiting; the last error when none subscribed.
pub(crate) async fn subscribe_first(
    masters: &mut MasterList,
    framework: &v1::FrameworkInfo,
    credential: Option<&Credential>,
) -> Result<Subscription, DriverError> {
    let mut failures = 0;
    let mut started = None;
    loop {
        if failures >= masters.masters().len() {
            failures = 0;
            tokio::time::sleep(super::ELECTION_RETRY).await;
        }
        let master = masters.current().to_string();
        let err = match attempt(&master, framework, credential).await {
            Ok(sub) => {
                masters.settled();
                return Ok(sub);
            }
            Err(err) => err,
        };
        if let Some(leader) = err.leader_hint()
            && masters.follow_address(leader)
        {
            tracing::info!(standby = %master, %leader, "a standby master named the leader; subscribing there");
            continue;
        }
        failures += 1;
        if !retryable(&err)
            || (failures >= masters.masters().len()
                && !super::election_wait(&mut started, masters.masters().len()))
        {
            return Err(err);
        }
        tracing::info!(%master, error = %err, "cannot subscribe; trying the next master");
        masters.advance();
    }
}

/// A copy of what `lock` holds (the call header, the FrameworkInfo). A poisoned lock is read
/// anyway: these are plain records with no invariant a panicking writer could break.
pub(crate) fn read_copy<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Everything the background reader needs.
pub(crate) struct Reader {
    /// The client of the master the driver is subscribed to; swapped on re-subscription, so
    /// calls made meanwhile go to the new leader.
    pub client: Arc<RwLock<SchedulerClient<AuthChannel>>>,
    /// The masters, the current one being the one subscribed to.
    pub masters: MasterList,
    pub config: DriverConfig,
    pub header: Arc<RwLock<v1::CallHeader>>,
    /// The FrameworkInfo to re-subscribe with (changed by `Driver::update_framework`).
    pub framework: Arc<RwLock<v1::FrameworkInfo>>,
    pub tx: mpsc::Sender<DriverEvent>,
    pub shutdown: CancellationToken,
    /// Set by `teardown`: a stream that ends from now on is not re-subscribed.
    pub tearing_down: Arc<std::sync::atomic::AtomicBool>,
}

/// Why reading one stream stopped.
enum StreamEnd {
    /// The consumer or the driver is gone; stop silently.
    Stop,
    /// The master sent ERROR; it has been forwarded.
    Error,
    /// The stream broke (how; the leader a standby named, if any); try to re-subscribe.
    Broken(String, Option<String>),
}

impl Reader {
    /// Reads `stream` until it ends, then re-subscribes if configured; runs until the stream is over.
    pub(crate) async fn run(mut self, mut stream: Streaming<v1::Event>, mut heartbeat: f64) {
        loop {
            let (reason, leader) = match self.pump(&mut stream, heartbeat).await {
                StreamEnd::Stop | StreamEnd::Error => return,
                StreamEnd::Broken(reason, leader) => (reason, leader),
            };
            drop(stream);
            if self.tearing_down.load(std::sync::atomic::Ordering::SeqCst) {
                // The master closes the stream after TEARDOWN: that is the expected end.
                return;
            }
            tracing::warn!(%reason, master = %self.masters.current(), "scheduler event stream disconnected");
            let failover = read_copy(&self.framework).failover_timeout;
            if !self.emit(DriverEvent::Disconnected { reason }).await {
                return;
            }
            if !self.config.resubscribe || failover.is_nan() || failover <= 0.0 {
                return;
            }
            match self.resubscribe(failover, leader).await {
                Some((s, hb)) => {
                    stream = s;
                    heartbeat = hb;
                }
                None => return,
            }
        }
    }

    /// Forwards events from one stream.
    async fn pump(&self, stream: &mut Streaming<v1::Event>, heartbeat: f64) -> StreamEnd {
        let watchdog = (heartbeat.is_finite() && heartbeat > 0.0)
            .then(|| Duration::from_secs_f64(heartbeat.min(3600.0)) * HEARTBEAT_MISSES);
        loop {
            let next = async {
                match watchdog {
                    Some(limit) => tokio::time::timeout(limit, stream.message())
                        .await
                        .unwrap_or_else(|_| {
                            Err(tonic::Status::deadline_exceeded(format!(
                                "no event or heartbeat for {}s",
                                limit.as_secs_f64()
                            )))
                        }),
                    None => stream.message().await,
                }
            };
            let msg = tokio::select! {
                _ = self.shutdown.cancelled() => return StreamEnd::Stop,
                _ = self.tx.closed() => return StreamEnd::Stop,
                msg = next => msg,
            };
            match msg {
                Ok(Some(event)) => {
                    let is_error = matches!(event.event, Some(v1::event::Event::Error(_)));
                    if !self.emit(DriverEvent::Event(event)).await {
                        return StreamEnd::Stop;
                    }
                    if is_error {
                        return StreamEnd::Error;
                    }
                }
                Ok(None) => {
                    return StreamEnd::Broken("the master closed the event stream".into(), None);
                }
                Err(status) => {
                    let reason = format!("{:?}: {}", status.code(), status.message());
                    return StreamEnd::Broken(reason, leader_hint(&status));
                }
            }
        }
    }

    /// Re-subscribes until it works, the master refuses, the failover timeout passes, or the
    /// driver is shut down, and returns the new stream. Each attempt opens a fresh channel to
    /// one master: the leader a standby named (`leader`, or in an attempt's answer) at once,
    /// otherwise the next master after an exponentially growing delay.
    async fn resubscribe(
        &mut self,
        failover: f64,
        leader: Option<String>,
    ) -> Option<(Streaming<v1::Event>, f64)> {
        let deadline = Instant::now() + Duration::from_secs_f64(failover.min(1e9));
        let mut framework = read_copy(&self.framework);
        framework.id = self.current_header().framework_id;
        let mut delay = self.config.reconnect_initial.max(Duration::from_millis(1));
        let mut wait = !self.follow(leader.as_deref());
        if wait {
            self.masters.advance();
        }
        loop {
            if wait {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    _ = self.tx.closed() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(self.config.reconnect_max.max(delay));
            }
            if Instant::now() >= deadline {
                tracing::warn!("failover timeout passed without re-subscribing; giving up");
                return None;
            }
            let master = self.masters.current().to_string();
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = attempt(&master, &framework, self.config.credential.as_ref()) => r,
            };
            match attempt {
                Ok((client, opened)) => return self.resubscribed(&master, client, opened).await,
                Err(err) if self.follow(err.leader_hint()) => wait = false,
                Err(err) if retryable(&err) => {
                    tracing::debug!(error = %err, %master, ?delay, "re-subscribe failed; trying the next master");
                    self.masters.advance();
                    wait = true;
                }
                Err(err) => {
                    self.refused(err).await;
                    return None;
                }
            }
        }
    }

    /// Makes the leader a standby named the current master; false when there is none to follow.
    fn follow(&mut self, leader: Option<&str>) -> bool {
        let from = self.masters.current().to_string();
        match leader {
            Some(leader) if self.masters.follow_address(leader) => {
                tracing::info!(standby = %from, %leader, "a standby master named the leader; following it");
                true
            }
            _ => false,
        }
    }

    /// Takes a new subscription on `master` into use: its client for calls, its header.
    async fn resubscribed(
        &mut self,
        master: &str,
        client: SchedulerClient<AuthChannel>,
        opened: Opened,
    ) -> Option<(Streaming<v1::Event>, f64)> {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        self.masters.settled();
        let framework_id = opened.subscribed.framework_id.clone();
        self.set_header(&opened.subscribed);
        tracing::info!(%framework_id, %master, "re-subscribed");
        if !self.emit(DriverEvent::Resubscribed { framework_id }).await {
            return None;
        }
        Some((opened.stream, opened.subscribed.heartbeat_interval_seconds))
    }

    /// Reports a refused re-subscription as an ERROR event (the stream then ends).
    async fn refused(&self, err: DriverError) {
        tracing::warn!(error = %err, "re-subscription refused");
        let message = match err {
            DriverError::Refused { message } => message,
            other => other.to_string(),
        };
        let event = v1::Event {
            event: Some(v1::event::Event::Error(v1::Error { message })),
        };
        self.emit(DriverEvent::Event(event)).await;
    }

    fn current_header(&self) -> v1::CallHeader {
        read_copy(&self.header)
    }

    fn set_header(&self, s: &v1::Subscribed) {
        let mut h = self.header.write().unwrap_or_else(|e| e.into_inner());
        h.framework_id = s.framework_id.clone();
        h.stream_id = s.stream_id.clone();
    }

    /// Sends to the consumer; false when it has gone away.
    async fn emit(&self, event: DriverEvent) -> bool {
        self.tx.send(event).await.is_ok()
    }
}

/// Whether a failed (re-)subscription is worth retrying (transport trouble, not a refusal).
fn retryable(err: &DriverError) -> bool {
    use tonic::Code;
    match err {
        DriverError::Connect { .. } | DriverError::Protocol { .. } => true,
        DriverError::Subscribe { code, .. } => matches!(
            code,
            Code::Unavailable
                | Code::Unknown
                | Code::Internal
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::ResourceExhausted
                | Code::Aborted
        ),
        _ => false,
    }
}
