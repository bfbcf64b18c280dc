//! The YAML service specification: the serde model and [`ServiceSpec::parse`].
//!
//! Field names are kebab-case and unknown fields are refused, so a typo is reported with the
//! path of the offending field (`pods.web.tasks.server.cpu: unknown field ...`). Parsing runs in
//! three passes: options are substituted into the text ([`super::template::render_options`]),
//! the YAML is deserialized (serde errors carry their field path), and [`super::validate`]
//! checks the semantics (also by path).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SpecError;

/// A whole service: its pods and plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceSpec {
    /// The framework name (also the prefix of task ids).
    pub name: String,
    /// The role resources are offered and reserved for (default `*`).
    #[serde(default = "default_role")]
    pub role: String,
    /// Seconds the master keeps the framework after the scheduler disconnects (default 300).
    #[serde(default = "default_failover")]
    pub failover_timeout: f64,
    /// Default values of `{{OPTION}}` template variables; the caller may override them.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The pod types, by name (ordered: the default deploy plan follows this order).
    #[serde(with = "ordered")]
    pub pods: IndexedMap<PodSpec>,
    /// Custom plans by name; a plan named `deploy` replaces the default deploy plan, and a plan
    /// named `update` is used instead of the deploy plan to roll out a configuration change.
    #[serde(default, with = "ordered")]
    pub plans: IndexedMap<PlanSpec>,
}

fn default_role() -> String {
    "*".to_string()
}

fn default_failover() -> f64 {
    300.0
}

/// A map that keeps the order its keys were written in (YAML order matters for plans).
pub type IndexedMap<V> = Vec<(String, V)>;

/// One pod type: `count` instances, each a group of tasks placed together on one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PodSpec {
    /// How many instances (`NAME-0` … `NAME-{count-1}`).
    pub count: u32,
    /// Placement rules every instance must satisfy.
    #[serde(default)]
    pub placement: Vec<PlacementRule>,
    /// Persistent volumes shared by the pod's tasks.
    #[serde(default, with = "ordered")]
    pub volumes: IndexedMap<VolumeSpec>,
    /// The tasks of one instance, by name.
    #[serde(with = "ordered")]
    pub tasks: IndexedMap<TaskSpec>,
}

/// What a task is meant to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Goal {
    /// Keep running; restarted when it fails.
    Running,
    /// Run to successful completion; rerun on failure and when its configuration changes.
    Finish,
    /// Run to successful completion once, ever (not rerun on configuration changes).
    Once,
}

/// One task of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TaskSpec {
    /// The goal state (default RUNNING).
    #[serde(default = "default_goal")]
    pub goal: Goal,
    /// Shell command (templated).
    pub cmd: String,
    /// CPUs (> 0).
    pub cpus: f64,
    /// Memory in MB (> 0).
    pub memory: f64,
    /// Scratch disk in MB (default 0).
    #[serde(default)]
    pub disk: f64,
    /// Named ports; each is exported to the task as an environment variable.
    #[serde(default, with = "ordered")]
    pub ports: IndexedMap<PortSpec>,
    /// Environment variables (values templated).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files to fetch into the sandbox (templated).
    #[serde(default)]
    pub uris: Vec<String>,
    /// Health check: a failing task is killed and recovered.
    #[serde(default)]
    pub health_check: Option<CheckSpec>,
    /// Readiness check: the deploy step completes only when it passes.
    #[serde(default)]
    pub readiness_check: Option<CheckSpec>,
    /// SIGTERM → SIGKILL grace period in seconds (default: the agent's).
    #[serde(default)]
    pub kill_grace_period: Option<f64>,
    /// Run the task in a container from this image: an OCI image layout directory, a tar of
    /// one or a `docker save` archive, by absolute path, `file://` or `http(s)://`; `cmd` runs
    /// under `/bin/sh -c` inside it (docs/containers.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

fn default_goal() -> Goal {
    Goal::Running
}

/// A port: fixed (`port: 2379`) or any free one from the offer (`port: 0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PortSpec {
    /// The port number; 0 picks any offered port.
    #[serde(default)]
    pub port: u64,
    /// The environment variable carrying the chosen port (default `PORT_<NAME>`).
    #[serde(default)]
    pub env: Option<String>,
}

/// A persistent volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Path inside the sandbox (relative, e.g. `data`).
    pub path: String,
    /// Size in MB (> 0).
    pub size: u64,
}

/// A health or readiness check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CheckSpec {
    /// A shell command that must exit 0 (exclusive with `http`).
    #[serde(default)]
    pub cmd: Option<String>,
    /// An HTTP GET that must answer 2xx (exclusive with `cmd`).
    #[serde(default)]
    pub http: Option<HttpCheckSpec>,
    /// Seconds between checks (default 5).
    #[serde(default = "default_interval")]
    pub interval: f64,
    /// Seconds before the first check (default 0).
    #[serde(default)]
    pub delay: f64,
    /// Seconds a check may take (default 10).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Health checks only: consecutive failures that make a task unhealthy (default 3).
    #[serde(default = "default_failures")]
    pub max_consecutive_failures: u32,
    /// Health checks only: seconds after start during which failures are ignored (default 0).
    #[serde(default)]
    pub grace_period: f64,
}

