//! How many launches per second the master core alone sustains (issue 21's goal: ≥ 50,000/s
//! with 10,000 agents).
//!
//! Simulated agents and frameworks speak to the real [`Master`] through its public inputs, with
//! no I/O and no registry (persistence off, as in the simulator), in virtual time: every agent
//! registers, every framework subscribes, then each round the core is ticked, every offer is
//! accepted with as many LAUNCH tasks as fit, every launched task reports RUNNING and FINISHED
//! at once, the framework acknowledges both updates, the acknowledgements go back to the agent,
//! and the freed resources are offered again in the next round. Only that steady loop is timed
//! (the registrations are not); the figure is launches per wall-clock second of it.
//!
//! The drivers do as little as the protocol allows (no queues of their own beyond the FIFO of
//! inputs), so the time measured is the core's: its bookkeeping of offers, tasks and status
//! updates, and the allocator's cycles.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proffer_master_core::core::{Call, ConnId, Input, Master, MasterConfig, Output, Timestamp};
use proffer_proto::Resources;
use proffer_proto::v1::{
    self, TaskState, agent_message::Msg as AgentOut, event::Event, master_message::Msg as AgentIn,
    operation::Op,
};

use crate::error::SimError;

/// What to run.
#[derive(Debug, Clone)]
pub struct CoreBenchParams {
    /// Simulated agents.
    pub agents: usize,
    /// Frameworks (one role each, weight 1).
    pub frameworks: usize,
    /// Tasks to run to FINISHED (acknowledged).
    pub tasks: u64,
    /// Each agent's resources.
    pub agent_resources: Resources,
    /// Each task's resources.
    pub task_resources: Resources,
    /// Virtual milliseconds between rounds.
    pub round_ms: u64,
    /// The master's settings (persistence is off whatever they say).
    pub config: MasterConfig,
    /// Seeds the master.
    pub seed: u64,
}

