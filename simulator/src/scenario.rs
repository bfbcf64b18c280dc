//! Scenario files (TOML): the cluster, the frameworks and their workloads, master settings.
//!
//! The format is documented in `simulator/README.md`. Every value is checked while parsing, so
//! a bad file fails with the file, line and field at fault.

use std::path::{Path, PathBuf};

use proffer_master_core::core::MasterConfig;
use proffer_proto::Resources;
use serde::Deserialize;

use crate::dist::{Arrivals, DurationDist, secs_to_ms};
use crate::error::SimError;
use crate::policy::Policy;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// Seeds the master and every random draw of the simulation.
    #[serde(default)]
    pub seed: u64,
    /// Simulated time to run, in seconds.
    pub duration_s: f64,
    /// Master settings.
    #[serde(default)]
    pub master: MasterSection,
    /// Simulator settings.
    #[serde(default)]
    pub sim: SimSection,
    /// Groups of identical agents.
    #[serde(default)]
    pub agents: Vec<AgentGroup>,
    /// Frameworks with synthetic workloads.
    #[serde(default)]
    pub frameworks: Vec<FrameworkSpec>,
    /// Frameworks driven by trace files.
    #[serde(default)]
    pub traces: Vec<TraceSpec>,
    /// Directory the scenario was read from (trace paths are relative to it).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_name() -> String {
    "scenario".into()
}

/// `[master]`: the settings handed to the real master core.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterSection {
    /// Batch allocation interval (ms).
    pub allocation_interval_ms: u64,
    /// Default decline filter (seconds).
    pub default_refuse_s: f64,
    /// Rescind unanswered offers after this many seconds (none by default).
    pub offer_timeout_s: Option<f64>,
    /// Agent ping interval (seconds).
    pub agent_ping_interval_s: f64,
    /// Missed pings before an agent is removed.
    pub agent_max_missed_pings: u32,
    /// Allocation policy (see [`crate::policy`]).
    pub policy: Policy,
    /// Resources that come back are offered this long after the first came back (ms; only
    /// seen when `[sim] tick_ms` is shorter than the allocation interval).
    pub offer_coalesce_ms: u64,
}

impl Default for MasterSection {
    fn default() -> Self {
        let d = MasterConfig::default();
        MasterSection {
            allocation_interval_ms: d.allocation_interval_ms,
            default_refuse_s: d.default_refuse_ms as f64 / 1000.0,
            offer_timeout_s: d.offer_timeout_ms.map(|ms| ms as f64 / 1000.0),
            agent_ping_interval_s: d.agent_ping_interval_ms as f64 / 1000.0,
            agent_max_missed_pings: d.agent_max_missed_pings,
            policy: Policy::default(),
            offer_coalesce_ms: d.offer_coalesce_ms,
        }
    }
}

/// `[sim]`: how the simulator drives the master and samples metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSection {
    /// How often the master's timers run (ms); defaults to the allocation interval.
    pub tick_ms: Option<u64>,
    /// How often metrics are sampled (seconds).
    pub sample_interval_s: f64,
    /// Keep a log of every offer, launch and decline (written to `decisions.csv`).
    pub record_decisions: bool,
}

impl Default for SimSection {
    fn default() -> Self {
        SimSection {
            tick_ms: None,
            sample_interval_s: 10.0,
            record_decisions: false,
        }
    }
}

/// The cpus and mem of a resource string, kept with the parsed resources.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Shape {
    /// The text given.
    pub text: String,
    /// Parsed.
    pub resources: Resources,
    /// cpus in milli-units.
    pub cpus_milli: i64,
    /// mem in milli-MB.
    pub mem_milli: i64,
}

impl TryFrom<String> for Shape {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let resources =
            Resources::parse(&text).map_err(|e| format!("invalid resources \"{text}\": {e}"))?;
        let (cpus_milli, mem_milli) = (resources.cpus_milli(), resources.mem_milli());
        if cpus_milli <= 0 || mem_milli <= 0 {
            return Err(format!(
                "resources \"{text}\" must have cpus and mem greater than 0"
            ));
        }
        Ok(Shape {
            text,
            resources,
            cpus_milli,
            mem_milli,
        })
    }
}

