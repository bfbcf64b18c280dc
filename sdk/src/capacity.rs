//! Whether any agent of the cluster could ever hold one piece of work (a batch task, one
//! instance of a service's pod): a piece larger than every agent would otherwise wait forever
//! for an offer that cannot come. The agents come from the master's operator API (`GetState`:
//! every agent's total, reserved or not, whether it is connected or away); shared by the batch
//! framework's fail-fast check and the service layer's update check.

use proffer_proto::resources::{RangeSet, format_milli};
use proffer_proto::{Resources, v1};

/// What one piece of work asks of a single agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// Milli-cpus.
    pub cpus_milli: i64,
    /// Milli-MB of memory.
    pub mem_milli: i64,
    /// Milli-MB of disk (scratch and volumes).
    pub disk_milli: i64,
    /// Ports of any number.
    pub ports: u64,
    /// Ports of a fixed number.
    pub fixed_ports: Vec<u64>,
}

impl Demand {
    /// `cpus:X;mem:Y[;disk:Z][;ports:N]`, as people read resources.
    pub fn text(&self) -> String {
        let mut s = format!(
            "cpus:{};mem:{}",
            format_milli(self.cpus_milli),
            format_milli(self.mem_milli)
        );
        if self.disk_milli > 0 {
            s.push_str(&format!(";disk:{}", format_milli(self.disk_milli)));
        }
        let ports = self.ports + self.fixed_ports.len() as u64;
        if ports > 0 {
            s.push_str(&format!(";ports:{ports}"));
        }
        s
    }
}

/// One agent as a framework in some role sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCapacity {
    /// The agent id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// Its attributes.
    pub attributes: Vec<(String, String)>,
    /// Its whole capacity usable by the role (unreserved, or reserved for the role or an
    /// ancestor), whatever runs there now.
    pub total: Resources,
    /// What of it is not allocated right now.
    pub available: Resources,
}

impl AgentCapacity {
    /// The agents of a state snapshot that may hold work (not `gone`), as `role` sees them.
    /// Agents whose resources cannot be read are left out.
    pub fn from_summaries(agents: &[v1::AgentSummary], role: &str) -> Vec<AgentCapacity> {
        agents
            .iter()
            .filter(|a| a.state != "gone")
            .filter_map(|a| {
                let total = Resources::parse(&a.total).ok()?.usable_by(role);
                let available = Resources::parse(&a.available)
                    .map(|r| r.usable_by(role))
                    .unwrap_or_default();
                Some(AgentCapacity {
                    id: a.id.clone(),
                    hostname: a.hostname.clone(),
                    attributes: a
                        .attributes
                        .iter()
                        .map(|x| (x.name.clone(), x.value.clone()))
                        .collect(),
                    total,
                    available,
                })
            })
            .collect()
    }

    /// `ID (HOSTNAME)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.id, self.hostname)
    }
}

/// True when `have` holds `demand` (all of it at once).
pub fn holds(have: &Resources, demand: &Demand) -> bool {
    let ports = have.ranges("ports");
    let fixed_ok = demand
        .fixed_ports
        .iter()
        .all(|&p| ports.contains(&RangeSet::from_ranges([(p, p)])));
    let fixed: std::collections::BTreeSet<u64> = demand.fixed_ports.iter().copied().collect();
    have.cpus_milli() >= demand.cpus_milli
        && have.mem_milli() >= demand.mem_milli
        && have.scalar_milli("disk") >= demand.disk_milli
        && fixed_ok
        && ports.count().saturating_sub(fixed.len() as u64) >= demand.ports
}

/// What the cluster's agents say about a demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feasibility {
    /// Some agent has room (when nothing else runs there).
    Fits,
    /// No agent is known yet: nothing can be said.
    NoAgents,
    /// No agent could ever hold it.
    Never(Shortfall),
}

/// Why no agent could ever hold a demand: the resource that is short and the largest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// `cpus`, `mem`, `disk`, `ports`, `port N`, or `cpus+mem` when no agent has both.
    pub resource: String,
    /// What was asked, e.g. `cpus:4;mem:64`.
    pub asked: String,
    /// Why, naming the largest agent: `the largest agent has cpus:2 (S1 (host-a))`.
    pub reason: String,
    /// How many agents were judged.
    pub agents: usize,
}

