//! Partition awareness (Mesos 1.x): an agent that stops answering is marked unreachable (and
//! persisted), not forgotten. Frameworks with the `PARTITION_AWARE` capability are told
//! TASK_UNREACHABLE and see their tasks running again when the agent returns; the others are
//! told TASK_LOST, and their tasks are killed when the agent returns. Operators can mark an
//! agent gone for good. Unreachable agents are forgotten (marked gone) after the registry's
//! maximum age, or when there are too many of them, oldest first.

use std::collections::BTreeSet;

use proffer_proto::{Resources, v1};
use prost::Message;

use super::tasks::master_status;
use super::{Master, MasterError, Output, Timestamp};
use crate::registry::Table;
use v1::{TaskState, master_message::Msg};

/// The capability that makes a framework partition-aware.
pub const PARTITION_AWARE: &str = "PARTITION_AWARE";

/// An agent that stopped answering and may come back.
#[derive(Debug, Clone)]
pub(crate) struct UnreachableAgent {
    /// Since when.
    pub since: Timestamp,
    /// Its registry record (with `unreachable_since_ms` set).
    pub record: v1::RegistryAgent,
    /// Its total (with dynamic reservations and volumes).
    pub total: Resources,
}

impl Master {
    /// True if framework `fw` declared the `PARTITION_AWARE` capability.
    pub(crate) fn is_partition_aware(&self, fw: &str) -> bool {
        self.frameworks
            .get(fw)
            .is_some_and(|f| f.info.capabilities.iter().any(|c| c == PARTITION_AWARE))
    }

    /// The agent stopped answering (its ping timeout passed): it leaves the cluster's
    /// resources, its tasks are TASK_UNREACHABLE (partition-aware frameworks) or TASK_LOST
    /// (the others), and it is kept as unreachable: it may re-register.
    pub(crate) fn mark_unreachable(&mut self, now: Timestamp, agent_id: &str, why: &str) {
        let Some(agent) = self.agents.get(agent_id).cloned() else {
            return;
        };
        tracing::warn!(agent_id = %agent_id, why, "agent unreachable");
        // Written first: everything below (LOST, UNREACHABLE, FAILURE) waits for it, so no
        // framework hears of it unless a restarted master would also know the agent is away.
        let record = self.registered_agent_record(agent_id, &agent);
        self.add_unreachable(agent_id, record, agent.total.clone(), now);
        self.rescind_offers_on(agent_id);
        let message = format!("agent {agent_id} unreachable: {why}");
        let mut told = BTreeSet::new();
        // Every task whose framework has not heard its end, including one whose resources
        // came back early on its agent's `latest_state` (it left `agent.tasks` then).
        let mut tasks = self.tasks_on(agent_id, |s| {
            !s.is_terminal() && s != TaskState::TaskUnreachable
        });
        tasks.sort();
        for (fw, task_id) in &tasks {
            if self.is_partition_aware(fw) {
                self.task_unreachable(now, fw, task_id, agent_id, &message);
            } else {
                self.end_task(
                    now,
                    fw,
                    task_id,
                    TaskState::TaskLost,
                    "REASON_AGENT_UNREACHABLE",
                    &message,
                );
            }
            told.insert(fw.clone());
        }
        for fw in told {
            self.send_event(
                &fw,
                v1::event::Event::Failure(v1::Failure {
                    agent_id: agent_id.to_string(),
                    message: why.to_string(),
                }),
            );
        }
        if let Some(conn) = agent.conn {
            // No shutdown: the agent keeps its tasks and re-registers when it can.
            self.conns.remove(&conn);
            self.push(Output::CloseAgent { conn });
        }
        self.liveness.remove(agent.live_slot);
        self.agents.swap_remove(agent_id);
        self.allocator.remove_agent(agent_id);
        self.counters.agents_removed += 1;
        self.allocation_pending = true;
    }

    /// Keeps `agent_id` as unreachable since `now` (persisted).
    pub(crate) fn add_unreachable(
        &mut self,
        agent_id: &str,
        mut record: v1::RegistryAgent,
        total: Resources,
        now: Timestamp,
    ) {
        record.unreachable_since_ms = Some(now.0);
        record.gone_at_ms = None;
        // One more unreachable agent: the count limit is checked on the next tick.
        self.unreachable_gc_at = now;
        self.persistence
            .record(Table::Agents, agent_id, Some(record.encode_to_vec()));
        self.unreachable.insert(
            agent_id.to_string(),
            UnreachableAgent {
                since: now,
                record,
                total,
            },
        );
    }