/// Attributes in text form, `name:value` pairs separated by `;` (`rack:r1;zone:a`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub struct Attrs(pub Vec<(String, String)>);

impl TryFrom<String> for Attrs {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once(':') {
                Some((n, v)) if !n.trim().is_empty() => {
                    out.push((n.trim().to_string(), v.trim().to_string()))
                }
                _ => {
                    return Err(format!(
                        "attribute \"{part}\" must have the form name:value"
                    ));
                }
            }
        }
        Ok(Attrs(out))
    }
}

/// `[[agents]]`: `count` agents with the same resources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
    /// Resources of each, Mesos text form (`cpus:16;mem:65536`).
    pub resources: Shape,
    /// When they register (seconds).
    #[serde(default)]
    pub join_at_s: f64,
    /// Optional failures and recoveries.
    pub churn: Option<Churn>,
    /// Attributes (`rack:r1;zone:a`), offered with the agent's resources.
    #[serde(default)]
    pub attributes: Attrs,
}

fn one() -> u32 {
    1
}

/// Agent churn: exponential up and down times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Mean time between failures (seconds).
    pub mean_uptime_s: f64,
    /// Mean time to come back (seconds).
    pub mean_downtime_s: f64,
}

/// How a framework answers offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    /// Launches every queued task that fits, declines the rest.
    Greedy,
    /// Like greedy, but declines a whole offer with probability `decline_probability`.
    Picky,
    /// Holds offers for `hold_s` before using them (hoarding resources meanwhile).
    Hoarding,
    /// Always wants more: keeps up to `max_running` tasks running, relaunching as they end.
    Elastic,
}

/// The offer-answering model shared by synthetic and trace-driven frameworks.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// Picky: probability of declining an offer outright.
    pub decline_probability: f64,
    /// Hoarding: how long offers are held (ms).
    pub hold_ms: u64,
    /// Elastic: target number of running tasks.
    pub max_running: u32,
    /// At most this many tasks per offer (0 = no limit).
    pub max_tasks_per_offer: u32,
    /// `FrameworkInfo.max_outstanding_offers`: at most this many offers held at once (0 = no
    /// limit).
    pub max_outstanding_offers: u32,
    /// Keep the offer limit near the demand (UPDATE_FRAMEWORK): about as many offers as tasks
    /// waiting (rounded up to a power of two), at most `max_outstanding_offers`.
    pub adaptive_offer_limit: bool,
    /// `refuse_seconds` sent with declines and accepts, in ms (`None` = master default).
    pub refuse_ms: Option<u64>,
    /// Suppress offers when there is nothing to run, revive when work arrives.
    pub suppress_when_idle: bool,
    /// Only offers from agents with all these attributes are used (others are declined).
    pub constraints: Attrs,
}

/// `[[frameworks]]`: `count` frameworks with the same synthetic workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawFramework")]
pub struct FrameworkSpec {
    /// Name (suffixed `-i` when `count` > 1).
    pub name: String,
    /// How many copies.
    pub count: u32,
    /// The role it subscribes with.
    pub role: String,
    /// Weight of its role (for weighted policies).
    pub weight: f64,
    /// How it answers offers.
    pub model: Model,
    /// Resources of each task.
    pub task: Shape,
    /// Subscribe with `offer_filters` whose minimum is one task: leftovers too small for a
    /// task are never offered to it.
    pub min_offer_is_task: bool,
    /// Tasks queued when it joins.
    pub tasks: u64,
    /// Further arrivals.
    pub arrivals: Option<Arrivals>,
    /// Stop generating arrivals after this many tasks in all (0 = no limit).
    pub max_tasks: u64,
    /// Task durations.
    pub duration: DurationDist,
    /// When it subscribes (ms).
    pub join_at_ms: u64,
    /// When it tears down (ms), if ever.
    pub leave_at_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFramework {
    name: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "star")]
    role: String,
    #[serde(default = "unit_weight")]
    weight: f64,
    #[serde(default = "greedy")]
    behaviour: Behaviour,
    #[serde(default)]
    decline_probability: f64,
    #[serde(default)]
    hold_s: f64,
    #[serde(default)]
    max_running: u32,
    #[serde(default)]
    max_tasks_per_offer: u32,
    #[serde(default)]
    max_outstanding_offers: u32,
    #[serde(default)]
    adaptive_offer_limit: bool,
    refuse_s: Option<f64>,
    #[serde(default = "yes")]
    suppress_when_idle: bool,
    #[serde(default)]
    constraints: Attrs,
    task: Shape,
    #[serde(default)]
    min_offer_is_task: bool,
    #[serde(default)]
    tasks: u64,
    arrivals: Option<Arrivals>,
    #[serde(default)]
    max_tasks: u64,
    #[serde(default = "forever")]
    duration: DurationDist,
    #[serde(default)]
    join_at_s: f64,
    leave_at_s: Option<f64>,
}