/// Judges `demand` against `agents` (their totals: what could ever be free there).
pub fn judge(agents: &[AgentCapacity], demand: &Demand) -> Feasibility {
    if agents.is_empty() {
        return Feasibility::NoAgents;
    }
    if agents.iter().any(|a| holds(&a.total, demand)) {
        return Feasibility::Fits;
    }
    let most = |f: &dyn Fn(&Resources) -> i64| {
        // The first of the largest (max_by_key alone keeps the last).
        agents
            .iter()
            .rev()
            .max_by_key(|a| f(&a.total))
            .map(|a| (f(&a.total), a.label()))
            .unwrap_or_default()
    };
    let (cpus, cpus_agent) = most(&Resources::cpus_milli);
    let (mem, mem_agent) = most(&Resources::mem_milli);
    let (disk, disk_agent) = most(&|r| r.scalar_milli("disk"));
    let (ports, ports_agent) = most(&|r| i64::try_from(r.ranges("ports").count()).unwrap_or(0));
    let missing_port = demand.fixed_ports.iter().find(|&&p| {
        !agents.iter().any(|a| {
            a.total
                .ranges("ports")
                .contains(&RangeSet::from_ranges([(p, p)]))
        })
    });
    let want_ports = i64::try_from(demand.ports + demand.fixed_ports.len() as u64).unwrap_or(0);
    let (resource, reason) = if cpus < demand.cpus_milli {
        (
            "cpus".to_string(),
            format!(
                "the largest agent has cpus:{} ({cpus_agent})",
                format_milli(cpus)
            ),
        )
    } else if mem < demand.mem_milli {
        (
            "mem".to_string(),
            format!(
                "the largest agent has mem:{} MB ({mem_agent})",
                format_milli(mem)
            ),
        )
    } else if disk < demand.disk_milli {
        (
            "disk".to_string(),
            format!(
                "the largest agent has disk:{} MB ({disk_agent})",
                format_milli(disk)
            ),
        )
    } else if let Some(p) = missing_port {
        (
            format!("port {p}"),
            format!("port {p} is in no agent's port ranges"),
        )
    } else if ports < want_ports {
        (
            "ports".to_string(),
            format!("the largest agent has {ports} ports ({ports_agent})"),
        )
    } else {
        (
            "cpus+mem".to_string(),
            format!(
                "no agent has both (most cpus: {} on {cpus_agent}; most mem: {} MB on {mem_agent})",
                format_milli(cpus),
                format_milli(mem)
            ),
        )
    };
    Feasibility::Never(Shortfall {
        resource,
        asked: demand.text(),
        reason,
        agents: agents.len(),
    })
}

/// Asks the leading master of `masters` (`HOST:PORT[,HOST:PORT…]`) for its agents, as `role`
/// sees them.
pub async fn agents(
    masters: &str,
    role: &str,
) -> Result<Vec<AgentCapacity>, crate::operator::OperatorError> {
    let state =
        crate::operator::call_list(masters, async |c| c.get_state(v1::GetStateRequest {}).await)
            .await?;
    Ok(AgentCapacity::from_summaries(&state.agents, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, total: &str) -> AgentCapacity {
        let total = Resources::parse(total).unwrap_or_default();
        AgentCapacity {
            id: id.into(),
            hostname: "h".into(),
            attributes: Vec::new(),
            available: total.clone(),
            total,
        }
    }

    fn never(agents: &[AgentCapacity], d: &Demand) -> Shortfall {
        match judge(agents, d) {
            Feasibility::Never(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_short_resource_and_the_largest_agent() {
        let agents = [
            agent("a1", "cpus:1;mem:4096;disk:100;ports:[31000-31001]"),
            agent("a2", "cpus:4;mem:512;disk:2000;ports:[80-80]"),
        ];
        let d = |c: i64, m: i64| Demand {
            cpus_milli: c,
            mem_milli: m,
            ..Demand::default()
        };
        assert_eq!(judge(&[], &d(1, 1)), Feasibility::NoAgents);
        assert_eq!(judge(&agents, &d(1_000, 32_000)), Feasibility::Fits);
        let s = never(&agents, &d(5_000, 32_000));
        assert_eq!(s.resource, "cpus");
        assert_eq!(s.reason, "the largest agent has cpus:4 (a2 (h))");
        assert_eq!(s.asked, "cpus:5;mem:32");
        assert_eq!(s.agents, 2);
        let s = never(&agents, &d(1_000, 8_192_000));
        assert_eq!(s.reason, "the largest agent has mem:4096 MB (a1 (h))");
        let s = never(&agents, &d(2_000, 1_024_000));
        assert_eq!(s.resource, "cpus+mem");
        let disk = Demand {
            disk_milli: 3_000_000,
            ..d(1_000, 1_000)
        };
        assert_eq!(never(&agents, &disk).resource, "disk");
        let port = Demand {
            fixed_ports: vec![443],
            ..d(1_000, 1_000)
        };
        assert_eq!(never(&agents, &port).resource, "port 443");
        let port80 = Demand {
            fixed_ports: vec![80],
            ..d(1_000, 1_000)
        };
        assert_eq!(judge(&agents, &port80), Feasibility::Fits);
        let many = Demand {
            ports: 3,
            ..d(1_000, 1_000)
        };
        let s = never(&agents, &many);
        assert_eq!(
            (s.resource.as_str(), s.reason.as_str()),
            ("ports", "the largest agent has 2 ports (a1 (h))")
        );
        assert_eq!(many.text(), "cpus:1;mem:1;ports:3");
    }

    #[test]
    fn reserved_resources_count_for_their_role() {
        let s = v1::AgentSummary {
            id: "a".into(),
            hostname: "h".into(),
            total: "cpus:1;cpus(web):4;mem:64".into(),
            available: "cpus:1;mem:64".into(),
            state: "active".into(),
            ..Default::default()
        };
        let gone = v1::AgentSummary {
            state: "gone".into(),
            ..s.clone()
        };
        let all = [s, gone];
        assert_eq!(
            AgentCapacity::from_summaries(&all, "*")[0]
                .total
                .cpus_milli(),
            1_000
        );
        assert_eq!(AgentCapacity::from_summaries(&all, "web").len(), 1);
        assert_eq!(
            AgentCapacity::from_summaries(&all, "web/api")[0]
                .total
                .cpus_milli(),
            5_000
        );
    }
}
