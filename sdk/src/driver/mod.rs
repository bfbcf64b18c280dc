//! The async scheduler client.
//!
//! [`Driver::subscribe`] opens the `Subscribe` event stream, waits for SUBSCRIBED and spawns a
//! background task that forwards every event into an [`EventStream`]. The [`Driver`] (cheap to
//! clone) makes the unary calls, each carrying the current [`v1::CallHeader`]. When the stream
//! breaks and [`DriverConfig::resubscribe`] is set and the framework has a positive failover
//! timeout, the background task re-subscribes with the framework id (exponential backoff),
//! emits [`DriverEvent::Disconnected`] then [`DriverEvent::Resubscribed`], and updates the
//! header. Otherwise the stream emits `Disconnected` and ends. An ERROR event ends the stream.
//!
//! With several masters ([`DriverConfig::master`] = `h1:5050,h2:5050`) the driver subscribes to
//! the leader: a standby answers `UNAVAILABLE` naming it and the driver goes there at once; a
//! master that cannot be reached is skipped for the next. After a failover (the stream breaks,
//! or goes silent for three heartbeats, or HTTP/2 keep-alive finds the master hung) each
//! re-subscription opens a fresh connection to the current master, and calls made from then on
//! go to the master the driver is subscribed to.

mod builders;
mod error;
mod session;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proffer_proto::auth::{AuthChannel, Credential};
use proffer_proto::leader::MasterList;
use proffer_proto::v1;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use builders::{command_task, launch_operation, refuse_filters};
pub use error::DriverError;
pub(crate) use error::chain as error_chain;

/// How long a unary call may take before it fails with `DeadlineExceeded`.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered between the reader task and the consumer.
const EVENT_BUFFER: usize = 1024;

/// How long clients given several masters keep trying when none leads (an election may be
/// under way: a leader's lease runs 5 s by default).
pub const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// The pause between rounds over the masters while waiting for a leader.
pub const ELECTION_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether a client that found no leader among several masters should try another round:
/// until [`ELECTION_WAIT`] after the first failed round (`started` keeps when that was).
/// One master alone is never waited for (a newcomer's typo fails fast).
pub(crate) fn election_wait(started: &mut Option<std::time::Instant>, masters: usize) -> bool {
    if masters <= 1 {
        return false;
    }
    let first = *started.get_or_insert_with(std::time::Instant::now);
    first.elapsed() < ELECTION_WAIT
}

/// How to reach the master and who the framework is.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The master's gRPC address, `HOST:PORT` (an `http://` URL is accepted too), or several,
    /// comma-separated (`h1:5050,h2:5050,h3:5050`): the driver finds the leader among them and
    /// follows it across failovers.
    pub master: String,
    /// The framework; set `id` to re-subscribe as an existing framework.
    pub framework: v1::FrameworkInfo,
    /// First re-subscription delay (default 200 ms); doubled after each failure.
    pub reconnect_initial: Duration,
    /// Largest re-subscription delay (default 5 s).
    pub reconnect_max: Duration,
    /// Re-subscribe when the stream breaks (default true; needs `failover_timeout > 0`).
    pub resubscribe: bool,
    /// Who the framework is to the master (`authorization` on every call; the master records
    /// the principal as the framework's owner). `None`: the process credential
    /// ([`proffer_proto::auth::set_process_credential`]), if any.
    pub credential: Option<Credential>,
}

impl DriverConfig {
    /// A configuration with the default reconnect settings.
    pub fn new(master: impl Into<String>, framework: v1::FrameworkInfo) -> Self {
        DriverConfig {
            master: master.into(),
            framework,
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
            resubscribe: true,
            credential: None,
        }
    }
}

/// What the event stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// An event from the master (SUBSCRIBED comes first).
    Event(v1::Event),
    /// The event stream broke; `reason` says how.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// The driver re-subscribed after a disconnect; calls now carry the new header.
    Resubscribed {
        /// The framework id (unchanged on a successful failover).
        framework_id: String,
    },
}

/// The events of one subscription, in order. Ends (`None`) after an ERROR event, after a
/// disconnect that is not re-subscribed, or after [`Driver::teardown`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<DriverEvent>,
}

impl EventStream {
    /// The next event, or `None` when the stream is over.
    pub async fn next(&mut self) -> Option<DriverEvent> {
        self.rx.recv().await
    }
}

/// A handle for making scheduler calls. Clones share the connection and the header.
#[derive(Debug, Clone)]
pub struct Driver {
    /// The client of the master subscribed to (swapped by the reader on re-subscription).
    client: Arc<RwLock<SchedulerClient<AuthChannel>>>,
    header: Arc<RwLock<v1::CallHeader>>,
    framework: Arc<RwLock<v1::FrameworkInfo>>,
    shutdown: CancellationToken,
    tearing_down: Arc<std::sync::atomic::AtomicBool>,
}

