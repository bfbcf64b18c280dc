//! An example batch framework: runs N identical shell tasks to completion.
//!
//! [`run_batch`] subscribes, packs as many pending tasks into each offer as fit (respecting
//! [`BatchSpec::max_tasks_per_offer`]), declines offers it cannot use, suppresses offers once
//! every task is launched, acknowledges every status update (in batches, off the event loop:
//! [`acks`]), and tears the framework down when every task reached a terminal state. The
//! summary carries launch→RUNNING and launch→end percentiles ([`latency`]). With
//! [`BatchSpec::rate`], tasks arrive at that steady rate instead of all at once
//! ([`arrivals`]); offers that come while no task waits are held when the next one is due
//! within [`HOLD_HORIZON`], else given back until it arrives. Used by `proffer run`,
//! `proffer local` and `proffer bench launch`.

mod acks;
mod arrivals;
mod feasible;
mod latency;
mod packing;
mod summary;

use std::collections::{HashMap, VecDeque};

use proffer_proto::offer_filters::adaptive_offer_limit;
use proffer_proto::resources::{self, UNRESERVED};
use proffer_proto::{Resources, v1};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::driver::{
    Driver, DriverConfig, DriverError, DriverEvent, EventStream, command_task, refuse_filters,
};
use acks::Acker;
use arrivals::Arrivals;
use latency::LatencyTracker;
pub use latency::Percentiles;
use packing::{TaskShape, pack};
pub use summary::{BatchSummary, format_ms};

/// Seconds unused resources are refused while tasks still wait for offers.
const REFUSE_WHILE_PENDING: f64 = 1.0;
/// Seconds offers are refused once every task is launched.
const REFUSE_WHEN_DONE: f64 = 60.0;
/// The most offers a batch holds at once; with fewer tasks waiting it asks for about one
/// offer per task (`adaptive_offer_limit`).
const OFFER_CAP: u32 = 16;
/// With a rate, offers are also asked for the tasks due this soon.
const ARRIVAL_LOOKAHEAD: std::time::Duration = std::time::Duration::from_millis(10);
/// With a rate, offers are held for the next task only when it is due this soon; with longer
/// gaps they go back (others may use them) and offers are suppressed until the next arrival.
const HOLD_HORIZON: std::time::Duration = std::time::Duration::from_millis(50);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    /// Framework name; task ids are `{name}-{index:04}`.
    pub name: String,
    /// How many tasks (at least 1).
    pub tasks: usize,
    /// The shell command each task runs.
    pub cmd: String,
    /// CPUs per task (> 0).
    pub cpus: f64,
    /// Memory per task in MB (> 0).
    pub mem: f64,
    /// The framework's role (default `*`).
    pub role: String,
    /// Most tasks launched from one offer; 0 means no limit.
    pub max_tasks_per_offer: usize,
    /// Seconds the master keeps the framework after a disconnect (0 = none, no re-subscription).
    pub failover_timeout_secs: f64,
    /// Run each task in a container from this image (`cmd` runs under `/bin/sh -c` inside
    /// it; see docs/containers.md); `None`: a process on the agent's host.
    pub image: Option<v1::ContainerInfo>,
    /// Submit tasks at this steady rate (tasks per second; task `i` arrives `i / rate`
    /// seconds after the start) instead of all at once; `None`: all at once.
    pub rate: Option<f64>,
}

impl BatchSpec {
    /// A spec with 0.1 cpus and 32 MB per task, role `*`, no per-offer limit, no failover.
    pub fn new(name: impl Into<String>, tasks: usize, cmd: impl Into<String>) -> Self {
        BatchSpec {
            name: name.into(),
            tasks,
            cmd: cmd.into(),
            cpus: 0.1,
            mem: 32.0,
            role: UNRESERVED.to_string(),
            max_tasks_per_offer: 0,
            failover_timeout_secs: 0.0,
            image: None,
            rate: None,
        }
    }

