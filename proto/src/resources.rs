//! Resources with Apache Mesos semantics.
//!
//! A [`Resources`] value is a bag of named resources, each reserved for a role (`*` means
//! unreserved), statically or dynamically, and — for reserved `disk` — possibly holding a
//! persistent volume. Scalars (`cpus`, `mem` in MB, `disk` in MB, `gpus`, …) are fixed point
//! in thousandths, so sums and differences never drift; ranges (`ports`) and sets are exact.
//!
//! Text form (as Mesos): `cpus:4;mem:8192;ports:[31000-32000];disks(ssd):{a,b}` where
//! `name(role)` reserves statically for `role`, `name(role,dynamic)` or
//! `name(role,dynamic=PRINCIPAL)` marks a dynamic reservation, and `disk(role)[id:path]:size`
//! is a persistent volume `id` mounted at `path` (relative to the sandbox). JSON form: the Mesos
//! array `[{"name":"cpus","type":"SCALAR","scalar":{"value":4}}]` (with `role`,
//! `reservations`, `disk.persistence`) or a plain object `{"cpus":4,"mem(web)":8192}`.
//!
//! Every form (text, JSON, protobuf) is validated the same way: names are `[A-Za-z0-9_.-]`;
//! scalars are finite, not negative, at most [`MAX_SCALAR_MILLI`] (repeated entries in sum
//! too) and not so small they round to 0 at 0.001; `gpus` are whole; `ports` ranges end at
//! [`MAX_PORT`]; set items are not empty and hold no `,` or `;`; well-known names have their
//! kind. So any accepted value prints as text that parses back to it.
//!
//! # Layout
//! - `parse`: the text and JSON parsers.
//! - `ranges`: [`RangeSet`], normalized integer ranges (ports).
//! - [`reservation`]: [`Reservation`] (static/dynamic), [`Volume`] and their validation.

mod parse;
mod ranges;
pub mod reservation;

use std::collections::BTreeSet;
use std::fmt;

use crate::v1;
pub use ranges::RangeSet;
pub use reservation::{Reservation, Volume};
/// The string type of resource names and roles: short ones are stored inline and every clone
/// is O(1), so copying resources does not allocate for names and roles.
pub use smol_str::SmolStr;

/// The role of unreserved resources.
pub const UNRESERVED: &str = "*";

/// Milli-units per unit of a scalar.
pub const MILLI: i64 = 1000;

/// Largest scalar accepted, in milli-units: 10^15, i.e. 10^12 whole units (a trillion cpus, an
/// exabyte of `mem` or `disk` in MB). Anything larger is a typo or an attempt to overflow sums:
/// about 9,000 such values still add up within `i64`.
pub const MAX_SCALAR_MILLI: i64 = 1_000_000_000_000_000;

/// Highest TCP/UDP port: `ports` ranges must end at or below it.
pub const MAX_PORT: u64 = 65_535;

/// Mesos's minimum allocatable resources: an agent (or offer) must hold at least this many
/// milli-cpus, or [`MIN_ALLOCATABLE_MEM_MILLI`], to be of any use.
pub const MIN_ALLOCATABLE_CPUS_MILLI: i64 = 10;

/// Mesos's minimum allocatable memory, in milli-MB (32 MB).
pub const MIN_ALLOCATABLE_MEM_MILLI: i64 = 32_000;

