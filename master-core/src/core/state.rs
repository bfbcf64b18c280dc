//! The records the core keeps about agents, frameworks, tasks and offers.

use std::collections::BTreeSet;

use proffer_proto::Resources;
use proffer_proto::v1;

use super::{ConnId, Timestamp};

/// A registered agent.
#[derive(Debug, Clone)]
pub(crate) struct AgentState {
    pub info: v1::AgentInfo,
    pub total: Resources,
    /// The current session, if connected.
    pub conn: Option<ConnId>,
    /// Its record in `Master::liveness` (last heard from, pings, removal checks).
    pub live_slot: usize,
    /// Live tasks on it: (framework id, task id).
    pub tasks: BTreeSet<(String, String)>,
}

impl AgentState {
    /// `hostname:port`, used to tell agents apart.
    pub fn address(&self) -> String {
        format!("{}:{}", self.info.hostname, self.info.port)
    }
}

/// A task the master knows about.
#[derive(Debug, Clone)]
pub(crate) struct TaskRecord {
    /// The task's name (its id is the map key and the status's `task_id`).
    pub name: String,
    /// The kill grace period the framework asked for at launch (0 = the master's default).
    pub kill_grace_period_ms: u64,
    pub agent_id: String,
    pub resources: Resources,
    pub state: v1::TaskState,
    /// The task's state on its agent when later than `state` (an agent update's
    /// `latest_state`, while older updates of the task wait for acknowledgements): what
    /// operators see as its state, as in Mesos, whose `status_update_state` is `state`.
    pub latest_state: Option<v1::TaskState>,
    /// The latest status (from the agent or made by the master).
    pub status: v1::TaskStatus,
    /// True once resources were given back (the task reached a terminal state).
    pub resources_recovered: bool,
    /// When the task first ran (its first TASK_RUNNING, Unix ms; 0 = not yet).
    pub started_ms: u64,
    /// The user it runs as for authorization: its command's user, else its framework's.
    pub user: String,
    /// Its container image, if it names one (boxed: most tasks have none).
    pub container: Option<Box<v1::ContainerInfo>>,
}

impl TaskRecord {
    /// Takes the state and status of an update forwarded to the task's framework (the
    /// agent's, or one the master makes). As in Mesos, where each update sets the task's
    /// state from its own `latest_state`, the latest state goes with it: cleared here, set
    /// again by `Master::apply_latest_state` for an agent update that carries a later one.
    pub fn forward(&mut self, state: v1::TaskState, status: v1::TaskStatus) {
        self.state = state;
        self.status = status;
        self.latest_state = None;
    }
}

/// A subscribed (or recovering) framework.
#[derive(Debug, Clone)]
pub(crate) struct FrameworkState {
    pub info: v1::FrameworkInfo,
    pub role: String,
    /// The current event stream, if connected.
    pub conn: Option<ConnId>,
    pub stream_id: String,
    /// When it disconnected (failover timer runs from here).
    pub disconnected_at: Option<Timestamp>,
    pub tasks: super::IdMap<Box<TaskRecord>>,
    pub offers: super::IdSet,
    pub next_heartbeat: Timestamp,
}

impl FrameworkState {
    /// A framework known to the master but not connected (recovered from the registry, or
    /// adopted from an agent's report): its failover timeout runs from `now`.
    pub fn disconnected(info: v1::FrameworkInfo, role: String, now: Timestamp) -> Self {
        FrameworkState {
            info,
            role,
            conn: None,
            stream_id: String::new(),
            disconnected_at: Some(now),
            tasks: Default::default(),
            offers: Default::default(),
            next_heartbeat: now,
        }
    }

    /// Who registered it (`None`: no principal).
    pub fn principal(&self) -> Option<&str> {
        Some(self.info.principal.as_str()).filter(|p| !p.is_empty())
    }

    /// Failover timeout in milliseconds.
    pub fn failover_ms(&self) -> u64 {
        (self.info.failover_timeout.max(0.0) * 1000.0) as u64
    }
}

/// An outstanding offer.
#[derive(Debug, Clone)]
pub(crate) struct OfferState {
    pub framework_id: String,
    pub agent_id: String,
    pub resources: Resources,
    pub expires: Option<Timestamp>,
}

/// Who owns a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnOwner {
    Agent(String),
    Framework(String),
}