fn star() -> String {
    "*".into()
}
fn unit_weight() -> f64 {
    1.0
}
fn greedy() -> Behaviour {
    Behaviour::Greedy
}
fn yes() -> bool {
    true
}
fn forever() -> DurationDist {
    DurationDist::Forever
}

/// Checks the fields of the offer model.
#[allow(clippy::too_many_arguments)]
fn model(
    behaviour: Behaviour,
    decline_probability: f64,
    hold_s: f64,
    max_running: u32,
    max_tasks_per_offer: u32,
    max_outstanding_offers: u32,
    adaptive_offer_limit: bool,
    refuse_s: Option<f64>,
    suppress_when_idle: bool,
    constraints: Attrs,
) -> Result<Model, String> {
    if adaptive_offer_limit && max_outstanding_offers == 0 {
        return Err(
            "`adaptive_offer_limit` needs `max_outstanding_offers` > 0 (the most it may ask for)"
                .into(),
        );
    }
    if !(0.0..=1.0).contains(&decline_probability) {
        return Err(format!(
            "`decline_probability` must be within 0..=1, got {decline_probability}"
        ));
    }
    if !(hold_s.is_finite() && hold_s >= 0.0) {
        return Err(format!(
            "`hold_s` must be a non-negative number, got {hold_s}"
        ));
    }
    if behaviour == Behaviour::Elastic && max_running == 0 {
        return Err("`max_running` must be set (> 0) for behaviour \"elastic\"".into());
    }
    if behaviour == Behaviour::Hoarding && hold_s <= 0.0 {
        return Err("`hold_s` must be set (> 0) for behaviour \"hoarding\"".into());
    }
    if let Some(r) = refuse_s
        && !(r.is_finite() && r >= 0.0)
    {
        return Err(format!("`refuse_s` must be a non-negative number, got {r}"));
    }
    Ok(Model {
        behaviour,
        decline_probability,
        hold_ms: secs_to_ms(hold_s),
        max_running,
        max_tasks_per_offer,
        max_outstanding_offers,
        adaptive_offer_limit,
        refuse_ms: refuse_s.map(secs_to_ms),
        suppress_when_idle,
        constraints,
    })
}

fn time_ms(field: &str, s: f64) -> Result<u64, String> {
    if s.is_finite() && s >= 0.0 {
        Ok(secs_to_ms(s))
    } else {
        Err(format!(
            "`{field}` must be a non-negative number of seconds, got {s}"
        ))
    }
}

fn check_role(role: &str) -> Result<(), String> {
    proffer_proto::resources::validate_role(role).map_err(|e| format!("`role`: {e}"))
}

