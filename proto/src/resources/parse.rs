//! Parsing of the text and JSON forms of [`Resources`].
//!
//! Text: `;`-separated items `name(LABELS)[VOLUME]:value`, where `(LABELS)` and `[VOLUME]` are
//! optional:
//! - `(role)` reserves statically for `role`; `(role,dynamic)` or `(role,dynamic=PRINCIPAL)`
//!   marks a dynamic reservation (`(role,static)` is accepted too);
//! - `[id:container_path]` (only on reserved `disk`) is a persistent volume;
//! - the value is a number, `[b-e,…]` ranges or a `{a,b}` set.
//!
//! JSON: the Mesos array form (with `role`, `reservation`/`reservations`,
//! `disk.persistence.id` + `disk.volume.container_path`, or our flat `reservation_type`,
//! `principal` and `volume: {id, container_path}`), or a plain object whose keys are text
//! labels: `{"cpus": 4, "mem(web,dynamic)": 64, "ports": "[80-81]"}`.

use std::collections::BTreeSet;

use super::{
    RangeSet, Reservation, ResourceError, ResourceKey, Resources, SmolStr, UNRESERVED, Value,
    Volume, to_milli,
};

/// The labels parsed from `name(LABELS)[VOLUME]`.
struct Labels {
    role: SmolStr,
    reservation: Reservation,
    volume: Option<Volume>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            role: SmolStr::new_static(UNRESERVED),
            reservation: Reservation::Static,
            volume: None,
        }
    }
}

/// Parses the text form (see the module docs).
pub(super) fn text(t: &str) -> Result<Resources, ResourceError> {
    let mut out = Resources::new();
    for item in t.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, labels, rhs) = split_item(item)?;
        let value = parse_value(name, rhs, item)?;
        out.add_checked(name, labels, value)?;
    }
    Ok(out)
}

/// Splits `name(LABELS)[VOLUME]:value` into its parts.
fn split_item(item: &str) -> Result<(&str, Labels, &str), ResourceError> {
    let bad = |reason: &str| ResourceError::InvalidItem {
        item: item.to_string(),
        reason: reason.to_string(),
    };
    let name_end = item
        .find(['(', '[', ':'])
        .ok_or_else(|| bad("expected `name:value`"))?;
    let name = item[..name_end].trim();
    super::validate_name(name).map_err(|reason| bad(&reason))?;
    let mut labels = Labels::default();
    let mut rest = &item[name_end..];
    if let Some(inner) = rest.strip_prefix('(') {
        let close = inner.find(')').ok_or_else(|| bad("unclosed `(role)`"))?;
        let mut parts = inner[..close].split(',').map(str::trim);
        let role = parts.next().unwrap_or_default();
        labels.role = if role.is_empty() {
            SmolStr::new_static(UNRESERVED)
        } else {
            SmolStr::new(role)
        };
        if let Some(kind) = parts.next() {
            labels.reservation = match kind.split_once('=').map(|(k, p)| (k.trim(), p)) {
                None if kind == "static" => Reservation::Static,
                None if kind == "dynamic" => Reservation::dynamic(""),
                Some(("dynamic", principal)) => Reservation::dynamic(principal.trim()),
                _ => {
                    return Err(bad(&format!(
                        "`{kind}` is not `static`, `dynamic` or `dynamic=PRINCIPAL`"
                    )));
                }
            };
        }
        if parts.next().is_some() {
            return Err(bad("expected `(role)` or `(role,dynamic[=PRINCIPAL])`"));
        }
        rest = inner[close + 1..].trim_start();
    }
    if let Some(inner) = rest.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| bad("unclosed `[id:container_path]`"))?;
        let (id, path) = inner[..close]
            .split_once(':')
            .ok_or_else(|| bad("a volume is written `[id:container_path]`"))?;
        labels.volume = Some(Volume {
            id: id.trim().to_string(),
            container_path: path.trim().to_string(),
        });
        rest = inner[close + 1..].trim_start();
    }
    let rhs = rest
        .strip_prefix(':')
        .ok_or_else(|| bad("expected `name:value`"))?;
    Ok((name, labels, rhs.trim()))
}

