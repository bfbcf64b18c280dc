//! Google cluster-data 2011 `task_events` (CSV, no header, 13 columns):
//! `timestamp` (µs), `missing_info`, `job_id`, `task_index`, `machine_id`, `event_type`,
//! `user`, `scheduling_class`, `priority`, `cpu_request`, `memory_request`,
//! `disk_space_request`, `different_machine_restriction`.
//!
//! Used: a task arrives at its first SUBMIT (event type 0) with that row's normalized cpu and
//! memory requests (× `cpu_scale` cores, × `mem_scale_mb` MB); its duration is from its first
//! SCHEDULE (1) to the next EVICT/FAIL/FINISH/KILL/LOST (2–6). The framework key is `user`.
//! SUBMIT rows with empty requests are skipped (the real trace has some).

use std::collections::BTreeMap;
use std::path::Path;

use super::{Record, TraceTask, bad, milli, num};
use crate::error::SimError;

/// Column names, in order.
pub const COLUMNS: [&str; 13] = [
    "timestamp",
    "missing_info",
    "job_id",
    "task_index",
    "machine_id",
    "event_type",
    "user",
    "scheduling_class",
    "priority",
    "cpu_request",
    "memory_request",
    "disk_space_request",
    "different_machine_restriction",
];

#[derive(Default)]
struct Task {
    user: String,
    submit_us: Option<u64>,
    cpus: f64,
    mem: f64,
    scheduled_us: Option<u64>,
    duration_us: Option<u64>,
}

/// Parses `task_events` text.
pub fn parse(
    text: &str,
    path: &Path,
    cpu_scale: f64,
    mem_scale_mb: f64,
) -> Result<Vec<Record>, SimError> {
    let mut tasks: BTreeMap<(u64, u64), Task> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != COLUMNS.len() {
            return Err(bad(
                path,
                ln,
                "columns",
                format!("expected {} columns, found {}", COLUMNS.len(), f.len()),
            ));
        }
        let time: u64 = num(path, ln, COLUMNS[0], f[0])?;
        let job: u64 = num(path, ln, COLUMNS[2], f[2])?;
        let index: u64 = num(path, ln, COLUMNS[3], f[3])?;
        let event: u8 = num(path, ln, COLUMNS[5], f[5])?;
        if event > 8 {
            return Err(bad(
                path,
                ln,
                COLUMNS[5],
                format!("unknown event type {event}"),
            ));
        }
        let t = tasks.entry((job, index)).or_default();
        match event {
            0 => {
                if t.submit_us.is_some() {
                    continue;
                }
                if f[9].trim().is_empty() || f[10].trim().is_empty() {
                    continue;
                }
                let cpus: f64 = num(path, ln, COLUMNS[9], f[9])?;
                let mem: f64 = num(path, ln, COLUMNS[10], f[10])?;
                for (name, v) in [(COLUMNS[9], cpus), (COLUMNS[10], mem)] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(bad(path, ln, name, format!("{v} is not a valid request")));
                    }
                }
                t.submit_us = Some(time);
                t.user = f[6].trim().to_string();
                t.cpus = cpus;
                t.mem = mem;
            }
            1 if t.scheduled_us.is_none() => t.scheduled_us = Some(time),
            2..=6 => {
                if let (Some(s), None) = (t.scheduled_us, t.duration_us) {
                    t.duration_us = Some(time.saturating_sub(s));
                }
            }
            _ => {}
        }
    }
    Ok(tasks
        .into_values()
        .filter_map(|t| {
            let submit = t.submit_us?;
            let (cpus_milli, mem_milli) = milli(t.cpus * cpu_scale, t.mem * mem_scale_mb);
            Some(Record {
                key: t.user,
                task: TraceTask {
                    time_ms: submit / 1000,
                    cpus_milli,
                    mem_milli,
                    duration_ms: t.duration_us.map(|d| (d / 1000).max(1)),
                },
            })
        })
        .collect())
}
