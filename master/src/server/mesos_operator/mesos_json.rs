//! Mesos's JSON model of the master's state (what `/master/state`, `/master/slaves`,
//! `/master/frameworks`, `/master/tasks`, `/master/roles` and `/master/state-summary` answer
//! in Mesos 1.11), built from a published snapshot. Pure functions: no I/O, no clock.
//!
//! Resources are Mesos's "model" form: `{"cpus": 2.0, "mem": 1024.0, "ports": "[31000-32000]"}`
//! (scalars summed over roles, ranges as `[a-b, c-d]`, sets as `{a, b}`); reserved resources
//! are keyed by role.

use std::collections::{BTreeMap, HashMap};

use proffer_proto::resources::Value as RValue;
use proffer_proto::{Resources, v1};
use serde_json::{Map, Value, json};

/// The Mesos version Proffer answers as (`/version`, `GET_VERSION`, agents' `version`).
pub const MESOS_VERSION: &str = "1.11.0";

/// Who this master is, for the fields Mesos derives from its process.
#[derive(Debug, Clone, Default)]
pub struct MasterIdent {
    /// The master's id.
    pub id: String,
    /// `HOST:PORT` as clients reach it.
    pub advertise: String,
}

impl MasterIdent {
    /// Mesos's libprocess pid form: `master@HOST:PORT`.
    pub fn pid(&self) -> String {
        format!("master@{}", self.advertise)
    }

    /// The host part of the address.
    pub fn hostname(&self) -> &str {
        self.advertise
            .rsplit_once(':')
            .map_or(self.advertise.as_str(), |(h, _)| h)
    }
}

/// Resources in Proffer text form, parsed (unparseable text counts as empty: the snapshot is
/// written by the core, so this does not happen).
pub fn parse(text: &str) -> Resources {
    Resources::parse(text).unwrap_or_default()
}

fn value_json(v: &RValue) -> Value {
    match v {
        RValue::Scalar(m) => json!(*m as f64 / 1000.0),
        RValue::Ranges(r) => {
            let parts: Vec<String> = r.ranges().iter().map(|(a, b)| format!("{a}-{b}")).collect();
            Value::String(format!("[{}]", parts.join(", ")))
        }
        RValue::Set(s) => {
            let parts: Vec<&str> = s.iter().map(String::as_str).collect();
            Value::String(format!("{{{}}}", parts.join(", ")))
        }
    }
}

/// Mesos's model of a bag of resources: one entry per name (the standard four always shown).
pub fn resources_json(r: &Resources) -> Value {
    // Sum each name over its roles; non-scalars merge by taking the union via Resources.
    let mut by_name: BTreeMap<String, Resources> = BTreeMap::new();
    for entry in r.entries() {
        if let Some((key, _)) = entry.iter().next() {
            let name = key.name.to_string();
            let stripped = entry
                .map_labels(|k| proffer_proto::resources::ResourceKey::new(&k.name, "*", k.kind));
            by_name.entry(name).or_default().add(&stripped);
        }
    }
    let mut out = Map::new();
    for name in ["cpus", "gpus", "mem", "disk"] {
        out.insert(name.to_string(), json!(0.0));
    }
    for (name, bag) in by_name {
        if let Some((_, v)) = bag.iter().next() {
            out.insert(name, value_json(v));
        }
    }
    Value::Object(out)
}

/// Text form straight to Mesos's model.
pub fn text_json(text: &str) -> Value {
    resources_json(&parse(text))
}

/// Reserved resources keyed by role (`reserved_resources`), and the unreserved rest.
pub fn split_reserved(r: &Resources) -> (Value, Value) {
    let mut roles: BTreeMap<String, Resources> = BTreeMap::new();
    let mut unreserved = Resources::new();
    for entry in r.entries() {
        let Some((key, _)) = entry.iter().next() else {
            continue;
        };
        if key.is_reserved() {
            roles.entry(key.role.to_string()).or_default().add(&entry);
        } else {
            unreserved.add(&entry);
        }
    }
    let reserved: Map<String, Value> = roles
        .into_iter()
        .map(|(role, bag)| (role, resources_json(&bag)))
        .collect();
    (Value::Object(reserved), resources_json(&unreserved))
}

