//! A master recovered from its registry: roles, frameworks (disconnected, their failover
//! timeouts running from recovery), agents awaiting re-registration (not offered until they
//! are back, forgotten after the re-registration timeout), gone agents and removed frameworks
//! (refused), maintenance windows and id counters.

use proffer_proto::{Resources, v1};
use prost::Message;

use super::state::FrameworkState;
use super::{Master, MasterConfig, Timestamp, validate};
use crate::registry::{COUNTERS_KEY, RegistryError, Stored, Table};

/// An admitted agent that has not re-registered since the master recovered.
#[derive(Debug, Clone)]
pub(crate) struct RecoveringAgent {
    /// What the registry holds for it.
    pub record: v1::RegistryAgent,
    /// Its total as stored (with dynamic reservations and volumes).
    pub total: Resources,
}

/// Names the record that cannot be decoded.
fn corrupt(table: Table, key: &str, reason: impl ToString) -> RegistryError {
    RegistryError::Corrupt {
        location: "(recovered records)".into(),
        table: table.name(),
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn decode<M: Message + Default>(table: Table, key: &str, bytes: &[u8]) -> Result<M, RegistryError> {
    M::decode(bytes).map_err(|e| corrupt(table, key, e))
}

impl Master {
    /// A master with persistence enabled and nothing recovered (a fresh registry).
    pub fn with_persistence(config: MasterConfig, seed: u64) -> Self {
        let mut m = Master::new(config, seed);
        m.persistence.enabled = true;
        m
    }

    /// A master recovered at `now` from `stored` (as loaded by a registry backend), with
    /// persistence enabled. Each recovery gets a new master id (ids of offers and streams from
    /// before cannot collide with new ones); agent and framework ids continue from the stored
    /// counters. A record that cannot be decoded fails the recovery, naming it.
    pub fn recover(
        config: MasterConfig,
        seed: u64,
        stored: &Stored,
        now: Timestamp,
    ) -> Result<Self, RegistryError> {
        let counters: v1::RegistryCounters = match stored.get(Table::Meta, COUNTERS_KEY) {
            Some(b) => decode(Table::Meta, COUNTERS_KEY, b)?,
            None => v1::RegistryCounters::default(),
        };
        let recoveries = counters.recoveries + 1;
        // A different id per incarnation, still a function of the seed.
        let mixed = seed ^ recoveries.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut m = Master::with_persistence(config, mixed);
        m.counters.agents = counters.agents;
        m.counters.frameworks = counters.frameworks;
        m.counters.recoveries = recoveries;
        m.persist_counters();
        m.recover_roles(stored)?;
        m.recover_frameworks(stored, now)?;
        m.recover_agents(stored, now)?;
        for (agent_id, bytes) in stored.table(Table::Maintenance) {
            let w: v1::RegistryMaintenance = decode(Table::Maintenance, agent_id, bytes)?;
            m.restore_window(agent_id, Timestamp(w.start_ms), Timestamp(w.end_ms));
        }
        tracing::info!(
            master_id = %m.master_id,
            recoveries,
            agents = m.recovering.len(),
            frameworks = m.frameworks.len(),
            gone_agents = m.removed_agents.len(),
            removed_frameworks = m.removed_frameworks.len(),
            "master recovered from its registry"
        );
        Ok(m)
    }

    fn recover_roles(&mut self, stored: &Stored) -> Result<(), RegistryError> {
        for (role, bytes) in stored.table(Table::Roles) {
            let r: v1::RegistryRole = decode(Table::Roles, role, bytes)?;
            if r.weight != 1.0 {
                self.allocator
                    .set_weight(role, r.weight)
                    .map_err(|e| corrupt(Table::Roles, role, e))?;
            }
            if let Some(g) = &r.quota_guarantees {
                let parse =
                    |t: &str| Resources::parse(t).map_err(|e| corrupt(Table::Roles, role, e));
                let quota = crate::allocator::Quota {
                    guarantees: parse(g)?,
                    limits: r.quota_limits.as_deref().map(parse).transpose()?,
                };
                self.allocator
                    .set_quota(role, quota)
                    .map_err(|e| corrupt(Table::Roles, role, e))?;
            }
        }
        Ok(())
    }

    fn recover_frameworks(&mut self, stored: &Stored, now: Timestamp) -> Result<(), RegistryError> {
        for (id, bytes) in stored.table(Table::Frameworks) {
            let r: v1::RegistryFramework = decode(Table::Frameworks, id, bytes)?;
            if r.removed_at_ms.is_some() {
                self.removed_frameworks.insert(id.clone());
                continue;
            }
            let info = r
                .info
                .ok_or_else(|| corrupt(Table::Frameworks, id, "no info"))?;
            let roles = validate::framework_info(&info, self.config.max_failover_timeout_secs)
                .map_err(|e| corrupt(Table::Frameworks, id, e))?;
            let min_offers = validate::offer_filters(&info, &roles)
                .map_err(|e| corrupt(Table::Frameworks, id, e))?;
            self.allocator.add_framework(id, &roles, false);
            self.allocator
                .set_offer_limit(id, info.max_outstanding_offers);
            self.allocator.set_min_offers(id, &min_offers);
            // The failover timeout runs from the recovery (Mesos does the same).
            let role = roles[0].clone();
            self.frameworks
                .insert(id.clone(), FrameworkState::disconnected(info, role, now));
        }
        Ok(())
    }

    fn recover_agents(&mut self, stored: &Stored, now: Timestamp) -> Result<(), RegistryError> {
        // Every admitted agent has the same time to come back.
        self.recovering_until = now.plus_ms(self.config.agent_reregister_timeout_ms);
        for (id, bytes) in stored.table(Table::Agents) {
            let record: v1::RegistryAgent = decode(Table::Agents, id, bytes)?;
            if record.gone_at_ms.is_some() {
                self.removed_agents.insert(id.clone());
                continue;
            }
            let total =
                Resources::from_proto(&record.total).map_err(|e| corrupt(Table::Agents, id, e))?;
            for t in &record.killed_on_return {
                self.killed_on_return
                    .insert((t.framework_id.clone(), t.task_id.clone()), id.clone());
            }
            if let Some(since) = record.unreachable_since_ms {
                self.unreachable.insert(
                    id.clone(),
                    super::partition::UnreachableAgent {
                        since: Timestamp(since),
                        record,
                        total,
                    },
                );
                continue;
            }
            self.recovering
                .insert(id.clone(), RecoveringAgent { record, total });
        }
        Ok(())
    }

    /// Agents that did not re-register within the timeout are marked unreachable (they may
    /// still come back; their tasks are unknown to this master, so reconciliation now answers
    /// for them).
    pub(crate) fn tick_recovering(&mut self, now: Timestamp) {
        if self.recovering.is_empty() || now < self.recovering_until {
            return;
        }
        let late: Vec<String> = self.recovering.keys().cloned().collect();
        for id in late {
            tracing::warn!(agent_id = %id, "agent did not re-register after the master recovered; marking it unreachable");
            if let Some(r) = self.recovering.swap_remove(&id) {
                self.counters.agents_removed += 1;
                self.add_unreachable(&id, r.record, r.total, now);
            }
        }
    }

    /// Puts back a stored maintenance window (frameworks' answers are not kept: inverse offers
    /// go out again).
    fn restore_window(&mut self, agent_id: &str, start: Timestamp, end: Timestamp) {
        self.maintenance.insert(
            agent_id.to_string(),
            super::maintenance::Window {
                start,
                end,
                started: false,
                answers: Default::default(),
                outstanding: Default::default(),
            },
        );
    }

    /// How many times this master's registry was recovered from (1 = a fresh start).
    pub fn recoveries(&self) -> u64 {
        self.counters.recoveries
    }
}