impl Driver {
    /// Connects to the master (the leader, when several are given), subscribes, and returns
    /// once SUBSCRIBED arrived. The SUBSCRIBED event is also the first event on the returned
    /// stream. Fails with the last master's error when none of them took the subscription.
    pub async fn subscribe(config: DriverConfig) -> Result<(Driver, EventStream), DriverError> {
        let mut masters =
            MasterList::parse(&config.master).map_err(|e| DriverError::InvalidAddress {
                address: config.master.clone(),
                message: e.to_string(),
            })?;
        let (client, opened) =
            session::subscribe_first(&mut masters, &config.framework, config.credential.as_ref())
                .await?;
        let client = Arc::new(RwLock::new(client));
        let header = Arc::new(RwLock::new(v1::CallHeader {
            framework_id: opened.subscribed.framework_id.clone(),
            stream_id: opened.subscribed.stream_id.clone(),
        }));
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        // Capacity is at least one and nothing else has sent yet.
        let _ = tx.try_send(DriverEvent::Event(opened.first));
        let shutdown = CancellationToken::new();
        let tearing_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut config = config;
        config.framework.id = opened.subscribed.framework_id.clone();
        let framework = Arc::new(RwLock::new(config.framework.clone()));
        let reader = session::Reader {
            client: client.clone(),
            masters,
            config,
            header: header.clone(),
            framework: framework.clone(),
            tx,
            shutdown: shutdown.clone(),
            tearing_down: tearing_down.clone(),
        };
        tokio::spawn(reader.run(opened.stream, opened.subscribed.heartbeat_interval_seconds));
        Ok((
            Driver {
                client,
                header,
                framework,
                shutdown,
                tearing_down,
            },
            EventStream { rx },
        ))
    }

    /// The client of the master the driver is subscribed to (the last one, while re-subscribing).
    fn client(&self) -> SchedulerClient<AuthChannel> {
        session::read_copy(&self.client)
    }

    /// The framework id assigned by the master.
    pub fn framework_id(&self) -> String {
        self.header().framework_id
    }

    /// The header the next call will carry.
    pub fn header(&self) -> v1::CallHeader {
        session::read_copy(&self.header)
    }

    /// Uses offers (all on one agent) for `operations`; unused resources are declined with `filters`.
    pub async fn accept(
        &self,
        offer_ids: Vec<String>,
        operations: Vec<v1::Operation>,
        filters: Option<v1::Filters>,
    ) -> Result<(), DriverError> {
        let req = v1::AcceptRequest {
            header: Some(self.header()),
            offer_ids,
            operations,
            filters,
        };
        let mut c = self.client();
        call("accept", c.accept(req)).await
    }

    /// Launches `tasks` on the offers (a single LAUNCH operation).
    pub async fn launch(
        &self,
        offer_ids: Vec<String>,
        tasks: Vec<v1::TaskInfo>,
        filters: Option<v1::Filters>,
    ) -> Result<(), DriverError> {
        self.accept(offer_ids, vec![launch_operation(tasks)], filters)
            .await
    }

    /// Gives offers back, refusing them for `filters.refuse_seconds` (default 5 s).
    pub async fn decline(
        &self,
        offer_ids: Vec<String>,
        filters: Option<v1::Filters>,
    ) -> Result<(), DriverError> {
        let req = v1::DeclineRequest {
            header: Some(self.header()),
            offer_ids,
            filters,
        };
        let mut c = self.client();
        call("decline", c.decline(req)).await
    }

    /// Answers inverse offers (maintenance): `accept` true promises to vacate the agents before
    /// their windows start; false declines.
    pub async fn answer_inverse_offers(
        &self,
        inverse_offer_ids: Vec<String>,
        accept: bool,
    ) -> Result<(), DriverError> {
        let req = v1::InverseOffersRequest {
            header: Some(self.header()),
            inverse_offer_ids,
        };
        let mut c = self.client();
        if accept {
            call("accept_inverse_offers", c.accept_inverse_offers(req)).await
        } else {
            call("decline_inverse_offers", c.decline_inverse_offers(req)).await
        }
    }

    /// Clears filters and resumes offers for all the framework's roles.
    pub async fn revive(&self) -> Result<(), DriverError> {
        let req = v1::ReviveRequest {
            header: Some(self.header()),
            roles: Vec::new(),
        };
        let mut c = self.client();
        call("revive", c.revive(req)).await
    }

    /// Stops offers for all the framework's roles until [`Driver::revive`].
    pub async fn suppress(&self) -> Result<(), DriverError> {
        let req = v1::SuppressRequest {
            header: Some(self.header()),
            roles: Vec::new(),
        };
        let mut c = self.client();
        call("suppress", c.suppress(req)).await
    }

