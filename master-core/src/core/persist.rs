//! Persistence in the core: changes that must survive a restart are recorded as registry ops;
//! the shell writes a batch (`Output::Persist`) and feeds back `Input::Persisted`. Until then
//! the core does not act on them: every output queued after the first op of a batch is held
//! and released, in order, when the batch (and every earlier one) is acknowledged.
//!
//! Disabled (the default, e.g. for the simulator), nothing is recorded and nothing is held.

use std::collections::VecDeque;

use proffer_proto::v1;
use prost::Message;

use super::{Master, Output, Timestamp};
use crate::registry::{COUNTERS_KEY, RegistryOp, Table};

/// Ops waiting to be written, outputs waiting for their batch.
#[derive(Debug, Default)]
pub(crate) struct Persistence {
    /// Record changes at all.
    pub enabled: bool,
    /// Ops of the batch being built, the latest value per key (in first-write order).
    pending: indexmap::IndexMap<(Table, String), Option<Vec<u8>>, rustc_hash::FxBuildHasher>,
    /// Last batch handed to the shell.
    issued: u64,
    /// Last batch acknowledged.
    acked: u64,
    /// Outputs held until the batch of their tag is acknowledged.
    held: VecDeque<(u64, Output)>,
    /// When the last batch was acknowledged.
    pub last_ack: Option<Timestamp>,
}

impl Persistence {
    /// True if new outputs must wait (an op is pending or earlier outputs are held).
    fn holding(&self) -> bool {
        !self.pending.is_empty() || !self.held.is_empty()
    }

    /// The batch a new output waits for.
    fn tag(&self) -> u64 {
        if self.pending.is_empty() {
            self.held.back().map_or(self.issued, |(t, _)| *t)
        } else {
            self.issued + 1
        }
    }

    /// Holds `out` if it must wait; otherwise gives it back.
    pub fn hold(&mut self, out: Output) -> Option<Output> {
        if self.holding() {
            let tag = self.tag();
            self.held.push_back((tag, out));
            None
        } else {
            Some(out)
        }
    }

    /// Records a put (`Some`) or delete (`None`) of `key` in `table`.
    pub fn record(&mut self, table: Table, key: &str, value: Option<Vec<u8>>) {
        if self.enabled {
            self.pending.insert((table, key.to_string()), value);
        }
    }

    /// Closes the batch being built: its sequence number and ops, if it has any.
    pub fn take_batch(&mut self) -> Option<(u64, Vec<RegistryOp>)> {
        if self.pending.is_empty() {
            return None;
        }
        self.issued += 1;
        let ops = self
            .pending
            .drain(..)
            .map(|((table, key), value)| RegistryOp { table, key, value })
            .collect();
        Some((self.issued, ops))
    }

    /// Batch `seq` (and every earlier one) is written: releases the outputs waiting for it.
    pub fn acknowledge(&mut self, seq: u64, now: Timestamp, out: &mut Vec<Output>) {
        if seq > self.acked {
            self.acked = seq.min(self.issued);
            self.last_ack = Some(now);
        }
        while self.held.front().is_some_and(|(t, _)| *t <= self.acked) {
            if let Some((_, o)) = self.held.pop_front() {
                out.push(o);
            }
        }
    }

    /// The batch that must be acknowledged before the effects of what the core just did may be
    /// reported (0: nothing to wait for).
    pub fn barrier(&self) -> u64 {
        let b = if self.pending.is_empty() {
            self.issued
        } else {
            self.issued + 1
        };
        if b > self.acked { b } else { 0 }
    }

    /// Batches handed out but not acknowledged, and outputs held.
    pub fn backlog(&self) -> (u64, usize) {
        (self.issued - self.acked, self.held.len())
    }
}

impl Master {
    /// Records agent `agent_id` as removed for good at `now`: it may never come back.
    pub(crate) fn persist_agent_gone(&mut self, agent_id: &str, now: Timestamp) {
        let record = v1::RegistryAgent {
            info: Some(v1::AgentInfo {
                id: agent_id.to_string(),
                ..Default::default()
            }),
            gone_at_ms: Some(now.0),
            ..Default::default()
        };
        self.persistence
            .record(Table::Agents, agent_id, Some(record.encode_to_vec()));
    }

