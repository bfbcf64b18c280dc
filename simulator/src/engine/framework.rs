//! Simulated framework schedulers: subscribe, queue work, answer offers per their behaviour
//! model (greedy, picky, hoarding, elastic), acknowledge status updates, re-queue lost tasks,
//! suppress when idle and revive when work arrives.

use std::collections::{HashMap, VecDeque};

use proffer_master_core::core::rng::SplitMix64;
use proffer_master_core::core::{Call, Input};
use proffer_proto::Resources;
use proffer_proto::offer_filters::adaptive_offer_limit;
use proffer_proto::v1::{self, TaskState, operation::Op};

use super::queue::Ev;
use super::{Sim, framework_conn};
use crate::dist::{Arrivals, DurationDist, unit};
use crate::id_hash::IdMap;
use crate::scenario::{Behaviour, Model};

/// A task waiting to run (or running: the same record is kept while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// cpus, milli.
    pub cpus: i64,
    /// mem, milli-MB.
    pub mem: i64,
    /// Run time in ms (`u64::MAX` = forever).
    pub dur_ms: u64,
    /// When it (last) entered the queue (ms).
    pub queued_at: u64,
}

/// Where a framework's work comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Synthetic: a fixed task shape, optional arrivals, durations from a distribution.
    Synthetic {
        /// Task cpus (milli).
        cpus: i64,
        /// Task mem (milli).
        mem: i64,
        /// The task resources in protocol form.
        proto: Vec<v1::Resource>,
        /// Arrival process.
        arrivals: Option<Arrivals>,
        /// Durations.
        duration: DurationDist,
        /// Tasks generated so far.
        generated: u64,
        /// Stop after this many (0 = no limit).
        max_tasks: u64,
    },
    /// Replayed from a trace, in time order.
    Trace {
        /// The tasks.
        tasks: Vec<crate::trace::TraceTask>,
        /// Next to release.
        cursor: usize,
    },
}

/// Per-framework counters.
#[derive(Debug, Clone, Default)]
pub struct FwStats {
    /// Offers received.
    pub offers: u64,
    /// Offers declined without launching anything.
    pub declined: u64,
    /// Tasks launched (ACCEPT).
    pub launched: u64,
    /// Tasks that finished.
    pub finished: u64,
    /// Tasks that ended otherwise (lost, killed, failed) and were queued again.
    pub lost: u64,
    /// ERROR events received.
    pub errors: u64,
    /// UPDATE_FRAMEWORK calls sent to change the offer limit.
    pub limit_updates: u64,
    /// Queueing delay of each launch (ms).
    pub waits: Vec<u64>,
}

/// One simulated framework.
#[derive(Debug, Clone)]
pub struct SimFramework {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its role's weight.
    pub weight: f64,
    pub(crate) model: Model,
    pub(crate) source: Source,
    /// Minimum offer (cpus, mem in milli-units) sent as `offer_filters` when subscribing.
    pub(crate) min_offer: Option<(i64, i64)>,
    pub(crate) rng: SplitMix64,
    /// Id given by the master (empty until subscribed).
    pub id: String,
    pub(crate) header: Option<v1::CallHeader>,
    /// The FrameworkInfo it subscribed (or last updated) with.
    pub(crate) info: Option<v1::FrameworkInfo>,
    pub(crate) connected: bool,
    /// Waiting tasks.
    pub queue: VecDeque<Pending>,
    /// Launched tasks by id, until they end.
    pub(crate) launched: IdMap<Pending>,
    next_task: u64,
    /// Tasks launched and not yet ended.
    pub running: u32,
    /// cpus held by those tasks (milli).
    pub used_cpus: i64,
    /// mem held by those tasks (milli).
    pub used_mem: i64,
    suppressed: bool,
    /// Subscribed and not yet torn down.
    pub active: bool,
    /// When it joined (ms), once it has.
    pub joined_at: Option<u64>,
    /// When it reached its fair share (ms since joining), if it has.
    pub fair_after_ms: Option<u64>,
    held: Vec<v1::Offer>,
    /// Counters.
    pub stats: FwStats,
    /// Initial backlog queued at join.
    pub(crate) backlog: u64,
    pub(crate) join_at_ms: u64,
    pub(crate) leave_at_ms: Option<u64>,
}