    /// Checks the spec; returns the per-task resource shape.
    fn validate(&self) -> Result<TaskShape, BatchError> {
        let bad = |m: String| Err(BatchError::InvalidSpec(m));
        if self.name.trim().is_empty() {
            return bad("name must not be empty".into());
        }
        if self.tasks == 0 {
            return bad("tasks must be at least 1".into());
        }
        if self.cmd.trim().is_empty() {
            return bad("cmd must not be empty".into());
        }
        if !(self.cpus.is_finite() && self.cpus > 0.0) {
            return bad(format!("cpus must be > 0 (got {})", self.cpus));
        }
        if !(self.mem.is_finite() && self.mem > 0.0) {
            return bad(format!("mem must be > 0 MB (got {})", self.mem));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return bad(format!("rate must be > 0 tasks/s (got {r})"));
        }
        if !(self.failover_timeout_secs.is_finite() && self.failover_timeout_secs >= 0.0) {
            return bad(format!(
                "failover timeout must be >= 0 (got {})",
                self.failover_timeout_secs
            ));
        }
        if self
            .image
            .as_ref()
            .is_some_and(|i| i.image.trim().is_empty())
        {
            return bad("image must not be empty".into());
        }
        if let Err(e) = resources::validate_role(&self.role) {
            return bad(format!("invalid role `{}`: {e}", self.role));
        }
        let milli = |name: &str, v: f64| match resources::to_milli(name, v) {
            Ok(m) if m > 0 => Ok(m),
            Ok(_) => Err(BatchError::InvalidSpec(format!(
                "{name} {v} rounds to zero (resolution is 0.001)"
            ))),
            Err(e) => Err(BatchError::InvalidSpec(e.to_string())),
        };
        Ok(TaskShape {
            cpus_milli: milli("cpus", self.cpus)?,
            mem_milli: milli("mem", self.mem)?,
            role: self.role.clone(),
        })
    }
}

/// Progress reported while a batch runs.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchProgress {
    /// Subscribed (or re-subscribed) as `framework_id`.
    Subscribed {
        /// The framework id.
        framework_id: String,
    },
    /// An offer arrived.
    Offer {
        /// The offering agent.
        agent_id: String,
        /// The offered resources in text form.
        resources: String,
    },
    /// A task was launched.
    Launched {
        /// The task id.
        task_id: String,
        /// Where it runs.
        agent_id: String,
    },
    /// A status update arrived.
    Update {
        /// The task id.
        task_id: String,
        /// The state name, e.g. `TASK_RUNNING`.
        state: String,
        /// The update's message.
        message: String,
    },
    /// Every task is terminal; the framework was torn down.
    Done,
}

/// Why a batch run failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The spec is unusable.
    #[error("invalid batch spec: {0}")]
    InvalidSpec(String),
    /// Subscribing failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The run was cancelled; the framework was torn down.
    #[error("batch cancelled after {} of {} tasks ended", .summary.terminal(), .summary.tasks)]
    Cancelled {
        /// Counts so far.
        summary: Box<BatchSummary>,
    },
    /// No agent could ever hold one task (the message names what was asked, the resource and
    /// the largest agent); the framework was torn down.
    #[error("{0}")]
    NeverFits(String),
    /// The master ended the event stream (ERROR event or disconnect without re-subscription).
    #[error("batch aborted: {reason}")]
    Aborted {
        /// Why.
        reason: String,
        /// Counts so far.
        summary: Box<BatchSummary>,
    },
}