/// Seconds (Mesos's times are float seconds since the epoch) from Unix ms.
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// One task in Mesos's form.
pub fn task_json(t: &v1::TaskSummary) -> Value {
    let mut statuses = Vec::new();
    if t.started_ms > 0 {
        statuses.push(json!({"state": "TASK_RUNNING", "timestamp": secs(t.started_ms)}));
    }
    // The statuses are those forwarded to the framework; `state` is the latest on the agent.
    let forwarded = super::to_mesos::forwarded_state(t);
    if t.ended_ms > 0 || forwarded != "TASK_RUNNING" {
        let mut s = json!({"state": forwarded, "timestamp": secs(t.ended_ms.max(t.started_ms))});
        if !t.message.is_empty() {
            s["message"] = json!(t.message);
        }
        if !t.reason.is_empty() {
            s["reason"] = json!(t.reason);
        }
        statuses.push(s);
    }
    let mut task = json!({
        "id": t.id,
        "name": t.name,
        "framework_id": t.framework_id,
        "executor_id": "",
        "slave_id": t.agent_id,
        "agent_id": t.agent_id,
        "state": t.state,
        "resources": text_json(&t.resources),
        "statuses": statuses,
        "user": t.user,
        "sandbox": t.sandbox,
    });
    if !t.image.is_empty() {
        task["container"] = container_json(&t.image);
    }
    task
}

/// A task's image as Mesos writes its `ContainerInfo` (the form its scheduler API takes:
/// `type MESOS`, the image named as a Docker image; Mesos has no field for its digest).
fn container_json(image: &str) -> Value {
    json!({
        "type": "MESOS",
        "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}},
    })
}

fn offer_json(o: &v1::OfferSummary) -> Value {
    json!({
        "id": o.id,
        "framework_id": o.framework_id,
        "slave_id": o.agent_id,
        "resources": text_json(&o.resources),
    })
}

/// Offered resources per agent and per framework.
struct Offered {
    by_agent: HashMap<String, Resources>,
    by_framework: HashMap<String, Resources>,
}

fn offered(state: &v1::StateSnapshot) -> Offered {
    let mut o = Offered {
        by_agent: HashMap::new(),
        by_framework: HashMap::new(),
    };
    for offer in &state.offers {
        let r = parse(&offer.resources);
        o.by_agent
            .entry(offer.agent_id.clone())
            .or_default()
            .add(&r);
        o.by_framework
            .entry(offer.framework_id.clone())
            .or_default()
            .add(&r);
    }
    o
}

/// Used (allocated but not offered) and offered resources.
fn used_and_offered(allocated: &str, offered: Option<&Resources>) -> (Resources, Resources) {
    let allocated = parse(allocated);
    let offered = offered.cloned().unwrap_or_default();
    let used = allocated.checked_sub(&offered).unwrap_or(allocated);
    (used, offered)
}

fn attributes_json(attrs: &[v1::Attribute]) -> Value {
    let map: Map<String, Value> = attrs
        .iter()
        .map(|a| {
            let v = serde_json::to_value(a).unwrap_or(Value::Null);
            let text = v
                .get("text")
                .or_else(|| v.get("value"))
                .cloned()
                .unwrap_or(v.clone());
            (a.name.clone(), text)
        })
        .collect();
    Value::Object(map)
}

/// One agent in Mesos's form (`slaves[]`).
fn agent_json(a: &v1::AgentSummary, offers: &Offered) -> Value {
    let total = parse(&a.total);
    let (used, offered) = used_and_offered(&a.allocated, offers.by_agent.get(&a.id));
    let (reserved, unreserved) = split_reserved(&total);
    json!({
        "id": a.id,
        "pid": format!("slave(1)@{}:{}", a.hostname, a.port),
        "hostname": a.hostname,
        "port": a.port,
        "resources": resources_json(&total),
        "used_resources": resources_json(&used),
        "offered_resources": resources_json(&offered),
        "reserved_resources": reserved,
        "unreserved_resources": unreserved,
        "attributes": attributes_json(&a.attributes),
        "active": a.state == "active" || a.state == "draining",
        "deactivated": a.draining,
        "state": a.state,
        "version": MESOS_VERSION,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        "unreachable_since": secs(a.unreachable_since_ms),
    })
}