impl Default for CoreBenchParams {
    fn default() -> Self {
        CoreBenchParams {
            agents: 10_000,
            frameworks: 10,
            tasks: 200_000,
            agent_resources: Resources::parse("cpus:8;mem:8192").unwrap_or_default(),
            task_resources: Resources::parse("cpus:1;mem:128").unwrap_or_default(),
            round_ms: 5,
            config: MasterConfig::default(),
            seed: 1,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreBenchReport {
    /// Tasks launched in the timed loop.
    pub launched: u64,
    /// Tasks that ended FINISHED with both updates acknowledged.
    pub finished: u64,
    /// Wall time of registering the agents and subscribing the frameworks.
    pub setup: Duration,
    /// Wall time of the timed loop.
    pub wall: Duration,
    /// CPU time of the timed loop (this thread's, from `/proc/thread-self/schedstat`; `None`
    /// where that cannot be read). Steadier than `wall` on a loaded machine.
    pub cpu: Option<Duration>,
    /// Wall time spent inside the core's own calls in the timed loop (`handle`, `tick`,
    /// `take_outbox_into`): the loop's time without the simulated agents and frameworks.
    pub core: Duration,
    /// Rounds (ticks) of the timed loop.
    pub rounds: u64,
    /// Offers received by the frameworks.
    pub offers: u64,
    /// Inputs fed to the core in the timed loop.
    pub inputs: u64,
    /// Outputs taken from the core in the timed loop.
    pub outputs: u64,
    /// Inputs the core refused (should be 0).
    pub refused: u64,
}

impl CoreBenchReport {
    /// Launches per wall-clock second of the timed loop.
    pub fn launches_per_s(&self) -> f64 {
        self.launched as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Launches per CPU-second of the timed loop, if its CPU time is known.
    pub fn launches_per_cpu_s(&self) -> Option<f64> {
        self.cpu
            .map(|c| self.launched as f64 / c.as_secs_f64().max(1e-9))
    }

    /// Launches per second spent inside the core's calls.
    pub fn launches_per_core_s(&self) -> f64 {
        self.launched as f64 / self.core.as_secs_f64().max(1e-9)
    }

    /// Tasks launched per offer.
    pub fn tasks_per_offer(&self) -> f64 {
        self.launched as f64 / (self.offers as f64).max(1.0)
    }
}

/// A framework's connection id (odd).
fn fw_conn(f: usize) -> ConnId {
    (f as u64) * 2 + 1
}

/// An agent's connection id (even).
fn agent_conn(a: usize) -> ConnId {
    (a as u64) * 2 + 2
}

/// The driver's state: the core, the frameworks' call headers and the inputs in flight.
struct Driver {
    master: Master,
    now: u64,
    headers: Vec<Option<v1::CallHeader>>,
    framework_ids: Vec<String>,
    task_proto: Vec<v1::Resource>,
    /// A task's cpus and mem (milli).
    task_cpus: i64,
    task_mem: i64,
    /// Tasks still to launch.
    to_launch: u64,
    next_task: u64,
    next_uuid: u64,
    inputs: VecDeque<Input>,
    outputs: Vec<Output>,
    report: CoreBenchReport,
}

/// Runs the benchmark; errors name the setup step that failed.
pub fn run(p: &CoreBenchParams) -> Result<CoreBenchReport, SimError> {
    if p.agents == 0 || p.frameworks == 0 || p.tasks == 0 {
        return Err(SimError::Bench(format!(
            "agents ({}), frameworks ({}) and tasks ({}) must each be at least 1",
            p.agents, p.frameworks, p.tasks
        )));
    }
    let (ar, tr) = (&p.agent_resources, &p.task_resources);
    let fits = ar.scalar_milli("cpus") >= tr.scalar_milli("cpus")
        && ar.scalar_milli("mem") >= tr.scalar_milli("mem");
    if !fits || tr.scalar_milli("cpus") <= 0 {
        return Err(SimError::Bench(format!(
            "a task ({}) must ask for some cpus and fit on an agent ({})",
            p.task_resources, p.agent_resources
        )));
    }
    let mut d = Driver {
        master: Master::new(p.config.clone(), p.seed),
        now: 1,
        headers: vec![None; p.frameworks],
        framework_ids: vec![String::new(); p.frameworks],
        task_proto: p.task_resources.to_proto(),
        task_cpus: tr.scalar_milli("cpus"),
        task_mem: tr.scalar_milli("mem"),
        to_launch: p.tasks,
        next_task: 0,
        next_uuid: 0,
        inputs: VecDeque::new(),
        outputs: Vec::new(),
        report: CoreBenchReport {
            launched: 0,
            finished: 0,
            setup: Duration::ZERO,
            wall: Duration::ZERO,
            cpu: None,
            core: Duration::ZERO,
            rounds: 0,
            offers: 0,
            inputs: 0,
            outputs: 0,
            refused: 0,
        },
    };
    let setup = Instant::now();
    d.setup(p)?;
    d.report.setup = setup.elapsed();
    d.report.core = Duration::ZERO;
    d.report.inputs = 0;
    d.report.outputs = 0;
    let start = Instant::now();
    let cpu_start = thread_cpu();
    // A round that launches nothing while tasks remain means the loop is stuck (every offer
    // declined or filtered): stop after a generous number of them rather than spin.
    let mut idle_rounds = 0u32;
    while d.report.finished < p.tasks {
        let before = d.report.launched + d.report.finished;
        let t = Instant::now();
        d.master.tick(Timestamp(d.now));
        d.report.core += t.elapsed();
        d.report.rounds += 1;
        d.drain();
        d.flush();
        d.now += p.round_ms.max(1);
        if d.report.launched + d.report.finished == before {
            idle_rounds += 1;
            if idle_rounds > 10_000 {
                return Err(SimError::Bench(format!(
                    "no progress for {idle_rounds} rounds: {} of {} tasks finished",
                    d.report.finished, p.tasks
                )));
            }
        } else {
            idle_rounds = 0;
        }
    }
    d.report.wall = start.elapsed();
    d.report.cpu = thread_cpu()
        .zip(cpu_start)
        .map(|(end, begin)| end.saturating_sub(begin));
    Ok(d.report)
}

/// CPU time this thread has used, from `/proc/thread-self/schedstat` (its first field, in
/// nanoseconds); `None` where it cannot be read.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

impl Driver {
    /// Registers the agents and subscribes the frameworks (untimed).
    fn setup(&mut self, p: &CoreBenchParams) -> Result<(), SimError> {
        let resources = p.agent_resources.to_proto();
        for a in 0..p.agents {
            let info = v1::AgentInfo {
                hostname: format!("bench-{a}"),
                port: 5051,
                resources: resources.clone(),
                ..Default::default()
            };
            self.inputs.push_back(Input::Agent {
                conn: agent_conn(a),
                msg: v1::AgentMessage {
                    msg: Some(AgentOut::Register(v1::RegisterAgent {
                        info: Some(Box::new(info)),
                    })),
                },
            });
        }
        for f in 0..p.frameworks {
            let info = v1::FrameworkInfo {
                name: format!("bench-{f}"),
                roles: vec![format!("bench-{f}")],
                ..Default::default()
            };
            self.inputs.push_back(Input::Subscribe {
                conn: fw_conn(f),
                info: Box::new(info),
            });
        }
        self.flush();
        if self.report.refused > 0 || self.headers.iter().any(Option::is_none) {
            return Err(SimError::Bench(format!(
                "setup failed: {} inputs refused, {} of {} frameworks subscribed",
                self.report.refused,
                self.headers.iter().filter(|h| h.is_some()).count(),
                p.frameworks
            )));
        }
        Ok(())
    }

    /// Feeds the queued inputs, delivering the outputs each produces, until quiet.
    fn flush(&mut self) {
        while let Some(input) = self.inputs.pop_front() {
            self.report.inputs += 1;
            let t = Instant::now();
            let refused = self.master.handle(Timestamp(self.now), input).is_err();
            self.report.core += t.elapsed();
            if refused {
                self.report.refused += 1;
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        let t = Instant::now();
        self.master.take_outbox_into(&mut outputs);
        self.report.core += t.elapsed();
        self.report.outputs += outputs.len() as u64;
        for out in outputs.drain(..) {
            self.deliver(out);
        }
        self.outputs = outputs;
    }

    fn deliver(&mut self, out: Output) {
        match out {
            Output::ToFramework { conn, event } => {
                let f = ((conn - 1) / 2) as usize;
                match event.event {
                    Some(Event::Subscribed(s)) => {
                        if let Some(id) = self.framework_ids.get_mut(f) {
                            id.clone_from(&s.framework_id);
                        }
                        if let Some(h) = self.headers.get_mut(f) {
                            *h = Some(v1::CallHeader {
                                framework_id: s.framework_id,
                                stream_id: s.stream_id,
                            });
                        }
                    }
                    Some(Event::Offers(o)) => {
                        for offer in o.offers {
                            self.answer(f, offer);
                        }
                    }
                    Some(Event::Update(u)) => {
                        if let Some(status) = u.status {
                            self.acknowledge(f, status);
                        }
                    }
                    _ => {}
                }
            }
            Output::ToAgent { conn, msg } => {
                if let Some(AgentIn::RunTask(r)) = msg.msg
                    && let Some(task) = r.task
                {
                    self.run_task(conn, r.framework_id, task.task_id);
                }
            }
            Output::Persist { seq, .. } => self.inputs.push_back(Input::Persisted { seq }),
            Output::CloseFramework { .. } | Output::CloseAgent { .. } => {}
        }
    }

    /// Accepts `offer` with as many tasks as fit (declines it once every task is launched).
    fn answer(&mut self, f: usize, offer: v1::Offer) {
        self.report.offers += 1;
        let Some(header) = self.headers.get(f).cloned().flatten() else {
            return;
        };
        let (cpus, mem) = offered(&offer.resources);
        let by_mem = match self.task_mem {
            0 => u64::MAX,
            m => u64::try_from(mem / m).unwrap_or(0),
        };
        let fit = u64::try_from(cpus / self.task_cpus)
            .unwrap_or(0)
            .min(by_mem);
        let n = fit.min(self.to_launch);
        if n == 0 {
            self.inputs
                .push_back(Input::Call(Call::Decline(v1::DeclineRequest {
                    header: Some(header),
                    offer_ids: vec![offer.id],
                    filters: None,
                })));
            return;
        }
        let mut tasks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            self.next_task += 1;
            let id = format!("t{}", self.next_task);
            tasks.push(v1::TaskInfo {
                name: String::new(),
                task_id: id,
                resources: self.task_proto.clone(),
                command: Some(v1::CommandInfo {
                    value: "true".into(),
                    shell: true,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        self.to_launch -= n;
        self.report.launched += n;
        self.inputs
            .push_back(Input::Call(Call::Accept(v1::AcceptRequest {
                header: Some(header),
                offer_ids: vec![offer.id],
                operations: vec![v1::Operation {
                    op: Some(Op::Launch(v1::Launch { tasks })),
                }],
                filters: None,
            })));
    }

    /// The agent runs the task: RUNNING, then FINISHED, at once.
    fn run_task(&mut self, conn: ConnId, framework_id: String, task_id: String) {
        for state in [TaskState::TaskRunning, TaskState::TaskFinished] {
            self.next_uuid += 1;
            self.inputs.push_back(Input::Agent {
                conn,
                msg: v1::AgentMessage {
                    msg: Some(AgentOut::StatusUpdate(v1::StatusUpdate {
                        framework_id: framework_id.clone(),
                        latest_state: None,
                        status: Some(v1::TaskStatus {
                            task_id: task_id.clone(),
                            state: state as i32,
                            source: v1::StatusSource::SourceExecutor as i32,
                            uuid: self.next_uuid.to_le_bytes().to_vec(),
                            timestamp_ms: self.now,
                            ..Default::default()
                        }),
                    })),
                },
            });
        }
    }

    /// The framework acknowledges an update (and counts a FINISHED).
    fn acknowledge(&mut self, f: usize, status: v1::TaskStatus) {
        if status.state == TaskState::TaskFinished as i32 {
            self.report.finished += 1;
        }
        if status.uuid.is_empty() {
            return;
        }
        let Some(header) = self.headers.get(f).cloned().flatten() else {
            return;
        };
        self.inputs
            .push_back(Input::Call(Call::Acknowledge(v1::AcknowledgeRequest {
                header: Some(header),
                agent_id: status.agent_id,
                task_id: status.task_id,
                uuid: status.uuid,
            })));
    }
}

/// Cpus and mem in an offer (milli).
fn offered(resources: &[v1::Resource]) -> (i64, i64) {
    let r = Resources::from_proto(resources).unwrap_or_default();
    (r.scalar_milli("cpus"), r.scalar_milli("mem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CoreBenchParams {
        CoreBenchParams {
            agents: 20,
            frameworks: 3,
            tasks: 2_000,
            ..CoreBenchParams::default()
        }
    }

    #[test]
    fn every_task_runs_to_finished_and_nothing_is_refused() -> Result<(), SimError> {
        let r = run(&small())?;
        assert_eq!(r.finished, 2_000);
        assert_eq!(r.launched, 2_000);
        assert_eq!(r.refused, 0, "the core refused inputs: {r:?}");
        // 20 agents × 8 slots: at most 160 launches per round.
        assert!(r.rounds >= 2_000 / 160, "{r:?}");
        Ok(())
    }

    #[test]
    fn the_same_seed_gives_the_same_run() -> Result<(), SimError> {
        let (a, b) = (run(&small())?, run(&small())?);
        assert_eq!(
            (a.rounds, a.offers, a.inputs, a.outputs),
            (b.rounds, b.offers, b.inputs, b.outputs)
        );
        Ok(())
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = run(&CoreBenchParams {
            agents: 0,
            ..small()
        });
        assert!(matches!(e, Err(SimError::Bench(m)) if m.contains("agents (0)")));
        let e = run(&CoreBenchParams {
            task_resources: Resources::parse("cpus:64;mem:1").unwrap_or_default(),
            ..small()
        });
        assert!(matches!(e, Err(SimError::Bench(m)) if m.contains("fit on an agent")));
    }
}
