//! The core's interface types: time, connection ids, inputs, outputs, config and errors.

use proffer_proto::ResourceError;
use proffer_proto::v1;

pub use crate::time::Timestamp;

/// Identifies one connection (a framework's event stream or an agent's session), assigned by
/// the shell. Outputs are addressed to connections, so the shell needs only a map from
/// `ConnId` to a sender.
pub type ConnId = u64;

/// A framework call made on an existing subscription (each request carries its `CallHeader`).
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// ACCEPT offers with operations.
    Accept(v1::AcceptRequest),
    /// DECLINE offers.
    Decline(v1::DeclineRequest),
    /// REVIVE offers.
    Revive(v1::ReviveRequest),
    /// SUPPRESS offers.
    Suppress(v1::SuppressRequest),
    /// UPDATE_FRAMEWORK: change the FrameworkInfo (offer limit, minimum offers, name, labels,
    /// failover timeout) without re-subscribing.
    UpdateFramework(Box<v1::UpdateFrameworkRequest>),
    /// KILL a task.
    Kill(v1::KillRequest),
    /// ACKNOWLEDGE a status update.
    Acknowledge(v1::AcknowledgeRequest),
    /// Acknowledge several status updates at once (checked whole, then applied in order).
    AcknowledgeBatch(v1::AcknowledgeBatchRequest),
    /// RECONCILE task states.
    Reconcile(v1::ReconcileRequest),
    /// MESSAGE to an executor.
    Message(v1::MessageRequest),
    /// TEARDOWN the framework.
    Teardown(v1::TeardownRequest),
    /// ACCEPT inverse offers (the framework will vacate the agents in time).
    AcceptInverseOffers(v1::InverseOffersRequest),
    /// DECLINE inverse offers.
    DeclineInverseOffers(v1::InverseOffersRequest),
}

/// Something that happened, fed to [`crate::core::Master::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A message from an agent on connection `conn`.
    Agent {
        /// The agent's session.
        conn: ConnId,
        /// What it said.
        msg: v1::AgentMessage,
    },
    /// An agent's session ended (stream closed or broken).
    AgentDisconnected {
        /// The session that ended.
        conn: ConnId,
    },
    /// A framework opened an event stream `conn` and subscribes.
    Subscribe {
        /// The new event stream.
        conn: ConnId,
        /// Who it is (with `id` set when re-subscribing). Boxed: rare, and large.
        info: Box<v1::FrameworkInfo>,
    },
    /// A framework's event stream ended.
    FrameworkDisconnected {
        /// The stream that ended.
        conn: ConnId,
    },
    /// A framework call.
    Call(Call),
    /// The registry durably holds persist batch `seq` (and every earlier one): outputs that
    /// waited for it are released.
    Persisted {
        /// The batch's sequence number, from [`Output::Persist`].
        seq: u64,
    },
}

/// Something the shell must do, taken from [`crate::core::Master::take_outbox`].
// Outputs are moved once from the core to the shell; boxing the large protocol messages would
// cost an allocation each for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send an event on a framework's stream.
    ToFramework {
        /// The framework's stream.
        conn: ConnId,
        /// The event.
        event: v1::Event,
    },
    /// End a framework's stream (after an ERROR event, on teardown or when replaced).
    CloseFramework {
        /// The stream to end.
        conn: ConnId,
    },
    /// Send a message on an agent's session.
    ToAgent {
        /// The agent's session.
        conn: ConnId,
        /// The message (by value: a RUN_TASK's TaskInfo is boxed inside it, so a message is
        /// no larger than a framework event and a ping costs no allocation).
        msg: v1::MasterMessage,
    },
    /// End an agent's session.
    CloseAgent {
        /// The session to end.
        conn: ConnId,
    },
    /// Write these registry ops in one transaction, then feed back `Input::Persisted { seq }`.
    /// Batches are numbered from 1 and must be written in order.
    Persist {
        /// The batch's sequence number.
        seq: u64,
        /// The changes.
        ops: Vec<crate::registry::RegistryOp>,
    },
}

