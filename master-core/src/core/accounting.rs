//! The core's side of the accounting invariant: for every agent and framework, what the core
//! has outstanding in offers plus what its live tasks use is exactly what the allocator holds,
//! the allocator's total for the agent is the core's, and free + held = total.

use proffer_proto::Resources;

use super::Master;
use crate::allocator::AccountingError;

impl Master {
    /// How many agents the master knows (connected or not).
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Checks offered + allocated + free = total on every agent, for every resource and
    /// reservation, none negative, and that the core and the allocator agree on who holds
    /// what. Cheap enough for tests after every step (O(agents + offers + tasks)); not called
    /// by the server.
    pub fn check_accounting(&self) -> Result<(), AccountingError> {
        self.allocator.check_accounting()?;
        // What the core says each (agent, framework) holds: offers, then live tasks.
        let mut expected: super::IdMap<Vec<(String, Resources)>> = super::IdMap::default();
        let mut put = |agent: &str, fw: &str, res: &Resources| {
            let list = expected.entry(agent.to_string()).or_default();
            match list.iter_mut().find(|(f, _)| f == fw) {
                Some((_, sum)) => sum.add(res),
                None => list.push((fw.to_string(), res.clone())),
            }
        };
        for o in self.offers.values() {
            put(&o.agent_id, &o.framework_id, &o.resources);
        }
        for (fw, f) in &self.frameworks {
            for t in f.tasks.values().filter(|t| !t.resources_recovered) {
                put(&t.agent_id, fw, &t.resources);
            }
        }
        for (agent_id, a) in &self.agents {
            match self.allocator.agent_total(agent_id) {
                Some(t) if crate::allocator::same_resources(t, &a.total) => {}
                other => {
                    return Err(AccountingError::new(
                        agent_id,
                        format!(
                            "the core's total is {} but the allocator's is {}",
                            a.total,
                            other.map_or("(unknown agent)".to_string(), |t| t.to_string())
                        ),
                    ));
                }
            }
            let want = expected.swap_remove(agent_id).unwrap_or_default();
            self.compare_held(agent_id, &want)?;
        }
        // Offers or live tasks on agents the core no longer has.
        if let Some((agent_id, list)) = expected.iter().find(|(_, l)| !l.is_empty()) {
            return Err(AccountingError::new(
                agent_id,
                format!(
                    "unknown agent, yet {} framework(s) hold resources on it",
                    list.len()
                ),
            ));
        }
        Ok(())
    }

    /// Compares what the core expects each framework to hold on `agent_id` with the allocator.
    fn compare_held(
        &self,
        agent_id: &str,
        want: &[(String, Resources)],
    ) -> Result<(), AccountingError> {
        let held = self.allocator.held_on(agent_id);
        let empty = Resources::new();
        let frameworks = want
            .iter()
            .map(|(f, _)| f)
            .chain(held.iter().map(|(f, _)| f));
        for fw in frameworks {
            let w = want
                .iter()
                .find(|(f, _)| f == fw)
                .map_or(&empty, |(_, r)| r);
            let h = held
                .iter()
                .find(|(f, _)| f == fw)
                .map_or(&empty, |(_, r)| r);
            if !crate::allocator::same_resources(w, h) {
                return Err(AccountingError::new(
                    agent_id,
                    format!(
                        "framework {fw}: offers + live tasks = {w}, but the allocator holds {h}"
                    ),
                ));
            }
        }
        Ok(())
    }
}
