//! The offer evaluator: a pipeline of stages (agent pinning, placement, resources,
//! reservation, volumes) that decides whether one offer can host one step's tasks, and says why
//! not in one line per failing stage.
//!
//! Each stage either passes with a note or fails with a reason. The reason texts are what the
//! `why` view and `/v1/debug/offers` show, so table tests pin them down.

use std::collections::BTreeSet;

use proffer_proto::resources::{RangeSet, UNRESERVED, Value};
use proffer_proto::{Resources, resources, v1};

use super::placement::{AgentView, Placement, check_rule};
use super::spec::PodSpec;
use super::validate::port_env;

/// What one step needs from an offer.
#[derive(Debug, Clone)]
pub struct StepRequest<'a> {
    /// The step's display name.
    pub step: String,
    /// The pod type.
    pub pod_name: &'a str,
    /// The instance index.
    pub index: u32,
    /// The pod spec.
    pub pod: &'a PodSpec,
    /// The tasks to launch.
    pub tasks: Vec<String>,
    /// The agent the instance must return to, with the reason (running siblings, transient recovery).
    pub pinned: Option<(String, String)>,
}

/// How the evaluator works for this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalConfig {
    /// The service role (reservations are made for it).
    pub role: String,
    /// Reserve resources (and create volumes) before launching. Needs master support for
    /// RESERVE/CREATE; off by default.
    pub reservations: bool,
}

/// The resources and ports chosen for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResources {
    /// The task name within the pod.
    pub task: String,
    /// The resources the task is launched with.
    pub resources: Resources,
    /// `(environment variable, port)` for each named port.
    pub ports: Vec<(String, u64)>,
}

/// A successful match of one step to one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// Per-task resources.
    pub tasks: Vec<TaskResources>,
    /// RESERVE / CREATE operations to send before the LAUNCH (empty without reservations).
    pub operations: Vec<v1::Operation>,
    /// Everything taken from the offer (for the remaining-resources bookkeeping).
    pub consumed: Resources,
    /// Volume directories to create in the sandbox (reservations off: not persistent).
    pub sandbox_volumes: Vec<String>,
    /// One note per stage.
    pub notes: Vec<String>,
}

/// The offer as the stages see it: where it is and what is left of it.
#[derive(Debug, Clone)]
pub struct OfferView<'a> {
    /// The agent.
    pub agent: AgentView<'a>,
    /// Unused resources of the offer.
    pub remaining: &'a Resources,
}

/// Evaluates `req` against an offer. `others` are the placements of every other instance.
pub fn evaluate(
    cfg: &EvalConfig,
    offer: &OfferView<'_>,
    req: &StepRequest<'_>,
    others: &[Placement],
) -> Result<Matched, String> {
    let mut m = Matched {
        tasks: Vec::new(),
        operations: Vec::new(),
        consumed: Resources::new(),
        sandbox_volumes: Vec::new(),
        notes: Vec::new(),
    };
    agent_stage(offer, req, &mut m)?;
    placement_stage(offer, req, others, &mut m)?;
    resources_stage(cfg, offer, req, &mut m)?;
    reservation_stage(cfg, &mut m)?;
    volume_stage(cfg, req, &mut m)?;
    Ok(m)
}

fn agent_stage(
    offer: &OfferView<'_>,
    req: &StepRequest<'_>,
    m: &mut Matched,
) -> Result<(), String> {
    match &req.pinned {
        Some((agent, why)) if agent != offer.agent.agent_id => Err(format!(
            "agent: {} must return to agent {agent} ({why})",
            req.pod_name_index()
        )),
        Some((agent, _)) => {
            m.notes.push(format!("agent: pinned to {agent}"));
            Ok(())
        }
        None => {
            m.notes.push("agent: any".to_string());
            Ok(())
        }
    }
}

impl StepRequest<'_> {
    fn pod_name_index(&self) -> String {
        format!("{}-{}", self.pod_name, self.index)
    }
}

fn placement_stage(
    offer: &OfferView<'_>,
    req: &StepRequest<'_>,
    others: &[Placement],
    m: &mut Matched,
) -> Result<(), String> {
    let me = req.pod_name_index();
    let others: Vec<Placement> = others
        .iter()
        .filter(|p| p.instance() != me)
        .cloned()
        .collect();
    let mut failures = Vec::new();
    for rule in &req.pod.placement {
        if let Err(e) = check_rule(rule, req.pod_name, &offer.agent, &others) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        m.notes.push(format!(
            "placement: {} rule(s) met",
            req.pod.placement.len()
        ));
        Ok(())
    } else {
        Err(format!("placement: {}", failures.join("; ")))
    }
}