/// One framework in Mesos's form, with its tasks and offers.
fn framework_json(f: &v1::FrameworkSummary, state: &v1::StateSnapshot, offers: &Offered) -> Value {
    let (used, offered) = used_and_offered(&f.allocated, offers.by_framework.get(&f.id));
    let mut all = used.clone();
    all.add(&offered);
    let mine = |t: &&v1::TaskSummary| t.framework_id == f.id;
    let tasks: Vec<Value> = state.tasks.iter().filter(mine).map(task_json).collect();
    let completed: Vec<Value> = state
        .completed_tasks
        .iter()
        .filter(mine)
        .map(task_json)
        .collect();
    let my_offers: Vec<Value> = state
        .offers
        .iter()
        .filter(|o| o.framework_id == f.id)
        .map(offer_json)
        .collect();
    json!({
        "id": f.id,
        "name": f.name,
        "pid": Value::Null,
        "hostname": "",
        "webui_url": "",
        "user": f.user,
        "principal": f.principal,
        "role": f.roles.first().cloned().unwrap_or_else(|| "*".into()),
        "roles": f.roles,
        "active": f.connected,
        "connected": f.connected,
        "recovered": false,
        "checkpoint": true,
        "failover_timeout": f.failover_timeout,
        "capabilities": ["MULTI_ROLE"],
        "suppressed_roles": if f.suppressed { f.roles.clone() } else { Vec::new() },
        "used_resources": resources_json(&used),
        "offered_resources": resources_json(&offered),
        "resources": resources_json(&all),
        "dominant_share": f.dominant_share,
        "tasks": tasks,
        "unreachable_tasks": [],
        "completed_tasks": completed,
        "offers": my_offers,
        "executors": [],
        "completed_executors": [],
    })
}

/// `{"slaves": […], "recovered_slaves": []}` (`/master/slaves`).
pub fn slaves(state: &v1::StateSnapshot) -> Value {
    let offers = offered(state);
    let list: Vec<Value> = state
        .agents
        .iter()
        .map(|a| agent_json(a, &offers))
        .collect();
    json!({"slaves": list, "recovered_slaves": []})
}

/// `{"frameworks": […], "completed_frameworks": [], "unregistered_frameworks": []}`.
pub fn frameworks(state: &v1::StateSnapshot) -> Value {
    let offers = offered(state);
    let list: Vec<Value> = state
        .frameworks
        .iter()
        .map(|f| framework_json(f, state, &offers))
        .collect();
    json!({"frameworks": list, "completed_frameworks": [], "unregistered_frameworks": []})
}

/// `/master/state`.
pub fn state(state: &v1::StateSnapshot, who: &MasterIdent) -> Value {
    let count = |s: &str| state.agents.iter().filter(|a| a.state == s).count();
    let start = secs(state.now_ms.saturating_sub(state.uptime_ms));
    let mut out = json!({
        "version": MESOS_VERSION,
        "proffer_version": env!("CARGO_PKG_VERSION"),
        "id": state.master_id,
        "pid": who.pid(),
        "hostname": who.hostname(),
        "leader": who.pid(),
        "leader_info": leader_info(who),
        "start_time": start,
        "elected_time": start,
        "activated_slaves": count("active") + count("draining"),
        "deactivated_slaves": count("draining"),
        "unreachable_slaves": count("unreachable"),
        "flags": {},
        "capabilities": ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"],
        "orphan_tasks": [],
    });
    merge(&mut out, slaves(state));
    merge(&mut out, frameworks(state));
    out
}

fn leader_info(who: &MasterIdent) -> Value {
    let port: u64 = who
        .advertise
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0);
    json!({"id": who.id, "hostname": who.hostname(), "port": port, "pid": who.pid(),
        "version": MESOS_VERSION})
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// Task counts by state, as `/master/state-summary` shows them.
const SUMMARY_STATES: &[&str] = &[
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_FINISHED",
    "TASK_KILLED",
    "TASK_FAILED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_UNREACHABLE",
];

