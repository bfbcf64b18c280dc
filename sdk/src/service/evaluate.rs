//! The offer evaluator: a pipeline of stages (agent pinning, placement, resources,
//! reservation, volumes) that decides whether one offer can host one step's tasks, and says why
//! not in one line per failing stage.
//!
//! Each stage either passes with a note or fails with a reason. The reason texts are what the
//! `why` view and `/v1/debug/offers` show, so table tests pin them down.

use std::collections::BTreeSet;

use proffer_proto::resources::{RangeSet, Reservation, ResourceKey, UNRESERVED, Value, Volume};
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
    /// The principal that tags this instance's dynamic reservations (`SERVICE.POD-INDEX`).
    pub tag: String,
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
    /// Volume directories to create in the sandbox (the agent does not mount volumes).
    pub sandbox_volumes: Vec<String>,
    /// Disk carved for volumes that do not exist yet: `(volume name, offer-labelled disk)`.
    pub volume_disk: Vec<(String, Resources)>,
    /// Existing volumes of this instance found in the offer: `(volume name, entry)`.
    pub volume_found: Vec<(String, Resources)>,
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
        volume_disk: Vec::new(),
        volume_found: Vec::new(),
        notes: Vec::new(),
    };
    agent_stage(offer, req, &mut m)?;
    placement_stage(offer, req, others, &mut m)?;
    resources_stage(cfg, offer, req, &mut m)?;
    reservation_stage(cfg, req, &mut m)?;
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

/// The volume id of volume `name` of the instance tagged `tag` (without the framework's
/// principal of a `PRINCIPAL/SERVICE.POD-INDEX` tag: volume ids are plain names).
pub fn volume_id(tag: &str, name: &str) -> String {
    let instance = tag.rsplit('/').next().unwrap_or(tag);
    format!("{instance}.{name}")
}

/// Which offered entries a step may use: its own dynamic reservations (reservations on),
/// unreserved resources, and (reservations off) statically reserved ones. Never another
/// instance's reservation, never a volume (volumes are handled by the volume stage).
fn usable(cfg: &EvalConfig, tag: &str, k: &ResourceKey) -> bool {
    if k.volume.is_some() {
        return false;
    }
    match &k.reservation {
        Reservation::Dynamic { principal } => {
            cfg.reservations && k.role == cfg.role && principal == tag
        }
        Reservation::Static => k.role == UNRESERVED || !cfg.reservations,
    }
}

/// Own reservations first, then static role reservations, then unreserved.
fn priority(k: &ResourceKey) -> u8 {
    match (&k.reservation, k.role == UNRESERVED) {
        (Reservation::Dynamic { .. }, _) => 0,
        (Reservation::Static, false) => 1,
        (Reservation::Static, true) => 2,
    }
}

/// Takes `milli` of scalar `name` from `pool` in priority order.
fn take_scalar(pool: &mut Resources, name: &str, milli: i64) -> Resources {
    let mut left = milli;
    let mut out = Resources::new();
    let mut keys: Vec<(ResourceKey, i64)> = pool
        .iter()
        .filter(|(k, _)| k.name == name)
        .filter_map(|(k, v)| match v {
            Value::Scalar(m) => Some((k.clone(), *m)),
            _ => None,
        })
        .collect();
    keys.sort_by_key(|(k, _)| priority(k));
    for (k, have) in keys {
        if left <= 0 {
            break;
        }
        let take = have.min(left);
        if take > 0 {
            let piece = Resources::from_entry(k, Value::Scalar(take));
            pool.subtract(&piece);
            out.add(&piece);
            left -= take;
        }
    }
    out
}

