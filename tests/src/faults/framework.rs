//! A simulated framework: subscribes (and re-subscribes with its id), launches its tasks as
//! offers arrive, acknowledges updates, reconciles after a reconnect, and relaunches tasks
//! that were lost.

use std::collections::{BTreeMap, BTreeSet};

use proffer_master_core::core::{Call, ConnId};
use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event, operation::Op};

/// How often pending tasks are reconciled.
const RECONCILE_MS: u64 = 5_000;

/// One simulated framework.
#[derive(Debug)]
pub struct SimFramework {
    name: String,
    want: usize,
    task_res: Resources,
    duration_ms: u64,
    /// The current stream.
    pub conn: Option<ConnId>,
    /// When to re-subscribe after a break.
    pub reconnect_at: u64,
    header: Option<v1::CallHeader>,
    next_task: usize,
    /// Launched and not known to be over.
    pending: BTreeSet<String>,
    /// The agent each task was launched on (reconciliation names it, as real frameworks do).
    placed: BTreeMap<String, String>,
    /// Terminal state of every task that ended.
    pub terminal: BTreeMap<String, TaskState>,
    /// Why each lost task was lost.
    pub lost_reasons: BTreeMap<String, String>,
    /// Tasks that were reported with two different terminal states (must stay empty).
    pub conflicts: Vec<String>,
    /// Declares PARTITION_AWARE: hears TASK_UNREACHABLE (and waits) instead of TASK_LOST,
    /// and TASK_UNKNOWN for a launch that never reached an agent (and relaunches).
    pub partition_aware: bool,
    /// Tasks the master answered TASK_UNKNOWN for (relaunched; they must never have run).
    pub unknown: BTreeSet<String>,
    suppressed: bool,
    /// When to reconcile pending tasks next (frameworks re-ask periodically: a master that
    /// just recovered says nothing about tasks on agents that may still come back).
    next_reconcile: u64,
}

impl SimFramework {
    /// A framework wanting `want` tasks of `res` running `duration_ms` each.
    pub fn new(name: &str, want: usize, res: &str, duration_ms: u64) -> SimFramework {
        SimFramework {
            name: name.to_string(),
            want,
            task_res: Resources::parse(res).unwrap_or_default(),
            duration_ms,
            conn: None,
            reconnect_at: 0,
            header: None,
            next_task: 0,
            pending: BTreeSet::new(),
            placed: BTreeMap::new(),
            terminal: BTreeMap::new(),
            conflicts: Vec::new(),
            lost_reasons: BTreeMap::new(),
            partition_aware: false,
            unknown: BTreeSet::new(),
            suppressed: false,
            next_reconcile: 0,
        }
    }

    /// Periodic reconciliation of the tasks it launched and has heard no end of.
    pub fn tick(&mut self, now: u64) -> Vec<Call> {
        if now < self.next_reconcile || self.pending.is_empty() || self.conn.is_none() {
            return Vec::new();
        }
        self.next_reconcile = now + RECONCILE_MS;
        let Some(h) = self.header.clone() else {
            return Vec::new();
        };
        vec![self.reconcile_pending(h)]
    }

    /// A RECONCILE of every pending task, naming the agent it was launched on.
    fn reconcile_pending(&self, h: v1::CallHeader) -> Call {
        let tasks = self
            .pending
            .iter()
            .map(|t| v1::ReconcileTask {
                task_id: t.clone(),
                agent_id: self.placed.get(t).cloned().unwrap_or_default(),
            })
            .collect();
        Call::Reconcile(v1::ReconcileRequest {
            header: Some(h),
            tasks,
        })
    }

    /// Tasks launched whose end it has not heard of.
    pub fn pending_tasks(&self) -> Vec<String> {
        self.pending.iter().cloned().collect()
    }

    /// Tasks that finished.
    pub fn finished(&self) -> usize {
        self.terminal
            .values()
            .filter(|s| **s == TaskState::TaskFinished)
            .count()
    }

    /// True once `want` tasks finished.
    pub fn done(&self) -> bool {
        self.finished() >= self.want
    }

    fn missing(&self) -> usize {
        self.want
            .saturating_sub(self.finished() + self.pending.len())
    }

