//! Whether the pods an update launches or restarts can be placed on the cluster's current
//! agents, as the service would be offered them (its role's reservations and unreserved
//! resources), with the placement rules that do not depend on other pods (`attribute-equals`,
//! `attribute-like`, and the number of agents `one-per-agent` and `max-per` need). Pure: the
//! agents come from the master ([`crate::capacity::agents`]).

use std::collections::BTreeSet;

use proffer_proto::resources;
use serde::{Deserialize, Serialize};

use super::diff::{InstanceAction, UpdateDiff};
use super::placement::{AgentView, check_rule};
use super::spec::{PlacementRule, PodSpec, ServiceSpec};
use crate::capacity::{AgentCapacity, Demand, Feasibility, holds, judge};

/// The check of one pod type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodFit {
    /// The pod type.
    pub pod: String,
    /// What one instance asks (`cpus:0.5;mem:64;ports:1`).
    pub demand: String,
    /// Instances the update launches or restarts.
    pub placed: u32,
    /// Agents whose attributes meet the pod's placement rules.
    pub eligible: usize,
    /// Of those, agents that could hold an instance.
    pub fitting: usize,
    /// Of those, agents with room for one right now.
    pub room_now: usize,
    /// Why the pod cannot be placed, if so (the update is refused).
    pub problem: Option<String>,
    /// What may slow it down (it can still be placed).
    pub warnings: Vec<String>,
}

/// The check of an update against the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitReport {
    /// The role the service is offered resources in.
    pub role: String,
    /// How many agents were judged.
    pub agents: usize,
    /// One entry per pod type the update places.
    pub pods: Vec<PodFit>,
}

impl FitReport {
    /// True when every pod can be placed.
    pub fn placeable(&self) -> bool {
        self.pods.iter().all(|p| p.problem.is_none())
    }

    /// Why pods cannot be placed, one line each.
    pub fn problems(&self) -> Vec<String> {
        self.pods.iter().filter_map(|p| p.problem.clone()).collect()
    }
}

/// What one instance of `pod` asks of its agent: its tasks' resources, ports and volumes.
pub fn pod_demand(pod: &PodSpec) -> Demand {
    let mut d = Demand::default();
    for (_, t) in &pod.tasks {
        d.cpus_milli += resources::to_milli("cpus", t.cpus).unwrap_or(0);
        d.mem_milli += resources::to_milli("mem", t.memory).unwrap_or(0);
        d.disk_milli += resources::to_milli("disk", t.disk).unwrap_or(0);
        for (_, p) in &t.ports {
            if p.port == 0 {
                d.ports += 1;
            } else {
                d.fixed_ports.push(p.port);
            }
        }
    }
    for (_, v) in &pod.volumes {
        let mb = i64::try_from(v.size).unwrap_or(i64::MAX / 1000);
        d.disk_milli = d.disk_milli.saturating_add(mb.saturating_mul(1000));
    }
    d
}

/// Checks every pod type that `diff` launches or restarts against `agents`, and marks the
/// restarts whose agent cannot hold the new configuration as moving.
pub fn check(spec: &ServiceSpec, diff: &mut UpdateDiff, agents: &[AgentCapacity]) -> FitReport {
    let mut pods = Vec::new();
    for (name, pod) in &spec.pods {
        let placed = diff.placed().filter(|i| i.pod == *name).count() as u32;
        if placed == 0 {
            continue;
        }
        let demand = pod_demand(pod);
        let fit = pod_fit(name, pod, &demand, placed, &spec.role, agents);
        // Where no agent can hold it, it does not move either: the problem says so.
        let placeable = fit.problem.is_none();
        for i in diff
            .instances
            .iter_mut()
            .filter(|i| placeable && i.pod == *name && i.action != InstanceAction::Stop)
            .filter(|i| !i.start_first)
        {
            i.moves = move_reason(i.agent_id.as_deref(), &demand, pod, agents);
        }
        let fresh = diff
            .placed()
            .filter(|i| i.pod == *name && i.agent_id.is_none())
            .count();
        let mut fit = fit;
        if fit.problem.is_none() && fresh > 0 && fit.room_now == 0 && !agents.is_empty() {
            fit.warnings.push(format!(
                "no agent has room for a new instance right now: {fresh} wait(s) for resources to be freed"
            ));
        }
        pods.push(fit);
    }
    FitReport {
        role: spec.role.clone(),
        agents: agents.len(),
        pods,
    }
}

