//! The discrete-event engine: a virtual clock, an event queue, simulated agents and framework
//! schedulers, all talking the real protocol to the real [`Master`] core.
//!
//! Messages are delivered with zero latency and in order: every input to the master is
//! followed by its outputs, which the simulated agents and frameworks answer at once; their
//! answers are queued (FIFO) and fed in the same virtual instant. Timed things — master ticks,
//! arrivals, task ends, agent failures, metric samples — come from the event queue.
//!
//! # Layout of this module
//! - `queue`: the binary-heap event queue.
//! - `agent`: simulated agents (register, run tasks, status updates, pings).
//! - `framework`: simulated schedulers (subscribe, answer offers, acknowledge updates).
//! - `build`: turns a [`Scenario`] into agents, frameworks and initial events.

mod agent;
mod build;
mod framework;
pub mod queue;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use proffer_master_core::core::rng::SplitMix64;
use proffer_master_core::core::{ConnId, Input, Master, Output, Timestamp};
use proffer_proto::v1::event::Event;

use crate::error::SimError;
use crate::metrics::{Metrics, Timing};
use crate::policy::Policy;
use crate::scenario::Scenario;
pub use agent::SimAgent;
pub use framework::{Pending, SimFramework};
use queue::{Ev, Queue};

/// One line of the decision log: what the master offered and what frameworks did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Virtual time (ms).
    pub time_ms: u64,
    /// `offer`, `launch` or `decline`.
    pub kind: &'static str,
    /// The framework's id (assigned by the master).
    pub framework_id: String,
    /// The agent's id.
    pub agent_id: String,
    /// The offer's id.
    pub offer_id: String,
    /// Resources offered, or the task ids launched.
    pub detail: String,
}

/// Counts of what the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Timed events taken from the queue.
    pub timed_events: u64,
    /// Messages fed to the master (agent messages, subscriptions, calls).
    pub master_inputs: u64,
    /// Outputs the master produced (events, agent messages).
    pub master_outputs: u64,
    /// Inputs the master refused with an error.
    pub master_errors: u64,
    /// Master ticks.
    pub ticks: u64,
}

impl Counters {
    /// Timed events plus messages in and out of the master: the "simulated events".
    pub fn events(&self) -> u64 {
        self.timed_events + self.master_inputs + self.master_outputs
    }
}

/// Connection ids: bit 0 is 1 for frameworks; agents carry a generation above bit 32 so that
/// messages to an agent's earlier session are recognised and dropped.
fn agent_conn(idx: u32, generation: u32) -> ConnId {
    (u64::from(generation) << 32) | (u64::from(idx) << 1)
}

fn framework_conn(idx: u32) -> ConnId {
    (u64::from(idx) << 1) | 1
}

/// A simulation in progress.
pub struct Sim {
    pub(crate) master: Master,
    pub(crate) now: u64,
    pub(crate) end: u64,
    tick_ms: u64,
    sample_ms: u64,
    queue: Queue,
    pending: VecDeque<Input>,
    /// The master's outputs being delivered (kept to reuse its allocation).
    outputs: Vec<Output>,
    pub(crate) agents: Vec<SimAgent>,
    pub(crate) frameworks: Vec<SimFramework>,
    pub(crate) fw_by_id: HashMap<String, u32>,
    pub(crate) rng: SplitMix64,
    pub(crate) metrics: Metrics,
    pub(crate) decisions: Option<Vec<Decision>>,
    pub(crate) counters: Counters,
    pub(crate) uuid_counter: u64,
    /// Capacity of the agents that are up, milli-units.
    pub(crate) cluster_cpus: i64,
    pub(crate) cluster_mem: i64,
    tick_us: Vec<u32>,
    wall: std::time::Duration,
    policy: Policy,
    scenario_name: String,
    seed: u64,
}

impl Sim {
    /// Builds a simulation of `scenario` under `policy` (traces are read now).
    pub fn new(scenario: &Scenario, policy: Policy) -> Result<Sim, SimError> {
        build::build(scenario, policy)
    }