impl TryFrom<RawFramework> for FrameworkSpec {
    type Error = String;
    fn try_from(r: RawFramework) -> Result<Self, String> {
        if r.name.trim().is_empty() {
            return Err("`name` must not be empty".into());
        }
        check_role(&r.role)?;
        if !(r.weight.is_finite() && r.weight > 0.0) {
            return Err(format!(
                "`weight` must be a positive number, got {}",
                r.weight
            ));
        }
        let model = model(
            r.behaviour,
            r.decline_probability,
            r.hold_s,
            r.max_running,
            r.max_tasks_per_offer,
            r.max_outstanding_offers,
            r.adaptive_offer_limit,
            r.refuse_s,
            r.suppress_when_idle,
            r.constraints,
        )?;
        let join_at_ms = time_ms("join_at_s", r.join_at_s)?;
        let leave_at_ms = r.leave_at_s.map(|s| time_ms("leave_at_s", s)).transpose()?;
        if leave_at_ms.is_some_and(|l| l < join_at_ms) {
            return Err("`leave_at_s` must not be before `join_at_s`".into());
        }
        Ok(FrameworkSpec {
            name: r.name,
            count: r.count,
            role: r.role,
            weight: r.weight,
            model,
            task: r.task,
            min_offer_is_task: r.min_offer_is_task,
            tasks: r.tasks,
            arrivals: r.arrivals,
            max_tasks: r.max_tasks,
            duration: r.duration,
            join_at_ms,
            leave_at_ms,
        })
    }
}

/// Trace file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    /// Google cluster-data 2011 `task_events` CSV.
    Google2011,
    /// Alibaba cluster-trace-v2018 `batch_task` CSV.
    Alibaba2018,
    /// Our own CSV (`time_s,framework,cpus,mem_mb,duration_s[,count]` with a header).
    Csv,
    /// Our own JSON (an array of objects with the CSV's fields).
    Json,
}

/// `[[traces]]`: frameworks whose tasks come from a trace file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawTrace")]
pub struct TraceSpec {
    /// The format.
    pub format: TraceFormat,
    /// The file (relative to the scenario file).
    pub path: PathBuf,
    /// Trace keys (user, job, framework column) are folded onto at most this many frameworks.
    pub max_frameworks: u32,
    /// Role of the trace frameworks.
    pub role: String,
    /// How they answer offers.
    pub model: Model,
    /// Cores for a normalized CPU request of 1.0 (Google) or per 100 `plan_cpu` (Alibaba).
    pub cpu_scale: f64,
    /// MB for a normalized memory request of 1.0 (Google) or for `plan_mem` 100 (Alibaba).
    pub mem_scale_mb: f64,
    /// Trace time is divided by this (2.0 = twice as fast).
    pub speedup: f64,
    /// Read at most this many tasks (0 = all).
    pub limit: usize,
    /// Duration of tasks whose end is not in the trace (`None` = run forever).
    pub default_duration_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    format: TraceFormat,
    path: PathBuf,
    #[serde(default = "ten")]
    max_frameworks: u32,
    #[serde(default = "star")]
    role: String,
    #[serde(default = "greedy")]
    behaviour: Behaviour,
    #[serde(default)]
    decline_probability: f64,
    #[serde(default)]
    hold_s: f64,
    #[serde(default)]
    max_running: u32,
    #[serde(default)]
    max_tasks_per_offer: u32,
    #[serde(default)]
    max_outstanding_offers: u32,
    #[serde(default)]
    adaptive_offer_limit: bool,
    refuse_s: Option<f64>,
    #[serde(default = "yes")]
    suppress_when_idle: bool,
    #[serde(default)]
    constraints: Attrs,
    #[serde(default = "unit_weight")]
    cpu_scale: f64,
    #[serde(default = "default_mem_scale")]
    mem_scale_mb: f64,
    #[serde(default = "unit_weight")]
    speedup: f64,
    #[serde(default)]
    limit: usize,
    default_duration_s: Option<f64>,
}

fn ten() -> u32 {
    10
}
fn default_mem_scale() -> f64 {
    1024.0
}