/// Errors from parsing or converting resources; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// A `name:value` item could not be parsed.
    #[error("invalid resource item `{item}`: {reason}")]
    InvalidItem {
        /// The offending text.
        item: String,
        /// Why it was refused.
        reason: String,
    },
    /// A scalar was negative, not a number, or too large.
    #[error("resource `{name}`: invalid scalar {value}: {reason}")]
    InvalidScalar {
        /// Resource name.
        name: String,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A range had begin > end, was malformed, or left the valid domain (ports above 65535).
    #[error("resource `{name}`: invalid range `{range}`: {reason}")]
    InvalidRange {
        /// Resource name.
        name: String,
        /// The range as given.
        range: String,
        /// Why it was refused.
        reason: String,
    },
    /// A well-known resource had the wrong type (e.g. `cpus:[1-2]`).
    #[error("resource `{name}` must be {expected}")]
    WrongType {
        /// Resource name.
        name: String,
        /// Expected type.
        expected: &'static str,
    },
    /// Malformed JSON.
    #[error("invalid resources JSON: {0}")]
    Json(String),
    /// A reservation that is not allowed (dynamic on `*`, bad principal, …).
    #[error("invalid reservation of resource `{name}`: {reason}")]
    InvalidReservation {
        /// Resource name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A persistent volume that is not allowed (not on reserved disk, bad id or path).
    #[error("invalid persistent volume on resource `{name}`: {reason}")]
    InvalidVolume {
        /// Resource name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A role name that is not allowed.
    #[error("invalid role `{role}` for resource `{name}`: {reason}")]
    InvalidRole {
        /// Resource name.
        name: String,
        /// Role as given.
        role: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The kind of a resource value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Fixed-point number.
    Scalar,
    /// Set of integer ranges.
    Ranges,
    /// Set of strings.
    Set,
}

/// Identifies one resource entry: its name, role, kind, reservation kind and volume. Entries
/// with different keys never merge. Ordered by name, role, kind, reservation, volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    /// Resource name, e.g. `cpus`.
    pub name: SmolStr,
    /// Role the resource is reserved for; `*` if unreserved.
    pub role: SmolStr,
    /// Value kind.
    pub kind: Kind,
    /// Static (also for unreserved resources) or dynamic reservation.
    pub reservation: Reservation,
    /// The persistent volume this (reserved `disk`) entry holds.
    pub volume: Option<Volume>,
}

impl Ord for ResourceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        short_str_cmp(&self.name, &other.name)
            .then_with(|| short_str_cmp(&self.role, &other.role))
            .then_with(|| self.kind.cmp(&other.kind))
            .then_with(|| self.reservation.cmp(&other.reservation))
            .then_with(|| self.volume.cmp(&other.volume))
    }
}

impl PartialOrd for ResourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Lexicographic byte order, as `str::cmp`, without a `memcmp` call for strings of up to 16
/// bytes (resource names and most roles): both are packed big-endian into a `u128`, zero
/// padded, and a tie is broken by length (a prefix sorts first).
fn short_str_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn pack(s: &[u8]) -> u128 {
        let mut buf = [0u8; 16];
        for (d, c) in buf.iter_mut().zip(s) {
            *d = *c;
        }
        u128::from_be_bytes(buf)
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Most keys differ in their first byte (`cpus`, `disk`, `mem`, `ports`).
    if let (Some(x), Some(y)) = (a.first(), b.first())
        && x != y
    {
        return x.cmp(y);
    }
    if a.len() <= 16 && b.len() <= 16 {
        pack(a).cmp(&pack(b)).then(a.len().cmp(&b.len()))
    } else {
        a.cmp(b)
    }
}

impl ResourceKey {
    /// A key for a statically reserved (or, with role `*`, unreserved) entry without volume.
    pub fn new(name: &str, role: &str, kind: Kind) -> Self {
        ResourceKey {
            name: SmolStr::new(name),
            role: SmolStr::new(role),
            kind,
            reservation: Reservation::Static,
            volume: None,
        }
    }

    /// True for a dynamic reservation.
    pub fn is_dynamic(&self) -> bool {
        self.reservation.is_dynamic()
    }

    /// True if the entry is reserved (role other than `*`).
    pub fn is_reserved(&self) -> bool {
        self.role != UNRESERVED
    }

    /// The labels in text form, e.g. `(web,dynamic=alice)[data:data]` (empty when unreserved).
    pub fn labels(&self) -> String {
        let mut s = String::new();
        if self.role != UNRESERVED || self.reservation.is_dynamic() {
            s.push('(');
            s.push_str(&self.role);
            if let Reservation::Dynamic { principal } = &self.reservation {
                s.push_str(",dynamic");
                if !principal.is_empty() {
                    s.push('=');
                    s.push_str(principal);
                }
            }
            s.push(')');
        }
        if let Some(v) = &self.volume {
            s.push('[');
            s.push_str(&v.id);
            s.push(':');
            s.push_str(&v.container_path);
            s.push(']');
        }
        s
    }
}