    /// Records agent `agent_id`'s current registry record (what it has, whether drained).
    pub(crate) fn persist_agent(&mut self, agent_id: &str) {
        if !self.persistence.enabled {
            return;
        }
        let record = match self.agents.get(agent_id) {
            Some(a) => self.registered_agent_record(agent_id, a),
            None => match (
                self.recovering.get(agent_id),
                self.unreachable.get(agent_id),
            ) {
                (Some(r), _) => r.record.clone(),
                (None, Some(u)) => u.record.clone(),
                (None, None) => return,
            },
        };
        self.persistence
            .record(Table::Agents, agent_id, Some(record.encode_to_vec()));
    }

    /// The registry record of registered agent `agent_id` (`a`) as it is now.
    pub(crate) fn registered_agent_record(
        &self,
        agent_id: &str,
        a: &super::state::AgentState,
    ) -> v1::RegistryAgent {
        v1::RegistryAgent {
            info: Some(a.info.clone()),
            total: a.total.to_proto(),
            draining: self.allocator.is_draining(agent_id),
            unreachable_since_ms: None,
            gone_at_ms: None,
            killed_on_return: self.killed_on(agent_id),
        }
    }

    /// The tasks killed on `agent_id`'s return whose end is still awaited, sorted.
    pub(crate) fn killed_on(&self, agent_id: &str) -> Vec<v1::TaskRef> {
        let mut out: Vec<v1::TaskRef> = self
            .killed_on_return
            .iter()
            .filter(|(_, a)| a.as_str() == agent_id)
            .map(|((fw, task), _)| v1::TaskRef {
                framework_id: fw.clone(),
                task_id: task.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.framework_id, &a.task_id).cmp(&(&b.framework_id, &b.task_id)));
        out
    }

    /// Records framework `framework_id`'s current registry record (or its removal).
    pub(crate) fn persist_framework(&mut self, framework_id: &str, now: Timestamp) {
        if !self.persistence.enabled {
            return;
        }
        let record = match self.frameworks.get(framework_id) {
            Some(f) => v1::RegistryFramework {
                info: Some(f.info.clone()),
                removed_at_ms: None,
            },
            None if self.removed_frameworks.contains(framework_id) => {
                self.persist_framework_removed(framework_id, now);
                return;
            }
            None => {
                self.persistence
                    .record(Table::Frameworks, framework_id, None);
                return;
            }
        };
        self.persistence.record(
            Table::Frameworks,
            framework_id,
            Some(record.encode_to_vec()),
        );
    }

    /// Records framework `framework_id` as removed at `now`: its id may not subscribe again.
    pub(crate) fn persist_framework_removed(&mut self, framework_id: &str, now: Timestamp) {
        let record = v1::RegistryFramework {
            info: Some(v1::FrameworkInfo {
                id: framework_id.to_string(),
                ..Default::default()
            }),
            removed_at_ms: Some(now.0),
        };
        self.persistence.record(
            Table::Frameworks,
            framework_id,
            Some(record.encode_to_vec()),
        );
    }

    /// Records role `role`'s weight and quota (deleted when both are defaults).
    pub(crate) fn persist_role(&mut self, role: &str) {
        if !self.persistence.enabled {
            return;
        }
        let weight = self.allocator.weight(role);
        let quota = self.allocator.quota(role);
        if weight == 1.0 && quota.is_none() {
            self.persistence.record(Table::Roles, role, None);
            return;
        }
        let record = v1::RegistryRole {
            weight,
            quota_guarantees: quota.map(|q| q.guarantees.to_string()),
            quota_limits: quota.and_then(|q| q.limits.as_ref().map(|l| l.to_string())),
        };
        self.persistence
            .record(Table::Roles, role, Some(record.encode_to_vec()));
    }

    /// Records agent `agent_id`'s maintenance window (deleted when it has none).
    pub(crate) fn persist_maintenance(&mut self, agent_id: &str) {
        if !self.persistence.enabled {
            return;
        }
        let value = self.maintenance.get(agent_id).map(|w| {
            v1::RegistryMaintenance {
                start_ms: w.start.0,
                end_ms: w.end.0,
            }
            .encode_to_vec()
        });
        self.persistence.record(Table::Maintenance, agent_id, value);
    }

    /// Records the id counters.
    pub(crate) fn persist_counters(&mut self) {
        let record = v1::RegistryCounters {
            agents: self.counters.agents,
            frameworks: self.counters.frameworks,
            recoveries: self.counters.recoveries,
        };
        self.persistence
            .record(Table::Meta, COUNTERS_KEY, Some(record.encode_to_vec()));
    }