fn count_states<'a>(into: &mut Value, tasks: impl Iterator<Item = &'a v1::TaskSummary>) {
    let mut counts: BTreeMap<&str, u64> = SUMMARY_STATES.iter().map(|s| (*s, 0)).collect();
    for t in tasks {
        if let Some(c) = counts.get_mut(t.state.as_str()) {
            *c += 1;
        }
    }
    if let Value::Object(m) = into {
        for (k, v) in counts {
            m.insert(k.to_string(), json!(v));
        }
    }
}

/// `/master/state-summary`: agents and frameworks without their tasks, with task counts.
pub fn state_summary(state: &v1::StateSnapshot, who: &MasterIdent) -> Value {
    let offers = offered(state);
    let all = || state.tasks.iter().chain(&state.completed_tasks);
    let slaves: Vec<Value> = state
        .agents
        .iter()
        .map(|a| {
            let mut v = agent_json(a, &offers);
            count_states(&mut v, all().filter(|t| t.agent_id == a.id));
            let mut fws: Vec<&str> = all()
                .filter(|t| t.agent_id == a.id)
                .map(|t| t.framework_id.as_str())
                .collect();
            fws.sort_unstable();
            fws.dedup();
            v["framework_ids"] = json!(fws);
            v
        })
        .collect();
    let frameworks: Vec<Value> = state
        .frameworks
        .iter()
        .map(|f| {
            let (used, offered) = used_and_offered(&f.allocated, offers.by_framework.get(&f.id));
            let mut v = json!({
                "id": f.id, "name": f.name, "pid": Value::Null, "hostname": "", "webui_url": "",
                "active": f.connected, "capabilities": ["MULTI_ROLE"],
                "used_resources": resources_json(&used),
                "offered_resources": resources_json(&offered),
            });
            count_states(&mut v, all().filter(|t| t.framework_id == f.id));
            let mut agents: Vec<&str> = all()
                .filter(|t| t.framework_id == f.id)
                .map(|t| t.agent_id.as_str())
                .collect();
            agents.sort_unstable();
            agents.dedup();
            v["slave_ids"] = json!(agents);
            v
        })
        .collect();
    json!({"hostname": who.hostname(), "cluster": "proffer", "slaves": slaves,
        "frameworks": frameworks})
}

/// `/master/roles`.
pub fn roles(roles: &[v1::RoleSummary]) -> Value {
    let list: Vec<Value> = roles
        .iter()
        .map(|r| {
            let guarantee = text_json(&r.guarantees);
            let limit = if r.limits.is_empty() {
                json!({})
            } else {
                text_json(&r.limits)
            };
            json!({
                "name": r.role,
                "weight": r.weight,
                "resources": text_json(&r.allocated),
                "allocated": text_json(&r.allocated),
                "frameworks": r.frameworks,
                "quota": {"role": r.role, "guarantee": guarantee, "limit": limit,
                    "consumed": text_json(&r.allocated)},
            })
        })
        .collect();
    json!({ "roles": list })
}

/// Query of `/master/tasks`: `limit` (default 100), `offset`, `order` (`asc`/`des`),
/// `framework_id`, `task_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TasksQuery {
    /// At most this many tasks.
    pub limit: usize,
    /// Skip this many first.
    pub offset: usize,
    /// Newest first (`des`, Mesos's default) or oldest first (`asc`).
    pub descending: bool,
    /// Only this framework's tasks.
    pub framework_id: Option<String>,
    /// Only this task.
    pub task_id: Option<String>,
}