fn parse_value(name: &str, rhs: &str, item: &str) -> Result<Value, ResourceError> {
    let bad = |reason: &str| ResourceError::InvalidItem {
        item: item.to_string(),
        reason: reason.to_string(),
    };
    Ok(if let Some(inner) = rhs.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| bad("unclosed `[`"))?;
        Value::Ranges(parse_ranges(name, inner)?)
    } else if let Some(inner) = rhs.strip_prefix('{') {
        let inner = inner.strip_suffix('}').ok_or_else(|| bad("unclosed `{`"))?;
        Value::Set(
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    } else {
        let v: f64 = rhs.parse().map_err(|_| ResourceError::InvalidScalar {
            name: name.to_string(),
            value: rhs.to_string(),
            reason: "not a number".into(),
        })?;
        Value::Scalar(to_milli(name, v)?)
    })
}

fn parse_ranges(name: &str, inner: &str) -> Result<RangeSet, ResourceError> {
    let mut v = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |reason: &str| ResourceError::InvalidRange {
            name: name.to_string(),
            range: part.to_string(),
            reason: reason.to_string(),
        };
        let (b, e) = match part.split_once('-') {
            Some((b, e)) => (b.trim(), e.trim()),
            None => (part, part),
        };
        let b: u64 = b.parse().map_err(|_| bad("not a number"))?;
        let e: u64 = e.parse().map_err(|_| bad("not a number"))?;
        if b > e {
            return Err(bad("begin is after end"));
        }
        v.push((b, e));
    }
    Ok(RangeSet::from_ranges(v))
}

/// Parses the Mesos JSON array form or a plain `{"name": value}` object.
pub(super) fn json(s: &str) -> Result<Resources, ResourceError> {
    let json: serde_json::Value =
        serde_json::from_str(s).map_err(|e| ResourceError::Json(e.to_string()))?;
    let mut out = Resources::new();
    match json {
        serde_json::Value::Object(map) => {
            for (name, v) in map {
                let text = match v {
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::String(text) => text,
                    other => {
                        return Err(ResourceError::Json(format!(
                            "`{name}`: expected a number or a string, got {other}"
                        )));
                    }
                };
                out.add(&self::text(&format!("{name}:{text}"))?);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_item(&mut out, i, item)?;
            }
        }
        other => {
            return Err(ResourceError::Json(format!(
                "expected an array or an object, got {other}"
            )));
        }
    }
    Ok(out)
}

fn json_item(out: &mut Resources, i: usize, item: &serde_json::Value) -> Result<(), ResourceError> {
    let field = |f: &str| ResourceError::Json(format!("item {i}: {f}"));
    let name = item
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| field("missing string `name`"))?;
    let ty = item
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("SCALAR")
        .to_ascii_uppercase();
    let value = match ty.as_str() {
        "SCALAR" => {
            let v = item
                .get("scalar")
                .and_then(|s| s.get("value"))
                .and_then(|v| v.as_f64())
                .ok_or_else(|| field("missing number `scalar.value`"))?;
            Value::Scalar(to_milli(name, v)?)
        }
        "RANGES" => {
            let ranges = item
                .get("ranges")
                .and_then(|r| r.get("range"))
                .and_then(|r| r.as_array())
                .ok_or_else(|| field("missing array `ranges.range`"))?;
            let mut rs = Vec::new();
            for r in ranges {
                let b = r.get("begin").and_then(|b| b.as_u64());
                let e = r.get("end").and_then(|e| e.as_u64());
                match (b, e) {
                    (Some(b), Some(e)) if b <= e => rs.push((b, e)),
                    (Some(_), Some(_)) => {
                        return Err(ResourceError::InvalidRange {
                            name: name.to_string(),
                            range: r.to_string(),
                            reason: "begin is after end".into(),
                        });
                    }
                    _ => {
                        return Err(ResourceError::InvalidRange {
                            name: name.to_string(),
                            range: r.to_string(),
                            reason: "`begin` and `end` must be non-negative integers".into(),
                        });
                    }
                }
            }
            Value::Ranges(RangeSet::from_ranges(rs))
        }
        "SET" => {
            let items = item
                .get("set")
                .and_then(|s| s.get("item"))
                .and_then(|i| i.as_array())
                .ok_or_else(|| field("missing array `set.item`"))?;
            let mut set = BTreeSet::new();
            for it in items {
                let s = it
                    .as_str()
                    .ok_or_else(|| field("set items must be strings"))?;
                set.insert(s.to_string());
            }
            Value::Set(set)
        }
        other => return Err(field(&format!("unknown type `{other}`"))),
    };
    let labels = json_labels(item).map_err(|e| field(&e))?;
    out.add_checked(name, labels, value)
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Result<Option<&'a str>, String> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{key}` must be a string, got {other}")),
    }
}