/// A resource value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Thousandths of a unit.
    Scalar(i64),
    /// Integer ranges.
    Ranges(RangeSet),
    /// Text items.
    Set(BTreeSet<String>),
}

impl Value {
    /// The value's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Scalar(_) => Kind::Scalar,
            Value::Ranges(_) => Kind::Ranges,
            Value::Set(_) => Kind::Set,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(v) => *v == 0,
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

/// A bag of resources. Entries with empty values are never stored.
///
/// Stored as a vector sorted by key: a bag holds a handful of entries, so one allocation and
/// a binary search beat a tree (cloning a bag is one allocation; names and roles are
/// [`SmolStr`]s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    items: Vec<(ResourceKey, Value)>,
}

fn expected_kind(name: &str) -> Option<(Kind, &'static str)> {
    match name {
        "cpus" | "mem" | "disk" | "gpus" => Some((Kind::Scalar, "a scalar")),
        "ports" => Some((Kind::Ranges, "ranges")),
        _ => None,
    }
}

/// Checks a resource name: not empty, only `[A-Za-z0-9_.-]` (what the text form can write).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!("character `{c}` not allowed in a name"));
    }
    Ok(())
}

/// Checks the items of a set: each can be written in the text form `{a,b}` (not empty, no
/// surrounding whitespace, no `,` or `;`).
fn validate_set_items(name: &str, items: &BTreeSet<String>) -> Result<(), ResourceError> {
    for item in items {
        if item.is_empty() || item.trim() != item || item.contains([',', ';']) {
            return Err(ResourceError::InvalidItem {
                item: name.to_string(),
                reason: format!(
                    "set item {item:?} is empty, has surrounding whitespace or contains `,` or `;`"
                ),
            });
        }
    }
    Ok(())
}

/// Longest role name accepted, in bytes (Mesos-like).
pub const MAX_ROLE_LEN: usize = 256;

/// Most path segments in a hierarchical role (`a/b/c` has 3).
pub const MAX_ROLE_DEPTH: usize = 16;

/// Checks a role name: `*`, or `/`-separated non-empty segments of `[A-Za-z0-9_.-]`,
/// no segment `.` or `..`, not starting with `-`; at most [`MAX_ROLE_LEN`] bytes and
/// [`MAX_ROLE_DEPTH`] segments.
pub fn validate_role(role: &str) -> Result<(), String> {
    if role == UNRESERVED {
        return Ok(());
    }
    if role.is_empty() {
        return Err("role is empty".into());
    }
    if role.len() > MAX_ROLE_LEN {
        return Err(format!(
            "role is {} bytes long, the limit is {MAX_ROLE_LEN}",
            role.len()
        ));
    }
    if role.split('/').count() > MAX_ROLE_DEPTH {
        return Err(format!("role has more than {MAX_ROLE_DEPTH} path segments"));
    }
    for seg in role.split('/') {
        if seg.is_empty() {
            return Err("empty path segment".into());
        }
        if seg == "." || seg == ".." {
            return Err(format!("segment `{seg}` is not allowed"));
        }
        if seg.starts_with('-') {
            return Err("segment starts with `-`".into());
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(format!("character `{c}` is not allowed"));
        }
    }
    Ok(())
}

/// Converts a decimal number to milli-units, rounding to three decimals as Mesos does.
///
/// Refuses non-finite and negative numbers, numbers above [`MAX_SCALAR_MILLI`], and positive
/// numbers that round to zero (below 0.0005): they would silently vanish.
pub fn to_milli(name: &str, value: f64) -> Result<i64, ResourceError> {
    let err = |reason: &str| ResourceError::InvalidScalar {
        name: name.to_string(),
        value: format_f64(value),
        reason: reason.to_string(),
    };
    if !value.is_finite() {
        return Err(err("not a finite number"));
    }
    if value < 0.0 {
        return Err(err("negative"));
    }
    let milli = (value * MILLI as f64).round();
    if milli > MAX_SCALAR_MILLI as f64 {
        return Err(err(&too_large_reason()));
    }
    if milli == 0.0 && value > 0.0 {
        return Err(err("rounds to zero (the resolution is 0.001)"));
    }
    Ok(milli as i64)
}

