//! The operator event stream (Mesos's `SUBSCRIBE` on `/api/v1`) as a Proffer-side API: the
//! changes between consecutive published snapshots, as [`OperatorEvent`]s.
//!
//! A task ([`run`]) follows the published snapshots and, while anyone subscribes, diffs each
//! against the previous one ([`diff`], pure) and broadcasts a [`Change`] (the new snapshot and
//! its events) through [`Snapshots::subscribe_events`]. The core task does none of this work:
//! it only builds the snapshots (at most one per `min_interval_ms`), however many subscribers
//! there are.
//!
//! What counts as what (Mesos's event types):
//! - `TaskAdded`: a task id seen for the first time (live or completed);
//! - `TaskUpdated`: a known task's state changed (with its new summary);
//! - `AgentAdded` / `AgentRemoved`: an agent id appears in / disappears from the agents;
//! - `FrameworkAdded` / `FrameworkRemoved`: likewise for frameworks;
//! - `FrameworkUpdated`: a framework's name, roles, connection, suppression or failover
//!   timeout changed (not its allocation, which moves with every offer).

use std::collections::HashMap;
use std::sync::Arc;

use proffer_proto::v1;
use tokio_util::sync::CancellationToken;

use super::snapshots::{Published, Snapshots};

/// One operator event (Mesos's `mesos.v1.master.Event` types).
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorEvent {
    /// A task first seen.
    TaskAdded(v1::TaskSummary),
    /// A task's state changed.
    TaskUpdated(v1::TaskSummary),
    /// An agent joined.
    AgentAdded(v1::AgentSummary),
    /// An agent left (its last summary).
    AgentRemoved(v1::AgentSummary),
    /// A framework subscribed for the first time.
    FrameworkAdded(v1::FrameworkSummary),
    /// A framework changed (re-subscribed, disconnected, suppressed, renamed…).
    FrameworkUpdated(v1::FrameworkSummary),
    /// A framework was removed (torn down, or its failover timeout ran out).
    FrameworkRemoved(v1::FrameworkSummary),
}

impl OperatorEvent {
    /// Mesos's name for the event type (`TASK_ADDED`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            OperatorEvent::TaskAdded(_) => "TASK_ADDED",
            OperatorEvent::TaskUpdated(_) => "TASK_UPDATED",
            OperatorEvent::AgentAdded(_) => "AGENT_ADDED",
            OperatorEvent::AgentRemoved(_) => "AGENT_REMOVED",
            OperatorEvent::FrameworkAdded(_) => "FRAMEWORK_ADDED",
            OperatorEvent::FrameworkUpdated(_) => "FRAMEWORK_UPDATED",
            OperatorEvent::FrameworkRemoved(_) => "FRAMEWORK_REMOVED",
        }
    }
}

/// The changes from one published snapshot to the next.
#[derive(Debug, Clone)]
pub struct Change {
    /// The snapshot after the change.
    pub snapshot: Arc<Published>,
    /// What changed, in order: agents and frameworks added, tasks, then removals.
    pub events: Vec<OperatorEvent>,
}

/// The events that turn `old` into `new`.
pub fn diff(old: &v1::StateSnapshot, new: &v1::StateSnapshot) -> Vec<OperatorEvent> {
    let mut events = Vec::new();
    let old_agents: HashMap<&str, &v1::AgentSummary> =
        old.agents.iter().map(|a| (a.id.as_str(), a)).collect();
    let new_agents: HashMap<&str, &v1::AgentSummary> =
        new.agents.iter().map(|a| (a.id.as_str(), a)).collect();
    for a in &new.agents {
        if !old_agents.contains_key(a.id.as_str()) {
            events.push(OperatorEvent::AgentAdded(a.clone()));
        }
    }
    let old_fws: HashMap<&str, &v1::FrameworkSummary> =
        old.frameworks.iter().map(|f| (f.id.as_str(), f)).collect();
    let new_fws: HashMap<&str, &v1::FrameworkSummary> =
        new.frameworks.iter().map(|f| (f.id.as_str(), f)).collect();
    for f in &new.frameworks {
        match old_fws.get(f.id.as_str()) {
            None => events.push(OperatorEvent::FrameworkAdded(f.clone())),
            Some(o) if framework_changed(o, f) => {
                events.push(OperatorEvent::FrameworkUpdated(f.clone()));
            }
            Some(_) => {}
        }
    }
    // A task changes with its latest state or with the update forwarded (as Mesos sends a
    // TASK_UPDATED per update forwarded, with the task's latest state).
    let old_tasks: HashMap<(&str, &str), (&str, &str)> = old
        .tasks
        .iter()
        .chain(&old.completed_tasks)
        .map(|t| {
            let states = (t.state.as_str(), t.status_update_state.as_str());
            ((t.framework_id.as_str(), t.id.as_str()), states)
        })
        .collect();
    for t in new.tasks.iter().chain(&new.completed_tasks) {
        match old_tasks.get(&(t.framework_id.as_str(), t.id.as_str())) {
            None => events.extend(first_seen(t)),
            Some(&(state, forwarded)) if state != t.state || forwarded != t.status_update_state => {
                events.push(OperatorEvent::TaskUpdated(t.clone()));
            }
            Some(_) => {}
        }
    }
    for f in &old.frameworks {
        if !new_fws.contains_key(f.id.as_str()) {
            events.push(OperatorEvent::FrameworkRemoved(f.clone()));
        }
    }
    for a in &old.agents {
        if !new_agents.contains_key(a.id.as_str()) {
            events.push(OperatorEvent::AgentRemoved(a.clone()));
        }
    }
    events
}