/// Why an instance cannot come back to `agent_id` with the new configuration, if so.
fn move_reason(
    agent_id: Option<&str>,
    demand: &Demand,
    pod: &PodSpec,
    agents: &[AgentCapacity],
) -> Option<String> {
    let a = agents.iter().find(|a| Some(a.id.as_str()) == agent_id)?;
    let view = AgentView {
        agent_id: &a.id,
        hostname: &a.hostname,
        attributes: &a.attributes,
    };
    let rules: Vec<String> = pod
        .placement
        .iter()
        .filter(|r| is_static(r))
        .filter_map(|r| check_rule(r, "", &view, &[]).err())
        .collect();
    let why = if !rules.is_empty() {
        rules.join("; ")
    } else if !holds(&a.total, demand) {
        let asked = [
            ("cpus", demand.cpus_milli),
            ("mem", demand.mem_milli),
            ("disk", demand.disk_milli),
        ];
        let short: Vec<String> = asked
            .iter()
            .filter(|(r, want)| a.total.scalar_milli(r) < *want)
            .map(|(r, _)| format!("{r}:{}", resources::format_milli(a.total.scalar_milli(r))))
            .collect();
        let has = if short.is_empty() {
            "not the ports".to_string()
        } else {
            short.join(";")
        };
        format!(
            "{} cannot hold {} (it has {has})",
            a.hostname,
            demand.text()
        )
    } else {
        return None;
    };
    let volumes = if pod.volumes.is_empty() {
        ""
    } else {
        " (its volumes stay behind)"
    };
    Some(format!(
        "{why}: it moves to another agent{volumes} once its agent's wait times out"
    ))
}

/// The value of attribute `name` of an agent (`hostname`: its hostname, unless an attribute
/// says otherwise), as placement rules read it.
fn attribute_of<'a>(a: &'a AgentCapacity, name: &str) -> Option<&'a str> {
    a.attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .or_else(|| (name == "hostname").then_some(a.hostname.as_str()))
}

/// Rules that look at the agent alone (not at where other pods run).
fn is_static(rule: &PlacementRule) -> bool {
    matches!(
        rule,
        PlacementRule::AttributeEquals { .. } | PlacementRule::AttributeLike { .. }
    )
}

fn pod_fit(
    name: &str,
    pod: &PodSpec,
    demand: &Demand,
    placed: u32,
    role: &str,
    agents: &[AgentCapacity],
) -> PodFit {
    let mut fit = PodFit {
        pod: name.to_string(),
        demand: demand.text(),
        placed,
        eligible: 0,
        fitting: 0,
        room_now: 0,
        problem: None,
        warnings: Vec::new(),
    };
    if agents.is_empty() {
        fit.warnings
            .push("no agent is registered: nothing can be said".to_string());
        return fit;
    }
    let mut first_refusal = None;
    let eligible: Vec<AgentCapacity> = agents
        .iter()
        .filter(|a| {
            let view = AgentView {
                agent_id: &a.id,
                hostname: &a.hostname,
                attributes: &a.attributes,
            };
            let refused = pod
                .placement
                .iter()
                .filter(|r| is_static(r))
                .find_map(|r| check_rule(r, name, &view, &[]).err());
            if first_refusal.is_none() {
                first_refusal.clone_from(&refused);
            }
            refused.is_none()
        })
        .cloned()
        .collect();
    fit.eligible = eligible.len();
    if eligible.is_empty() {
        fit.problem = Some(format!(
            "pod {name} cannot be placed: no agent meets its placement rules ({} agents; e.g. {})",
            agents.len(),
            first_refusal.unwrap_or_default()
        ));
        return fit;
    }
    let fitting: Vec<&AgentCapacity> = eligible
        .iter()
        .filter(|a| holds(&a.total, demand))
        .collect();
    fit.fitting = fitting.len();
    fit.room_now = fitting
        .iter()
        .filter(|a| holds(&a.available, demand))
        .count();
    if let Feasibility::Never(s) = judge(&eligible, demand) {
        let short = match s.resource.as_str() {
            "cpus+mem" => "both the cpus and the mem".to_string(),
            r if r.starts_with("port ") => r.to_string(),
            r => format!("enough {r}"),
        };
        fit.problem = Some(format!(
            "pod {name} cannot be placed: an instance asks {} and no agent has {short}: {} ({} agents, role {role})",
            s.asked, s.reason, s.agents
        ));
        return fit;
    }
    fit.problem = count_problem(name, pod, &fitting);
    fit
}

/// Why `pod.count` instances cannot all be placed on the `fitting` agents under the pod's
/// `one-per-agent` and `max-per` rules, if so.
fn count_problem(name: &str, pod: &PodSpec, fitting: &[&AgentCapacity]) -> Option<String> {
    let count = pod.count as usize;
    for rule in &pod.placement {
        let problem = match rule {
            PlacementRule::OnePerAgent if count > fitting.len() => Some(format!(
                "pod {name} cannot be placed: one-per-agent with count {count} needs {count} agents, {} can hold an instance",
                fitting.len()
            )),
            PlacementRule::MaxPer { attribute, max } => {
                let values: BTreeSet<&str> = fitting
                    .iter()
                    .filter_map(|a| attribute_of(a, attribute))
                    .collect();
                let room = values.len().saturating_mul(*max as usize);
                (count > room).then(|| {
                    format!(
                        "pod {name} cannot be placed: max-per {attribute} {max} with count {count} needs {} values of {attribute}, the agents that can hold an instance have {}",
                        count.div_ceil((*max).max(1) as usize),
                        values.len()
                    )
                })
            }
            _ => None,
        };
        if problem.is_some() {
            return problem;
        }
    }
    None
}
