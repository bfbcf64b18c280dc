//! Validation of ids and messages coming from the outside; every error names the field.

use proffer_proto::Resources;
use proffer_proto::resources::validate_role;
use proffer_proto::v1;

use super::MasterError;

pub use super::limits::*;

/// Checks an id: non-empty, at most 255 bytes, `[A-Za-z0-9_.-]` only, not `.` or `..`.
pub(crate) fn id(field: &str, value: &str) -> Result<(), MasterError> {
    let bad = |reason: String| MasterError::InvalidField {
        field: field.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if value.len() > MAX_ID_LEN {
        return Err(bad(format!("longer than {MAX_ID_LEN} bytes")));
    }
    if value == "." || value == ".." {
        return Err(bad(format!("`{value}` is not allowed")));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(bad(format!(
            "character {c:?} is not allowed (use A-Z a-z 0-9 _ - .)"
        )));
    }
    Ok(())
}

/// A string field at most `max` bytes long (`field` is formatted only for the error).
pub(crate) fn len(
    field: impl std::fmt::Display,
    value: &str,
    max: usize,
) -> Result<(), MasterError> {
    if value.len() > max {
        return Err(MasterError::InvalidField {
            field: field.to_string(),
            reason: format!("{} bytes long, the limit is {max}", value.len()),
        });
    }
    Ok(())
}

/// A list at most `max` entries long (`field` is formatted only for the error).
pub(crate) fn count(
    field: impl std::fmt::Display,
    n: usize,
    max: usize,
) -> Result<(), MasterError> {
    if n > max {
        return Err(MasterError::InvalidField {
            field: field.to_string(),
            reason: format!("{n} entries, the limit is {max}"),
        });
    }
    Ok(())
}

/// Labels: at most [`MAX_LABELS`] entries, keys and values at most [`MAX_LABEL_LEN`] bytes.
pub(crate) fn labels<'a>(
    field: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), MasterError> {
    count(field, labels.len(), MAX_LABELS)?;
    for (k, v) in labels {
        len(format_args!("{field} key"), k, MAX_LABEL_LEN)?;
        len(format_args!("{field}[{k}]"), v, MAX_LABEL_LEN)?;
    }
    Ok(())
}

/// Bounds a resource list before it is parsed: at most [`MAX_RESOURCE_ENTRIES`] entries and
/// [`MAX_RESOURCE_NAMES`] distinct names, names at most [`MAX_NAME_LEN`] bytes, roles and
/// principals bounded, ranges and sets at most [`MAX_VALUE_ITEMS`] items each.
pub(crate) fn resource_list(field: &str, list: &[v1::Resource]) -> Result<(), MasterError> {
    use v1::resource::Value;
    count(field, list.len(), MAX_RESOURCE_ENTRIES)?;
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in list.iter().enumerate() {
        len(format_args!("{field}[{i}].name"), &r.name, MAX_NAME_LEN)?;
        let role_max = proffer_proto::resources::MAX_ROLE_LEN;
        len(format_args!("{field}[{i}].role"), &r.role, role_max)?;
        len(
            format_args!("{field}[{i}].principal"),
            &r.principal,
            MAX_NAME_LEN,
        )?;
        let items = match &r.value {
            Some(Value::Ranges(x)) => x.range.len(),
            Some(Value::Set(x)) => x.item.len(),
            _ => 0,
        };
        count(format_args!("{field}[{i}].value"), items, MAX_VALUE_ITEMS)?;
        if names.insert(r.name.as_str()) && names.len() > MAX_RESOURCE_NAMES {
            return Err(MasterError::InvalidField {
                field: field.to_string(),
                reason: format!(
                    "more than {MAX_RESOURCE_NAMES} distinct resource names, the limit is {MAX_RESOURCE_NAMES}"
                ),
            });
        }
    }
    Ok(())
}

