//! A simulated agent speaking the real agent protocol: registration and re-registration with
//! its tasks, pings, tasks that run for a while, status updates retried until acknowledged.

use std::collections::{BTreeMap, VecDeque};

use proffer_master_core::core::ConnId;
use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, agent_message::Msg as Out, master_message::Msg as In};

/// Status updates are re-sent this often until acknowledged.
const RETRY_MS: u64 = 1_000;

type Key = (String, String);

#[derive(Debug, Clone)]
struct Run {
    info: v1::TaskInfo,
    state: TaskState,
    ends_at: u64,
}

/// One simulated agent.
#[derive(Debug)]
pub struct SimAgent {
    host: String,
    resources: Resources,
    /// The current session.
    pub conn: Option<ConnId>,
    /// The id the master gave it ("" until registered, and after a shutdown).
    pub agent_id: String,
    /// When to reconnect after a break.
    pub reconnect_at: u64,
    /// Set to keep the agent away (it never reconnects).
    pub gone: bool,
    registered: bool,
    tasks: BTreeMap<Key, Run>,
    updates: BTreeMap<Key, VecDeque<v1::StatusUpdate>>,
    retry_at: BTreeMap<Key, u64>,
    /// How many times each task was started here (must stay 1).
    pub starts: BTreeMap<Key, u32>,
    uuid: u64,
}

impl SimAgent {
    /// A new agent on `host` with `resources` (Mesos text form).
    pub fn new(host: &str, resources: &str) -> SimAgent {
        SimAgent {
            host: host.to_string(),
            resources: Resources::parse(resources).unwrap_or_default(),
            conn: None,
            agent_id: String::new(),
            reconnect_at: 0,
            gone: false,
            registered: false,
            tasks: BTreeMap::new(),
            updates: BTreeMap::new(),
            retry_at: BTreeMap::new(),
            starts: BTreeMap::new(),
            uuid: 0,
        }
    }

    /// Opens a session: Register, or Reregister with its tasks (live, or ended but unacknowledged).
    pub fn connect(&mut self, conn: ConnId) -> v1::AgentMessage {
        self.conn = Some(conn);
        self.registered = false;
        let info = v1::AgentInfo {
            id: self.agent_id.clone(),
            hostname: self.host.clone(),
            port: 5051,
            resources: self.resources.to_proto(),
            ..Default::default()
        };
        let msg = if self.agent_id.is_empty() {
            Out::Register(v1::RegisterAgent {
                info: Some(Box::new(info)),
            })
        } else {
            let tasks = self
                .tasks
                .iter()
                .map(|((fw, _), r)| v1::RunningTask {
                    framework_id: fw.clone(),
                    task: Some(r.info.clone()),
                    state: r.state as i32,
                })
                .collect();
            Out::Reregister(v1::ReregisterAgent {
                info: Some(Box::new(info)),
                tasks,
            })
        };
        v1::AgentMessage { msg: Some(msg) }
    }

    /// The session broke; reconnect at `at` (unless gone).
    pub fn disconnected(&mut self, at: u64) {
        self.conn = None;
        self.registered = false;
        self.reconnect_at = if self.gone { u64::MAX } else { at };
    }

    /// The updates waiting for an acknowledgement: (task, state, retry due at).
    pub fn unacked(&self) -> Vec<(String, i32, u64)> {
        self.updates
            .iter()
            .flat_map(|(k, q)| {
                q.iter().map(move |u| {
                    let state = u.status.as_ref().map_or(0, |s| s.state);
                    (
                        k.1.clone(),
                        state,
                        self.retry_at.get(k).copied().unwrap_or(0),
                    )
                })
            })
            .collect()
    }

    /// True when nothing waits for an acknowledgement.
    pub fn quiet(&self) -> bool {
        self.updates.values().all(VecDeque::is_empty)
    }

    fn update(&mut self, key: &Key, state: TaskState, reason: &str) {
        self.uuid += 1;
        let status = v1::TaskStatus {
            task_id: key.1.clone(),
            state: state as i32,
            reason: reason.to_string(),
            source: v1::StatusSource::SourceAgent as i32,
            agent_id: self.agent_id.clone(),
            uuid: self.uuid.to_be_bytes().to_vec(),
            ..Default::default()
        };
        let q = self.updates.entry(key.clone()).or_default();
        q.push_back(v1::StatusUpdate {
            framework_id: key.0.clone(),
            latest_state: None,
            status: Some(status),
        });
        if q.len() == 1 {
            self.retry_at.insert(key.clone(), 0);
        }
    }