    /// What to subscribe with (its id once it has one).
    pub fn subscribe_info(&self) -> v1::FrameworkInfo {
        v1::FrameworkInfo {
            id: self
                .header
                .as_ref()
                .map(|h| h.framework_id.clone())
                .unwrap_or_default(),
            name: self.name.clone(),
            failover_timeout: 3_600.0,
            capabilities: if self.partition_aware {
                vec!["PARTITION_AWARE".into()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    /// The stream broke; re-subscribe at `at`.
    pub fn disconnected(&mut self, at: u64) {
        self.conn = None;
        self.reconnect_at = at;
    }

    /// Handles an event; returns the calls it makes.
    pub fn handle(&mut self, event: v1::Event) -> Vec<Call> {
        let mut calls = Vec::new();
        match event.event {
            Some(Event::Subscribed(s)) => {
                let h = v1::CallHeader {
                    framework_id: s.framework_id,
                    stream_id: s.stream_id,
                };
                self.header = Some(h.clone());
                // Launches may have been lost with the old stream: ask about everything pending.
                calls.push(self.reconcile_pending(h.clone()));
                self.suppressed = false;
                calls.push(Call::Revive(v1::ReviveRequest {
                    header: Some(h),
                    roles: vec![],
                }));
            }
            Some(Event::Offers(o)) => {
                let Some(h) = self.header.clone() else {
                    return calls;
                };
                for offer in o.offers {
                    let mut left = Resources::from_proto(&offer.resources).unwrap_or_default();
                    let mut tasks = Vec::new();
                    while self.missing() > tasks.len() {
                        let Some(rest) = left.checked_sub(&self.task_res) else {
                            break;
                        };
                        left = rest;
                        let id = format!("{}-{}", self.name, self.next_task);
                        self.next_task += 1;
                        let mut t = v1::TaskInfo {
                            name: id.clone(),
                            task_id: id,
                            resources: self.task_res.to_proto(),
                            command: Some(v1::CommandInfo {
                                value: "sim".into(),
                                shell: true,
                                ..Default::default()
                            }),
                            ..Default::default()
                        };
                        t.labels
                            .insert("duration_ms".into(), self.duration_ms.to_string());
                        tasks.push(t);
                    }
                    let filters = Some(v1::Filters {
                        refuse_seconds: Some(1.0),
                    });
                    if tasks.is_empty() {
                        calls.push(Call::Decline(v1::DeclineRequest {
                            header: Some(h.clone()),
                            offer_ids: vec![offer.id],
                            filters,
                        }));
                    } else {
                        self.pending.extend(tasks.iter().map(|t| t.task_id.clone()));
                        for t in &tasks {
                            self.placed
                                .insert(t.task_id.clone(), offer.agent_id.clone());
                        }
                        calls.push(Call::Accept(v1::AcceptRequest {
                            header: Some(h.clone()),
                            offer_ids: vec![offer.id],
                            operations: vec![v1::Operation {
                                op: Some(Op::Launch(v1::Launch { tasks })),
                            }],
                            filters,
                        }));
                    }
                }
                if self.missing() == 0 && !self.suppressed {
                    self.suppressed = true;
                    calls.push(Call::Suppress(v1::SuppressRequest {
                        header: Some(h),
                        roles: vec![],
                    }));
                }
            }
            Some(Event::Update(u)) => {
                let Some(s) = u.status else { return calls };
                if let Some(h) = self.header.clone()
                    && !s.uuid.is_empty()
                {
                    calls.push(Call::Acknowledge(v1::AcknowledgeRequest {
                        header: Some(h),
                        agent_id: s.agent_id.clone(),
                        task_id: s.task_id.clone(),
                        uuid: s.uuid.clone(),
                    }));
                }
                let state = TaskState::try_from(s.state).unwrap_or(TaskState::Unspecified);
                if state == TaskState::TaskUnknown && self.pending.remove(&s.task_id) {
                    // Never reached an agent: launch it again (under a new id).
                    self.unknown.insert(s.task_id.clone());
                    if self.suppressed
                        && let Some(h) = self.header.clone()
                    {
                        self.suppressed = false;
                        calls.push(Call::Revive(v1::ReviveRequest {
                            header: Some(h),
                            roles: vec![],
                        }));
                    }
                }
                if state.is_terminal() {
                    self.pending.remove(&s.task_id);
                    if state == TaskState::TaskLost {
                        self.lost_reasons
                            .entry(s.task_id.clone())
                            .or_insert_with(|| s.reason.clone());
                    }
                    match self.terminal.get(&s.task_id) {
                        Some(prev) if *prev != state => self
                            .conflicts
                            .push(format!("{}: {prev:?} then {state:?}", s.task_id)),
                        Some(_) => {}
                        None => {
                            self.terminal.insert(s.task_id.clone(), state);
                        }
                    }
                    // Lost work is redone: ask for offers again.
                    if state != TaskState::TaskFinished
                        && self.suppressed
                        && let Some(h) = self.header.clone()
                    {
                        self.suppressed = false;
                        calls.push(Call::Revive(v1::ReviveRequest {
                            header: Some(h),
                            roles: vec![],
                        }));
                    }
                }
            }
            Some(Event::Error(_)) => self.header = None,
            _ => {}
        }
        calls
    }
}
