//! Compiles a spec into plans: the default deploy plan (or the spec's own `deploy`), the custom
//! plans, and the scheduler's own plans for scale-down (`decommission`) and `uninstall`.

use super::plan::{Phase, Plan, Step};
use super::spec::{ServiceSpec, StrategyKind};

/// Builds the deploy plan under `name` (`deploy`, or `update` when the configuration changed).
/// For `update`, the spec's own `update` plan is used when it has one (e.g. to roll pod types
/// one instance at a time in an order unlike the deploy's); otherwise the deploy plan is reused.
/// Without a `deploy` plan in the spec: one serial phase per pod type, in spec order, each with
/// one step per instance launching all of its tasks.
pub fn deploy_plan(spec: &ServiceSpec, name: &str) -> Plan {
    if name == "update" && spec.plan("update").is_some() {
        return custom_plan(spec, "update");
    }
    let mut plan = match spec.plan("deploy") {
        Some(_) => custom_plan(spec, "deploy"),
        None => Plan {
            name: "deploy".to_string(),
            strategy: StrategyKind::Serial,
            phases: spec
                .pods
                .iter()
                .map(|(pod_name, pod)| Phase {
                    name: pod_name.clone(),
                    strategy: StrategyKind::Serial,
                    depends: Vec::new(),
                    steps: (0..pod.count)
                        .map(|i| {
                            Step::new(
                                pod_name,
                                i,
                                pod.tasks.iter().map(|(t, _)| t.clone()).collect(),
                            )
                        })
                        .collect(),
                    interrupted: false,
                })
                .collect(),
            interrupted: false,
        },
    };
    plan.name = name.to_string();
    plan
}

/// Builds the spec's plan `name` (empty if the spec has no such plan).
pub fn custom_plan(spec: &ServiceSpec, name: &str) -> Plan {
    let Some(p) = spec.plan(name) else {
        return Plan {
            name: name.to_string(),
            strategy: StrategyKind::Serial,
            phases: Vec::new(),
            interrupted: false,
        };
    };
    let phases = p
        .phases
        .iter()
        .map(|(phase_name, ph)| {
            let (count, tasks) = match spec.pod(&ph.pod) {
                Some(pod) => {
                    let tasks = if ph.tasks.is_empty() {
                        pod.tasks.iter().map(|(t, _)| t.clone()).collect()
                    } else {
                        ph.tasks.clone()
                    };
                    (pod.count, tasks)
                }
                None => (0, Vec::new()),
            };
            Phase {
                name: phase_name.clone(),
                strategy: ph.strategy,
                depends: ph.depends.clone(),
                steps: (0..count)
                    .map(|i| Step::new(&ph.pod, i, tasks.clone()))
                    .collect(),
                interrupted: false,
            }
        })
        .collect();
    Plan {
        name: name.to_string(),
        strategy: p.strategy,
        phases,
        interrupted: false,
    }
}

/// All the plans of a spec: the deploy plan first, then the custom plans (which start paused:
/// an operator starts them), in spec order. The spec's `deploy` and `update` plans are not
/// custom plans: they are used as the deploy plan (see [`deploy_plan`]).
pub fn compile(spec: &ServiceSpec, deploy_name: &str) -> Vec<Plan> {
    let mut out = vec![deploy_plan(spec, deploy_name)];
    for (name, _) in &spec.plans {
        if name == "deploy" || name == "update" {
            continue;
        }
        let mut p = custom_plan(spec, name);
        p.interrupted = true;
        out.push(p);
    }
    out
}

/// A one-phase parallel plan named `name` with one step per `(pod, index, tasks)`.
pub fn instance_plan(name: &str, phase: &str, instances: &[(String, u32, Vec<String>)]) -> Plan {
    Plan {
        name: name.to_string(),
        strategy: StrategyKind::Serial,
        phases: vec![Phase {
            name: phase.to_string(),
            strategy: StrategyKind::Parallel,
            depends: Vec::new(),
            steps: instances
                .iter()
                .map(|(pod, i, tasks)| Step::new(pod, *i, tasks.clone()))
                .collect(),
            interrupted: false,
        }],
        interrupted: false,
    }
}

/// Renders plans as indented text (used by golden tests and `proffer service plan`).
pub fn render_plans(plans: &[Plan]) -> String {
    let mut out = String::new();
    for p in plans {
        out.push_str(&render_plan(p));
    }
    out
}

/// Renders one plan as indented text.
pub fn render_plan(p: &Plan) -> String {
    let strategy = |s: StrategyKind| match s {
        StrategyKind::Serial => "serial",
        StrategyKind::Parallel => "parallel",
        StrategyKind::Dependency => "dependency",
    };
    let mut out = format!(
        "{} ({}) {}{}\n",
        p.name,
        strategy(p.strategy),
        p.status().name(),
        if p.interrupted { " [paused]" } else { "" }
    );
    for ph in &p.phases {
        let deps = if ph.depends.is_empty() {
            String::new()
        } else {
            format!(" after {}", ph.depends.join(","))
        };
        out.push_str(&format!(
            "  {} ({}{deps}) {}{}\n",
            ph.name,
            strategy(ph.strategy),
            ph.status().name(),
            if ph.interrupted { " [paused]" } else { "" }
        ));
        for s in &ph.steps {
            let msg = if s.message.is_empty() {
                String::new()
            } else {
                format!(" — {}", s.message)
            };
            out.push_str(&format!(
                "    {} {}{}{msg}\n",
                s.name,
                s.status.name(),
                if s.interrupted { " [paused]" } else { "" }
            ));
        }
    }
    out
}