/// Checks what an agent says about itself.
pub(crate) fn agent_info(info: &v1::AgentInfo) -> Result<(), MasterError> {
    if info.hostname.trim().is_empty() {
        return Err(MasterError::InvalidField {
            field: "agent_info.hostname".into(),
            reason: "must not be empty".into(),
        });
    }
    len("agent_info.hostname", &info.hostname, MAX_NAME_LEN)?;
    len("agent_info.version", &info.version, MAX_NAME_LEN)?;
    len("agent_info.isolation", &info.isolation, MAX_NAME_LEN)?;
    len(
        "agent_info.sandboxes_dir",
        &info.sandboxes_dir,
        MAX_PATH_LEN,
    )?;
    len("agent_info.principal", &info.principal, MAX_NAME_LEN)?;
    count(
        "agent_info.attributes",
        info.attributes.len(),
        MAX_AGENT_ATTRIBUTES,
    )?;
    for (i, a) in info.attributes.iter().enumerate() {
        len(
            format_args!("agent_info.attributes[{i}].name"),
            &a.name,
            MAX_NAME_LEN,
        )?;
        len(
            format_args!("agent_info.attributes[{i}].value"),
            &a.value,
            MAX_LABEL_LEN,
        )?;
    }
    resource_list("agent_info.resources", &info.resources)?;
    if info.port > u32::from(u16::MAX) {
        return Err(MasterError::InvalidField {
            field: "agent_info.port".into(),
            reason: format!("{} is not a TCP port", info.port),
        });
    }
    Ok(())
}

/// The size limits on a framework's info, checked when it subscribes or updates (not when it
/// is recovered: a record written before a limit existed still loads).
pub(crate) fn framework_limits(info: &v1::FrameworkInfo) -> Result<(), MasterError> {
    len("framework_info.name", &info.name, MAX_NAME_LEN)?;
    len("framework_info.user", &info.user, MAX_NAME_LEN)?;
    len("framework_info.hostname", &info.hostname, MAX_NAME_LEN)?;
    labels("framework_info.labels", info.labels.iter())?;
    count(
        "framework_info.roles",
        info.roles.len(),
        MAX_FRAMEWORK_ROLES,
    )?;
    count(
        "framework_info.offer_filters",
        info.offer_filters.len(),
        MAX_FRAMEWORK_ROLES,
    )
}

/// Checks a framework's info and returns its roles (default `*`).
pub(crate) fn framework_info(
    info: &v1::FrameworkInfo,
    max_failover_secs: f64,
) -> Result<Vec<String>, MasterError> {
    let bad = |field: &str, reason: String| MasterError::InvalidField {
        field: format!("framework_info.{field}"),
        reason,
    };
    if info.name.trim().is_empty() {
        return Err(bad("name", "must not be empty".into()));
    }
    if !info.id.is_empty() {
        id("framework_info.id", &info.id)?;
    }
    let ft = info.failover_timeout;
    if !ft.is_finite() || ft < 0.0 {
        return Err(bad(
            "failover_timeout",
            format!("{ft} is not a non-negative number of seconds"),
        ));
    }
    if ft > max_failover_secs {
        return Err(bad(
            "failover_timeout",
            format!("{ft} s exceeds the maximum {max_failover_secs} s"),
        ));
    }
    let mut roles = info.roles.clone();
    if roles.is_empty() {
        roles.push("*".into());
    }
    for (i, r) in roles.iter().enumerate() {
        validate_role(r)
            .map_err(|reason| bad(&format!("roles[{i}]"), format!("`{r}`: {reason}")))?;
    }
    Ok(roles)
}

