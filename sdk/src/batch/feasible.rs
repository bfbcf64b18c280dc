//! Whether any agent could ever hold one task of a batch: a task larger than every agent would
//! otherwise wait forever for an offer that cannot come. Asked of the master's operator API
//! (`GetState`); the judging itself is shared with the service layer ([`crate::capacity`]).

use proffer_proto::v1;

use super::packing::TaskShape;
use crate::capacity::{self, AgentCapacity, Demand};

/// What the cluster's agents say about a task's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Feasibility {
    /// Some agent has room for a task (when nothing else runs there).
    Fits,
    /// No agent is known yet: nothing can be said.
    NoAgents,
    /// No agent could ever hold one: what was asked, which resource, the largest agent.
    Never(String),
}

/// Judges `shape` (in its role) against the agents of a state snapshot.
pub(crate) fn judge(agents: &[v1::AgentSummary], shape: &TaskShape) -> Feasibility {
    let role = shape.role.as_str();
    let agents = AgentCapacity::from_summaries(agents, role);
    let demand = Demand {
        cpus_milli: shape.cpus_milli,
        mem_milli: shape.mem_milli,
        ..Demand::default()
    };
    match capacity::judge(&agents, &demand) {
        capacity::Feasibility::Fits => Feasibility::Fits,
        capacity::Feasibility::NoAgents => Feasibility::NoAgents,
        capacity::Feasibility::Never(s) => Feasibility::Never(format!(
            "no agent can ever hold a task of {} in role `{role}` ({} agents): {}",
            s.asked, s.agents, s.reason
        )),
    }
}

/// Asks the leading master of `master` (`HOST:PORT[,HOST:PORT…]`) for its agents and judges
/// `shape` against them. `None` when no master's operator API can be asked (nothing is
/// concluded then).
pub(crate) async fn check(master: &str, shape: &TaskShape) -> Option<Feasibility> {
    let state =
        crate::operator::call_list(master, async |c| c.get_state(v1::GetStateRequest {}).await)
            .await
            .ok()?;
    Some(judge(&state.agents, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, total: &str) -> v1::AgentSummary {
        v1::AgentSummary {
            id: id.into(),
            hostname: "h".into(),
            total: total.into(),
            state: "active".into(),
            ..Default::default()
        }
    }

    fn shape(cpus: i64, mem: i64, role: &str) -> TaskShape {
        TaskShape {
            cpus_milli: cpus,
            mem_milli: mem,
            role: role.into(),
        }
    }

    #[test]
    fn judges_task_sizes_against_the_agents() {
        let agents = vec![
            agent("a1", "cpus:1;mem:4096"),
            agent("a2", "cpus:4;mem:512;cpus(web):4"),
        ];
        assert_eq!(
            judge(&[], &shape(1_000, 32_000, "*")),
            Feasibility::NoAgents
        );
        assert_eq!(
            judge(&agents, &shape(1_000, 32_000, "*")),
            Feasibility::Fits
        );
        let never = |s: &TaskShape| match judge(&agents, s) {
            Feasibility::Never(m) => m,
            other => panic!("{other:?}"),
        };
        let m = never(&shape(5_000, 32_000, "*"));
        assert!(
            m.contains("cpus:5") && m.contains("largest agent has cpus:4 (a2"),
            "{m}"
        );
        // Reserved cpus count for their role (and its children), not for `*`.
        assert_eq!(
            judge(&agents, &shape(5_000, 32_000, "web")),
            Feasibility::Fits
        );
        assert_eq!(
            judge(&agents, &shape(5_000, 32_000, "web/api")),
            Feasibility::Fits
        );
        let m = never(&shape(1_000, 8_192_000, "*"));
        assert!(m.contains("largest agent has mem:4096 MB (a1"), "{m}");
        let m = never(&shape(2_000, 1_024_000, "*"));
        assert!(m.contains("no agent has both"), "{m}");
    }
}
