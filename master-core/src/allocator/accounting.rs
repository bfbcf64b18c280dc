//! The accounting invariant: on every agent, free + held (offered or in use) = total, for
//! every resource and reservation, and nothing held that the agent does not have.
//!
//! Checked by the proptests, after every step of the fault harness and by the simulator in
//! debug builds; [`crate::core::Master::check_accounting`] adds the core's side (what it
//! offered and what its tasks use is exactly what the allocator holds).

use proffer_proto::Resources;

use super::Allocator;

/// A broken accounting invariant on one agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("accounting on agent {agent_id}: {what}")]
pub struct AccountingError {
    /// The agent whose books do not balance.
    pub agent_id: String,
    /// What does not balance, with the quantities.
    pub what: String,
}

impl AccountingError {
    /// An error on `agent_id`.
    pub fn new(agent_id: &str, what: String) -> Self {
        AccountingError {
            agent_id: agent_id.to_string(),
            what,
        }
    }
}

/// True if `a` and `b` hold exactly the same quantities (each contains the other).
pub fn same(a: &Resources, b: &Resources) -> bool {
    a.contains(b) && b.contains(a)
}

impl Allocator {
    /// What frameworks hold on `agent_id` (offered to them or used by their tasks), by
    /// framework id, summed over roles; frameworks in slot order.
    pub fn held_on(&self, agent_id: &str) -> Vec<(String, Resources)> {
        let Some(a) = self.agent_slot(agent_id).and_then(|s| self.agent(s)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Resources)> = Vec::new();
        for ((fw, _), res) in &a.held {
            let id = self
                .fw(*fw)
                .map_or("(removed framework)", |f| f.id.as_str());
            match out.last_mut() {
                Some((last, sum)) if last == id => sum.add(res),
                _ => out.push((id.to_string(), res.clone())),
            }
        }
        out
    }

    /// Checks, for every agent, that free + held = total and that free never exceeds the total
    /// (a bag cannot go negative, so an over-subtraction shows up as a sum that is too large
    /// after the resources come back).
    pub fn check_accounting(&self) -> Result<(), AccountingError> {
        for a in self.agents.iter().flatten() {
            let mut sum = a.free.clone();
            for res in a.held.values() {
                sum.add(res);
            }
            if !same(&sum, &a.total) {
                let held: Vec<String> = a.held.values().map(|r| r.to_string()).collect();
                return Err(AccountingError::new(
                    &a.id,
                    format!(
                        "free {} + held [{}] = {sum}, but the total is {}",
                        a.free,
                        held.join(" | "),
                        a.total
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Allocator {
    /// The total the allocator knows for `agent_id`, if it knows the agent.
    pub fn agent_total(&self, agent_id: &str) -> Option<&Resources> {
        self.agent_slot(agent_id)
            .and_then(|s| self.agent(s))
            .map(|a| &a.total)
    }
}
