//! Simulated agents: they register with the master, run tasks for their duration and report
//! STARTING, RUNNING and FINISHED (with uuids, acknowledged through the master), answer pings,
//! and fail and come back when the scenario has churn.

use proffer_master_core::core::Input;
use proffer_proto::v1::{self, TaskState, agent_message::Msg as Out, master_message::Msg as In};

use super::queue::Ev;
use super::{Sim, agent_conn};
use crate::dist::{exponential, secs_to_ms};

/// One simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    /// Index of its `[[agents]]` group.
    pub group: u32,
    /// What it registers with.
    pub(crate) info: v1::AgentInfo,
    pub(crate) cpus_milli: i64,
    pub(crate) mem_milli: i64,
    /// The id the master gave it (empty until registered).
    pub id: String,
    /// True while its process is up.
    pub up: bool,
    pub(crate) generation: u32,
    pub(crate) churn: Option<(f64, f64)>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Tasks it has run to completion.
    pub finished: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    framework: u32,
    task_id: String,
    generation: u32,
    live: bool,
}

impl SimAgent {
    pub(crate) fn new(
        group: u32,
        info: v1::AgentInfo,
        cpus_milli: i64,
        mem_milli: i64,
        churn: Option<(f64, f64)>,
    ) -> Self {
        SimAgent {
            group,
            info,
            cpus_milli,
            mem_milli,
            id: String::new(),
            up: false,
            generation: 0,
            churn,
            slots: Vec::new(),
            free: Vec::new(),
            finished: 0,
        }
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.live).count()
    }

    fn take_slot(&mut self, framework: u32, task_id: String) -> (u32, u32) {
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.framework = framework;
            s.task_id = task_id;
            s.live = true;
            (i, s.generation)
        } else {
            self.slots.push(Slot {
                framework,
                task_id,
                generation: 0,
                live: true,
            });
            ((self.slots.len() - 1) as u32, 0)
        }
    }

    fn free_slot(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize)
            && s.live
        {
            s.live = false;
            s.generation = s.generation.wrapping_add(1);
            self.free.push(i);
        }
    }

    /// Drops every task (the process died or was told to shut down).
    fn drop_all(&mut self) {
        for i in 0..self.slots.len() as u32 {
            self.free_slot(i);
        }
    }

    /// The master closed this session.
    pub(crate) fn session_closed(&mut self) {
        self.id.clear();
    }
}

impl Sim {
    fn agent_say(&mut self, a: u32, msg: Out) {
        let ag = &self.agents[a as usize];
        let conn = agent_conn(a, ag.generation);
        self.send(Input::Agent {
            conn,
            msg: v1::AgentMessage { msg: Some(msg) },
        });
    }

    /// The agent's process starts: a new session, registration (or re-registration with no
    /// tasks if the master may still know it: its tasks are then reported lost at once).
    pub(crate) fn agent_up(&mut self, a: u32) {
        let ag = &mut self.agents[a as usize];
        if ag.up {
            return;
        }
        ag.up = true;
        ag.generation = ag.generation.wrapping_add(1);
        self.cluster_cpus += ag.cpus_milli;
        self.cluster_mem += ag.mem_milli;
        let churn = ag.churn;
        let msg = if ag.id.is_empty() {
            Out::Register(v1::RegisterAgent {
                info: Some(Box::new(ag.info.clone())),
            })
        } else {
            let mut info = ag.info.clone();
            info.id = ag.id.clone();
            Out::Reregister(v1::ReregisterAgent {
                info: Some(Box::new(info)),
                tasks: Vec::new(),
            })
        };
        self.agent_say(a, msg);
        if let Some((up_s, _)) = churn {
            let t = self
                .now
                .saturating_add(secs_to_ms(exponential(&mut self.rng, up_s)).max(1));
            self.schedule(t, Ev::AgentDown(a));
        }
    }

    /// The agent's process dies: its session breaks and its tasks die with it.
    pub(crate) fn agent_down(&mut self, a: u32) {
        let ag = &mut self.agents[a as usize];
        if !ag.up {
            return;
        }
        let conn = agent_conn(a, ag.generation);
        ag.up = false;
        ag.drop_all();
        self.cluster_cpus -= ag.cpus_milli;
        self.cluster_mem -= ag.mem_milli;
        let churn = ag.churn;
        self.send(Input::AgentDisconnected { conn });
        if let Some((_, down_s)) = churn {
            let t = self
                .now
                .saturating_add(secs_to_ms(exponential(&mut self.rng, down_s)).max(1));
            self.schedule(t, Ev::AgentUp(a));
        }
    }