/// Takes port `port` from whichever entry of `pool` holds it (own reservations first).
fn take_port(pool: &mut Resources, port: u64) -> Option<Resources> {
    let one = RangeSet::from_ranges([(port, port)]);
    let mut keys: Vec<ResourceKey> = pool
        .iter()
        .filter(|(k, v)| k.name == "ports" && matches!(v, Value::Ranges(r) if r.contains(&one)))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort_by_key(priority);
    let k = keys.into_iter().next()?;
    let piece = Resources::from_entry(k, Value::Ranges(one));
    pool.subtract(&piece);
    Some(piece)
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
    let pool0 = offer.remaining.filtered(|k| usable(cfg, &req.tag, k));
    // Volumes of this instance already on the agent need no new disk.
    if cfg.reservations {
        for (name, _) in &req.pod.volumes {
            let id = volume_id(&req.tag, name);
            if let Some((k, _, v)) = offer.remaining.volumes().find(|(_, vol, _)| vol.id == id) {
                m.volume_found
                    .push((name.clone(), Resources::from_entry(k.clone(), v.clone())));
            }
        }
    }
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
    let new_volumes: Vec<(String, u64)> = req
        .pod
        .volumes
        .iter()
        .filter(|(n, _)| !m.volume_found.iter().any(|(f, _)| f == n))
        .map(|(n, v)| (n.clone(), v.size))
        .collect();
    for (_, size) in &new_volumes {
        need[2].1 += i64::try_from(*size)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1000);
    }
    let mut short = Vec::new();
    for (name, milli) in need {
        let have = pool0.scalar_milli(name);
        if milli > have {
            short.push(format!(
                "insufficient {name}: need {}, offer has {}",
                fmt_milli(milli),
                fmt_milli(have)
            ));
        }
    }
    let offered_ports = pool0.ranges("ports");
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

    // Carve per-task resources from a copy of the usable part of the offer.
    let mut pool = pool0;
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
                res.add(&take_scalar(&mut pool, name, milli));
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
            let Some(piece) = take_port(&mut pool, port) else {
                return Err(format!("resources: port {port} vanished"));
            };
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
    for (name, size) in new_volumes {
        let milli = i64::try_from(size).unwrap_or(0).saturating_mul(1000);
        let disk = take_scalar(&mut pool, "disk", milli);
        m.consumed.add(&disk);
        m.volume_disk.push((name, disk));
    }
    for (_, v) in &m.volume_found {
        m.consumed.add(v);
    }
    m.notes.push(format!("resources: using {}", m.consumed));
    Ok(())
}

/// The labels of this instance's dynamic reservation.
fn reserved_key(cfg: &EvalConfig, tag: &str, k: &ResourceKey) -> ResourceKey {
    ResourceKey {
        role: cfg.role.as_str().into(),
        reservation: Reservation::dynamic(tag),
        volume: None,
        ..k.clone()
    }
}

fn reservation_stage(
    cfg: &EvalConfig,
    req: &StepRequest<'_>,
    m: &mut Matched,
) -> Result<(), String> {
    if !cfg.reservations {
        m.notes
            .push("reservation: disabled (unreserved resources are launched directly)".to_string());
        return Ok(());
    }
    if cfg.role == UNRESERVED {
        return Err("reservation: role `*` cannot reserve; set `role:` in the spec".to_string());
    }
    if let Err(e) = proffer_proto::resources::reservation::validate_principal(&req.tag) {
        return Err(format!("reservation: tag `{}`: {e}", req.tag));
    }
    let fresh = m
        .consumed
        .filtered(|k| !k.is_dynamic() && k.volume.is_none());
    let relabel = |r: &Resources| {
        r.map_labels(|k| {
            if k.is_dynamic() {
                k.clone()
            } else {
                reserved_key(cfg, &req.tag, k)
            }
        })
    };
    for t in &mut m.tasks {
        t.resources = relabel(&t.resources);
    }
    for (_, d) in &mut m.volume_disk {
        *d = relabel(d);
    }
    if fresh.is_empty() {
        m.notes
            .push(format!("reservation: using the reservation of {}", req.tag));
        return Ok(());
    }
    let reserved = relabel(&fresh);
    m.operations.push(v1::Operation {
        op: Some(v1::operation::Op::Reserve(v1::Reserve {
            resources: reserved.to_proto(),
        })),
    });
    m.notes.push(format!("reservation: RESERVE {reserved}"));
    Ok(())
}

fn volume_stage(cfg: &EvalConfig, req: &StepRequest<'_>, m: &mut Matched) -> Result<(), String> {
    if req.pod.volumes.is_empty() {
        m.notes.push("volumes: none".to_string());
        return Ok(());
    }
    for (name, v) in &req.pod.volumes {
        m.sandbox_volumes.push(v.path.clone());
        if !cfg.reservations {
            m.notes.push(format!(
                "volumes: {name} → sandbox directory `{}` (NOT persistent: reservations disabled)",
                v.path
            ));
            continue;
        }
        let entry = if let Some((_, e)) = m.volume_found.iter().find(|(n, _)| n == name) {
            m.notes.push(format!("volumes: reusing {e}"));
            e.clone()
        } else {
            let Some((_, disk)) = m.volume_disk.iter().find(|(n, _)| n == name) else {
                return Err(format!("volumes: no disk carved for `{name}`"));
            };
            let vol = Volume {
                id: volume_id(&req.tag, name),
                container_path: v.path.clone(),
            };
            let created = disk.map_labels(|k| ResourceKey {
                volume: Some(vol.clone()),
                ..k.clone()
            });
            m.operations.push(v1::Operation {
                op: Some(v1::operation::Op::Create(v1::CreateVolume {
                    volumes: created.to_proto(),
                })),
            });
            m.notes.push(format!("volumes: CREATE {created}"));
            created
        };
        if let Some(t) = m.tasks.first_mut() {
            t.resources.add(&entry);
        }
    }
    Ok(())
}