/// Master settings; defaults follow Mesos (see `shared/REFERENCE.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    /// Batch allocation interval (Mesos: 1 s).
    pub allocation_interval_ms: u64,
    /// Resources that come back (a task ended, an offer was declined, an agent joined) are
    /// offered once this much time has passed since the first of them came back, together with
    /// whatever else came back meanwhile, instead of waiting for the next allocation interval:
    /// a short window gathers freed task slots into fewer, larger offers. The window only runs
    /// while offers flow: what comes back this long or more after the last allocation is
    /// offered at the first tick, as with 0. The shell wakes the core for it
    /// (see [`crate::core::Master::next_wakeup`]).
    pub offer_coalesce_ms: u64,
    /// Agent ping interval (Mesos: 15 s).
    pub agent_ping_interval_ms: u64,
    /// Missed pings before an agent is removed (Mesos: 5).
    pub agent_max_missed_pings: u32,
    /// HEARTBEAT event interval on framework streams (Mesos: 15 s).
    pub framework_heartbeat_interval_ms: u64,
    /// Rescind offers not answered within this time; `None` = never.
    pub offer_timeout_ms: Option<u64>,
    /// Default `refuse_seconds` for DECLINE and the unused part of ACCEPT (Mesos: 5 s).
    pub default_refuse_ms: u64,
    /// How many terminal tasks the master remembers for `/state`.
    pub max_completed_tasks: usize,
    /// Largest accepted framework `failover_timeout` (seconds).
    pub max_failover_timeout_secs: f64,
    /// The allocation policy (framework order per agent).
    pub policy: crate::allocator::Policy,
    /// After a recovery, how long agents have to re-register before they are removed
    /// (Mesos `--agent_reregister_timeout`: 10 min).
    pub agent_reregister_timeout_ms: u64,
    /// Unreachable agents are forgotten (marked gone) after this long (Mesos
    /// `--registry_max_agent_age`: 2 weeks).
    pub registry_max_agent_age_ms: u64,
    /// At most this many unreachable agents are kept; the oldest beyond are marked gone
    /// (Mesos `--registry_max_agent_count`: 102,400).
    pub registry_max_agent_count: usize,
}

/// The default [`MasterConfig::offer_coalesce_ms`].
pub const DEFAULT_OFFER_COALESCE_MS: u64 = 3;

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            allocation_interval_ms: 1_000,
            offer_coalesce_ms: DEFAULT_OFFER_COALESCE_MS,
            agent_ping_interval_ms: 15_000,
            agent_max_missed_pings: 5,
            framework_heartbeat_interval_ms: 15_000,
            offer_timeout_ms: None,
            default_refuse_ms: 5_000,
            max_completed_tasks: 1_000,
            max_failover_timeout_secs: 365.0 * 24.0 * 3600.0,
            policy: crate::allocator::Policy::Drf,
            agent_reregister_timeout_ms: 10 * 60 * 1000,
            registry_max_agent_age_ms: 14 * 24 * 3600 * 1000,
            registry_max_agent_count: 102_400,
        }
    }
}

/// How a [`MasterError`] maps onto a protocol status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was malformed or inconsistent.
    InvalidArgument,
    /// A named id is unknown.
    NotFound,
    /// The caller is not who it claims to be (no subscription, wrong stream).
    PermissionDenied,
    /// The request is valid but not in the current state.
    FailedPrecondition,
    /// Not supported yet.
    Unimplemented,
}