    /// A partition-aware framework's task whose agent is unreachable: TASK_UNREACHABLE (not
    /// terminal), its resources no longer counted.
    fn task_unreachable(
        &mut self,
        now: Timestamp,
        fw: &str,
        task_id: &str,
        agent_id: &str,
        why: &str,
    ) {
        let status = master_status(
            task_id,
            agent_id,
            TaskState::TaskUnreachable,
            "REASON_AGENT_UNREACHABLE",
            why,
            now,
        );
        if let Some(t) = self
            .frameworks
            .get_mut(fw)
            .and_then(|f| f.tasks.get_mut(task_id))
        {
            t.forward(TaskState::TaskUnreachable, status.clone());
            t.resources_recovered = true;
        }
        self.send_event(
            fw,
            v1::event::Event::Update(v1::Update {
                status: Some(status),
            }),
        );
    }

    /// A task of a partition-aware framework, reported by its returning agent: running again
    /// (or ended, if it ended while the agent was away).
    /// Returns false if the task was not waiting as unreachable.
    pub(crate) fn task_returns(
        &mut self,
        now: Timestamp,
        agent_id: &str,
        fw: &str,
        task_id: &str,
        state: TaskState,
    ) -> bool {
        let Some(t) = self
            .frameworks
            .get_mut(fw)
            .and_then(|f| f.tasks.get_mut(task_id))
        else {
            return false;
        };
        if t.state != TaskState::TaskUnreachable {
            return false;
        }
        let status = master_status(
            task_id,
            agent_id,
            state,
            "REASON_AGENT_REREGISTERED",
            "the task's agent is reachable again",
            now,
        );
        // A task that ended while its agent was away is ended here too (its resources are
        // free); the agent's own update of the end follows and is acknowledged as usual.
        let ended = state.is_terminal();
        t.forward(state, status.clone());
        t.agent_id = agent_id.to_string();
        t.resources_recovered = ended;
        if ended {
            *self
                .counters
                .tasks_terminal
                .entry(state.name())
                .or_default() += 1;
        } else if let Some(a) = self.agents.get_mut(agent_id) {
            a.tasks.insert((fw.to_string(), task_id.to_string()));
        }
        self.send_event(
            fw,
            v1::event::Event::Update(v1::Update {
                status: Some(status),
            }),
        );
        true
    }

    /// MARK_AGENT_GONE: the agent is gone for good. Its tasks end (TASK_GONE_BY_OPERATOR for
    /// partition-aware frameworks, TASK_LOST for others), it is shut down if connected, and
    /// it may never come back with this id. Marking a gone agent again changes nothing.
    pub fn mark_agent_gone(&mut self, now: Timestamp, agent_id: &str) -> Result<(), MasterError> {
        if self.removed_agents.contains(agent_id) {
            return Ok(());
        }
        let known = self.agents.contains_key(agent_id)
            || self.unreachable.contains_key(agent_id)
            || self.recovering.contains_key(agent_id);
        if !known {
            return Err(MasterError::UnknownAgent {
                agent_id: agent_id.to_string(),
            });
        }
        tracing::warn!(agent_id = %agent_id, "operator marks agent gone");
        self.remove_for_good(
            now,
            agent_id,
            TaskState::TaskGoneByOperator,
            "REASON_AGENT_REMOVED_BY_OPERATOR",
            "the operator marked the agent gone",
        );
        Ok(())
    }

    /// Removes `agent_id` for good, wherever it is (registered, unreachable, awaiting
    /// re-registration): its tasks end (`state` for partition-aware frameworks, TASK_LOST for
    /// the others), a connected agent is shut down, and the id may never come back.
    fn remove_for_good(
        &mut self,
        now: Timestamp,
        agent_id: &str,
        state: TaskState,
        reason: &str,
        message: &str,
    ) {
        // Written first: the ends below wait for it.
        self.persist_agent_gone(agent_id, now);
        self.rescind_offers_on(agent_id);
        self.end_tasks_on(now, agent_id, state, reason, message);
        if let Some(agent) = self.agents.swap_remove(agent_id) {
            if let Some(conn) = agent.conn {
                self.send_conn(
                    conn,
                    Msg::Shutdown(v1::ShutdownAgent {
                        reason: message.to_string(),
                    }),
                );
                self.conns.remove(&conn);
            }
            self.liveness.remove(agent.live_slot);
            self.allocator.remove_agent(agent_id);
        }
        self.unreachable.swap_remove(agent_id);
        self.recovering.swap_remove(agent_id);
        self.killed_on_return.retain(|_, a| a != agent_id);
        self.maintenance.remove(agent_id);
        self.persist_maintenance(agent_id);
        self.removed_agents.insert(agent_id.to_string());
        self.allocation_pending = true;
    }

