//! Our own trace formats.
//!
//! CSV, with this header line (the `count` column is optional):
//! `time_s,framework,cpus,mem_mb,duration_s,count` — arrival time in seconds, the framework's
//! name, cores, MB, run time in seconds (empty = not known), and how many such tasks.
//!
//! JSON: an array of objects with the same fields (`duration_s` may be null or absent, `count`
//! defaults to 1).

use std::path::Path;

use serde::Deserialize;

use super::{Record, TraceTask, bad, milli, num};
use crate::dist::secs_to_ms;
use crate::error::SimError;

/// The CSV header's required columns, in order.
pub const COLUMNS: [&str; 5] = ["time_s", "framework", "cpus", "mem_mb", "duration_s"];

/// Most tasks one row may stand for.
const MAX_COUNT: u64 = 1_000_000;

#[allow(clippy::too_many_arguments)]
fn record(
    path: &Path,
    line: usize,
    time_s: f64,
    framework: &str,
    cpus: f64,
    mem_mb: f64,
    duration_s: Option<f64>,
    count: u64,
    out: &mut Vec<Record>,
) -> Result<(), SimError> {
    for (name, v, positive) in [
        ("time_s", time_s, false),
        ("cpus", cpus, true),
        ("mem_mb", mem_mb, true),
    ] {
        if !(v.is_finite() && v >= 0.0) || (positive && v == 0.0) {
            return Err(bad(
                path,
                line,
                name,
                format!(
                    "{v} is out of range (must be {})",
                    if positive { "> 0" } else { ">= 0" }
                ),
            ));
        }
    }
    if let Some(d) = duration_s
        && !(d.is_finite() && d > 0.0)
    {
        return Err(bad(path, line, "duration_s", format!("{d} must be > 0")));
    }
    if framework.trim().is_empty() {
        return Err(bad(path, line, "framework", "must not be empty"));
    }
    if count > MAX_COUNT {
        return Err(bad(
            path,
            line,
            "count",
            format!("{count} is more than {MAX_COUNT}"),
        ));
    }
    let (cpus_milli, mem_milli) = milli(cpus, mem_mb);
    for _ in 0..count {
        out.push(Record {
            key: framework.trim().to_string(),
            task: TraceTask {
                time_ms: secs_to_ms(time_s),
                cpus_milli,
                mem_milli,
                duration_ms: duration_s.map(|d| secs_to_ms(d).max(1)),
            },
        });
    }
    Ok(())
}

/// Parses our CSV.
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<Record>, SimError> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.trim())
        .ok_or_else(|| bad(path, 1, "header", "the file is empty"))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let has_count = cols.len() == 6 && cols[5] == "count";
    if cols.len() < 5 || cols[..5] != COLUMNS || (cols.len() == 6 && !has_count) || cols.len() > 6 {
        return Err(bad(
            path,
            1,
            "header",
            format!(
                "expected `{},count` (count optional), found `{header}`",
                COLUMNS.join(",")
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let ln = i + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != cols.len() {
            return Err(bad(
                path,
                ln,
                "columns",
                format!("expected {} columns, found {}", cols.len(), f.len()),
            ));
        }
        let duration = if f[4].trim().is_empty() {
            None
        } else {
            Some(num::<f64>(path, ln, "duration_s", f[4])?)
        };
        let count = if has_count {
            num::<u64>(path, ln, "count", f[5])?
        } else {
            1
        };
        record(
            path,
            ln,
            num(path, ln, "time_s", f[0])?,
            f[1],
            num(path, ln, "cpus", f[2])?,
            num(path, ln, "mem_mb", f[3])?,
            duration,
            count,
            &mut out,
        )?;
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTask {
    time_s: f64,
    framework: String,
    cpus: f64,
    mem_mb: f64,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default = "one")]
    count: u64,
}

fn one() -> u64 {
    1
}

/// Parses our JSON (line numbers in errors are those of the JSON text).
pub fn parse_json(text: &str, path: &Path) -> Result<Vec<Record>, SimError> {
    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| bad(path, e.line(), "json", e.to_string()))?;
    // Line of the n-th top-level object, for errors in values.
    let starts = object_lines(text);
    let mut out = Vec::new();
    for (i, v) in tasks.into_iter().enumerate() {
        let line = starts.get(i).copied().unwrap_or(0);
        let t: JsonTask = serde_json::from_value(v).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .filter(|f| !f.is_empty())
                .unwrap_or("record")
                .to_string();
            bad(path, line, &field, format!("record {i}: {msg}"))
        })?;
        record(
            path,
            line,
            t.time_s,
            &t.framework,
            t.cpus,
            t.mem_mb,
            t.duration_s,
            t.count,
            &mut out,
        )?;
    }
    Ok(out)
}

/// 1-based lines where each object directly inside the top-level array starts.
fn object_lines(text: &str) -> Vec<usize> {
    let (mut depth, mut line, mut in_str, mut esc) = (0i32, 1usize, false, false);
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                if c == '{' && depth == 1 {
                    out.push(line);
                }
                depth += 1;
            }
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    out
}