fn default_interval() -> f64 {
    5.0
}

fn default_timeout() -> f64 {
    10.0
}

fn default_failures() -> u32 {
    3
}

/// An HTTP check target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HttpCheckSpec {
    /// The name of one of the task's ports.
    pub port: String,
    /// The request path (default `/`).
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/".to_string()
}

/// A placement rule. In YAML: `one-per-agent`, `max-per: {attribute: rack, max: 2}`,
/// `attribute-equals: {attribute: rack, value: r1}`, `attribute-like: {attribute: zone,
/// pattern: "us-*"}`, `avoid: POD`, `colocate: POD`. The attribute `hostname` is the agent's
/// hostname.
///
/// It serializes to the same form it is read from (a bare name or a one-key mapping, never a
/// YAML tag), so a serialized spec parses back to an equal spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementRule {
    /// At most one instance of this pod per agent.
    OnePerAgent,
    /// At most `max` instances of this pod per value of `attribute`.
    MaxPer {
        /// The attribute name (`hostname` for the agent's hostname).
        attribute: String,
        /// The limit (≥ 1).
        max: u32,
    },
    /// Only agents whose `attribute` equals `value`.
    AttributeEquals {
        /// The attribute name.
        attribute: String,
        /// The required value.
        value: String,
    },
    /// Only agents whose `attribute` matches the shell-style `pattern` (`*` and `?`).
    AttributeLike {
        /// The attribute name.
        attribute: String,
        /// The pattern.
        pattern: String,
    },
    /// Never on an agent that runs an instance of the named pod type.
    Avoid(String),
    /// Only on agents that run an instance of the named pod type.
    Colocate(String),
}

/// Placement rules in YAML: a bare name (`one-per-agent`) or a one-key mapping
/// (`max-per: {attribute: rack, max: 2}`, `avoid: db`).
mod rule_de {
    use super::PlacementRule;
    use serde::Deserialize;
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use std::fmt;

    const VARIANTS: &[&str] = &[
        "one-per-agent",
        "max-per",
        "attribute-equals",
        "attribute-like",
        "avoid",
        "colocate",
    ];

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MaxPer {
        attribute: String,
        max: u32,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Equals {
        attribute: String,
        value: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Like {
        attribute: String,
        pattern: String,
    }

    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = PlacementRule;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "`one-per-agent` or a one-key mapping such as `max-per: {attribute: rack, max: 2}`",
            )
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<PlacementRule, E> {
            match v {
                "one-per-agent" => Ok(PlacementRule::OnePerAgent),
                other => Err(de::Error::unknown_variant(other, VARIANTS)),
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PlacementRule, A::Error> {
            let Some(key) = map.next_key::<String>()? else {
                return Err(de::Error::custom("empty placement rule"));
            };
            let rule = match key.as_str() {
                "max-per" => {
                    let b: MaxPer = map.next_value()?;
                    PlacementRule::MaxPer {
                        attribute: b.attribute,
                        max: b.max,
                    }
                }
                "attribute-equals" => {
                    let b: Equals = map.next_value()?;
                    PlacementRule::AttributeEquals {
                        attribute: b.attribute,
                        value: b.value,
                    }
                }
                "attribute-like" => {
                    let b: Like = map.next_value()?;
                    PlacementRule::AttributeLike {
                        attribute: b.attribute,
                        pattern: b.pattern,
                    }
                }
                "avoid" => PlacementRule::Avoid(map.next_value()?),
                "colocate" => PlacementRule::Colocate(map.next_value()?),
                "one-per-agent" => {
                    let _: serde::de::IgnoredAny = map.next_value()?;
                    PlacementRule::OnePerAgent
                }
                other => return Err(de::Error::unknown_variant(other, VARIANTS)),
            };
            if map.next_key::<String>()?.is_some() {
                return Err(de::Error::custom("a placement rule has exactly one key"));
            }
            Ok(rule)
        }
    }

    impl<'de> Deserialize<'de> for PlacementRule {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(V)
        }
    }

    #[derive(serde::Serialize)]
    struct MaxPerRef<'a> {
        attribute: &'a str,
        max: u32,
    }