/// Checks `FrameworkInfo.offer_filters` against the framework's `roles` and returns, per role,
/// the minimum quantity sets (each as unreserved scalars; empty list: no minimum).
pub(crate) fn offer_filters(
    info: &v1::FrameworkInfo,
    roles: &[String],
) -> Result<Vec<(String, Vec<Resources>)>, MasterError> {
    let mut out = Vec::new();
    for (role, f) in &info.offer_filters {
        let field = |rest: &str| format!("framework_info.offer_filters[{role}]{rest}");
        if !roles.contains(role) {
            return Err(MasterError::InvalidField {
                field: field(""),
                reason: format!("`{role}` is not one of the framework's roles {roles:?}"),
            });
        }
        let mut sets = Vec::new();
        let min = f.min_allocatable_resources.as_ref();
        for (i, q) in min
            .map(|m| m.quantities.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let mut set = Resources::new();
            for (name, value) in &q.quantities {
                let bad = |reason: String| MasterError::InvalidField {
                    field: field(&format!(
                        ".min_allocatable_resources.quantities[{i}].{name}"
                    )),
                    reason,
                };
                if !matches!(name.as_str(), "cpus" | "mem" | "disk" | "gpus") {
                    return Err(bad(
                        "only cpus, mem, disk and gpus can have a minimum".into()
                    ));
                }
                if !value.is_finite() || *value < 0.0 {
                    return Err(bad(format!("{value} is not a non-negative number")));
                }
                let milli = proffer_proto::resources::to_milli(name, *value)
                    .map_err(|e| bad(e.to_string()))?;
                set.add(&Resources::scalar(name, milli));
            }
            sets.push(set);
        }
        out.push((role.clone(), sets));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Turns `refuse_seconds` into milliseconds (default when absent).
pub(crate) fn refuse_ms(
    filters: Option<&v1::Filters>,
    default_ms: u64,
) -> Result<u64, MasterError> {
    match filters.and_then(|f| f.refuse_seconds) {
        None => Ok(default_ms),
        Some(s) if s.is_finite() && s >= 0.0 => Ok((s.min(365.0 * 86_400.0) * 1000.0) as u64),
        Some(s) => Err(MasterError::InvalidField {
            field: "filters.refuse_seconds".into(),
            reason: format!("{s} is not a non-negative number of seconds"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "task-1", "A.b_c"] {
            assert!(id("x", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(256)] {
            assert!(id("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn framework_infos() {
        let ok = v1::FrameworkInfo {
            name: "f".into(),
            ..Default::default()
        };
        assert_eq!(framework_info(&ok, 10.0), Ok(vec!["*".to_string()]));
        let cases = [
            (
                v1::FrameworkInfo {
                    ..Default::default()
                },
                "framework_info.name",
            ),
            (
                v1::FrameworkInfo {
                    name: "f".into(),
                    failover_timeout: -1.0,
                    ..Default::default()
                },
                "failover_timeout",
            ),
            (
                v1::FrameworkInfo {
                    name: "f".into(),
                    failover_timeout: f64::NAN,
                    ..Default::default()
                },
                "failover_timeout",
            ),
            (
                v1::FrameworkInfo {
                    name: "f".into(),
                    failover_timeout: 11.0,
                    ..Default::default()
                },
                "exceeds",
            ),
            (
                v1::FrameworkInfo {
                    name: "f".into(),
                    roles: vec!["a//b".into()],
                    ..Default::default()
                },
                "roles[0]",
            ),
            (
                v1::FrameworkInfo {
                    name: "f".into(),
                    id: "x/y".into(),
                    ..Default::default()
                },
                "framework_info.id",
            ),
        ];
        for (info, want) in cases {
            let err = framework_info(&info, 10.0).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn refuse_seconds() {
        assert_eq!(refuse_ms(None, 5000), Ok(5000));
        assert_eq!(
            refuse_ms(
                Some(&v1::Filters {
                    refuse_seconds: Some(1.5)
                }),
                5000
            ),
            Ok(1500)
        );
        assert!(
            refuse_ms(
                Some(&v1::Filters {
                    refuse_seconds: Some(-1.0)
                }),
                5000
            )
            .is_err()
        );
        assert!(
            refuse_ms(
                Some(&v1::Filters {
                    refuse_seconds: Some(f64::INFINITY)
                }),
                5000
            )
            .is_err()
        );
    }
}