/// Takes `milli` of scalar `name` from `pool`, preferring resources reserved for `role`.
fn take_scalar(pool: &mut Resources, name: &str, milli: i64, role: &str) -> Resources {
    let mut left = milli;
    let mut out = Resources::new();
    let mut roles: Vec<String> = pool
        .iter()
        .filter(|(k, v)| k.name == name && matches!(v, Value::Scalar(_)))
        .map(|(k, _)| k.role.clone())
        .collect();
    roles.sort_by_key(|r| r != role);
    for r in roles {
        if left <= 0 {
            break;
        }
        let have = pool.for_role(&r).scalar_milli(name);
        let take = have.min(left);
        if take > 0 {
            let piece = scalar_for_role(name, take, &r);
            pool.subtract(&piece);
            out.add(&piece);
            left -= take;
        }
    }
    out
}

fn scalar_for_role(name: &str, milli: i64, role: &str) -> Resources {
    let r = v1::Resource {
        name: name.to_string(),
        value: Some(v1::resource::Value::ScalarMilli(milli)),
        role: role.to_string(),
        ..Default::default()
    };
    Resources::from_proto(&[r]).unwrap_or_default()
}

fn port_for_role(port: u64, role: &str) -> Resources {
    let r = v1::Resource {
        name: "ports".to_string(),
        value: Some(v1::resource::Value::Ranges(v1::Ranges {
            range: vec![v1::Range {
                begin: port,
                end: port,
            }],
        })),
        role: role.to_string(),
        ..Default::default()
    };
    Resources::from_proto(&[r]).unwrap_or_default()
}

/// The role whose ports contain `port` in `pool`, if any.
fn port_role(pool: &Resources, port: u64) -> Option<String> {
    let one = RangeSet::from_ranges([(port, port)]);
    pool.iter()
        .find(|(k, v)| k.name == "ports" && matches!(v, Value::Ranges(r) if r.contains(&one)))
        .map(|(k, _)| k.role.clone())
}

fn fmt_milli(m: i64) -> String {
    resources::format_milli(m)
}

fn resources_stage(
    cfg: &EvalConfig,
    offer: &OfferView<'_>,
    req: &StepRequest<'_>,
    m: &mut Matched,
) -> Result<(), String> {
    // Totals first, so the reason lists every shortfall at once.
    let mut need = [("cpus", 0i64), ("mem", 0i64), ("disk", 0i64)];
    let mut fixed_ports: Vec<(String, u64)> = Vec::new();
    let mut dynamic_ports = 0u64;
    for t in &req.tasks {
        let Some(spec) = req.pod.task(t) else {
            return Err(format!(
                "resources: pod `{}` has no task `{t}`",
                req.pod_name
            ));
        };
        for (slot, v) in need.iter_mut().zip([spec.cpus, spec.memory, spec.disk]) {
            slot.1 += resources::to_milli(slot.0, v).unwrap_or(0);
        }
        for (pname, p) in &spec.ports {
            if p.port == 0 {
                dynamic_ports += 1;
            } else {
                fixed_ports.push((format!("{t}.{pname}"), p.port));
            }
        }
    }
    for (_, v) in &req.pod.volumes {
        need[2].1 += i64::try_from(v.size)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1000);
    }
    let mut short = Vec::new();
    for (name, milli) in need {
        let have = offer.remaining.scalar_milli(name);
        if milli > have {
            short.push(format!(
                "insufficient {name}: need {}, offer has {}",
                fmt_milli(milli),
                fmt_milli(have)
            ));
        }
    }
    let offered_ports = offer.remaining.ranges("ports");
    for (what, port) in &fixed_ports {
        if !offered_ports.contains(&RangeSet::from_ranges([(*port, *port)])) {
            short.push(format!("port {port} ({what}) not offered"));
        }
    }
    let fixed: BTreeSet<u64> = fixed_ports.iter().map(|(_, p)| *p).collect();
    let free = offered_ports.count().saturating_sub(fixed.len() as u64);
    if dynamic_ports > free {
        short.push(format!(
            "insufficient ports: need {dynamic_ports} more, offer has {free}"
        ));
    }
    if !short.is_empty() {
        return Err(format!("resources: {}", short.join("; ")));
    }

    // Carve per-task resources from a copy of the offer.
    let mut pool = offer.remaining.clone();
    let mut taken_ports: BTreeSet<u64> = fixed.clone();
    for t in &req.tasks {
        let Some(spec) = req.pod.task(t) else {
            continue;
        };
        let mut res = Resources::new();
        for (name, v) in [
            ("cpus", spec.cpus),
            ("mem", spec.memory),
            ("disk", spec.disk),
        ] {
            let milli = resources::to_milli(name, v).unwrap_or(0);
            if milli > 0 {
                res.add(&take_scalar(&mut pool, name, milli, &cfg.role));
            }
        }
        let mut ports = Vec::new();
        for (pname, p) in &spec.ports {
            let port = if p.port != 0 {
                p.port
            } else {
                let avail = pool.ranges("ports");
                let pick = avail
                    .ranges()
                    .iter()
                    .flat_map(|&(b, e)| b..=e)
                    .find(|x| !taken_ports.contains(x));
                match pick {
                    Some(x) => x,
                    None => return Err("resources: ran out of ports".to_string()),
                }
            };
            taken_ports.insert(port);
            let role = port_role(&pool, port).unwrap_or_else(|| UNRESERVED.to_string());
            let piece = port_for_role(port, &role);
            pool.subtract(&piece);
            res.add(&piece);
            ports.push((port_env(pname, p.env.as_deref()), port));
        }
        m.consumed.add(&res);
        m.tasks.push(TaskResources {
            task: t.clone(),
            resources: res,
            ports,
        });
    }
    for (_, v) in &req.pod.volumes {
        let milli = i64::try_from(v.size).unwrap_or(0).saturating_mul(1000);
        m.consumed
            .add(&take_scalar(&mut pool, "disk", milli, &cfg.role));
    }
    m.notes.push(format!("resources: using {}", m.consumed));
    Ok(())
}

