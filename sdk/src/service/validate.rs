//! Semantic checks of a parsed spec, and of a change from one spec to the next. Every error
//! names the path of the offending field.

use std::collections::{BTreeSet, HashMap};

use proffer_proto::resources;

use super::SpecError;
use super::spec::{CheckSpec, PlacementRule, PodSpec, ServiceSpec, StrategyKind, TaskSpec};
use super::template::check_builtins_only;

/// Most instances of one pod type: every instance is a step of the deploy plan (a bigger count
/// is a typo, and would exhaust memory compiling the plans).
pub const MAX_POD_COUNT: u32 = 100_000;

/// Plan names the scheduler uses for itself.
pub const RESERVED_PLANS: &[&str] = &["recovery", "decommission", "uninstall"];

fn err<T>(path: impl Into<String>, reason: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError::Field {
        path: path.into(),
        reason: reason.into(),
    })
}

/// Checks a name of a service, pod, task, port, volume, plan or phase: `[a-z0-9]` and single
/// inner `-`, at most 63 bytes.
pub fn check_name_text(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{name}`: use lowercase letters, digits and single inner `-` (at most 63)"
        ))
    }
}

/// [`check_name_text`] at `path`.
fn check_name(path: &str, name: &str) -> Result<(), SpecError> {
    check_name_text(name).or_else(|reason| err(path, reason))
}

fn check_env_name(path: &str, name: &str) -> Result<(), SpecError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        err(path, format!("invalid environment variable name `{name}`"))
    }
}

fn check_positive(path: &str, what: &str, v: f64) -> Result<(), SpecError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        err(path, format!("{what} must be > 0 (got {v})"))
    }
}

fn check_non_negative(path: &str, what: &str, v: f64) -> Result<(), SpecError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        err(path, format!("{what} must be >= 0 (got {v})"))
    }
}

fn check_template(path: &str, text: &str) -> Result<(), SpecError> {
    check_builtins_only(text).or_else(|reason| err(path, reason))
}

/// Checks everything [`ServiceSpec::parse`](super::spec::ServiceSpec::parse) cannot express in types.
pub fn validate(spec: &ServiceSpec) -> Result<(), SpecError> {
    check_name("name", &spec.name)?;
    if let Err(reason) = resources::validate_role(&spec.role) {
        return err("role", reason);
    }
    check_non_negative(
        "failover-timeout",
        "the failover timeout",
        spec.failover_timeout,
    )?;
    if spec.pods.is_empty() {
        return err("pods", "a service needs at least one pod type");
    }
    for (name, pod) in &spec.pods {
        let path = format!("pods.{name}");
        check_name(&path, name)?;
        validate_pod(spec, &path, name, pod)?;
    }
    for (name, plan) in &spec.plans {
        let path = format!("plans.{name}");
        check_name(&path, name)?;
        if RESERVED_PLANS.contains(&name.as_str()) {
            return err(path, format!("`{name}` is a reserved plan name"));
        }
        if plan.phases.is_empty() {
            return err(format!("{path}.phases"), "a plan needs at least one phase");
        }
        let phase_names: Vec<&str> = plan.phases.iter().map(|(n, _)| n.as_str()).collect();
        for (pname, phase) in &plan.phases {
            let ppath = format!("{path}.phases.{pname}");
            check_name(&ppath, pname)?;
            let Some(pod) = spec.pod(&phase.pod) else {
                return err(
                    format!("{ppath}.pod"),
                    format!("unknown pod type `{}`", phase.pod),
                );
            };
            for (i, t) in phase.tasks.iter().enumerate() {
                if pod.task(t).is_none() {
                    return err(
                        format!("{ppath}.tasks[{i}]"),
                        format!("pod `{}` has no task `{t}`", phase.pod),
                    );
                }
            }
            if phase.strategy == StrategyKind::Dependency {
                return err(
                    format!("{ppath}.strategy"),
                    "steps have no dependencies; use serial or parallel",
                );
            }
            for (i, d) in phase.depends.iter().enumerate() {
                if !phase_names.contains(&d.as_str()) || d == pname {
                    return err(
                        format!("{ppath}.depends[{i}]"),
                        format!("`{d}` is not another phase of plan `{name}`"),
                    );
                }
            }
            if !phase.depends.is_empty() && plan.strategy != StrategyKind::Dependency {
                return err(
                    format!("{ppath}.depends"),
                    "depends needs `strategy: dependency` on the plan",
                );
            }
        }
        check_acyclic(&path, plan)?;
        if name == "update"
            && let Some((missing, _)) = spec
                .pods
                .iter()
                .find(|(pod, _)| !plan.phases.iter().any(|(_, ph)| ph.pod == *pod))
        {
            // Every instance must have a step in the plan that rolls out a change, or the
            // change would never reach it (and its failures would not be recovered).
            return err(
                format!("{path}.phases"),
                format!(
                    "pod type `{missing}` is in no phase; an update plan must roll every pod type"
                ),
            );
        }
    }
    Ok(())
}

fn validate_pod(
    spec: &ServiceSpec,
    path: &str,
    name: &str,
    pod: &PodSpec,
) -> Result<(), SpecError> {
    if pod.count > MAX_POD_COUNT {
        return err(
            format!("{path}.count"),
            format!(
                "{} instances are more than the {MAX_POD_COUNT} one pod type may have",
                pod.count
            ),
        );
    }
    if pod.tasks.is_empty() {
        return err(format!("{path}.tasks"), "a pod needs at least one task");
    }
    let mut fixed_ports: HashMap<u64, String> = HashMap::new();
    for (tname, task) in &pod.tasks {
        let tpath = format!("{path}.tasks.{tname}");
        check_name(&tpath, tname)?;
        validate_task(&tpath, task)?;
        for (pname, p) in &task.ports {
            if p.port != 0 {
                let here = format!("{tname}.{pname}");
                if let Some(other) = fixed_ports.insert(p.port, here) {
                    return err(
                        format!("{tpath}.ports.{pname}.port"),
                        format!("port {} is also used by {other}", p.port),
                    );
                }
            }
        }
    }
    for (vname, v) in &pod.volumes {
        let vpath = format!("{path}.volumes.{vname}");
        check_name(&vpath, vname)?;
        let bad_path = v.path.is_empty()
            || v.path.starts_with('/')
            || v.path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..");
        if bad_path {
            return err(
                format!("{vpath}.path"),
                format!(
                    "`{}` must be a relative path inside the sandbox without `.`/`..`",
                    v.path
                ),
            );
        }
        if v.size == 0 {
            return err(format!("{vpath}.size"), "a volume needs a size > 0 MB");
        }
        // A size the resources form cannot hold (and that would overflow sums) is refused.
        let max = resources::MAX_SCALAR_MILLI / resources::MILLI;
        if v.size > max as u64 {
            return err(
                format!("{vpath}.size"),
                format!("{} MB is more than the largest size, {max} MB", v.size),
            );
        }
    }
    for (i, rule) in pod.placement.iter().enumerate() {
        let rpath = format!("{path}.placement[{i}]");
        match rule {
            PlacementRule::OnePerAgent => {}
            PlacementRule::MaxPer { attribute, max } => {
                if attribute.is_empty() {
                    return err(format!("{rpath}.attribute"), "must not be empty");
                }
                if *max == 0 {
                    return err(format!("{rpath}.max"), "must be at least 1");
                }
            }
            PlacementRule::AttributeEquals { attribute, .. }
            | PlacementRule::AttributeLike { attribute, .. } => {
                if attribute.is_empty() {
                    return err(format!("{rpath}.attribute"), "must not be empty");
                }
            }
            PlacementRule::Avoid(other) | PlacementRule::Colocate(other) => {
                if spec.pod(other).is_none() {
                    return err(rpath, format!("unknown pod type `{other}`"));
                }
                if matches!(rule, PlacementRule::Colocate(_)) && other == name {
                    return err(rpath, "a pod cannot be colocated with itself");
                }
            }
        }
    }
    Ok(())
}

fn validate_task(path: &str, task: &TaskSpec) -> Result<(), SpecError> {
    if task.cmd.trim().is_empty() {
        return err(format!("{path}.cmd"), "must not be empty");
    }
    check_template(&format!("{path}.cmd"), &task.cmd)?;
    if task.image.as_ref().is_some_and(|i| i.trim().is_empty()) {
        return err(format!("{path}.image"), "must not be empty");
    }
    check_positive(&format!("{path}.cpus"), "cpus", task.cpus)?;
    check_positive(&format!("{path}.memory"), "memory", task.memory)?;
    check_non_negative(&format!("{path}.disk"), "disk", task.disk)?;
    for (field, name, v) in [
        ("cpus", "cpus", task.cpus),
        ("memory", "mem", task.memory),
        ("disk", "disk", task.disk),
    ] {
        match resources::to_milli(name, v) {
            Ok(m) if m > 0 || field == "disk" => {}
            Ok(_) => {
                return err(
                    format!("{path}.{field}"),
                    format!("{v} rounds to zero (resolution 0.001)"),
                );
            }
            Err(e) => return err(format!("{path}.{field}"), e.to_string()),
        }
    }
    let mut envs = BTreeSet::new();
    for (pname, p) in &task.ports {
        let ppath = format!("{path}.ports.{pname}");
        check_name(&ppath, pname)?;
        if p.port > 65535 {
            return err(format!("{ppath}.port"), format!("{} is not a port", p.port));
        }
        let env = port_env(pname, p.env.as_deref());
        check_env_name(&format!("{ppath}.env"), &env)?;
        if !envs.insert(env.clone()) {
            return err(format!("{ppath}.env"), format!("`{env}` is used twice"));
        }
    }
    for (k, v) in &task.env {
        check_env_name(&format!("{path}.env.{k}"), k)?;
        check_template(&format!("{path}.env.{k}"), v)?;
    }
    for (i, u) in task.uris.iter().enumerate() {
        check_template(&format!("{path}.uris[{i}]"), u)?;
    }
    if let Some(c) = &task.health_check {
        validate_check(&format!("{path}.health-check"), c, task)?;
    }
    if let Some(c) = &task.readiness_check {
        validate_check(&format!("{path}.readiness-check"), c, task)?;
    }
    if let Some(g) = task.kill_grace_period {
        check_non_negative(&format!("{path}.kill-grace-period"), "the grace period", g)?;
    }
    Ok(())
}

/// The environment variable that carries a port: the given name or `PORT_<NAME>`.
pub fn port_env(port_name: &str, env: Option<&str>) -> String {
    match env {
        Some(e) => e.to_string(),
        None => format!("PORT_{}", port_name.to_ascii_uppercase().replace('-', "_")),
    }
}

fn validate_check(path: &str, c: &CheckSpec, task: &TaskSpec) -> Result<(), SpecError> {
    match (&c.cmd, &c.http) {
        (Some(cmd), None) => {
            if cmd.trim().is_empty() {
                return err(format!("{path}.cmd"), "must not be empty");
            }
            check_template(&format!("{path}.cmd"), cmd)?;
        }
        (None, Some(h)) => {
            if !task.ports.iter().any(|(n, _)| *n == h.port) {
                return err(
                    format!("{path}.http.port"),
                    format!("the task has no port named `{}`", h.port),
                );
            }
            if !h.path.starts_with('/') {
                return err(format!("{path}.http.path"), "must start with `/`");
            }
        }
        _ => return err(path, "give exactly one of `cmd` or `http`"),
    }
    check_positive(&format!("{path}.interval"), "the interval", c.interval)?;
    check_positive(&format!("{path}.timeout"), "the timeout", c.timeout)?;
    check_non_negative(&format!("{path}.delay"), "the delay", c.delay)?;
    check_non_negative(
        &format!("{path}.grace-period"),
        "the grace period",
        c.grace_period,
    )?;
    if c.max_consecutive_failures == 0 {
        return err(
            format!("{path}.max-consecutive-failures"),
            "must be at least 1",
        );
    }
    Ok(())
}

fn check_acyclic(path: &str, plan: &super::spec::PlanSpec) -> Result<(), SpecError> {
    // Kahn's algorithm over phase dependencies.
    let names: Vec<&str> = plan.phases.iter().map(|(n, _)| n.as_str()).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = done.len();
        for (n, p) in &plan.phases {
            if !done.contains(n.as_str()) && p.depends.iter().all(|d| done.contains(d.as_str())) {
                done.insert(n);
            }
        }
        if done.len() == names.len() {
            return Ok(());
        }
        if done.len() == before {
            let stuck: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !done.contains(n))
                .collect();
            return err(
                format!("{path}.phases"),
                format!("dependency cycle among {}", stuck.join(", ")),
            );
        }
    }
}

/// Checks that `new` may replace `old` for a running service: the name and role stay, pod types
/// are not removed (scale them to 0 instead), and volumes are neither removed, moved nor shrunk.
pub fn validate_update(old: &ServiceSpec, new: &ServiceSpec) -> Result<(), SpecError> {
    if old.name != new.name {
        return err(
            "name",
            format!(
                "cannot rename a deployed service (`{}` → `{}`)",
                old.name, new.name
            ),
        );
    }
    if old.role != new.role {
        return err(
            "role",
            format!("cannot change the role (`{}` → `{}`)", old.role, new.role),
        );
    }
    for (pname, opod) in &old.pods {
        let Some(npod) = new.pod(pname) else {
            return err(
                format!("pods.{pname}"),
                "cannot remove a deployed pod type; set its count to 0 first",
            );
        };
        for (vname, ov) in &opod.volumes {
            let vpath = format!("pods.{pname}.volumes.{vname}");
            let Some((_, nv)) = npod.volumes.iter().find(|(n, _)| n == vname) else {
                return err(vpath, "cannot remove a persistent volume");
            };
            if nv.size < ov.size {
                return err(
                    format!("{vpath}.size"),
                    format!("cannot shrink a volume ({} → {} MB)", ov.size, nv.size),
                );
            }
            if nv.path != ov.path {
                return err(
                    format!("{vpath}.path"),
                    format!("cannot move a volume (`{}` → `{}`)", ov.path, nv.path),
                );
            }
        }
        if opod.count > 0 && npod.volumes.len() > opod.volumes.len() {
            return err(
                format!("pods.{pname}.volumes"),
                "cannot add volumes to deployed pods",
            );
        }
    }
    Ok(())
}
