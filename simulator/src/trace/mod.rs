//! Trace readers: Google cluster-data 2011 `task_events`, Alibaba cluster-trace-v2018
//! `batch_task`, and our own CSV and JSON formats (columns documented in the README).
//!
//! Every reader yields [`Record`]s (a framework key and a task); [`load`] then shifts time so
//! the trace starts at 0, applies the scenario's speed-up and limit, and folds keys onto at most
//! `max_frameworks` frameworks.
//!
//! # Layout of this module
//! - `google`: Google 2011 `task_events`.
//! - `alibaba`: Alibaba 2018 `batch_task`.
//! - `own`: our CSV and JSON.

pub mod alibaba;
pub mod google;
pub mod own;

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::SimError;
use crate::scenario::{TraceFormat, TraceSpec};

/// One task of a trace, as the simulator replays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceTask {
    /// Arrival (ms from the start of the trace).
    pub time_ms: u64,
    /// cpus, milli.
    pub cpus_milli: i64,
    /// mem, milli-MB.
    pub mem_milli: i64,
    /// Run time (`None`: not in the trace).
    pub duration_ms: Option<u64>,
}

/// A task and the key (user, job, framework) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Framework key.
    pub key: String,
    /// The task.
    pub task: TraceTask,
}

/// Builds a trace error.
pub(crate) fn bad(path: &Path, line: usize, field: &str, message: impl Into<String>) -> SimError {
    SimError::Trace {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses a number field of a CSV line, naming it on error.
pub(crate) fn num<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    field: &str,
    value: &str,
) -> Result<T, SimError> {
    value.trim().parse::<T>().map_err(|_| {
        bad(
            path,
            line,
            field,
            format!("`{value}` is not a valid number"),
        )
    })
}

/// cpus (cores) and mem (MB) to milli-units, at least 1 milli-cpu and 1 MB.
pub(crate) fn milli(cpus: f64, mem_mb: f64) -> (i64, i64) {
    let c = (cpus * 1000.0).round().clamp(1.0, 1e15) as i64;
    let m = (mem_mb * 1000.0).round().clamp(1000.0, 1e18) as i64;
    (c, m)
}

/// Reads a trace file as the scenario's `[[traces]]` entry says; returns (framework key, tasks
/// in time order) pairs, keys sorted.
pub fn load(path: &Path, spec: &TraceSpec) -> Result<Vec<(String, Vec<TraceTask>)>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
    let mut records = parse(&text, path, spec)?;
    if spec.limit > 0 {
        records.truncate(spec.limit);
    }
    Ok(group(records, spec.max_frameworks, spec.speedup))
}

/// Parses trace text in the spec's format.
pub fn parse(text: &str, path: &Path, spec: &TraceSpec) -> Result<Vec<Record>, SimError> {
    let mut records = match spec.format {
        TraceFormat::Google2011 => google::parse(text, path, spec.cpu_scale, spec.mem_scale_mb)?,
        TraceFormat::Alibaba2018 => alibaba::parse(text, path, spec.cpu_scale, spec.mem_scale_mb)?,
        TraceFormat::Csv => own::parse_csv(text, path)?,
        TraceFormat::Json => own::parse_json(text, path)?,
    };
    for r in &mut records {
        if r.task.duration_ms.is_none() {
            r.task.duration_ms = spec.default_duration_ms;
        }
    }
    records.sort_by_key(|r| r.task.time_ms);
    Ok(records)
}

/// FNV-1a, to fold keys onto frameworks the same way on every run.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Shifts to start at 0, divides time by `speedup`, folds keys onto `max` groups.
pub fn group(records: Vec<Record>, max: u32, speedup: f64) -> Vec<(String, Vec<TraceTask>)> {
    let start = records.iter().map(|r| r.task.time_ms).min().unwrap_or(0);
    let distinct: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.key.as_str()).collect();
    let fold = distinct.len() > max as usize;
    let mut groups: BTreeMap<String, Vec<TraceTask>> = BTreeMap::new();
    for r in records {
        let key = if fold {
            format!("g{}", fnv(&r.key) % u64::from(max))
        } else {
            r.key
        };
        let mut t = r.task;
        t.time_ms = ((t.time_ms - start) as f64 / speedup) as u64;
        t.duration_ms = t.duration_ms.map(|d| ((d as f64 / speedup) as u64).max(1));
        groups.entry(key).or_default().push(t);
    }
    groups.into_iter().collect()
}