    pub(crate) fn on_agent_msg(&mut self, a: u32, msg: In) {
        match msg {
            In::Registered(r) => self.agents[a as usize].id = r.agent_id,
            In::RunTask(r) => {
                if let Some(task) = r.task {
                    self.run_task(a, &r.framework_id, task);
                }
            }
            In::KillTask(k) => self.kill_task(a, &k.framework_id, &k.task_id),
            In::Ping(p) => self.agent_say(a, Out::Pong(v1::Pong { seq: p.seq })),
            In::Ack(_) => {}
            In::Shutdown(_) => {
                // Removed by the master: kill everything and register afresh.
                let ag = &mut self.agents[a as usize];
                ag.drop_all();
                ag.id.clear();
                let info = ag.info.clone();
                self.agent_say(
                    a,
                    Out::Register(v1::RegisterAgent {
                        info: Some(Box::new(info)),
                    }),
                );
            }
            In::ShutdownFramework(s) => {
                let Some(&f) = self.fw_by_id.get(&s.framework_id) else {
                    return;
                };
                let ag = &mut self.agents[a as usize];
                let doomed: Vec<u32> = ag
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.live && s.framework == f)
                    .map(|(i, _)| i as u32)
                    .collect();
                for i in doomed {
                    ag.free_slot(i);
                }
            }
            // Errors, task groups (never launched here) and messages added later.
            _ => {}
        }
    }

    fn status(&mut self, a: u32, framework_id: String, task_id: String, state: TaskState) {
        let uuid = self.next_uuid();
        let now = self.now;
        self.agent_say(
            a,
            Out::StatusUpdate(v1::StatusUpdate {
                framework_id,
                latest_state: None,
                status: Some(v1::TaskStatus {
                    task_id,
                    state: state as i32,
                    source: v1::StatusSource::SourceAgent as i32,
                    uuid,
                    timestamp_ms: now,
                    ..Default::default()
                }),
            }),
        );
    }

    fn run_task(&mut self, a: u32, framework_id: &str, task: Box<v1::TaskInfo>) {
        let Some(&f) = self.fw_by_id.get(framework_id) else {
            return;
        };
        let duration = task
            .task_id
            .parse::<u64>()
            .ok()
            .and_then(|tid| self.frameworks[f as usize].launched.get(&tid))
            .map(|p| p.dur_ms)
            .unwrap_or(u64::MAX);
        let (slot, generation) = self.agents[a as usize].take_slot(f, task.task_id.clone());
        self.status(
            a,
            framework_id.to_string(),
            task.task_id.clone(),
            TaskState::TaskStarting,
        );
        self.status(
            a,
            framework_id.to_string(),
            task.task_id,
            TaskState::TaskRunning,
        );
        if duration != u64::MAX {
            self.schedule(
                self.now.saturating_add(duration),
                Ev::TaskDone {
                    agent: a,
                    slot,
                    generation,
                },
            );
        }
    }

    pub(crate) fn task_done(&mut self, a: u32, slot: u32, generation: u32) {
        let ag = &mut self.agents[a as usize];
        if !ag.up {
            return;
        }
        let Some(s) = ag.slots.get(slot as usize) else {
            return;
        };
        if !s.live || s.generation != generation {
            return;
        }
        let (f, task_id) = (s.framework, s.task_id.clone());
        ag.free_slot(slot);
        ag.finished += 1;
        let fw = self.frameworks[f as usize].id.clone();
        self.status(a, fw, task_id, TaskState::TaskFinished);
    }

    fn kill_task(&mut self, a: u32, framework_id: &str, task_id: &str) {
        let ag = &mut self.agents[a as usize];
        let Some(i) = ag.slots.iter().position(|s| s.live && s.task_id == task_id) else {
            return;
        };
        ag.free_slot(i as u32);
        self.status(
            a,
            framework_id.to_string(),
            task_id.to_string(),
            TaskState::TaskKilled,
        );
    }
}