/// The events of a task first seen: `TaskAdded`; and when it is already past staging (it
/// started, or even ended, between two snapshots), `TaskAdded` as staged then `TaskUpdated`
/// with its state, so a subscriber sees every task's end as a `TASK_UPDATED`, as in Mesos.
fn first_seen(t: &v1::TaskSummary) -> Vec<OperatorEvent> {
    const STAGING: &str = "TASK_STAGING";
    if t.state == STAGING {
        return vec![OperatorEvent::TaskAdded(t.clone())];
    }
    let staged = v1::TaskSummary {
        state: STAGING.into(),
        status_update_state: STAGING.into(),
        ..t.clone()
    };
    vec![
        OperatorEvent::TaskAdded(staged),
        OperatorEvent::TaskUpdated(t.clone()),
    ]
}

fn framework_changed(old: &v1::FrameworkSummary, new: &v1::FrameworkSummary) -> bool {
    old.name != new.name
        || old.roles != new.roles
        || old.connected != new.connected
        || old.suppressed != new.suppressed
        || old.failover_timeout != new.failover_timeout
}

/// Follows the published snapshots until `cancel` fires, broadcasting each [`Change`] while
/// anyone subscribes (see the module doc).
pub async fn run(snapshots: Snapshots, cancel: CancellationToken) {
    let mut rx = snapshots.watch();
    let mut prev = rx.borrow_and_update().clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let cur = rx.borrow_and_update().clone();
                if snapshots.has_subscribers() {
                    let events = diff(&prev.state, &cur.state);
                    snapshots.send_change(Change { snapshot: cur.clone(), events });
                }
                prev = cur;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, state: &str) -> v1::TaskSummary {
        v1::TaskSummary {
            id: id.into(),
            framework_id: "f1".into(),
            state: state.into(),
            status_update_state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_update_forwarded_is_a_task_updated_with_the_latest_state() {
        // A short task: RUNNING forwarded while the agent already says FINISHED, then FINISHED.
        let snap = |state: &str, forwarded: &str| v1::StateSnapshot {
            tasks: vec![v1::TaskSummary {
                status_update_state: forwarded.into(),
                ..task("t1", state)
            }],
            ..Default::default()
        };
        let starting = snap("TASK_STARTING", "TASK_STARTING");
        let early = snap("TASK_FINISHED", "TASK_RUNNING");
        let ended = snap("TASK_FINISHED", "TASK_FINISHED");
        assert_eq!(
            diff(&starting, &early),
            [OperatorEvent::TaskUpdated(early.tasks[0].clone())]
        );
        assert_eq!(
            diff(&early, &ended),
            [OperatorEvent::TaskUpdated(ended.tasks[0].clone())]
        );
        // In Mesos's form: the latest state, and the status forwarded.
        let m = super::super::to_mesos::task(&early.tasks[0]);
        use proffer_proto::mesos::v1::TaskState as S;
        assert_eq!(m.state, S::TaskFinished as i32);
        assert_eq!(m.status_update_state, Some(S::TaskRunning as i32));
        assert_eq!(m.statuses[0].state, S::TaskRunning as i32);
        let ran = v1::TaskSummary {
            started_ms: 5,
            ..early.tasks[0].clone()
        };
        let json = super::super::mesos_json::task_json(&ran);
        assert_eq!(json["state"], "TASK_FINISHED");
        let statuses = json["statuses"].as_array().expect("statuses");
        assert_eq!(statuses.len(), 1, "no end forwarded yet: {statuses:?}");
        assert_eq!(statuses[0]["state"], "TASK_RUNNING");
    }

    #[test]
    fn diff_names_every_kind_of_change() {
        let old = v1::StateSnapshot {
            agents: vec![v1::AgentSummary {
                id: "a1".into(),
                ..Default::default()
            }],
            frameworks: vec![
                v1::FrameworkSummary {
                    id: "f1".into(),
                    connected: true,
                    ..Default::default()
                },
                v1::FrameworkSummary {
                    id: "f2".into(),
                    ..Default::default()
                },
            ],
            tasks: vec![task("t1", "TASK_STAGING"), task("t2", "TASK_RUNNING")],
            ..Default::default()
        };
        let new = v1::StateSnapshot {
            agents: vec![v1::AgentSummary {
                id: "a2".into(),
                ..Default::default()
            }],
            frameworks: vec![v1::FrameworkSummary {
                id: "f1".into(),
                connected: false,
                allocated: "cpus:1".into(),
                ..Default::default()
            }],
            tasks: vec![task("t1", "TASK_RUNNING"), task("t3", "TASK_STAGING")],
            completed_tasks: vec![task("t2", "TASK_RUNNING")],
            ..Default::default()
        };
        let names: Vec<&str> = diff(&old, &new).iter().map(|e| e.type_name()).collect();
        assert_eq!(
            names,
            [
                "AGENT_ADDED",
                "FRAMEWORK_UPDATED",
                "TASK_UPDATED",
                "TASK_ADDED",
                "FRAMEWORK_REMOVED",
                "AGENT_REMOVED"
            ]
        );
        assert!(diff(&new, &new).is_empty(), "no change, no event");
    }

    #[test]
    fn a_task_that_ended_between_snapshots_is_added_then_updated() {
        let old = v1::StateSnapshot::default();
        let new = v1::StateSnapshot {
            completed_tasks: vec![task("t1", "TASK_FINISHED")],
            ..Default::default()
        };
        let events = diff(&old, &new);
        assert_eq!(
            events,
            [
                OperatorEvent::TaskAdded(task("t1", "TASK_STAGING")),
                OperatorEvent::TaskUpdated(task("t1", "TASK_FINISHED")),
            ]
        );
    }
}
