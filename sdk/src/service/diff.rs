//! What a spec update would change, as `nomad job plan` shows it: which pod types are added,
//! changed (field by field) or scaled, and which instances the update plan restarts or
//! launches, in which order, and which are stopped. Pure: the old and new specs and the task
//! records in, an [`UpdateDiff`] out. Whether the new pods fit the cluster is [`super::fit`]'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compile::deploy_plan;
use super::core::{TaskNeed, config_hash, is_terminal, task_need};
use super::plan::Plan;
use super::spec::{Goal, PodSpec, ServiceSpec, StrategyKind};
use super::store::TaskRecord;

/// How a pod type changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodChangeKind {
    /// A new pod type.
    Added,
    /// Its configuration changes (its instances are relaunched), maybe its count too.
    Changed,
    /// Only its count changes.
    Scaled,
    /// Nothing changes.
    Unchanged,
}

/// One changed field of a pod's configuration (dotted path below the pod).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `tasks.server.cpus`.
    pub path: String,
    /// The old value (none: the field was not set).
    pub old: Option<String>,
    /// The new value (none: the field is removed).
    pub new: Option<String>,
}

/// The change of one pod type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDiff {
    /// The pod type.
    pub pod: String,
    /// What kind of change.
    pub kind: PodChangeKind,
    /// Instances before (0 for a new pod type).
    pub old_count: u32,
    /// Instances after.
    pub new_count: u32,
    /// The changed fields.
    pub fields: Vec<FieldChange>,
}

/// What happens to one pod instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceAction {
    /// Its tasks are launched (a new instance, or tasks that ended and must run again).
    Launch,
    /// Its running tasks are killed and launched again with the new configuration.
    Restart,
    /// It is above the new count: its tasks are killed and it is forgotten.
    Stop,
}

impl InstanceAction {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            InstanceAction::Launch => "launch",
            InstanceAction::Restart => "restart",
            InstanceAction::Stop => "stop",
        }
    }
}

/// One instance the update touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceChange {
    /// When, by the update plan's strategies: instances of the same order go together, order 1
    /// first. Stops have order 0: the decommission plan runs at once, beside the update.
    pub order: u32,
    /// `POD-INDEX`.
    pub instance: String,
    /// The pod type.
    pub pod: String,
    /// The instance index.
    pub index: u32,
    /// What happens.
    pub action: InstanceAction,
    /// The tasks launched, restarted or stopped.
    pub tasks: Vec<String>,
    /// The agent id it runs on (or last ran on) and comes back to; none for a new instance.
    pub agent_id: Option<String>,
    /// That agent's hostname.
    pub hostname: Option<String>,
    /// Why it may not come back to its agent (set by the placement check), if so.
    pub moves: Option<String>,
    /// A restart whose replacement starts (on any agent that fits) before the running
    /// instance is stopped.
    #[serde(default)]
    pub start_first: bool,
}

/// What an update would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateDiff {
    /// The service.
    pub service: String,
    /// The plan that rolls the change out, with its strategies (`update: phases serial`).
    pub plan: String,
    /// Every pod type of the new spec, in spec order.
    pub pods: Vec<PodDiff>,
    /// The instances touched, in rollout order.
    pub instances: Vec<InstanceChange>,
}

impl UpdateDiff {
    /// True when the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.pods.iter().all(|p| p.kind == PodChangeKind::Unchanged)
    }

    /// The instances launched or restarted (those that need a place).
    pub fn placed(&self) -> impl Iterator<Item = &InstanceChange> {
        self.instances
            .iter()
            .filter(|i| i.action != InstanceAction::Stop)
    }
}

/// True when a running instance of `pod` may be replaced by starting the new `tasks` before
/// the old ones stop: no persistent volumes (they cannot be in two places), no fixed ports (the
/// two would clash on one agent), every task meant to keep running, and no reservations (each
/// instance has one, under its name).
pub fn can_start_first(pod: &PodSpec, tasks: &[String], reservations: bool) -> bool {
    !reservations
        && pod.volumes.is_empty()
        && tasks.iter().all(|t| {
            pod.task(t).is_some_and(|t| {
                t.goal == Goal::Running && t.ports.iter().all(|(_, p)| p.port == 0)
            })
        })
}

/// Diffs `old` against `new`, with the instances' task records (`tasks`, by record name).
/// `start_first`: whether the scheduler starts replacements first where the spec allows it.
pub fn diff(
    old: &ServiceSpec,
    new: &ServiceSpec,
    tasks: &BTreeMap<String, TaskRecord>,
    start_first: bool,
) -> UpdateDiff {
    let pods = new
        .pods
        .iter()
        .map(|(name, pod)| pod_diff(name, old.pod(name), pod))
        .collect();
    let plan = deploy_plan(new, "update");
    let mut instances = Vec::new();
    // Instances above their new count, or of pod types that are gone: decommissioned.
    let mut stops: BTreeMap<(String, u32), Vec<&TaskRecord>> = BTreeMap::new();
    for r in tasks.values() {
        if new.pod(&r.pod).is_none_or(|p| r.index >= p.count) {
            stops.entry((r.pod.clone(), r.index)).or_default().push(r);
        }
    }
    for ((pod, index), recs) in stops {
        let live: Vec<String> = recs
            .iter()
            .filter(|r| !is_terminal(&r.state))
            .map(|r| r.task.clone())
            .collect();
        instances.push(InstanceChange {
            order: 0,
            instance: format!("{pod}-{index}"),
            pod,
            index,
            action: InstanceAction::Stop,
            tasks: live,
            agent_id: recs.first().map(|r| r.agent_id.clone()),
            hostname: recs.first().map(|r| r.hostname.clone()),
            moves: None,
            start_first: false,
        });
    }
    let mut launches = step_changes(new, &plan, tasks);
    for c in launches
        .iter_mut()
        .filter(|c| start_first && c.action == InstanceAction::Restart)
    {
        c.start_first = new
            .pod(&c.pod)
            .is_some_and(|p| can_start_first(p, &c.tasks, false));
    }
    order(&plan, &mut launches);
    launches.sort_by_key(|c| c.order);
    instances.extend(launches);
    UpdateDiff {
        service: new.name.clone(),
        plan: describe_plan(&plan),
        pods,
        instances,
    }
}