/// Errors from the master core; each names what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MasterError {
    /// The call names a framework that is not subscribed.
    #[error("framework `{framework_id}` is not subscribed")]
    NotSubscribed {
        /// Framework id from the call header.
        framework_id: String,
    },
    /// The call's stream id is not the framework's current stream.
    #[error("stream `{stream_id}` is not the current subscription of framework `{framework_id}`")]
    WrongStream {
        /// Framework id.
        framework_id: String,
        /// Stream id given.
        stream_id: String,
    },
    /// A field of a request is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field (a path such as `framework_info.roles[0]`).
        field: String,
        /// Why.
        reason: String,
    },
    /// Malformed resources.
    #[error("invalid resources in {field}: {source}")]
    Resources {
        /// Where the resources were.
        field: String,
        /// The parse/validation error.
        source: ResourceError,
    },
    /// An offer id is unknown (never made, already used, declined or rescinded).
    #[error("unknown offer `{offer_id}` (never made, already used, or rescinded)")]
    UnknownOffer {
        /// The offer id.
        offer_id: String,
    },
    /// A task asks for resources not in the accepted offers.
    #[error("task `{task_id}` needs {needed} but the accepted offers have only {available} left")]
    ResourcesNotInOffer {
        /// The task.
        task_id: String,
        /// What it asked for.
        needed: String,
        /// What was left in the offers.
        available: String,
    },
    /// A task is invalid.
    #[error("invalid task `{task_id}`: {reason}")]
    InvalidTask {
        /// The task id (may be empty when that is the problem).
        task_id: String,
        /// Why.
        reason: String,
    },
    /// The task id is already in use by a live task of the framework.
    #[error("task id `{task_id}` is already in use by framework `{framework_id}`")]
    DuplicateTaskId {
        /// The framework.
        framework_id: String,
        /// The task id.
        task_id: String,
    },
    /// Unknown task.
    #[error("unknown task `{task_id}` of framework `{framework_id}`")]
    UnknownTask {
        /// The framework.
        framework_id: String,
        /// The task id.
        task_id: String,
    },
    /// Unknown agent.
    #[error("unknown agent `{agent_id}`")]
    UnknownAgent {
        /// The agent id.
        agent_id: String,
    },
    /// An explanation was asked for a framework or role nobody knows.
    #[error("no {what} named `{name}`")]
    UnknownSubject {
        /// What was looked for: `framework or role`, or `role`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// An agent re-registers with an id that a different, live agent holds.
    #[error("agent id `{agent_id}` belongs to {owner}, which is connected; refusing {claimant}")]
    AgentIdConflict {
        /// The contested id.
        agent_id: String,
        /// Address of the current holder.
        owner: String,
        /// Address of the claimant.
        claimant: String,
    },
    /// A message arrived on a connection that has not registered or subscribed.
    #[error("connection {conn} has not registered")]
    NotRegistered {
        /// The connection.
        conn: ConnId,
    },
    /// The operation is not supported yet.
    #[error("{what} is not supported yet")]
    Unsupported {
        /// What.
        what: String,
    },
    /// The framework id was removed (failover timeout expired or torn down).
    #[error("framework `{framework_id}` was removed and cannot re-subscribe")]
    FrameworkRemoved {
        /// The framework id.
        framework_id: String,
    },
    /// One entry of a batch call is refused (and with it the whole call).
    #[error("{list}[{index}] (task `{task_id}`): {source}")]
    InBatch {
        /// The batch's list field, e.g. `acknowledgements`.
        list: &'static str,
        /// The entry's index in it.
        index: usize,
        /// The entry's task.
        task_id: String,
        /// Why the entry is refused.
        source: Box<MasterError>,
    },
    /// The ACLs refuse the request.
    #[error(transparent)]
    Forbidden(#[from] crate::authz::Denied),
    /// A framework or agent id is claimed by a principal other than the one that registered
    /// it (the owner is not named).
    #[error("{what} `{id}` belongs to another principal: {} may not {verb} it", claimant_text(.claimant.as_deref()))]
    NotOwner {
        /// `framework` or `agent`.
        what: &'static str,
        /// The id claimed.
        id: String,
        /// `re-subscribe as` or `re-register as`, …
        verb: &'static str,
        /// Who claimed it (`None`: unauthenticated).
        claimant: Option<String>,
    },
}

fn claimant_text(claimant: Option<&str>) -> String {
    claimant.map_or_else(
        || "an unauthenticated caller".into(),
        |p| format!("principal `{p}`"),
    )
}

impl MasterError {
    /// The protocol status class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MasterError::NotSubscribed { .. }
            | MasterError::WrongStream { .. }
            | MasterError::NotRegistered { .. }
            | MasterError::Forbidden(_)
            | MasterError::NotOwner { .. } => ErrorKind::PermissionDenied,
            MasterError::UnknownOffer { .. }
            | MasterError::UnknownTask { .. }
            | MasterError::UnknownAgent { .. }
            | MasterError::UnknownSubject { .. } => ErrorKind::NotFound,
            MasterError::AgentIdConflict { .. }
            | MasterError::DuplicateTaskId { .. }
            | MasterError::FrameworkRemoved { .. } => ErrorKind::FailedPrecondition,
            MasterError::Unsupported { .. } => ErrorKind::Unimplemented,
            MasterError::InBatch { source, .. } => source.kind(),
            MasterError::InvalidField { .. }
            | MasterError::Resources { .. }
            | MasterError::ResourcesNotInOffer { .. }
            | MasterError::InvalidTask { .. } => ErrorKind::InvalidArgument,
        }
    }
}