impl SimFramework {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        role: String,
        weight: f64,
        model: Model,
        source: Source,
        seed: u64,
        backlog: u64,
        join_at_ms: u64,
        leave_at_ms: Option<u64>,
    ) -> Self {
        SimFramework {
            name,
            role,
            weight,
            model,
            source,
            min_offer: None,
            rng: SplitMix64::new(seed),
            id: String::new(),
            header: None,
            info: None,
            connected: false,
            queue: VecDeque::new(),
            launched: HashMap::default(),
            next_task: 0,
            running: 0,
            used_cpus: 0,
            used_mem: 0,
            suppressed: false,
            active: false,
            joined_at: None,
            fair_after_ms: None,
            held: Vec::new(),
            stats: FwStats::default(),
            backlog,
            join_at_ms,
            leave_at_ms,
        }
    }

    /// True if it has work it cannot run yet.
    pub fn wants_more(&self) -> bool {
        !self.queue.is_empty()
            || (self.model.behaviour == Behaviour::Elastic
                && self.running < self.model.max_running
                && matches!(self.source, Source::Synthetic { .. }))
    }

    /// Tasks it could launch now: its queue, or for an elastic framework the room below its
    /// target.
    fn demand(&self) -> usize {
        if self.model.behaviour == Behaviour::Elastic {
            self.model.max_running.saturating_sub(self.running) as usize
        } else {
            self.queue.len()
        }
    }

    /// Dominant share of the cluster capacity given, from the tasks it runs.
    pub fn share(&self, cluster_cpus: i64, cluster_mem: i64) -> f64 {
        let c = if cluster_cpus > 0 {
            self.used_cpus as f64 / cluster_cpus as f64
        } else {
            0.0
        };
        let m = if cluster_mem > 0 {
            self.used_mem as f64 / cluster_mem as f64
        } else {
            0.0
        };
        c.max(m)
    }

    /// A new synthetic task (`None` when the source is exhausted or not synthetic).
    fn make_task(&mut self, now: u64) -> Option<Pending> {
        let Source::Synthetic {
            cpus,
            mem,
            duration,
            generated,
            max_tasks,
            ..
        } = &mut self.source
        else {
            return None;
        };
        if *max_tasks > 0 && *generated >= *max_tasks {
            return None;
        }
        *generated += 1;
        Some(Pending {
            cpus: *cpus,
            mem: *mem,
            dur_ms: duration.sample_ms(&mut self.rng).unwrap_or(u64::MAX),
            queued_at: now,
        })
    }
}

/// Sums the scalar cpus and mem of an offer (any role), in milli-units.
fn offered(resources: &[v1::Resource]) -> (i64, i64) {
    let (mut cpus, mut mem) = (0, 0);
    for r in resources {
        if let Some(v1::resource::Value::ScalarMilli(v)) = r.value {
            match r.name.as_str() {
                "cpus" => cpus += v,
                "mem" => mem += v,
                _ => {}
            }
        }
    }
    (cpus, mem)
}

fn task_resources(p: &Pending) -> Vec<v1::Resource> {
    Resources::scalar("cpus", p.cpus)
        .plus(&Resources::scalar("mem", p.mem))
        .to_proto()
}

/// How far down its queue a framework looks for a task that fits an offer.
const SCAN_WINDOW: usize = 64;

impl Sim {
    fn call(&mut self, call: Call) {
        self.send(Input::Call(call));
    }