fn strategy(s: StrategyKind) -> &'static str {
    match s {
        StrategyKind::Serial => "serial",
        StrategyKind::Parallel => "parallel",
        StrategyKind::Dependency => "dependency",
    }
}

/// `update (serial: web serial, db parallel)`.
fn describe_plan(plan: &Plan) -> String {
    let phases: Vec<String> = plan
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, strategy(p.strategy)))
        .collect();
    format!(
        "{} ({}: {})",
        plan.name,
        strategy(plan.strategy),
        phases.join(", ")
    )
}

fn pod_diff(name: &str, old: Option<&PodSpec>, new: &PodSpec) -> PodDiff {
    let Some(old) = old else {
        return PodDiff {
            pod: name.to_string(),
            kind: PodChangeKind::Added,
            old_count: 0,
            new_count: new.count,
            fields: Vec::new(),
        };
    };
    let value = |p: &PodSpec| {
        serde_json::to_value(PodSpec {
            count: 0,
            ..p.clone()
        })
        .unwrap_or(Value::Null)
    };
    let mut fields = Vec::new();
    value_diff("", &value(old), &value(new), &mut fields);
    let kind = if !fields.is_empty() {
        PodChangeKind::Changed
    } else if old.count != new.count {
        PodChangeKind::Scaled
    } else {
        PodChangeKind::Unchanged
    };
    PodDiff {
        pod: name.to_string(),
        kind,
        old_count: old.count,
        new_count: new.count,
        fields,
    }
}

/// The changed leaves of two JSON values, by dotted path (lists compare whole).
fn value_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                value_diff(&join(k), va, y.get(k).unwrap_or(&Value::Null), out);
            }
            for (k, vb) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                value_diff(&join(k), &Value::Null, vb, out);
            }
        }
        _ if a == b => {}
        _ => out.push(FieldChange {
            path: path.to_string(),
            old: show(a),
            new: show(b),
        }),
    }
}

/// A value as people read it: strings bare, the rest as compact JSON, at most 80 characters.
fn show(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    })
}

/// The update plan's steps that launch or restart something (order not yet set).
fn step_changes(
    new: &ServiceSpec,
    plan: &Plan,
    tasks: &BTreeMap<String, TaskRecord>,
) -> Vec<InstanceChange> {
    let mut out = Vec::new();
    for (_, step) in plan.steps() {
        let hash = config_hash(new, &step.pod);
        let (mut launch, mut restart) = (Vec::new(), Vec::new());
        for t in &step.tasks {
            let goal = new
                .pod(&step.pod)
                .and_then(|p| p.task(t))
                .map_or(Goal::Running, |t| t.goal);
            let rec = tasks.get(&format!("{}-{}-{t}", step.pod, step.index));
            match task_need(rec, goal, &hash) {
                TaskNeed::Launch => launch.push(t.clone()),
                TaskNeed::Kill => restart.push(t.clone()),
                TaskNeed::Nothing => {}
            }
        }
        if launch.is_empty() && restart.is_empty() {
            continue;
        }
        let home = tasks
            .values()
            .find(|r| r.pod == step.pod && r.index == step.index && !r.agent_id.is_empty());
        let action = if restart.is_empty() {
            InstanceAction::Launch
        } else {
            InstanceAction::Restart
        };
        restart.extend(launch);
        out.push(InstanceChange {
            order: 0,
            instance: step.instance(),
            pod: step.pod.clone(),
            index: step.index,
            action,
            tasks: restart,
            agent_id: home.map(|r| r.agent_id.clone()),
            hostname: home.map(|r| r.hostname.clone()),
            moves: None,
            start_first: false,
        });
    }
    out
}

/// Sets each change's order by the plan's strategies, counting only the steps that change
/// something (the others complete at once). Each changing step is taken to last one round.
fn order(plan: &Plan, changes: &mut [InstanceChange]) {
    let mut phase_end: BTreeMap<&str, u32> = BTreeMap::new();
    let mut cursor = 0u32;
    for phase in &plan.phases {
        let start = match plan.strategy {
            StrategyKind::Serial => cursor,
            StrategyKind::Parallel => 0,
            StrategyKind::Dependency => phase
                .depends
                .iter()
                .filter_map(|d| phase_end.get(d.as_str()).copied())
                .max()
                .unwrap_or(0),
        };
        let mut end = start;
        for step in &phase.steps {
            let Some(c) = changes
                .iter_mut()
                .find(|c| c.order == 0 && c.pod == step.pod && c.index == step.index)
            else {
                continue;
            };
            c.order = match phase.strategy {
                StrategyKind::Serial => end + 1,
                _ => start + 1,
            };
            end = end.max(c.order);
        }
        phase_end.insert(phase.name.as_str(), end);
        if plan.strategy == StrategyKind::Serial {
            cursor = end;
        }
    }
    // A step the plan does not reach keeps order 0: put it last.
    let last = changes.iter().map(|c| c.order).max().unwrap_or(0);
    for c in changes.iter_mut().filter(|c| c.order == 0) {
        c.order = last + 1;
    }
}