/// Rewrites `res` so every entry is reserved for `role`.
fn as_reserved(res: &Resources, role: &str) -> Resources {
    let list: Vec<v1::Resource> = res
        .to_proto()
        .into_iter()
        .map(|mut r| {
            r.role = role.to_string();
            r
        })
        .collect();
    Resources::from_proto(&list).unwrap_or_default()
}

fn reservation_stage(cfg: &EvalConfig, m: &mut Matched) -> Result<(), String> {
    if !cfg.reservations {
        m.notes
            .push("reservation: disabled (unreserved resources are launched directly)".to_string());
        return Ok(());
    }
    if cfg.role == UNRESERVED {
        return Err("reservation: role `*` cannot reserve; set `role:` in the spec".to_string());
    }
    let unreserved = m.consumed.for_role(UNRESERVED);
    if unreserved.is_empty() {
        m.notes.push("reservation: already reserved".to_string());
        return Ok(());
    }
    let reserved = as_reserved(&unreserved, &cfg.role);
    m.operations.push(v1::Operation {
        op: Some(v1::operation::Op::Reserve(v1::Reserve {
            resources: reserved.to_proto(),
        })),
    });
    for t in &mut m.tasks {
        t.resources = as_reserved(&t.resources, &cfg.role);
    }
    m.notes.push(format!("reservation: RESERVE {reserved}"));
    m.consumed = as_reserved(&m.consumed, &cfg.role);
    Ok(())
}

fn volume_stage(cfg: &EvalConfig, req: &StepRequest<'_>, m: &mut Matched) -> Result<(), String> {
    if req.pod.volumes.is_empty() {
        m.notes.push("volumes: none".to_string());
        return Ok(());
    }
    for (name, v) in &req.pod.volumes {
        if cfg.reservations {
            let milli = i64::try_from(v.size).unwrap_or(0).saturating_mul(1000);
            let disk = scalar_for_role("disk", milli, &cfg.role);
            m.operations.push(v1::Operation {
                op: Some(v1::operation::Op::Create(v1::CreateVolume {
                    volumes: disk.to_proto(),
                })),
            });
            m.notes.push(format!(
                "volumes: CREATE {name} ({} MB at {})",
                v.size, v.path
            ));
        } else {
            m.notes.push(format!(
                "volumes: {name} → sandbox directory `{}` (NOT persistent: reservations disabled)",
                v.path
            ));
        }
        m.sandbox_volumes.push(v.path.clone());
    }
    Ok(())
}