    pub(crate) fn framework_join(&mut self, f: u32) {
        let fw = &mut self.frameworks[f as usize];
        if fw.active {
            return;
        }
        fw.active = true;
        fw.connected = true;
        fw.joined_at = Some(self.now);
        let backlog = fw.backlog;
        let now = self.now;
        for _ in 0..backlog {
            match fw.make_task(now) {
                Some(p) => fw.queue.push_back(p),
                None => break,
            }
        }
        let limit = if fw.model.adaptive_offer_limit {
            let cap = fw.model.max_outstanding_offers;
            adaptive_offer_limit(fw.demand(), None, cap).unwrap_or(cap)
        } else {
            fw.model.max_outstanding_offers
        };
        let info = v1::FrameworkInfo {
            name: fw.name.clone(),
            roles: vec![fw.role.clone()],
            failover_timeout: 0.0,
            max_outstanding_offers: Some(limit).filter(|l| *l > 0),
            offer_filters: fw
                .min_offer
                .map(|(cpus, mem)| {
                    let (cpus, mem) = (cpus as f64 / 1000.0, mem as f64 / 1000.0);
                    let min = v1::OfferFilters::minimum([("cpus", cpus), ("mem", mem)]);
                    (fw.role.clone(), min)
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        fw.info = Some(info.clone());
        let next_arrival = match &fw.source {
            Source::Synthetic {
                arrivals: Some(a), ..
            } => {
                let a = a.clone();
                Some(a.next(&mut fw.rng, now).0)
            }
            _ => None,
        };
        let trace_first = match &fw.source {
            Source::Trace { tasks, cursor } => tasks.get(*cursor).map(|t| t.time_ms),
            _ => None,
        };
        let leave = fw.leave_at_ms;
        self.send(Input::Subscribe {
            conn: framework_conn(f),
            info: Box::new(info),
        });
        if let Some(t) = next_arrival {
            self.schedule(t, Ev::Arrive(f));
        }
        if let Some(t) = trace_first {
            self.schedule(t.max(now), Ev::TraceNext(f));
        }
        if let Some(t) = leave {
            self.schedule(t, Ev::Leave(f));
        }
    }

    pub(crate) fn on_subscribed(&mut self, f: u32, s: v1::Subscribed) {
        self.fw_by_id.insert(s.framework_id.clone(), f);
        let fw = &mut self.frameworks[f as usize];
        fw.id = s.framework_id.clone();
        if let Some(info) = fw.info.as_mut() {
            info.id = s.framework_id.clone();
        }
        fw.header = Some(v1::CallHeader {
            framework_id: s.framework_id,
            stream_id: s.stream_id,
        });
        self.adjust_suppression(f);
    }

    pub(crate) fn framework_leave(&mut self, f: u32) {
        let fw = &mut self.frameworks[f as usize];
        if !fw.active {
            return;
        }
        fw.active = false;
        fw.queue.clear();
        let header = fw.header.clone();
        if let Some(header) = header {
            self.call(Call::Teardown(v1::TeardownRequest {
                header: Some(header),
            }));
        }
        let fw = &mut self.frameworks[f as usize];
        fw.running = 0;
        fw.used_cpus = 0;
        fw.used_mem = 0;
        fw.launched.clear();
        fw.held.clear();
    }

    pub(crate) fn synthetic_arrival(&mut self, f: u32) {
        let now = self.now;
        let fw = &mut self.frameworks[f as usize];
        if !fw.active {
            return;
        }
        let Source::Synthetic {
            arrivals: Some(a), ..
        } = &fw.source
        else {
            return;
        };
        let a = a.clone();
        let (next, _) = a.next(&mut fw.rng, now);
        // The count drawn with the *previous* gap applies now; draw a fresh count for this batch.
        let count = match a {
            Arrivals::Bursty { .. } => a.next(&mut fw.rng, now).1,
            _ => 1,
        };
        let mut exhausted = false;
        for _ in 0..count {
            match fw.make_task(now) {
                Some(p) => fw.queue.push_back(p),
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        if !exhausted {
            self.schedule(next, Ev::Arrive(f));
        }
        self.adjust_suppression(f);
    }

    pub(crate) fn trace_arrival(&mut self, f: u32) {
        let now = self.now;
        let fw = &mut self.frameworks[f as usize];
        if !fw.active {
            return;
        }
        let Source::Trace { tasks, cursor } = &mut fw.source else {
            return;
        };
        while let Some(t) = tasks.get(*cursor) {
            if t.time_ms > now {
                break;
            }
            fw.queue.push_back(Pending {
                cpus: t.cpus_milli,
                mem: t.mem_milli,
                dur_ms: t.duration_ms.unwrap_or(u64::MAX),
                queued_at: now,
            });
            *cursor += 1;
        }
        let next = tasks.get(*cursor).map(|t| t.time_ms);
        if let Some(t) = next {
            self.schedule(t, Ev::TraceNext(f));
        }
        self.adjust_suppression(f);
    }

    /// Suppresses a framework with nothing to do, revives one that has work again, and (if
    /// adaptive) moves its offer limit with its demand.
    fn adjust_suppression(&mut self, f: u32) {
        self.adjust_offer_limit(f);
        let fw = &self.frameworks[f as usize];
        if !fw.active || !fw.model.suppress_when_idle {
            return;
        }
        let Some(header) = fw.header.clone() else {
            return;
        };
        let wants = fw.wants_more();
        if wants && fw.suppressed {
            self.frameworks[f as usize].suppressed = false;
            self.call(Call::Revive(v1::ReviveRequest {
                header: Some(header),
                roles: Vec::new(),
            }));
        } else if !wants && !fw.suppressed && fw.held.is_empty() {
            self.frameworks[f as usize].suppressed = true;
            self.call(Call::Suppress(v1::SuppressRequest {
                header: Some(header),
                roles: Vec::new(),
            }));
        }
    }

    /// An adaptive framework keeps its offer limit near its demand (see
    /// [`adaptive_offer_limit`]) with UPDATE_FRAMEWORK.
    fn adjust_offer_limit(&mut self, f: u32) {
        let fw = &mut self.frameworks[f as usize];
        if !fw.active || !fw.model.adaptive_offer_limit || fw.header.is_none() {
            return;
        }
        let demand = fw.demand();
        let cap = fw.model.max_outstanding_offers;
        let Some(info) = fw.info.as_mut() else {
            return;
        };
        let Some(limit) = adaptive_offer_limit(demand, info.max_outstanding_offers, cap) else {
            return;
        };
        info.max_outstanding_offers = Some(limit);
        let req = v1::UpdateFrameworkRequest {
            header: fw.header.clone(),
            framework_info: Some(info.clone()),
        };
        fw.stats.limit_updates += 1;
        self.call(Call::UpdateFramework(Box::new(req)));
    }

    pub(crate) fn on_offers(&mut self, f: u32, offers: Vec<v1::Offer>) {
        let hoarding = self.frameworks[f as usize].model.behaviour == Behaviour::Hoarding;
        for offer in offers {
            self.frameworks[f as usize].stats.offers += 1;
            if self.decisions.is_some() {
                let detail = Resources::from_proto(&offer.resources)
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                self.record(
                    "offer",
                    &offer.framework_id,
                    &offer.agent_id,
                    &offer.id,
                    detail,
                );
            }
            if hoarding {
                let fw = &mut self.frameworks[f as usize];
                fw.held.push(offer);
                if fw.held.len() == 1 {
                    let t = self.now.saturating_add(fw.model.hold_ms);
                    self.schedule(t, Ev::Release(f));
                }
            } else {
                self.answer(f, offer);
            }
        }
        self.adjust_suppression(f);
    }

    pub(crate) fn release_held(&mut self, f: u32) {
        let held = std::mem::take(&mut self.frameworks[f as usize].held);
        for offer in held {
            self.answer(f, offer);
        }
        self.adjust_suppression(f);
    }

    pub(crate) fn on_rescind(&mut self, f: u32, offer_id: &str) {
        self.frameworks[f as usize]
            .held
            .retain(|o| o.id != offer_id);
    }

    /// Uses or declines one offer.
    fn answer(&mut self, f: u32, offer: v1::Offer) {
        let now = self.now;
        let fw = &mut self.frameworks[f as usize];
        let Some(header) = fw.header.clone() else {
            return;
        };
        let filters = fw.model.refuse_ms.map(|ms| v1::Filters {
            refuse_seconds: Some(ms as f64 / 1000.0),
        });
        let picky_no = fw.model.behaviour == Behaviour::Picky
            && fw.model.decline_probability > 0.0
            && unit(&mut fw.rng) < fw.model.decline_probability;
        let unsuitable = fw.model.constraints.0.iter().any(|(name, value)| {
            !offer
                .attributes
                .iter()
                .any(|a| a.name == *name && a.value == *value)
        });
        // What fits, picked first (small records) so the TaskInfos (≈ 820 bytes each) are
        // built into a vector of the right size.
        let mut picked: Vec<(u64, Pending)> = Vec::new();
        if !picky_no && !unsuitable && fw.active {
            let (mut cpus, mut mem) = offered(&offer.resources);
            let limit = match fw.model.max_tasks_per_offer {
                0 => usize::MAX,
                n => n as usize,
            };
            // Elastic frameworks top their queue up to their target first.
            if fw.model.behaviour == Behaviour::Elastic {
                let want = fw.model.max_running.saturating_sub(fw.running) as usize;
                while fw.queue.len() < want {
                    match fw.make_task(now) {
                        Some(p) => fw.queue.push_back(p),
                        None => break,
                    }
                }
            }
            let mut i = 0;
            while i < fw.queue.len().min(SCAN_WINDOW) && picked.len() < limit {
                let p = fw.queue[i];
                if p.cpus <= cpus && p.mem <= mem {
                    cpus -= p.cpus;
                    mem -= p.mem;
                    fw.queue.remove(i);
                    let tid = fw.next_task;
                    fw.next_task += 1;
                    fw.stats.waits.push(now.saturating_sub(p.queued_at));
                    fw.stats.launched += 1;
                    fw.running += 1;
                    fw.used_cpus += p.cpus;
                    fw.used_mem += p.mem;
                    fw.launched.insert(tid, p);
                    picked.push((tid, p));
                } else {
                    i += 1;
                }
            }
            // Elastic: what was generated but not launched is not a real backlog.
            if fw.model.behaviour == Behaviour::Elastic {
                fw.queue.clear();
            }
        }
        let mut tasks: Vec<v1::TaskInfo> = Vec::with_capacity(picked.len());
        for (tid, p) in picked {
            let task_id = tid.to_string();
            let resources = match &fw.source {
                Source::Synthetic {
                    cpus: c,
                    mem: m,
                    proto,
                    ..
                } if *c == p.cpus && *m == p.mem => proto.clone(),
                _ => task_resources(&p),
            };
            tasks.push(v1::TaskInfo {
                name: task_id.clone(),
                task_id,
                resources,
                command: Some(v1::CommandInfo {
                    value: "sleep".into(),
                    shell: true,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if tasks.is_empty() {
            fw.stats.declined += 1;
            self.record(
                "decline",
                &offer.framework_id,
                &offer.agent_id,
                &offer.id,
                String::new(),
            );
            self.call(Call::Decline(v1::DeclineRequest {
                header: Some(header),
                offer_ids: vec![offer.id],
                filters,
            }));
        } else {
            if self.decisions.is_some() {
                let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
                let detail = ids.join(" ");
                self.record(
                    "launch",
                    &offer.framework_id,
                    &offer.agent_id,
                    &offer.id,
                    detail,
                );
            }
            self.call(Call::Accept(v1::AcceptRequest {
                header: Some(header),
                offer_ids: vec![offer.id],
                operations: vec![v1::Operation {
                    op: Some(Op::Launch(v1::Launch { tasks })),
                }],
                filters,
            }));
        }
    }

    pub(crate) fn on_update(&mut self, f: u32, status: v1::TaskStatus) {
        let fw = &mut self.frameworks[f as usize];
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::Unspecified);
        let tid = status.task_id.parse::<u64>().ok();
        if !status.uuid.is_empty()
            && let Some(header) = fw.header.clone()
            && fw.active
        {
            self.call(Call::Acknowledge(v1::AcknowledgeRequest {
                header: Some(header),
                agent_id: status.agent_id,
                task_id: status.task_id,
                uuid: status.uuid,
            }));
        }
        if !state.is_terminal() {
            return;
        }
        let now = self.now;
        let fw = &mut self.frameworks[f as usize];
        let Some(p) = tid.and_then(|t| fw.launched.remove(&t)) else {
            return;
        };
        fw.running = fw.running.saturating_sub(1);
        fw.used_cpus -= p.cpus;
        fw.used_mem -= p.mem;
        if state == TaskState::TaskFinished {
            fw.stats.finished += 1;
        } else {
            fw.stats.lost += 1;
            if fw.active && fw.model.behaviour != Behaviour::Elastic {
                fw.queue.push_back(Pending {
                    queued_at: now,
                    ..p
                });
            }
        }
        self.adjust_suppression(f);
    }
}