    #[derive(serde::Serialize)]
    struct EqualsRef<'a> {
        attribute: &'a str,
        value: &'a str,
    }

    #[derive(serde::Serialize)]
    struct LikeRef<'a> {
        attribute: &'a str,
        pattern: &'a str,
    }

    impl serde::Serialize for PlacementRule {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = match self {
                PlacementRule::OnePerAgent => return s.serialize_str("one-per-agent"),
                _ => s.serialize_map(Some(1))?,
            };
            match self {
                PlacementRule::OnePerAgent => {}
                PlacementRule::MaxPer { attribute, max } => m.serialize_entry(
                    "max-per",
                    &MaxPerRef {
                        attribute,
                        max: *max,
                    },
                )?,
                PlacementRule::AttributeEquals { attribute, value } => {
                    m.serialize_entry("attribute-equals", &EqualsRef { attribute, value })?
                }
                PlacementRule::AttributeLike { attribute, pattern } => {
                    m.serialize_entry("attribute-like", &LikeRef { attribute, pattern })?
                }
                PlacementRule::Avoid(pod) => m.serialize_entry("avoid", pod)?,
                PlacementRule::Colocate(pod) => m.serialize_entry("colocate", pod)?,
            }
            m.end()
        }
    }
}

/// How the children of a plan or phase are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// One after the other, in order (the default).
    #[default]
    Serial,
    /// All at once.
    Parallel,
    /// Each child starts when the children it `depends` on are complete.
    Dependency,
}

/// A custom plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanSpec {
    /// How phases are ordered.
    #[serde(default)]
    pub strategy: StrategyKind,
    /// The phases, by name.
    #[serde(with = "ordered")]
    pub phases: IndexedMap<PhaseSpec>,
}

/// A phase of a custom plan: steps over the instances of one pod type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PhaseSpec {
    /// How steps are ordered.
    #[serde(default)]
    pub strategy: StrategyKind,
    /// The pod type the steps launch.
    pub pod: String,
    /// Which tasks each step launches (default: all the pod's tasks).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Phases that must be complete first (with the `dependency` plan strategy).
    #[serde(default)]
    pub depends: Vec<String>,
}

/// (De)serializes an order-preserving list of pairs as a mapping.
mod ordered {
    use super::IndexedMap;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde::ser::{SerializeMap, Serializer};
    use std::fmt;
    use std::marker::PhantomData;

    struct V<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = IndexedMap<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: IndexedMap<T> = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, T>()? {
                if out.iter().any(|(n, _)| *n == k) {
                    return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<IndexedMap<T>, D::Error> {
        d.deserialize_map(V(PhantomData))
    }

    pub(super) fn serialize<S: Serializer, T: serde::Serialize>(
        v: &IndexedMap<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, x) in v {
            m.serialize_entry(k, x)?;
        }
        m.end()
    }
}

impl ServiceSpec {
    /// Parses and validates a spec. `overrides` replace the spec's `options` defaults.
    pub fn parse(yaml: &str, overrides: &BTreeMap<String, String>) -> Result<Self, SpecError> {
        // Options are read from the raw YAML first (before templating) to know their defaults.
        let defaults = read_option_defaults(yaml)?;
        let mut options = defaults;
        for (k, v) in overrides {
            options.insert(k.clone(), v.clone());
        }
        let rendered = super::template::render_options(yaml, &options)?;
        let de = serde_norway::Deserializer::from_str(&rendered);
        let mut spec: ServiceSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let mut reason = e.into_inner().to_string();
            // The YAML error may already start with (a prefix of) the path; keep it once.
            if let Some((head, rest)) = reason.split_once(": ")
                && !head.contains(' ')
                && path.starts_with(head)
            {
                reason = rest.to_string();
            }
            SpecError::Field { path, reason }
        })?;
        spec.options = options;
        super::validate::validate(&spec)?;
        Ok(spec)
    }

    /// The pod type `name`.
    pub fn pod(&self, name: &str) -> Option<&PodSpec> {
        self.pods.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// The plan `name` given in the spec.
    pub fn plan(&self, name: &str) -> Option<&PlanSpec> {
        self.plans.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

impl PodSpec {
    /// The task `name`.
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads the `options:` mapping of the raw text (values must be plain strings or numbers).
fn read_option_defaults(yaml: &str) -> Result<BTreeMap<String, String>, SpecError> {
    let neutral = super::template::neutralize(yaml);
    let value: serde_norway::Value =
        serde_norway::from_str(&neutral).map_err(|e| SpecError::Field {
            path: String::new(),
            reason: e.to_string(),
        })?;
    let mut out = BTreeMap::new();
    let Some(opts) = value.get("options") else {
        return Ok(out);
    };
    let Some(map) = opts.as_mapping() else {
        return Err(SpecError::Field {
            path: "options".into(),
            reason: "must be a mapping of NAME: value".into(),
        });
    };
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            return Err(SpecError::Field {
                path: "options".into(),
                reason: format!("option names must be strings (got {k:?})"),
            });
        };
        let val = match v {
            serde_norway::Value::String(s) => s.clone(),
            serde_norway::Value::Number(n) => n.to_string(),
            serde_norway::Value::Bool(b) => b.to_string(),
            other => {
                return Err(SpecError::Field {
                    path: format!("options.{key}"),
                    reason: format!("must be a string, number or boolean (got {other:?})"),
                });
            }
        };
        out.insert(key.to_string(), val);
    }
    Ok(out)
}
