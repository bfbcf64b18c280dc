//! Metrics over time (sampled) and as a summary: dominant shares, Jain's fairness index,
//! max/min share ratio, time to fair share, utilization, wait-time percentiles, offers per
//! launched task, decline rate; plus wall-clock timing kept apart (it is not deterministic).

use serde::Serialize;

use crate::engine::{Counters, SimFramework};

/// A framework counts as having reached its fair share when its dominant share is at least
/// this fraction of an equal split among the active frameworks (or it has no queued work).
pub const FAIR_SHARE_FRACTION: f64 = 0.9;

/// One sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Virtual time (ms).
    pub time_ms: u64,
    /// Dominant share of each framework (0 when not running anything).
    pub shares: Vec<f64>,
    /// Dominant share of each role (of the sum of its frameworks' tasks), in `Metrics::roles`
    /// order.
    pub role_shares: Vec<f64>,
    /// Frameworks active (subscribed, with work queued or running).
    pub active: u32,
    /// Jain's index over the active frameworks' dominant shares.
    pub jain: Option<f64>,
    /// Largest over smallest dominant share among the active frameworks.
    pub max_min_ratio: Option<f64>,
    /// Used cpus / capacity.
    pub cpu_util: f64,
    /// Used mem / capacity.
    pub mem_util: f64,
    /// Tasks waiting.
    pub queued: u64,
    /// Tasks running.
    pub running: u64,
}

/// Samples taken during a run.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Framework names, in sample order.
    pub names: Vec<String>,
    /// Distinct roles, sorted.
    pub roles: Vec<String>,
    /// Index into `roles` of each framework.
    pub role_of: Vec<usize>,
    /// The samples.
    pub samples: Vec<Sample>,
}

/// Jain's fairness index: (Σx)² / (n·Σx²); 1 = perfectly equal.
pub fn jain(xs: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    (n > 0.0 && sq > 0.0).then(|| sum * sum / (n * sq))
}

impl Metrics {
    /// Empty, for these frameworks (names and roles, in framework order).
    pub fn new(names: Vec<String>, framework_roles: Vec<String>) -> Self {
        let mut roles = framework_roles.clone();
        roles.sort();
        roles.dedup();
        let role_of = framework_roles
            .iter()
            .map(|r| roles.binary_search(r).unwrap_or(0))
            .collect();
        Metrics {
            names,
            roles,
            role_of,
            samples: Vec::new(),
        }
    }

    /// Takes a sample; also notes when frameworks reach their fair share.
    pub fn sample(&mut self, now: u64, cpus: i64, mem: i64, fws: &mut [SimFramework]) {
        if self.samples.last().is_some_and(|s| s.time_ms == now) {
            self.samples.pop();
        }
        let mut shares = Vec::with_capacity(fws.len());
        let mut role_used = vec![(0i64, 0i64); self.roles.len()];
        let mut active = Vec::new();
        let (mut used_c, mut used_m, mut queued, mut running) = (0i64, 0i64, 0u64, 0u64);
        for (i, f) in fws.iter().enumerate() {
            let s = f.share(cpus, mem);
            shares.push(s);
            if let Some(r) = self.role_of.get(i).and_then(|&r| role_used.get_mut(r)) {
                r.0 += f.used_cpus;
                r.1 += f.used_mem;
            }
            used_c += f.used_cpus;
            used_m += f.used_mem;
            queued += f.queue.len() as u64;
            running += u64::from(f.running);
            if f.active && (f.wants_more() || f.running > 0) {
                active.push(s);
            }
        }
        let n = active.len();
        if n > 0 {
            let fair = 1.0 / n as f64;
            for f in fws.iter_mut() {
                if let (true, Some(joined), None) = (f.active, f.joined_at, f.fair_after_ms)
                    && (f.share(cpus, mem) >= FAIR_SHARE_FRACTION * fair || !f.wants_more())
                {
                    f.fair_after_ms = Some(now.saturating_sub(joined));
                }
            }
        }
        let min = active.iter().copied().fold(f64::INFINITY, f64::min);
        let max = active.iter().copied().fold(0.0, f64::max);
        let ratio = (n > 0 && min > 0.0).then(|| max / min);
        let frac = |used: i64, total: i64| {
            if total > 0 {
                used as f64 / total as f64
            } else {
                0.0
            }
        };
        let role_shares = role_used
            .iter()
            .map(|&(c, m)| frac(c, cpus).max(frac(m, mem)))
            .collect();
        self.samples.push(Sample {
            time_ms: now,
            shares,
            role_shares,
            active: n as u32,
            jain: jain(&active),
            max_min_ratio: ratio,
            cpu_util: if cpus > 0 {
                used_c as f64 / cpus as f64
            } else {
                0.0
            },
            mem_util: if mem > 0 {
                used_m as f64 / mem as f64
            } else {
                0.0
            },
            queued,
            running,
        });
    }
}

/// Nearest-rank percentiles of a set of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From values (sorted here).
    pub fn of(values: &mut [u64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let n = values.len();
        let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1] as f64;
        Percentiles {
            count: n as u64,
            mean: values.iter().map(|&v| v as f64).sum::<f64>() / n as f64,
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: values[n - 1] as f64,
        }
    }
}

/// Wall-clock figures of a run (vary from run to run; written apart from the summary).
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Wall time of the run (s).
    pub wall_s: f64,
    /// Simulated events per wall second.
    pub events_per_s: f64,
    /// Master ticks run.
    pub ticks: u64,
    /// Wall time per master tick (allocation cycle and timers), µs.
    pub tick_us: Percentiles,
}

impl Timing {
    /// From the run's wall time, counters and per-tick times.
    pub fn new(wall: std::time::Duration, c: &Counters, tick_us: &[u32]) -> Timing {
        let wall_s = wall.as_secs_f64();
        let mut t: Vec<u64> = tick_us.iter().map(|&x| u64::from(x)).collect();
        Timing {
            wall_s,
            events_per_s: if wall_s > 0.0 {
                c.events() as f64 / wall_s
            } else {
                0.0
            },
            ticks: c.ticks,
            tick_us: Percentiles::of(&mut t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_and_percentiles() {
        assert_eq!(jain(&[0.5, 0.5]), Some(1.0));
        let j = jain(&[1.0, 0.0]).unwrap_or(0.0);
        assert!((j - 0.5).abs() < 1e-12);
        assert_eq!(jain(&[]), None);
        let mut v: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(p.mean, 50.5);
    }
}