/// Runs `spec` against the master at `master` (`HOST:PORT`, or several, comma-separated: the
/// leader among them) until every task is terminal.
pub async fn run_batch(
    master: &str,
    spec: BatchSpec,
    progress: impl FnMut(&BatchProgress) + Send + 'static,
    cancel: CancellationToken,
) -> Result<BatchSummary, BatchError> {
    let shape = spec.validate()?;
    let start = Instant::now();
    let framework = v1::FrameworkInfo {
        name: spec.name.clone(),
        user: std::env::var("USER").unwrap_or_default(),
        roles: vec![spec.role.clone()],
        failover_timeout: spec.failover_timeout_secs,
        // About one offer per waiting task (moved with the queue by UPDATE_FRAMEWORK below),
        // instead of an offer for every agent in the cluster.
        max_outstanding_offers: adaptive_offer_limit(spec.tasks, None, OFFER_CAP),
        // Leftovers smaller than one task are useless to a batch: ask not to be offered them.
        offer_filters: [(
            spec.role.clone(),
            v1::OfferFilters::minimum([("cpus", spec.cpus), ("mem", spec.mem)]),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let config = DriverConfig::new(master, framework);
    let (driver, events) = tokio::select! {
        _ = cancel.cancelled() => {
            let summary = BatchSummary { tasks: spec.tasks, ..Default::default() };
            return Err(BatchError::Cancelled { summary: Box::new(summary) });
        }
        r = Driver::subscribe(config) => r?,
    };
    let mut run = Run::new(spec, shape, driver, progress, start);
    run.master = master.to_string();
    run.drive(events, cancel).await
}

/// Where one task is.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Pending,
    Launched,
    Done,
}

/// How often, until a fitting agent is seen, the batch checks that one could exist.
const FEASIBILITY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a run that ends waits for its last acknowledgements to be sent.
const ACK_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How often launched tasks are reconciled.
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The state of one batch run.
struct Run<P> {
    spec: BatchSpec,
    shape: TaskShape,
    driver: Driver,
    progress: P,
    start: Instant,
    summary: BatchSummary,
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    pending: VecDeque<usize>,
    /// When tasks arrive (all at once, or at the spec's rate).
    arrivals: Arrivals,
    /// Offers kept while no task waits but the next is due within [`HOLD_HORIZON`].
    held: Vec<v1::Offer>,
    suppressed: bool,
    /// The masters' addresses (to ask the leader whether any agent could hold a task at all).
    master: String,
    /// Set once some agent was seen that could hold a task.
    fits: bool,
    /// When tasks were launched, ran and ended.
    latency: LatencyTracker,
    /// Sends acknowledgements in batches.
    acker: Acker,
    /// ACCEPTs in flight.
    accepts: tokio::task::JoinSet<()>,
    /// The tasks of refused ACCEPTs.
    launch_failed_tx: tokio::sync::mpsc::UnboundedSender<Vec<usize>>,
    launch_failed_rx: tokio::sync::mpsc::UnboundedReceiver<Vec<usize>>,
}

impl<P: FnMut(&BatchProgress)> Run<P> {
    fn new(spec: BatchSpec, shape: TaskShape, driver: Driver, progress: P, start: Instant) -> Self {
        let index = (0..spec.tasks)
            .map(|i| (task_id(&spec.name, i), i))
            .collect();
        let (launch_failed_tx, launch_failed_rx) = tokio::sync::mpsc::unbounded_channel();
        let now = Instant::now();
        let mut arrivals = Arrivals::new(spec.tasks, spec.rate, now);
        let pending = arrivals.release(now).collect();
        Run {
            summary: BatchSummary {
                tasks: spec.tasks,
                ..Default::default()
            },
            slots: vec![Slot::Pending; spec.tasks],
            pending,
            arrivals,
            held: Vec::new(),
            index,
            spec,
            shape,
            acker: Acker::start(driver.clone()),
            accepts: tokio::task::JoinSet::new(),
            launch_failed_tx,
            launch_failed_rx,
            driver,
            progress,
            start,
            suppressed: false,
            master: String::new(),
            fits: false,
            latency: LatencyTracker::default(),
        }
    }

    async fn drive(
        &mut self,
        mut events: EventStream,
        cancel: CancellationToken,
    ) -> Result<BatchSummary, BatchError> {
        let mut last_disconnect = None;
        // Launched tasks are reconciled now and then: a master that just restarted says nothing
        // about tasks on agents that have not re-registered yet, and answers later asks.
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.tick().await;
        // Whether any agent could ever hold a task: asked now, and every few seconds until an
        // agent that could is seen (agents may still be joining).
        let mut feasibility = tokio::time::interval(FEASIBILITY_EVERY);
        feasibility.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_arrival = self.arrivals.next_at();
            let event = tokio::select! {
                _ = cancel.cancelled() => {
                    self.teardown().await;
                    return Err(BatchError::Cancelled { summary: Box::new(self.summary()) });
                }
                _ = reconcile.tick(), if last_disconnect.is_none() => {
                    self.reconcile_launched().await;
                    continue;
                }
                _ = feasibility.tick(), if !self.fits && !self.master.is_empty() => {
                    if let Some(reason) = self.never_fits().await {
                        self.teardown().await;
                        return Err(BatchError::NeverFits(reason));
                    }
                    continue;
                }
                () = sleep_until(next_arrival), if next_arrival.is_some() => {
                    self.on_arrivals().await;
                    continue;
                }
                Some(chosen) = self.launch_failed_rx.recv() => {
                    self.on_launch_failed(chosen).await;
                    continue;
                }
                e = events.next() => e,
            };
            match event {
                None => {
                    let reason =
                        last_disconnect.unwrap_or_else(|| "the event stream ended".to_string());
                    return Err(self.aborted(reason));
                }
                Some(DriverEvent::Disconnected { reason }) => {
                    tracing::warn!(%reason, "disconnected from the master");
                    last_disconnect = Some(format!("disconnected: {reason}"));
                    // Offers die with the session that made them.
                    self.held.clear();
                }
                Some(DriverEvent::Resubscribed { framework_id }) => {
                    last_disconnect = None;
                    self.on_resubscribed(framework_id).await;
                }
                Some(DriverEvent::Event(e)) => match e.event {
                    Some(v1::event::Event::Subscribed(s)) => {
                        (self.progress)(&BatchProgress::Subscribed {
                            framework_id: s.framework_id,
                        });
                    }
                    Some(v1::event::Event::Offers(o)) => self.on_offers(o.offers).await,
                    Some(v1::event::Event::Rescind(r)) => self.held.retain(|o| o.id != r.offer_id),
                    Some(v1::event::Event::Update(u)) => {
                        if let Some(status) = u.status {
                            self.on_update(status).await;
                        }
                        if self.summary.terminal() >= self.spec.tasks {
                            self.teardown().await;
                            (self.progress)(&BatchProgress::Done);
                            return Ok(self.summary());
                        }
                    }
                    Some(v1::event::Event::Error(err)) => {
                        return Err(self.aborted(format!("master error: {}", err.message)));
                    }
                    Some(v1::event::Event::Failure(f)) => {
                        tracing::warn!(agent_id = %f.agent_id, message = %f.message, "agent failure");
                    }
                    _ => {}
                },
            }
        }
    }

    async fn on_resubscribed(&mut self, framework_id: String) {
        (self.progress)(&BatchProgress::Subscribed { framework_id });
        self.held.clear();
        if !self.pending.is_empty() || self.arrivals.remaining() > 0 {
            match self.driver.revive().await {
                Ok(()) => self.suppressed = false,
                Err(e) => tracing::warn!(error = %e, "revive after re-subscription failed"),
            }
        }
        self.reconcile_launched().await;
    }

    /// `Some(why)` if no agent could ever hold one task; remembers when one could.
    async fn never_fits(&mut self) -> Option<String> {
        match feasible::check(&self.master, &self.shape).await {
            Some(feasible::Feasibility::Never(why)) => Some(why),
            Some(feasible::Feasibility::Fits) => {
                self.fits = true;
                None
            }
            _ => None,
        }
    }

    /// Asks the master about every launched task that has not ended (explicitly, so a task the
    /// master never heard of is answered LOST once no agent that may run it is still away).
    async fn reconcile_launched(&mut self) {
        let launched: Vec<(String, String)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Slot::Launched)
            .map(|(i, _)| (task_id(&self.spec.name, i), String::new()))
            .collect();
        if launched.is_empty() {
            return;
        }
        if let Err(e) = self.driver.reconcile(launched).await {
            tracing::warn!(error = %e, "reconciliation failed");
        }
    }

    async fn on_offers(&mut self, offers: Vec<v1::Offer>) {
        for offer in offers {
            self.summary.offers_received += 1;
            let text = match Resources::from_proto(&offer.resources) {
                Ok(r) => r.to_string(),
                Err(e) => format!("<invalid: {e}>"),
            };
            (self.progress)(&BatchProgress::Offer {
                agent_id: offer.agent_id.clone(),
                resources: text,
            });
            self.use_offer(offer).await;
        }
        self.settle().await;
    }

    /// Tasks arrived (at the spec's rate): held offers take them at once.
    async fn on_arrivals(&mut self) {
        let arrived = self.arrivals.release(Instant::now());
        let slots = &self.slots;
        self.pending
            .extend(arrived.filter(|&i| slots[i] == Slot::Pending));
        while !self.pending.is_empty()
            && let Some(offer) = self.held.pop()
        {
            self.use_offer(offer).await;
        }
        self.settle().await;
    }

    /// Launches waiting tasks on `offer`; holds it when none waits but the next is due soon;
    /// declines it otherwise.
    async fn use_offer(&mut self, offer: v1::Offer) {
        if self.pending.is_empty() {
            if self.holds_offers() {
                self.held.push(offer);
            } else {
                self.decline(offer.id, self.idle_refusal()).await;
            }
            return;
        }
        let offered = match Resources::from_proto(&offer.resources) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(offer_id = %offer.id, error = %e, "offer with invalid resources");
                self.decline(offer.id, REFUSE_WHILE_PENDING).await;
                return;
            }
        };
        let limit = match self.spec.max_tasks_per_offer {
            0 => self.pending.len(),
            n => n.min(self.pending.len()),
        };
        let pieces = pack(&offered, &self.shape, limit);
        if pieces.is_empty() {
            self.decline(offer.id, REFUSE_WHILE_PENDING).await;
            return;
        }
        self.launch(&offer, pieces).await;
    }

    /// Whether an offer that comes while no task waits is kept: when the next task is due
    /// within [`HOLD_HORIZON`].
    fn holds_offers(&self) -> bool {
        self.arrivals
            .next_at()
            .is_some_and(|t| t.saturating_duration_since(Instant::now()) <= HOLD_HORIZON)
    }

    /// How long resources are refused when no task waits and none is due soon: long once
    /// every task arrived, a while between arrivals at a slow rate.
    fn idle_refusal(&self) -> f64 {
        match self.arrivals.remaining() {
            0 => REFUSE_WHEN_DONE,
            _ => REFUSE_WHILE_PENDING,
        }
    }

    /// With no task waiting and none due soon (every task launched, or the next one far off
    /// at a slow rate): held offers go back and offers are suppressed; when tasks wait again,
    /// offers are revived. Then the offer limit follows the queue.
    async fn settle(&mut self) {
        if self.pending.is_empty() && !self.holds_offers() {
            let refuse = self.idle_refusal();
            for offer in std::mem::take(&mut self.held) {
                self.decline(offer.id, refuse).await;
            }
            if !self.suppressed {
                // The master sees the launches before the suppression.
                while self.accepts.join_next().await.is_some() {}
                match self.driver.suppress().await {
                    Ok(()) => self.suppressed = true,
                    Err(e) => tracing::warn!(error = %e, "suppress failed"),
                }
            }
        } else {
            self.revive_if_waiting("for arrived tasks").await;
        }
        self.adjust_offer_limit().await;
    }

    /// Revives offers when they were suppressed and tasks wait again (`after`: why, for the
    /// log).
    async fn revive_if_waiting(&mut self, after: &str) {
        if self.suppressed && !self.pending.is_empty() {
            match self.driver.revive().await {
                Ok(()) => self.suppressed = false,
                Err(e) => tracing::warn!(error = %e, "revive {after} failed"),
            }
        }
    }

    /// Keeps the offer limit near the demand ([`offer_demand`]: the queue and the tasks due
    /// soon; nothing to do while there is none: the framework is suppressed then).
    async fn adjust_offer_limit(&mut self) {
        let demand = offer_demand(self.pending.len(), &self.arrivals);
        if demand == 0 {
            return;
        }
        let mut info = self.driver.framework_info();
        let Some(limit) = adaptive_offer_limit(demand, info.max_outstanding_offers, OFFER_CAP)
        else {
            return;
        };
        info.max_outstanding_offers = Some(limit);
        if let Err(e) = self.driver.update_framework(info).await {
            tracing::warn!(error = %e, "offer limit update failed");
        }
    }

    async fn launch(&mut self, offer: &v1::Offer, pieces: Vec<Resources>) {
        let chosen: Vec<usize> = pieces
            .iter()
            .filter_map(|_| self.pending.pop_front())
            .collect();
        let tasks: Vec<v1::TaskInfo> = chosen
            .iter()
            .zip(&pieces)
            .map(|(&i, res)| {
                let id = task_id(&self.spec.name, i);
                let mut task = command_task(&id, &id, &offer.agent_id, &self.spec.cmd, res);
                task.container = self.spec.image.clone();
                task
            })
            .collect();
        // What this ACCEPT leaves unused is refused: a while when tasks still wait (none fits
        // in it), not at all when the next is due soon (it needs it), else as when idle.
        let refuse = if !self.pending.is_empty() {
            REFUSE_WHILE_PENDING
        } else if self.holds_offers() {
            0.0
        } else {
            self.idle_refusal()
        };
        let sent_at = Instant::now();
        // The ACCEPT goes out without waiting for its answer (the master answers once the
        // launch is persisted): offers keep being used meanwhile. A refused ACCEPT puts its
        // tasks back in the queue (`on_launch_failed`).
        for (&i, t) in chosen.iter().zip(&tasks) {
            if self.slots[i] == Slot::Pending {
                self.slots[i] = Slot::Launched;
                let arrived = self.arrivals.arrival_of(i);
                self.latency.launched(i, arrived, sent_at);
            }
            self.summary.launched += 1;
            (self.progress)(&BatchProgress::Launched {
                task_id: t.task_id.clone(),
                agent_id: t.agent_id.clone(),
            });
        }
        let driver = self.driver.clone();
        let failed = self.launch_failed_tx.clone();
        let offer_id = offer.id.clone();
        self.accepts.spawn(async move {
            if let Err(e) = driver
                .launch(vec![offer_id.clone()], tasks, Some(refuse_filters(refuse)))
                .await
            {
                tracing::warn!(offer_id = %offer_id, error = %e, "launch failed; tasks go back to the queue");
                let _ = failed.send(chosen);
            }
        });
        while self.accepts.try_join_next().is_some() {}
    }

    /// An ACCEPT was refused: its tasks that did not end meanwhile wait for offers again.
    async fn on_launch_failed(&mut self, chosen: Vec<usize>) {
        for &i in chosen.iter().rev() {
            if self.slots[i] == Slot::Launched {
                self.slots[i] = Slot::Pending;
                self.summary.launched = self.summary.launched.saturating_sub(1);
                self.pending.push_front(i);
            }
        }
        self.revive_if_waiting("after a refused launch").await;
    }

    async fn on_update(&mut self, status: v1::TaskStatus) {
        let now = Instant::now();
        self.acker.ack(&status);
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::Unspecified);
        (self.progress)(&BatchProgress::Update {
            task_id: status.task_id.clone(),
            state: state.name().to_string(),
            message: status.message.clone(),
        });
        let Some(&i) = self.index.get(&status.task_id) else {
            tracing::debug!(task_id = %status.task_id, "update for an unknown task");
            return;
        };
        match state {
            v1::TaskState::TaskStarting => self.latency.starting(i, now),
            v1::TaskState::TaskRunning => self.latency.running(i, now),
            _ => {}
        }
        if !state.is_terminal() || self.slots[i] == Slot::Done {
            return;
        }
        self.latency.ended(i, now);
        if self.slots[i] == Slot::Pending {
            self.pending.retain(|&p| p != i);
        }
        self.slots[i] = Slot::Done;
        self.summary.count_terminal(state);
    }

    async fn decline(&mut self, offer_id: String, refuse: f64) {
        self.summary.offers_declined += 1;
        if let Err(e) = self
            .driver
            .decline(vec![offer_id], Some(refuse_filters(refuse)))
            .await
        {
            tracing::warn!(error = %e, "decline failed");
        }
    }

    async fn teardown(&mut self) {
        // The last ACCEPTs are answered and the last updates acknowledged before the framework
        // goes (not after it).
        let accepts = async { while self.accepts.join_next().await.is_some() {} };
        if tokio::time::timeout(ACK_DRAIN, accepts).await.is_err() {
            self.accepts.abort_all();
        }
        self.acker.finish(ACK_DRAIN).await;
        if let Err(e) = self.driver.teardown().await {
            tracing::warn!(error = %e, "teardown failed");
        }
    }

    fn summary(&mut self) -> BatchSummary {
        self.summary.finish_timing(self.start.elapsed());
        (self.summary.launch_to_running, self.summary.launch_to_end) = self.latency.percentiles();
        self.summary.launch_to_starting = self.latency.starting_percentiles();
        self.summary.arrival_to_launch = self.latency.launch_percentiles();
        self.summary.clone()
    }

    fn aborted(&mut self, reason: String) -> BatchError {
        BatchError::Aborted {
            reason,
            summary: Box::new(self.summary()),
        }
    }
}

/// How many tasks offers are asked for: those waiting and, with a rate, those due within
/// [`ARRIVAL_LOOKAHEAD`]. The queue alone swings between none and a few at every arrival; a
/// limit that followed it would be updated (an UPDATE_FRAMEWORK call) as often.
fn offer_demand(pending: usize, arrivals: &Arrivals) -> usize {
    pending + arrivals.expected_within(ARRIVAL_LOOKAHEAD)
}

/// Sleeps until `at`; forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The id of task `index` of batch `name`.
pub fn task_id(name: &str, index: usize) -> String {
    format!("{name}-{index:04}")
}

#[cfg(test)]
mod tests;