    /// The batch the shell must see acknowledged before reporting the outcome of what the core
    /// just did to a caller (0: none). See [`Persistence::barrier`].
    pub fn persist_barrier(&self) -> u64 {
        self.persistence.barrier()
    }

    /// (batches written but not acknowledged, outputs held waiting for them).
    pub fn persist_backlog(&self) -> (u64, usize) {
        self.persistence.backlog()
    }

    /// Queues an output, or holds it until the registry has what it depends on.
    pub(crate) fn push(&mut self, out: Output) {
        if let Some(out) = self.persistence.hold(out) {
            self.outbox.push(out);
        }
    }
}

/// The registry does not hold what the core holds (see [`Master::check_registry`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry and core disagree on {table}/{key}: {what}")]
pub struct RegistryMismatch {
    /// The table.
    pub table: &'static str,
    /// The record's key.
    pub key: String,
    /// How they differ.
    pub what: String,
}

impl Master {
    /// Checks that `stored` (what the registry holds, with no batch in flight) is what the core
    /// would recover to: every agent with its total and drain flag, every framework, removals,
    /// weights and quotas.
    pub fn check_registry(&self, stored: &crate::registry::Stored) -> Result<(), RegistryMismatch> {
        let bad = |table: Table, key: &str, what: String| RegistryMismatch {
            table: table.name(),
            key: key.to_string(),
            what,
        };
        for (id, a) in &self.agents {
            let r = stored
                .get(Table::Agents, id)
                .and_then(|b| v1::RegistryAgent::decode(b.as_slice()).ok())
                .ok_or_else(|| bad(Table::Agents, id, "missing or unreadable".into()))?;
            let total = proffer_proto::Resources::from_proto(&r.total).unwrap_or_default();
            if r.gone_at_ms.is_some() || !crate::allocator::same_resources(&total, &a.total) {
                return Err(bad(
                    Table::Agents,
                    id,
                    format!(
                        "stored total {total} (gone: {:?}), core {}",
                        r.gone_at_ms, a.total
                    ),
                ));
            }
            if r.draining != self.allocator.is_draining(id) {
                return Err(bad(Table::Agents, id, "drain flag differs".into()));
            }
        }
        for id in &self.removed_agents {
            let gone = stored
                .get(Table::Agents, id)
                .and_then(|b| v1::RegistryAgent::decode(b.as_slice()).ok())
                .is_some_and(|r| r.gone_at_ms.is_some());
            if !gone {
                return Err(bad(
                    Table::Agents,
                    id,
                    "removed in the core, not in the registry".into(),
                ));
            }
        }
        for (id, _) in stored.table(Table::Agents) {
            let known = self.agents.contains_key(id)
                || self.recovering.contains_key(id)
                || self.unreachable.contains_key(id)
                || self.removed_agents.contains(id);
            if !known {
                return Err(bad(
                    Table::Agents,
                    id,
                    "in the registry, unknown to the core".into(),
                ));
            }
        }
        for (id, bytes) in stored.table(Table::Frameworks) {
            let r = v1::RegistryFramework::decode(bytes.as_slice())
                .map_err(|e| bad(Table::Frameworks, id, e.to_string()))?;
            let ok = if r.removed_at_ms.is_some() {
                self.removed_frameworks.contains(id)
            } else {
                self.frameworks.contains_key(id)
            };
            if !ok {
                return Err(bad(Table::Frameworks, id, "removal state differs".into()));
            }
        }
        for id in self.frameworks.keys() {
            // A framework adopted from an agent's report (no registry) is the only kind that
            // may be missing; with a registry every subscribed framework is stored.
            if stored.get(Table::Frameworks, id).is_none() {
                return Err(bad(Table::Frameworks, id, "missing".into()));
            }
        }
        for role in self.allocator.roles() {
            let r = stored
                .get(Table::Roles, &role.role)
                .and_then(|b| v1::RegistryRole::decode(b.as_slice()).ok());
            let weight = r.as_ref().map_or(1.0, |r| r.weight);
            let quota = r.as_ref().and_then(|r| r.quota_guarantees.clone());
            let want_quota = self
                .allocator
                .quota(&role.role)
                .map(|q| q.guarantees.to_string());
            if weight != self.allocator.weight(&role.role) || quota != want_quota {
                return Err(bad(
                    Table::Roles,
                    &role.role,
                    "weight or quota differs".into(),
                ));
            }
        }
        Ok(())
    }
}