/// Role, reservation and volume of one Mesos JSON item.
fn json_labels(item: &serde_json::Value) -> Result<Labels, String> {
    let mut labels = Labels::default();
    if let Some(role) = str_field(item, "role")?.filter(|r| !r.is_empty()) {
        labels.role = SmolStr::new(role);
    }
    // Mesos ≥ 1.4: a stack of reservations; only one level (no refinement) is supported.
    if let Some(stack) = item.get("reservations") {
        let list = stack.as_array().ok_or("`reservations` must be an array")?;
        if list.len() > 1 {
            return Err(
                "reservation refinement (more than one reservation) is not supported".into(),
            );
        }
        if let Some(r) = list.first() {
            if let Some(role) = str_field(r, "role")? {
                labels.role = SmolStr::new(role);
            }
            let principal = str_field(r, "principal")?.unwrap_or_default();
            labels.reservation = match str_field(r, "type")?.unwrap_or("DYNAMIC") {
                t if t.eq_ignore_ascii_case("DYNAMIC") => Reservation::dynamic(principal),
                t if t.eq_ignore_ascii_case("STATIC") => Reservation::Static,
                t => return Err(format!("unknown reservation type `{t}`")),
            };
        }
    }
    // Mesos < 1.4: a `reservation` object means a dynamic reservation.
    if let Some(r) = item.get("reservation") {
        if !r.is_object() {
            return Err("`reservation` must be an object".into());
        }
        labels.reservation = Reservation::dynamic(str_field(r, "principal")?.unwrap_or_default());
    }
    // Flat fields, as in the protobuf form.
    if let Some(t) = str_field(item, "reservation_type")? {
        let principal = str_field(item, "principal")?.unwrap_or_default();
        labels.reservation = match t.to_ascii_uppercase().as_str() {
            "DYNAMIC" | "RESERVATION_DYNAMIC" => Reservation::dynamic(principal),
            "STATIC" | "RESERVATION_STATIC" | "" => Reservation::Static,
            other => return Err(format!("unknown reservation_type `{other}`")),
        };
    }
    let volume = match (item.get("disk"), item.get("volume")) {
        (Some(disk), _) if disk.get("persistence").is_some() => {
            let id = disk
                .get("persistence")
                .map(|p| str_field(p, "id"))
                .transpose()?
                .flatten()
                .ok_or("`disk.persistence.id` must be a string")?;
            let path = disk
                .get("volume")
                .map(|v| str_field(v, "container_path"))
                .transpose()?
                .flatten()
                .ok_or("`disk.volume.container_path` must be a string")?;
            Some((id, path))
        }
        (_, Some(v)) => {
            let id = str_field(v, "id")?.ok_or("`volume.id` must be a string")?;
            let path = str_field(v, "container_path")?
                .ok_or("`volume.container_path` must be a string")?;
            Some((id, path))
        }
        _ => None,
    };
    labels.volume = volume.map(|(id, path)| Volume {
        id: id.to_string(),
        container_path: path.to_string(),
    });
    Ok(labels)
}

impl Resources {
    /// Validates one entry's name, labels and kind, then adds it.
    fn add_checked(
        &mut self,
        name: &str,
        labels: Labels,
        value: Value,
    ) -> Result<(), ResourceError> {
        let key = ResourceKey {
            name: SmolStr::new(name),
            role: labels.role,
            kind: value.kind(),
            reservation: labels.reservation,
            volume: labels.volume,
        };
        self.add_checked_key(key, value)
    }
}
