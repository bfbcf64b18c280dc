//! Builds a simulation from a scenario: the master, the agents, the frameworks (synthetic and
//! trace-driven) and the first events.

use std::collections::{HashMap, VecDeque};

use proffer_master_core::core::Master;
use proffer_master_core::core::rng::SplitMix64;
use proffer_proto::v1;

use super::framework::Source;
use super::queue::{Ev, Queue};
use super::{Counters, Sim, SimAgent, SimFramework};
use crate::error::SimError;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::scenario::Scenario;
use crate::trace;

/// Mixes a seed with a stream number so that every framework draws from its own stream.
pub(crate) fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut r = SplitMix64::new(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64()
}

pub(super) fn build(s: &Scenario, policy: Policy) -> Result<Sim, SimError> {
    let mut config = s.master_config();
    policy.apply(&mut config);
    let mut master = Master::new(config, s.seed);
    let mut frameworks = Vec::new();
    for spec in &s.frameworks {
        for i in 0..spec.count {
            let name = if spec.count == 1 {
                spec.name.clone()
            } else {
                format!("{}-{i}", spec.name)
            };
            let source = Source::Synthetic {
                cpus: spec.task.cpus_milli,
                mem: spec.task.mem_milli,
                proto: spec.task.resources.to_proto(),
                arrivals: spec.arrivals.clone(),
                duration: spec.duration.clone(),
                generated: 0,
                max_tasks: spec.max_tasks,
            };
            let seed = stream_seed(s.seed, frameworks.len() as u64 + 1);
            let mut fw = SimFramework::new(
                name,
                spec.role.clone(),
                spec.weight,
                spec.model.clone(),
                source,
                seed,
                spec.tasks,
                spec.join_at_ms,
                spec.leave_at_ms,
            );
            if spec.min_offer_is_task {
                fw.min_offer = Some((spec.task.cpus_milli, spec.task.mem_milli));
            }
            frameworks.push(fw);
        }
    }
    for (ti, t) in s.traces.iter().enumerate() {
        let path = s.base_dir.join(&t.path);
        for (key, tasks) in trace::load(&path, t)? {
            let join = tasks.first().map(|x| x.time_ms).unwrap_or(0);
            let seed = stream_seed(s.seed, frameworks.len() as u64 + 1);
            frameworks.push(SimFramework::new(
                format!("trace{ti}-{key}"),
                t.role.clone(),
                1.0,
                t.model.clone(),
                Source::Trace { tasks, cursor: 0 },
                seed,
                0,
                join,
                None,
            ));
        }
    }
    if policy.uses_weights() {
        for fw in &frameworks {
            if fw.weight != 1.0 {
                master
                    .set_weight(&fw.role, fw.weight)
                    .map_err(|e| SimError::Scenario {
                        path: s.base_dir.clone(),
                        line: 0,
                        field: "weight".into(),
                        message: e.to_string(),
                    })?;
            }
        }
    }
    let mut agents = Vec::new();
    let mut queue = Queue::default();
    for (g, group) in s.agents.iter().enumerate() {
        let churn = group
            .churn
            .as_ref()
            .map(|c| (c.mean_uptime_s, c.mean_downtime_s));
        let join = crate::dist::secs_to_ms(group.join_at_s);
        for _ in 0..group.count {
            let idx = agents.len() as u32;
            let info = v1::AgentInfo {
                hostname: format!("sim-{idx}"),
                port: 5051,
                resources: group.resources.resources.to_proto(),
                attributes: group
                    .attributes
                    .0
                    .iter()
                    .map(|(name, value)| v1::Attribute {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                ..Default::default()
            };
            agents.push(SimAgent::new(
                g as u32,
                info,
                group.resources.cpus_milli,
                group.resources.mem_milli,
                churn,
            ));
            queue.push(join, Ev::AgentUp(idx));
        }
    }
    for (i, f) in frameworks.iter().enumerate() {
        queue.push(f.join_at_ms, Ev::Join(i as u32));
    }
    queue.push(0, Ev::Tick);
    queue.push(0, Ev::Sample);
    let names = frameworks.iter().map(|f| f.name.clone()).collect();
    let roles = frameworks.iter().map(|f| f.role.clone()).collect();
    Ok(Sim {
        master,
        now: 0,
        end: s.duration_ms(),
        tick_ms: s.tick_ms(),
        sample_ms: s.sample_ms(),
        queue,
        pending: VecDeque::new(),
        outputs: Vec::new(),
        agents,
        frameworks,
        fw_by_id: HashMap::new(),
        rng: SplitMix64::new(stream_seed(s.seed, 0)),
        metrics: Metrics::new(names, roles),
        decisions: s.sim.record_decisions.then(Vec::new),
        counters: Counters::default(),
        uuid_counter: 0,
        cluster_cpus: 0,
        cluster_mem: 0,
        tick_us: Vec::new(),
        wall: std::time::Duration::ZERO,
        policy,
        scenario_name: s.name.clone(),
        seed: s.seed,
    })
}