    /// Ends every task on `agent_id` that has not ended: `state` for partition-aware
    /// frameworks, TASK_LOST for the others.
    fn end_tasks_on(
        &mut self,
        now: Timestamp,
        agent_id: &str,
        state: TaskState,
        reason: &str,
        message: &str,
    ) {
        let tasks = self.tasks_on(agent_id, |s| !s.is_terminal());
        for (fw, task_id) in tasks {
            let state = if self.is_partition_aware(&fw) {
                state
            } else {
                TaskState::TaskLost
            };
            self.end_task(now, &fw, &task_id, state, reason, message);
        }
    }

    /// A new agent registers at the address (`hostname:port`) of an agent that is unreachable or
    /// awaiting re-registration: that agent lost its identity (its work dir) and will never come
    /// back with its old id, so it is marked gone (its tasks: TASK_GONE for partition-aware
    /// frameworks) instead of waiting out the registry's maximum age.
    pub(crate) fn replaced_at_address(&mut self, now: Timestamp, info: &v1::AgentInfo) {
        let same = |i: Option<&v1::AgentInfo>| {
            i.is_some_and(|i| i.hostname == info.hostname && i.port == info.port)
        };
        let old: Vec<String> = self
            .unreachable
            .iter()
            .filter(|(_, u)| same(u.record.info.as_ref()))
            .map(|(id, _)| id.clone())
            .chain(
                self.recovering
                    .iter()
                    .filter(|(_, r)| same(r.record.info.as_ref()))
                    .map(|(id, _)| id.clone()),
            )
            // A registered agent whose session is gone: the new registration is its process
            // starting over without its id.
            .chain(
                self.agents
                    .iter()
                    .filter(|(id, a)| a.conn.is_none() && **id != info.id && same(Some(&a.info)))
                    .map(|(id, _)| id.clone()),
            )
            .collect();
        for id in old {
            tracing::warn!(agent_id = %id, new_agent = %info.id, host = %info.hostname,
                "a new agent registered at this agent's address: marking the old one gone");
            self.remove_for_good(
                now,
                &id,
                TaskState::TaskGone,
                "REASON_AGENT_REMOVED",
                "a new agent registered at the same address",
            );
        }
    }

    /// Registry GC: unreachable agents older than the maximum age, or beyond the maximum
    /// count (oldest first), are marked gone.
    pub(crate) fn tick_unreachable(&mut self, now: Timestamp) {
        // Scanned only when the oldest may have expired or one was added (not every tick).
        if self.unreachable.is_empty() || now < self.unreachable_gc_at {
            return;
        }
        let max_age = self.config.registry_max_agent_age_ms;
        let mut old: Vec<(Timestamp, String)> = self
            .unreachable
            .iter()
            .filter(|(_, u)| now.since(u.since) >= max_age)
            .map(|(id, u)| (u.since, id.clone()))
            .collect();
        let over = self
            .unreachable
            .len()
            .saturating_sub(old.len())
            .saturating_sub(self.config.registry_max_agent_count);
        if over > 0 {
            let mut rest: Vec<(Timestamp, String)> = self
                .unreachable
                .iter()
                .filter(|(_, u)| now.since(u.since) < max_age)
                .map(|(id, u)| (u.since, id.clone()))
                .collect();
            rest.sort();
            old.extend(rest.into_iter().take(over));
        }
        for (_, id) in old {
            tracing::info!(agent_id = %id, "unreachable agent forgotten (registry GC); it may not come back");
            self.remove_for_good(
                now,
                &id,
                TaskState::TaskGone,
                "REASON_AGENT_REMOVED",
                "the unreachable agent was forgotten",
            );
        }
        self.unreachable_gc_at = self
            .unreachable
            .values()
            .map(|u| u.since.plus_ms(max_age))
            .min()
            .unwrap_or(Timestamp(u64::MAX));
    }

    /// The answer (state, reason) to reconciling a task the master does not know, or None
    /// while its agent (or, without an agent id, any agent) may still come back after a master
    /// restart.
    pub(crate) fn unknown_task_state(
        &self,
        fw: &str,
        agent_id: &str,
    ) -> Option<(TaskState, &'static str)> {
        if self.recovering.contains_key(agent_id)
            || (agent_id.is_empty() && !self.recovering.is_empty())
        {
            return None;
        }
        let aware = self.is_partition_aware(fw);
        let reason = "REASON_RECONCILIATION";
        Some(if self.unreachable.contains_key(agent_id) {
            let state = if aware {
                TaskState::TaskUnreachable
            } else {
                TaskState::TaskLost
            };
            (state, "REASON_AGENT_UNREACHABLE")
        } else if !aware {
            (TaskState::TaskLost, reason)
        } else if self.removed_agents.contains(agent_id) {
            (TaskState::TaskGone, reason)
        } else {
            (TaskState::TaskUnknown, reason)
        })
    }
}