    /// UPDATE_FRAMEWORK: replaces the framework's FrameworkInfo (its `id` is filled in) without
    /// re-subscribing, e.g. to change `max_outstanding_offers` as the queue grows and shrinks,
    /// or `offer_filters`. `user` and `roles` cannot change. A later re-subscription (after a
    /// disconnect) uses the updated info.
    pub async fn update_framework(&self, mut info: v1::FrameworkInfo) -> Result<(), DriverError> {
        info.id = self.framework_id();
        let req = v1::UpdateFrameworkRequest {
            header: Some(self.header()),
            framework_info: Some(info.clone()),
        };
        let mut c = self.client();
        call("update_framework", c.update_framework(req)).await?;
        *self.framework.write().unwrap_or_else(|e| e.into_inner()) = info;
        Ok(())
    }

    /// The FrameworkInfo the driver subscribed (or last updated) with.
    pub fn framework_info(&self) -> v1::FrameworkInfo {
        session::read_copy(&self.framework)
    }

    /// Kills a task (with its own grace period).
    pub async fn kill(&self, task_id: &str, agent_id: &str) -> Result<(), DriverError> {
        let req = v1::KillRequest {
            header: Some(self.header()),
            task_id: task_id.to_string(),
            agent_id: agent_id.to_string(),
            kill_grace_period_ms: None,
        };
        let mut c = self.client();
        call("kill", c.kill(req)).await
    }

    /// Acknowledges a status update; does nothing when `status.uuid` is empty.
    pub async fn acknowledge(&self, status: &v1::TaskStatus) -> Result<(), DriverError> {
        if status.uuid.is_empty() {
            return Ok(());
        }
        let req = v1::AcknowledgeRequest {
            header: Some(self.header()),
            agent_id: status.agent_id.clone(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
        };
        let mut c = self.client();
        call("acknowledge", c.acknowledge(req)).await
    }

    /// Acknowledges several status updates in one call (those without a uuid are skipped); a
    /// task's statuses must come in the order of its updates. The master checks every entry
    /// before it applies any: one bad entry refuses the call, and nothing is acknowledged.
    /// Fails with `Unimplemented` from a master that predates the call; then acknowledge one
    /// by one ([`Driver::acknowledge`]).
    pub async fn acknowledge_batch(&self, statuses: &[v1::TaskStatus]) -> Result<(), DriverError> {
        let acknowledgements: Vec<v1::Acknowledgement> = statuses
            .iter()
            .filter(|s| !s.uuid.is_empty())
            .map(|s| v1::Acknowledgement {
                agent_id: s.agent_id.clone(),
                task_id: s.task_id.clone(),
                uuid: s.uuid.clone(),
            })
            .collect();
        if acknowledgements.is_empty() {
            return Ok(());
        }
        let req = v1::AcknowledgeBatchRequest {
            header: Some(self.header()),
            acknowledgements,
        };
        let mut c = self.client();
        call("acknowledge_batch", c.acknowledge_batch(req)).await
    }

    /// Asks for the state of `(task_id, agent_id)` pairs; an empty list asks about all tasks.
    pub async fn reconcile(&self, tasks: Vec<(String, String)>) -> Result<(), DriverError> {
        let tasks = tasks
            .into_iter()
            .map(|(task_id, agent_id)| v1::ReconcileTask { task_id, agent_id })
            .collect();
        let req = v1::ReconcileRequest {
            header: Some(self.header()),
            tasks,
        };
        let mut c = self.client();
        call("reconcile", c.reconcile(req)).await
    }

    /// Sends opaque data to a task's executor.
    pub async fn message(
        &self,
        agent_id: &str,
        task_id: &str,
        data: Vec<u8>,
    ) -> Result<(), DriverError> {
        let req = v1::MessageRequest {
            header: Some(self.header()),
            agent_id: agent_id.to_string(),
            task_id: task_id.to_string(),
            data,
        };
        let mut c = self.client();
        call("message", c.message(req)).await
    }

    /// Removes the framework (the master kills its tasks). The event stream ends and is not
    /// re-subscribed, even if the call fails. The call goes out before the stream is dropped:
    /// with `failover_timeout` 0 a dropped stream alone would remove the framework first and
    /// the TEARDOWN would then be refused as unauthenticated. (A re-subscription racing the
    /// stream's end is refused by the master, which remembers removed frameworks.)
    pub async fn teardown(&self) -> Result<(), DriverError> {
        self.tearing_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let req = v1::TeardownRequest {
            header: Some(self.header()),
        };
        let mut c = self.client();
        let result = call("teardown", c.teardown(req)).await;
        self.shutdown.cancel();
        result
    }
}

/// Runs one unary call with a timeout, mapping failures to [`DriverError::Call`].
async fn call<T>(
    name: &'static str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<(), DriverError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(DriverError::call(name, &status)),
        Err(_) => Err(DriverError::Call {
            call: name,
            code: tonic::Code::DeadlineExceeded,
            message: format!("no reply within {}s", CALL_TIMEOUT.as_secs()),
        }),
    }
}