/// A number for an error message: plain (`0.5`, `-1`, `NaN`) unless it is very large or very
/// small, then in scientific notation (`1e300`, `1e-9`) rather than hundreds of digits.
pub fn format_f64(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && a != 0.0 && !(1e-6..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// Why a scalar above [`MAX_SCALAR_MILLI`] is refused.
fn too_large_reason() -> String {
    format!("too large (at most {})", format_milli(MAX_SCALAR_MILLI))
}

/// Checks a value against the rules of well-known resources: `ports` ranges end at
/// [`MAX_PORT`], `gpus` are whole, no scalar exceeds [`MAX_SCALAR_MILLI`] or is negative.
fn check_value(name: &str, value: &Value) -> Result<(), ResourceError> {
    let scalar_err = |m: i64, reason: String| ResourceError::InvalidScalar {
        name: name.to_string(),
        value: format_milli(m),
        reason,
    };
    match value {
        Value::Scalar(m) if *m < 0 => Err(scalar_err(*m, "negative".into())),
        Value::Scalar(m) if *m > MAX_SCALAR_MILLI => Err(scalar_err(*m, too_large_reason())),
        Value::Scalar(m) if name == "gpus" && m % MILLI != 0 => Err(scalar_err(
            *m,
            "gpus are allocated whole: give an integer".into(),
        )),
        Value::Ranges(r) if name == "ports" => match r.ranges().last() {
            Some(&(b, e)) if e > MAX_PORT => Err(ResourceError::InvalidRange {
                name: name.to_string(),
                range: format!("{b}-{e}"),
                reason: format!("ports end at {MAX_PORT}"),
            }),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Formats milli-units as a decimal with at most three fraction digits.
pub fn format_milli(m: i64) -> String {
    let (sign, m) = if m < 0 { ("-", -m) } else { ("", m) };
    let whole = m / MILLI;
    let frac = m % MILLI;
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:03}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

impl Resources {
    /// No resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the Mesos text form or JSON (detected by a leading `[` or `{`); see [`parse`]
    /// for the label syntax (`cpus(web,dynamic=alice):2`, `disk(web)[data:data]:100`).
    pub fn parse(s: &str) -> Result<Self, ResourceError> {
        let t = s.trim();
        if t.starts_with('[') || t.starts_with('{') {
            return parse::json(t);
        }
        parse::text(t)
    }

    /// Parses the Mesos JSON array form or a plain `{"name": value}` object.
    pub fn parse_json(s: &str) -> Result<Self, ResourceError> {
        parse::json(s)
    }

    /// Validates a whole entry (role, reservation, volume, kind for well-known names), then
    /// adds it.
    fn add_checked_key(&mut self, mut key: ResourceKey, value: Value) -> Result<(), ResourceError> {
        // Every form (JSON, wire) names resources as the text form can, so any accepted value
        // prints as text that parses back to it.
        validate_name(&key.name).map_err(|reason| ResourceError::InvalidItem {
            item: key.name.to_string(),
            reason,
        })?;
        if key.role.is_empty() {
            key.role = SmolStr::new_static(UNRESERVED);
        }
        reservation::validate_labels(&key.name, &key.role, &key.reservation, key.volume.as_ref())?;
        if let Some((kind, expected)) = expected_kind(&key.name)
            && value.kind() != kind
        {
            return Err(ResourceError::WrongType {
                name: key.name.to_string(),
                expected,
            });
        }
        check_value(&key.name, &value)?;
        if let Value::Set(items) = &value {
            validate_set_items(&key.name, items)?;
        }
        key.kind = value.kind();
        // Repeated entries add up; their sum stays in the domain too.
        if let (Value::Scalar(b), Some(Value::Scalar(a))) = (&value, self.get(&key))
            && a.saturating_add(*b) > MAX_SCALAR_MILLI
        {
            return Err(ResourceError::InvalidScalar {
                name: key.name.to_string(),
                value: format_milli(a.saturating_add(*b)),
                reason: format!("the sum of its entries is {}", too_large_reason()),
            });
        }
        self.add_value(key, value);
        Ok(())
    }

    fn add_value(&mut self, key: ResourceKey, value: Value) {
        if value.is_empty() {
            return;
        }
        match self.position(&key) {
            Err(at) => self.items.insert(at, (key, value)),
            Ok(at) => match (&mut self.items[at].1, value) {
                (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_add(b),
                (Value::Ranges(a), Value::Ranges(b)) => *a = a.union(&b),
                (Value::Set(a), Value::Set(b)) => a.extend(b),
                // Keys carry the kind, so kinds always match here.
                _ => {}
            },
        }
    }

    /// Where `key` is (`Ok`) or would be inserted (`Err`).
    fn position(&self, key: &ResourceKey) -> Result<usize, usize> {
        self.items.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// The value stored under `key`.
    fn get(&self, key: &ResourceKey) -> Option<&Value> {
        self.position(key).ok().map(|at| &self.items[at].1)
    }

    /// Converts from the wire form, validating every entry.
    pub fn from_proto(list: &[v1::Resource]) -> Result<Self, ResourceError> {
        let mut out = Resources {
            items: Vec::with_capacity(list.len()),
        };
        for r in list {
            let value = match &r.value {
                // Range checks (negative, too large, whole gpus) in `add_checked_key`.
                Some(v1::resource::Value::ScalarMilli(m)) => Value::Scalar(*m),
                Some(v1::resource::Value::Ranges(rs)) => {
                    let mut v = Vec::with_capacity(rs.range.len());
                    for range in &rs.range {
                        if range.begin > range.end {
                            return Err(ResourceError::InvalidRange {
                                name: r.name.clone(),
                                range: format!("{}-{}", range.begin, range.end),
                                reason: "begin is after end".into(),
                            });
                        }
                        v.push((range.begin, range.end));
                    }
                    Value::Ranges(RangeSet::from_ranges(v))
                }
                Some(v1::resource::Value::Set(s)) => Value::Set(s.item.iter().cloned().collect()),
                None => {
                    return Err(ResourceError::InvalidItem {
                        item: r.name.clone(),
                        reason: "no value".into(),
                    });
                }
            };
            if r.name.is_empty() {
                return Err(ResourceError::InvalidItem {
                    item: String::new(),
                    reason: "empty name".into(),
                });
            }
            let reservation = match v1::ReservationType::try_from(r.reservation_type) {
                Ok(v1::ReservationType::Dynamic) => Reservation::dynamic(&r.principal),
                Ok(_) if !r.principal.is_empty() => {
                    return Err(ResourceError::InvalidReservation {
                        name: r.name.clone(),
                        reason: "a principal is only recorded for dynamic reservations".into(),
                    });
                }
                Ok(_) => Reservation::Static,
                Err(_) => {
                    return Err(ResourceError::InvalidReservation {
                        name: r.name.clone(),
                        reason: format!("unknown reservation_type {}", r.reservation_type),
                    });
                }
            };
            let key = ResourceKey {
                name: SmolStr::new(&r.name),
                role: SmolStr::new(&r.role),
                kind: value.kind(),
                reservation,
                volume: r.volume.as_ref().map(|v| Volume {
                    id: v.id.clone(),
                    container_path: v.container_path.clone(),
                }),
            };
            out.add_checked_key(key, value)?;
        }
        Ok(out)
    }

    /// Converts to the wire form.
    pub fn to_proto(&self) -> Vec<v1::Resource> {
        self.items
            .iter()
            .map(|(k, v)| v1::Resource {
                name: String::from(k.name.as_str()),
                role: String::from(k.role.as_str()),
                reservation_type: match &k.reservation {
                    Reservation::Dynamic { .. } => v1::ReservationType::Dynamic,
                    Reservation::Static if k.role == UNRESERVED => v1::ReservationType::Unspecified,
                    Reservation::Static => v1::ReservationType::Static,
                } as i32,
                principal: match &k.reservation {
                    Reservation::Dynamic { principal } => principal.clone(),
                    Reservation::Static => String::new(),
                },
                volume: k.volume.as_ref().map(|v| v1::PersistentVolume {
                    id: v.id.clone(),
                    container_path: v.container_path.clone(),
                }),
                value: Some(match v {
                    Value::Scalar(m) => v1::resource::Value::ScalarMilli(*m),
                    Value::Ranges(r) => v1::resource::Value::Ranges(v1::Ranges {
                        range: r
                            .ranges()
                            .iter()
                            .map(|&(begin, end)| v1::Range { begin, end })
                            .collect(),
                    }),
                    Value::Set(s) => v1::resource::Value::Set(v1::Set {
                        item: s.iter().cloned().collect(),
                    }),
                }),
            })
            .collect()
    }

    /// A scalar resource of `name`, in milli-units, summed over roles.
    pub fn scalar_milli(&self, name: &str) -> i64 {
        self.items
            .iter()
            .filter(|(k, _)| k.name == name)
            .map(|(_, v)| if let Value::Scalar(m) = v { *m } else { 0 })
            .sum()
    }

    /// Builds a resources value with one unreserved scalar (milli-units).
    pub fn scalar(name: &str, milli: i64) -> Self {
        let mut r = Resources::new();
        r.add_value(
            ResourceKey::new(name, UNRESERVED, Kind::Scalar),
            Value::Scalar(milli.max(0)),
        );
        r
    }

    /// One entry as a resources value (nothing if `value` is empty). The key is taken as is:
    /// build it from keys of validated resources.
    pub fn from_entry(key: ResourceKey, value: Value) -> Self {
        let mut r = Resources::new();
        r.add_value(key, value);
        r
    }

    /// Each entry as a resources value of its own, in order.
    pub fn entries(&self) -> impl Iterator<Item = Resources> + '_ {
        self.items
            .iter()
            .map(|(k, v)| Resources::from_entry(k.clone(), v.clone()))
    }

    /// The same quantities with every label rewritten by `f` (entries may merge).
    pub fn map_labels(&self, f: impl Fn(&ResourceKey) -> ResourceKey) -> Resources {
        let mut out = Resources::new();
        for (k, v) in &self.items {
            let mut key = f(k);
            key.name.clone_from(&k.name);
            key.kind = k.kind;
            out.add_value(key, v.clone());
        }
        out
    }

    /// The same quantities, unreserved and without volumes (what RESERVE starts from).
    pub fn unreserved(&self) -> Resources {
        self.map_labels(|k| ResourceKey::new(&k.name, UNRESERVED, k.kind))
    }

    /// The same quantities and reservations without persistent volumes (what CREATE starts
    /// from and DESTROY returns).
    pub fn without_volumes(&self) -> Resources {
        self.map_labels(|k| ResourceKey {
            volume: None,
            ..k.clone()
        })
    }

    /// The entries that hold a persistent volume.
    pub fn volumes(&self) -> impl Iterator<Item = (&ResourceKey, &Volume, &Value)> {
        self.items
            .iter()
            .filter_map(|(k, v)| k.volume.as_ref().map(|vol| (k, vol, v)))
    }

    /// The entries reserved dynamically.
    pub fn dynamically_reserved(&self) -> Resources {
        self.filtered(|k| k.is_dynamic())
    }

    /// The entries whose key satisfies `keep`.
    pub fn filtered(&self, keep: impl Fn(&ResourceKey) -> bool) -> Resources {
        Resources {
            items: self
                .items
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// CPUs in milli-cpus.
    pub fn cpus_milli(&self) -> i64 {
        self.scalar_milli("cpus")
    }

    /// Memory in milli-MB.
    pub fn mem_milli(&self) -> i64 {
        self.scalar_milli("mem")
    }

    /// True if this holds at least Mesos's minimum allocatable resources (cpus 0.01 or mem
    /// 32 MB, summed over roles); an agent with less could never have anything offered.
    pub fn is_allocatable(&self) -> bool {
        self.cpus_milli() >= MIN_ALLOCATABLE_CPUS_MILLI
            || self.mem_milli() >= MIN_ALLOCATABLE_MEM_MILLI
    }

    /// Ranges of `name` (all roles), e.g. ports.
    pub fn ranges(&self, name: &str) -> RangeSet {
        self.items.iter().filter(|(k, _)| k.name == name).fold(
            RangeSet::default(),
            |acc, (_, v)| match v {
                Value::Ranges(r) => acc.union(r),
                _ => acc,
            },
        )
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Iterates over the entries.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceKey, &Value)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        if self.items.is_empty() {
            // One allocation of the right size (entries are never empty: see `add_value`).
            self.items.clone_from(&other.items);
            return;
        }
        self.items.reserve(other.items.len());
        for (k, v) in &other.items {
            self.add_value(k.clone(), v.clone());
        }
    }

    /// `self + other`.
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.add(other);
        r
    }

    /// True if `other` ⊆ `self` (same names, roles and kinds; scalars ≤, ranges/sets subsets).
    pub fn contains(&self, other: &Resources) -> bool {
        other.items.iter().all(|(k, v)| match (self.get(k), v) {
            (Some(Value::Scalar(a)), Value::Scalar(b)) => a >= b,
            (Some(Value::Ranges(a)), Value::Ranges(b)) => a.contains(b),
            (Some(Value::Set(a)), Value::Set(b)) => b.is_subset(a),
            _ => false,
        })
    }

    /// `self − other` if `other` ⊆ `self`, else `None`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        let mut out = self.clone();
        out.subtract(other);
        Some(out)
    }

    /// Removes `other` from `self`, saturating at empty where `other` is not contained.
    pub fn subtract(&mut self, other: &Resources) {
        for (k, v) in &other.items {
            let Ok(at) = self.position(k) else {
                continue;
            };
            let existing = &mut self.items[at].1;
            match (&mut *existing, v) {
                (Value::Scalar(a), Value::Scalar(b)) => *a = (*a - b).max(0),
                (Value::Ranges(a), Value::Ranges(b)) => *a = a.difference(b),
                (Value::Set(a), Value::Set(b)) => a.retain(|x| !b.contains(x)),
                _ => {}
            }
            if existing.is_empty() {
                self.items.remove(at);
            }
        }
    }

    /// Only the entries reserved for `role` (`*` = unreserved), statically or dynamically,
    /// volumes included.
    pub fn for_role(&self, role: &str) -> Resources {
        self.filtered(|k| k.role == role)
    }

    /// The entries a framework in `role` may be offered: unreserved ones, and those reserved
    /// for `role` or one of its ancestors (`eng` reservations serve `eng/ml`).
    pub fn usable_by(&self, role: &str) -> Resources {
        self.filtered(|k| {
            k.role == UNRESERVED
                || k.role == role
                || role
                    .strip_prefix(k.role.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// The largest share `self[r] / total[r]` over scalar resources present in `total`.
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        let mut best = 0.0f64;
        for name in ["cpus", "mem", "disk", "gpus"] {
            let t = total.scalar_milli(name);
            if t > 0 {
                best = best.max(self.scalar_milli(name) as f64 / t as f64);
            }
        }
        best
    }
}

impl fmt::Display for Resources {
    /// Mesos text form, entries in a stable order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.items {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            f.write_str(&k.name)?;
            f.write_str(&k.labels())?;
            f.write_str(":")?;
            match v {
                Value::Scalar(m) => f.write_str(&format_milli(*m))?,
                Value::Ranges(r) => {
                    f.write_str("[")?;
                    for (i, (b, e)) in r.ranges().iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{b}-{e}")?;
                    }
                    f.write_str("]")?;
                }
                Value::Set(s) => {
                    f.write_str("{")?;
                    for (i, x) in s.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        f.write_str(x)?;
                    }
                    f.write_str("}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Resources {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resources::parse(s)
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;

#[cfg(test)]
mod reservation_tests;
