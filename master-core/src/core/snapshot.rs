//! The operator's view: a [`v1::StateSnapshot`] of agents, frameworks, tasks and offers.

use proffer_proto::Resources;
use proffer_proto::v1;

use super::{Master, Timestamp};

impl Master {
    /// A snapshot of the whole state for operators (`/state`, `GetState`).
    pub fn snapshot(&self, now: Timestamp) -> v1::StateSnapshot {
        // Cluster-wide allocation, summed while the agents are listed.
        let mut cluster_allocated = Resources::new();
        let agents = self
            .agents
            .iter()
            .map(|(id, a)| {
                let allocated = self.allocator.allocated_on(id);
                cluster_allocated.add(&allocated);
                let available = a.total.checked_sub(&allocated).unwrap_or_default();
                v1::AgentSummary {
                    id: id.clone(),
                    hostname: a.info.hostname.clone(),
                    port: a.info.port,
                    total: a.total.to_string(),
                    allocated: allocated.to_string(),
                    available: available.to_string(),
                    connected: a.conn.is_some(),
                    attributes: a.info.attributes.clone(),
                    active_tasks: a.tasks.len() as u32,
                    isolation: a.info.isolation.clone(),
                    draining: self.allocator.is_draining(id),
                    state: if self.allocator.is_draining(id) {
                        "draining"
                    } else if a.conn.is_none() {
                        "disconnected"
                    } else {
                        "active"
                    }
                    .into(),
                    unreachable_since_ms: 0,
                }
            })
            .chain(self.recovering.iter().map(|(id, r)| {
                let info = r.record.info.clone().unwrap_or_default();
                v1::AgentSummary {
                    id: id.clone(),
                    hostname: info.hostname,
                    port: info.port,
                    total: r.total.to_string(),
                    available: r.total.to_string(),
                    attributes: info.attributes,
                    isolation: info.isolation,
                    draining: r.record.draining,
                    state: "recovering".into(),
                    ..Default::default()
                }
            }))
            .chain(self.unreachable.iter().map(|(id, u)| {
                let info = u.record.info.clone().unwrap_or_default();
                v1::AgentSummary {
                    id: id.clone(),
                    hostname: info.hostname,
                    port: info.port,
                    total: u.total.to_string(),
                    attributes: info.attributes,
                    isolation: info.isolation,
                    draining: u.record.draining,
                    state: "unreachable".into(),
                    unreachable_since_ms: u.since.0,
                    ..Default::default()
                }
            }))
            .collect();
        let frameworks = self
            .frameworks
            .iter()
            .map(|(id, f)| v1::FrameworkSummary {
                id: id.clone(),
                name: f.info.name.clone(),
                roles: f.info.roles.clone(),
                connected: f.conn.is_some(),
                suppressed: self.allocator.is_suppressed(id),
                allocated: self.allocator.allocated_to(id).to_string(),
                dominant_share: self.allocator.dominant_share(id),
                active_tasks: f.tasks.values().filter(|t| !t.state.is_terminal()).count() as u32,
                outstanding_offers: f.offers.len() as u32,
                failover_timeout: f.info.failover_timeout,
                max_outstanding_offers: self
                    .allocator
                    .offers_outstanding(id)
                    .and_then(|(_, limit)| limit),
                user: f.info.user.clone(),
                principal: f.info.principal.clone(),
            })
            .collect();
        // Each framework's tasks by id (they are kept in a hash map in launch order).
        let mut tasks = Vec::new();
        for (fw, f) in &self.frameworks {
            let start = tasks.len();
            tasks.extend(f.tasks.iter().map(|(id, t)| self.summarize(fw, id, t)));
            tasks[start..].sort_unstable_by(|a: &v1::TaskSummary, b| a.id.cmp(&b.id));
        }
        let offers = self
            .offers
            .iter()
            .map(|(id, o)| v1::OfferSummary {
                id: id.clone(),
                framework_id: o.framework_id.clone(),
                agent_id: o.agent_id.clone(),
                resources: o.resources.to_string(),
            })
            .collect();
        v1::StateSnapshot {
            master_id: self.master_id.clone(),
            now_ms: now.0,
            agents,
            frameworks,
            tasks,
            completed_tasks: self
                .completed_tasks
                .iter()
                .map(|(fw, id, t)| self.summarize(fw, id, t))
                .collect(),
            offers,
            allocation_cycles: self.allocator.cycles(),
            total: self.allocator.total().to_string(),
            allocated: cluster_allocated.to_string(),
            registry: None,
            gone_agents: self.removed_agents.len() as u32,
            uptime_ms: now.0,
        }
    }
}

impl Master {
    /// Every role the allocator knows, for operators (`/roles`, `GetRoles`): weight, quota,
    /// allocation and frameworks, resources in text form.
    pub fn role_summaries(&self) -> Vec<v1::RoleSummary> {
        self.roles()
            .into_iter()
            .map(|r| v1::RoleSummary {
                role: r.role,
                weight: r.weight,
                guarantees: r
                    .quota
                    .as_ref()
                    .map(|q| q.guarantees.to_string())
                    .unwrap_or_default(),
                limits: r
                    .quota
                    .as_ref()
                    .and_then(|q| q.limits.as_ref())
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                allocated: r.allocated.to_string(),
                frameworks: r.frameworks,
            })
            .collect()
    }
}