    /// The master being driven.
    pub fn master(&self) -> &Master {
        &self.master
    }

    /// Virtual time now (ms).
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Virtual end time (ms).
    pub fn end_ms(&self) -> u64 {
        self.end
    }

    /// The simulated frameworks.
    pub fn frameworks(&self) -> &[SimFramework] {
        &self.frameworks
    }

    /// The simulated agents.
    pub fn agents(&self) -> &[SimAgent] {
        &self.agents
    }

    /// What the engine has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The decision log, if the scenario asked for one.
    pub fn decisions(&self) -> Option<&[Decision]> {
        self.decisions.as_deref()
    }

    /// Sampled metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The policy run.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The scenario's name.
    pub fn scenario_name(&self) -> &str {
        &self.scenario_name
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Runs to the end.
    pub fn run(&mut self) {
        self.run_with_progress(&mut |_, _| {});
    }

    /// Runs to the end, calling `progress(now_ms, end_ms)` about every simulated minute.
    pub fn run_with_progress(&mut self, progress: &mut dyn FnMut(u64, u64)) {
        let started = Instant::now();
        let step = 60_000;
        let mut next_report = step;
        while self.step_until(self.end) {
            if self.now >= next_report {
                progress(self.now, self.end);
                next_report = self.now.saturating_add(step);
            }
        }
        self.now = self.end;
        self.sample();
        progress(self.end, self.end);
        self.wall += started.elapsed();
    }

    /// Runs the next timed event due at or before `until`; false when there is none.
    pub fn step_until(&mut self, until: u64) -> bool {
        let Some((time, ev)) = self.queue.pop_until(until) else {
            return false;
        };
        self.now = time;
        self.counters.timed_events += 1;
        self.on_event(ev);
        true
    }

    /// Wall-clock figures (not deterministic; kept out of the summary).
    pub fn timing(&self) -> Timing {
        Timing::new(self.wall, &self.counters, &self.tick_us)
    }

    pub(crate) fn schedule(&mut self, time: u64, ev: Ev) {
        if time <= self.end {
            self.queue.push(time, ev);
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::Tick => {
                // Only the master's own work is timed (not the frameworks answering its offers).
                let t = Instant::now();
                self.master.tick(Timestamp(self.now));
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                self.tick_us.push(us);
                self.counters.ticks += 1;
                self.drain_outbox();
                self.flush();
                #[cfg(debug_assertions)]
                self.check_accounting();
                self.schedule(self.now.saturating_add(self.tick_ms), Ev::Tick);
            }
            Ev::Sample => {
                self.sample();
                self.schedule(self.now.saturating_add(self.sample_ms), Ev::Sample);
            }
            Ev::AgentUp(a) => self.agent_up(a),
            Ev::AgentDown(a) => self.agent_down(a),
            Ev::Join(f) => self.framework_join(f),
            Ev::Leave(f) => self.framework_leave(f),
            Ev::Arrive(f) => self.synthetic_arrival(f),
            Ev::TraceNext(f) => self.trace_arrival(f),
            Ev::TaskDone {
                agent,
                slot,
                generation,
            } => self.task_done(agent, slot, generation),
            Ev::Release(f) => self.release_held(f),
        }
        self.flush();
    }

    /// Debug builds: the master's books balance after every tick (offered + allocated + free
    /// = total on every agent); large clusters are checked every few ticks, so the cost stays
    /// about 500 agents' worth per tick.
    #[cfg(debug_assertions)]
    fn check_accounting(&self) {
        let stride = (self.master.agent_count() / 500).max(1) as u64;
        if self.counters.ticks.is_multiple_of(stride)
            && let Err(e) = self.master.check_accounting()
        {
            panic!(
                "simulator (seed {}): at {} ms the master's accounting broke: {e}",
                self.seed, self.now
            );
        }
    }

    /// Queues an input for the master (fed by [`Sim::flush`], in order).
    pub(crate) fn send(&mut self, input: Input) {
        self.pending.push_back(input);
    }

    /// Feeds queued inputs to the master and delivers its outputs, until quiet.
    pub(crate) fn flush(&mut self) {
        while let Some(input) = self.pending.pop_front() {
            self.counters.master_inputs += 1;
            if self.master.handle(Timestamp(self.now), input).is_err() {
                self.counters.master_errors += 1;
            }
            self.drain_outbox();
        }
    }

    fn drain_outbox(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.master.take_outbox_into(&mut outputs);
        self.counters.master_outputs += outputs.len() as u64;
        for out in outputs.drain(..) {
            self.deliver(out);
        }
        self.outputs = outputs;
    }

    fn deliver(&mut self, out: Output) {
        match out {
            Output::ToFramework { conn, event } => {
                let Some(f) = self.framework_of(conn) else {
                    return;
                };
                match event.event {
                    Some(Event::Subscribed(s)) => self.on_subscribed(f, s),
                    Some(Event::Offers(o)) => self.on_offers(f, o.offers),
                    Some(Event::Update(u)) => {
                        if let Some(status) = u.status {
                            self.on_update(f, status);
                        }
                    }
                    Some(Event::Rescind(r)) => self.on_rescind(f, &r.offer_id),
                    Some(Event::Error(_)) => self.frameworks[f as usize].stats.errors += 1,
                    // Heartbeats, failures, messages and events added later need no answer.
                    _ => {}
                }
            }
            Output::ToAgent { conn, msg } => {
                let Some(a) = self.agent_of(conn) else {
                    return;
                };
                if let Some(m) = msg.msg {
                    self.on_agent_msg(a, m);
                }
            }
            Output::CloseFramework { conn } => {
                if let Some(f) = self.framework_of(conn) {
                    self.frameworks[f as usize].connected = false;
                }
            }
            // The simulated master persists nothing (persistence is off in its core), so no
            // batch is ever made; if one were, it is acknowledged at once.
            Output::Persist { seq, .. } => self.send(Input::Persisted { seq }),
            Output::CloseAgent { conn } => {
                if let Some(a) = self.agent_of(conn) {
                    self.agents[a as usize].session_closed();
                }
            }
        }
    }

    fn framework_of(&self, conn: ConnId) -> Option<u32> {
        if conn & 1 == 0 {
            return None;
        }
        let idx = u32::try_from(conn >> 1).ok()?;
        ((idx as usize) < self.frameworks.len()).then_some(idx)
    }

    fn agent_of(&self, conn: ConnId) -> Option<u32> {
        if conn & 1 == 1 {
            return None;
        }
        let idx = ((conn >> 1) & 0x7FFF_FFFF) as u32;
        let generation = (conn >> 32) as u32;
        let a = self.agents.get(idx as usize)?;
        (a.generation == generation && a.up).then_some(idx)
    }

    /// A fresh 16-byte status update uuid (deterministic).
    pub(crate) fn next_uuid(&mut self) -> Vec<u8> {
        self.uuid_counter += 1;
        let mut u = Vec::with_capacity(16);
        u.extend_from_slice(&self.seed.to_le_bytes());
        u.extend_from_slice(&self.uuid_counter.to_le_bytes());
        u
    }

    pub(crate) fn record(
        &mut self,
        kind: &'static str,
        framework_id: &str,
        agent_id: &str,
        offer_id: &str,
        detail: String,
    ) {
        if let Some(log) = &mut self.decisions {
            log.push(Decision {
                time_ms: self.now,
                kind,
                framework_id: framework_id.to_string(),
                agent_id: agent_id.to_string(),
                offer_id: offer_id.to_string(),
                detail,
            });
        }
    }

    /// Takes a metrics sample now.
    fn sample(&mut self) {
        let (cpus, mem) = (self.cluster_cpus, self.cluster_mem);
        let now = self.now;
        self.metrics.sample(now, cpus, mem, &mut self.frameworks);
    }
}
