//! Offers and status updates for driving a `ServiceCore` directly (no server).

use proffer_proto::{Resources, v1};

/// An offer `id` from agent `agent` (host `host-AGENT`) to framework `fw` holding `resources`
/// (Mesos text form; must parse).
pub fn offer(id: &str, agent: &str, resources: &str) -> v1::Offer {
    v1::Offer {
        id: id.into(),
        framework_id: "fw".into(),
        agent_id: agent.into(),
        hostname: format!("host-{agent}"),
        resources: Resources::parse(resources).unwrap_or_default().to_proto(),
        ..Default::default()
    }
}

/// A status update of task `task_id` on `agent` in `state`, marked as synthetic.
pub fn status(task_id: &str, agent: &str, state: v1::TaskState) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task_id.into(),
        agent_id: agent.into(),
        state: state as i32,
        message: "synthetic".into(),
        ..Default::default()
    }
}