impl TryFrom<RawTrace> for TraceSpec {
    type Error = String;
    fn try_from(r: RawTrace) -> Result<Self, String> {
        check_role(&r.role)?;
        if r.max_frameworks == 0 {
            return Err("`max_frameworks` must be at least 1".into());
        }
        for (name, v) in [
            ("cpu_scale", r.cpu_scale),
            ("mem_scale_mb", r.mem_scale_mb),
            ("speedup", r.speedup),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{name}` must be a positive number, got {v}"));
            }
        }
        Ok(TraceSpec {
            format: r.format,
            path: r.path,
            max_frameworks: r.max_frameworks,
            role: r.role,
            model: model(
                r.behaviour,
                r.decline_probability,
                r.hold_s,
                r.max_running,
                r.max_tasks_per_offer,
                r.max_outstanding_offers,
                r.adaptive_offer_limit,
                r.refuse_s,
                r.suppress_when_idle,
                r.constraints,
            )?,
            cpu_scale: r.cpu_scale,
            mem_scale_mb: r.mem_scale_mb,
            speedup: r.speedup,
            limit: r.limit,
            default_duration_ms: r
                .default_duration_s
                .map(|s| time_ms("default_duration_s", s))
                .transpose()?,
        })
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
        Scenario::parse(&text, path)
    }

    /// Parses and checks scenario text; `path` names it in errors and anchors trace paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, SimError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
        s.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let bad = |field: &str, message: String| SimError::Scenario {
            path: path.to_path_buf(),
            line: find_key_line(text, field),
            field: field.to_string(),
            message,
        };
        if !(s.duration_s.is_finite() && s.duration_s > 0.0) {
            return Err(bad(
                "duration_s",
                format!("must be a positive number, got {}", s.duration_s),
            ));
        }
        if s.master.allocation_interval_ms == 0 {
            return Err(bad("allocation_interval_ms", "must be at least 1".into()));
        }
        if s.sim.tick_ms == Some(0) {
            return Err(bad("tick_ms", "must be at least 1".into()));
        }
        if !(s.sim.sample_interval_s.is_finite() && s.sim.sample_interval_s > 0.0) {
            return Err(bad("sample_interval_s", "must be a positive number".into()));
        }
        if s.agents.is_empty() {
            return Err(bad(
                "agents",
                "at least one [[agents]] group is required".into(),
            ));
        }
        Ok(s)
    }

    /// The master configuration this scenario asks for.
    pub fn master_config(&self) -> MasterConfig {
        let m = &self.master;
        let mut c = MasterConfig {
            allocation_interval_ms: m.allocation_interval_ms,
            default_refuse_ms: secs_to_ms(m.default_refuse_s),
            offer_timeout_ms: m.offer_timeout_s.map(secs_to_ms),
            agent_ping_interval_ms: secs_to_ms(m.agent_ping_interval_s).max(1),
            agent_max_missed_pings: m.agent_max_missed_pings,
            offer_coalesce_ms: m.offer_coalesce_ms,
            ..MasterConfig::default()
        };
        m.policy.apply(&mut c);
        c
    }

    /// Simulated duration in ms.
    pub fn duration_ms(&self) -> u64 {
        secs_to_ms(self.duration_s)
    }

    /// Master tick period in ms.
    pub fn tick_ms(&self) -> u64 {
        self.sim
            .tick_ms
            .unwrap_or(self.master.allocation_interval_ms)
    }

    /// Metrics sampling period in ms.
    pub fn sample_ms(&self) -> u64 {
        secs_to_ms(self.sim.sample_interval_s).max(1)
    }
}

/// Turns a TOML/serde error into one naming the file, line and field.
fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> SimError {
    let message = e.message().trim().to_string();
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(0);
    // serde's "missing/unknown field `x`" and our "`x` must …" name the field; otherwise it is
    // the key on the line the error points at.
    let named = if message.starts_with('`') || message.contains("field `") {
        backticked(&message)
    } else {
        None
    };
    let field = named
        .or_else(|| key_on_line(text, line))
        .or_else(|| backticked(&message))
        .unwrap_or_else(|| "?".into());
    SimError::Scenario {
        path: path.to_path_buf(),
        line,
        field,
        message,
    }
}

fn backticked(s: &str) -> Option<String> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(s[start..start + len].to_string())
}

fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    Some(key.trim().to_string())
}

fn find_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with(']')
            }) || t.starts_with(&format!("[[{key}]]"))
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
