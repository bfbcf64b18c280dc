//! Alibaba cluster-trace-v2018 `batch_task` (CSV, no header, 9 columns):
//! `task_name`, `instance_num`, `job_name`, `task_type`, `status`, `start_time` (s),
//! `end_time` (s), `plan_cpu` (100 = one core), `plan_mem` (percent of a machine's memory).
//!
//! Used: each row becomes `instance_num` tasks arriving at `start_time`, each with
//! `plan_cpu / 100 × cpu_scale` cores and `plan_mem / 100 × mem_scale_mb` MB, running
//! `end_time − start_time` seconds when `status` is `Terminated` and the end is after the start
//! (otherwise the scenario's default duration). The framework key is `job_name`. Rows with an
//! empty `plan_cpu` or `plan_mem` are skipped.

use std::path::Path;

use super::{Record, TraceTask, bad, milli, num};
use crate::error::SimError;

/// Column names, in order.
pub const COLUMNS: [&str; 9] = [
    "task_name",
    "instance_num",
    "job_name",
    "task_type",
    "status",
    "start_time",
    "end_time",
    "plan_cpu",
    "plan_mem",
];

/// Largest `instance_num` accepted for one row.
const MAX_INSTANCES: u64 = 1_000_000;

/// Parses `batch_task` text.
pub fn parse(
    text: &str,
    path: &Path,
    cpu_scale: f64,
    mem_scale_mb: f64,
) -> Result<Vec<Record>, SimError> {
    let mut out = Vec::new();
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
        let instances: u64 = num(path, ln, COLUMNS[1], f[1])?;
        if instances > MAX_INSTANCES {
            return Err(bad(
                path,
                ln,
                COLUMNS[1],
                format!("{instances} is more than {MAX_INSTANCES}"),
            ));
        }
        let job = f[2].trim();
        if job.is_empty() {
            return Err(bad(path, ln, COLUMNS[2], "must not be empty"));
        }
        let start: u64 = num(path, ln, COLUMNS[5], f[5])?;
        let end: u64 = num(path, ln, COLUMNS[6], f[6])?;
        if f[7].trim().is_empty() || f[8].trim().is_empty() {
            continue;
        }
        let cpu: f64 = num(path, ln, COLUMNS[7], f[7])?;
        let mem: f64 = num(path, ln, COLUMNS[8], f[8])?;
        for (name, v) in [(COLUMNS[7], cpu), (COLUMNS[8], mem)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(path, ln, name, format!("{v} is not a valid amount")));
            }
        }
        let duration_ms = (f[4].trim() == "Terminated" && end > start)
            .then(|| (end - start).saturating_mul(1000));
        let (cpus_milli, mem_milli) = milli(cpu / 100.0 * cpu_scale, mem / 100.0 * mem_scale_mb);
        for _ in 0..instances {
            out.push(Record {
                key: job.to_string(),
                task: TraceTask {
                    time_ms: start.saturating_mul(1000),
                    cpus_milli,
                    mem_milli,
                    duration_ms,
                },
            });
        }
    }
    Ok(out)
}