impl TasksQuery {
    /// Parses the query, naming the parameter that is wrong.
    pub fn parse(q: &BTreeMap<String, String>) -> Result<TasksQuery, String> {
        let num = |k: &str, default: usize| match q.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("invalid query parameter `{k}`: `{v}` is not a number")),
        };
        let descending = match q.get("order").map(String::as_str) {
            None | Some("des") => true,
            Some("asc") => false,
            Some(other) => {
                return Err(format!(
                    "invalid query parameter `order`: `{other}` (expected `asc` or `des`)"
                ));
            }
        };
        Ok(TasksQuery {
            limit: num("limit", 100)?,
            offset: num("offset", 0)?,
            descending,
            framework_id: q.get("framework_id").cloned(),
            task_id: q.get("task_id").cloned(),
        })
    }
}

/// `/master/tasks`: `{"tasks": […]}`, ordered by start (or launch) time.
pub fn tasks(state: &v1::StateSnapshot, q: &TasksQuery) -> Value {
    let mut all: Vec<&v1::TaskSummary> = state
        .tasks
        .iter()
        .chain(&state.completed_tasks)
        .filter(|t| q.framework_id.as_ref().is_none_or(|f| &t.framework_id == f))
        .filter(|t| q.task_id.as_ref().is_none_or(|id| &t.id == id))
        .collect();
    all.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
    if q.descending {
        all.reverse();
    }
    let list: Vec<Value> = all
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(task_json)
        .collect();
    json!({ "tasks": list })
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "version": MESOS_VERSION,
        "build_date": "",
        "build_time": 0,
        "build_user": "",
        "git_sha": "",
        "git_tag": "",
        "proffer_version": env!("CARGO_PKG_VERSION"),
    })
}

/// `/metrics/snapshot`: Mesos's metric names for what Proffer has.
pub fn metrics(state: &v1::StateSnapshot, stats: &crate::core::MasterStats, builds: u64) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_string(), json!(v));
    };
    let agents = |s: &str| state.agents.iter().filter(|a| a.state == s).count() as f64;
    put("master/elected", 1.0);
    put("master/uptime_secs", secs(state.uptime_ms));
    put(
        "master/slaves_active",
        agents("active") + agents("draining"),
    );
    put("master/slaves_inactive", agents("recovering"));
    put(
        "master/slaves_connected",
        state.agents.iter().filter(|a| a.connected).count() as f64,
    );
    put(
        "master/slaves_disconnected",
        state.agents.iter().filter(|a| !a.connected).count() as f64,
    );
    put("master/slaves_unreachable", agents("unreachable"));
    put("master/slave_registrations", stats.agents_registered as f64);
    put("master/slave_removals", stats.agents_removed as f64);
    let connected = state.frameworks.iter().filter(|f| f.connected).count() as f64;
    put("master/frameworks_active", connected);
    put("master/frameworks_connected", connected);
    put(
        "master/frameworks_disconnected",
        state.frameworks.len() as f64 - connected,
    );
    put(
        "master/frameworks_inactive",
        state.frameworks.len() as f64 - connected,
    );
    put("master/outstanding_offers", state.offers.len() as f64);
    put("master/messages_launch_tasks", stats.tasks_launched as f64);
    put(
        "allocator/mesos/allocation_runs",
        stats.allocation_cycles as f64,
    );
    put("master/snapshots_built", builds as f64);
    for s in [
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
    ] {
        let n = state.tasks.iter().filter(|t| t.state == s).count() as f64;
        put(&format!("master/tasks_{}", s[5..].to_lowercase()), n);
    }
    for s in [
        "FINISHED", "FAILED", "KILLED", "LOST", "ERROR", "DROPPED", "GONE",
    ] {
        let n = stats
            .tasks_terminal
            .iter()
            .find(|(name, _)| name == &format!("TASK_{s}"))
            .map_or(0, |(_, n)| *n);
        put(&format!("master/tasks_{}", s.to_lowercase()), n as f64);
    }
    let total = parse(&state.total);
    let used = parse(&state.allocated);
    for name in ["cpus", "mem", "disk", "gpus"] {
        let t = total.scalar_milli(name) as f64 / 1000.0;
        let u = used.scalar_milli(name) as f64 / 1000.0;
        put(&format!("master/{name}_total"), t);
        put(&format!("master/{name}_used"), u);
        put(
            &format!("master/{name}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        );
    }
    Value::Object(m)
}