    /// Timers: tasks that end, and updates due for (re)sending.
    pub fn tick(&mut self, now: u64) -> Vec<v1::AgentMessage> {
        let ended: Vec<Key> = self
            .tasks
            .iter()
            .filter(|(_, r)| r.state == TaskState::TaskRunning && r.ends_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            if let Some(r) = self.tasks.get_mut(&key) {
                r.state = TaskState::TaskFinished;
            }
            self.update(&key, TaskState::TaskFinished, "REASON_COMMAND_EXITED");
        }
        if !self.registered {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (key, at) in self.retry_at.iter_mut() {
            if *at <= now
                && let Some(head) = self.updates.get(key).and_then(VecDeque::front)
            {
                *at = now + RETRY_MS;
                // The task's state now, as the real agent stamps it (`latest_state`).
                let mut head = head.clone();
                head.latest_state = self.tasks.get(key).map(|r| r.state as i32);
                out.push(v1::AgentMessage {
                    msg: Some(Out::StatusUpdate(head)),
                });
            }
        }
        out
    }

    fn start(&mut self, now: u64, fw: &str, task: v1::TaskInfo) {
        let key = (fw.to_string(), task.task_id.clone());
        if self.tasks.contains_key(&key) {
            return;
        }
        *self.starts.entry(key.clone()).or_default() += 1;
        let duration = task
            .labels
            .get("duration_ms")
            .and_then(|d| d.parse().ok())
            .unwrap_or(1_000);
        self.tasks.insert(
            key.clone(),
            Run {
                info: task,
                state: TaskState::TaskRunning,
                ends_at: now + duration,
            },
        );
        self.update(&key, TaskState::TaskStarting, "");
        self.update(&key, TaskState::TaskRunning, "");
    }

    fn kill(&mut self, key: &Key) {
        match self.tasks.get_mut(key) {
            Some(r) if !r.state.is_terminal() => {
                r.state = TaskState::TaskKilled;
                self.update(key, TaskState::TaskKilled, "REASON_TASK_KILLED");
            }
            Some(_) => {}
            None => self.update(key, TaskState::TaskLost, "REASON_TASK_UNKNOWN"),
        }
    }

    /// Handles a message from the master; returns immediate replies.
    pub fn handle(&mut self, now: u64, msg: v1::MasterMessage) -> Vec<v1::AgentMessage> {
        let mut out = Vec::new();
        match msg.msg {
            Some(In::Registered(r)) => {
                self.agent_id = r.agent_id;
                self.registered = true;
                for at in self.retry_at.values_mut() {
                    *at = 0; // resend every head now
                }
            }
            Some(In::RunTask(r)) => {
                if let Some(t) = r.task {
                    self.start(now, &r.framework_id, *t);
                }
            }
            Some(In::RunTaskGroup(g)) => {
                for t in g.tasks {
                    self.start(now, &g.framework_id, t);
                }
            }
            Some(In::KillTask(k)) => self.kill(&(k.framework_id, k.task_id)),
            Some(In::Ack(a)) => {
                let key = (a.framework_id, a.task_id);
                let matches = self
                    .updates
                    .get(&key)
                    .and_then(VecDeque::front)
                    .and_then(|u| u.status.as_ref())
                    .is_some_and(|s| s.uuid == a.uuid);
                if matches {
                    let q = self.updates.entry(key.clone()).or_default();
                    q.pop_front();
                    if q.is_empty() {
                        self.updates.remove(&key);
                        self.retry_at.remove(&key);
                        if self.tasks.get(&key).is_some_and(|r| r.state.is_terminal()) {
                            self.tasks.remove(&key);
                        }
                    } else {
                        self.retry_at.insert(key, 0);
                    }
                }
            }
            Some(In::Ping(p)) => out.push(v1::AgentMessage {
                msg: Some(Out::Pong(v1::Pong { seq: p.seq })),
            }),
            Some(In::Shutdown(_)) => {
                // Removed by the master: kill everything, forget the id, register afresh.
                self.tasks.clear();
                self.updates.clear();
                self.retry_at.clear();
                self.agent_id.clear();
                self.conn = None;
                self.registered = false;
                self.reconnect_at = now + 100;
            }
            Some(In::ShutdownFramework(s)) => {
                let keys: Vec<Key> = self
                    .tasks
                    .keys()
                    .filter(|(fw, _)| *fw == s.framework_id)
                    .cloned()
                    .collect();
                for k in keys {
                    self.kill(&k);
                }
            }
            Some(In::Drain(_)) => {
                let keys: Vec<Key> = self.tasks.keys().cloned().collect();
                for k in keys {
                    self.kill(&k);
                }
            }
            // The simulated agent keeps no volume directories, no drain flag (the master sends
            // it no tasks while draining) and no resource checkpoint.
            Some(In::DestroyVolumes(_))
            | Some(In::Reactivate(_))
            | Some(In::CheckpointResources(_))
            | Some(In::Error(_))
            | None => {}
        }
        out
    }
}
