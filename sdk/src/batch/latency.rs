//! Per-task latencies of a batch run: from a task's arrival to the ACCEPT that launched it
//! (its wait for offers), and from that ACCEPT to its first TASK_STARTING, to its first
//! TASK_RUNNING, and to its terminal update, summarised as percentiles.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Percentiles of a set of latencies (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Percentiles {
    /// The percentiles of `samples` (sorted in place); `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| {
            // Nearest rank: the smallest sample with at least p of all samples at or below it.
            let r = (p * n as f64).ceil() as usize;
            samples[r.clamp(1, n) - 1]
        };
        Some(Percentiles {
            count: n,
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples[n - 1],
        })
    }
}

/// Records when each task was launched and when it first ran and ended.
#[derive(Debug, Default)]
pub(crate) struct LatencyTracker {
    launched: HashMap<usize, Instant>,
    to_launch: Vec<Duration>,
    starting_seen: std::collections::HashSet<usize>,
    to_starting: Vec<Duration>,
    running_seen: std::collections::HashSet<usize>,
    to_running: Vec<Duration>,
    to_end: Vec<Duration>,
}

impl LatencyTracker {
    /// Task `index`, which arrived at `arrived`, was handed to the master at `at`.
    pub(crate) fn launched(&mut self, index: usize, arrived: Instant, at: Instant) {
        self.to_launch.push(at.saturating_duration_since(arrived));
        self.launched.insert(index, at);
    }

    /// arrival → launch percentiles so far.
    pub(crate) fn launch_percentiles(&self) -> Option<Percentiles> {
        Percentiles::of(&mut self.to_launch.clone())
    }

    /// Task `index` was reported starting at `at` (only its first STARTING counts).
    pub(crate) fn starting(&mut self, index: usize, at: Instant) {
        if let Some(&t) = self.launched.get(&index)
            && self.starting_seen.insert(index)
        {
            self.to_starting.push(at.saturating_duration_since(t));
        }
    }

    /// Task `index` was reported running at `at` (only its first RUNNING counts).
    pub(crate) fn running(&mut self, index: usize, at: Instant) {
        if let Some(&t) = self.launched.get(&index)
            && self.running_seen.insert(index)
        {
            self.to_running.push(at.saturating_duration_since(t));
        }
    }

    /// Task `index` ended at `at` (counted once: its launch time is forgotten).
    pub(crate) fn ended(&mut self, index: usize, at: Instant) {
        if let Some(t) = self.launched.remove(&index) {
            self.to_end.push(at.saturating_duration_since(t));
        }
    }

    /// launch → STARTING percentiles so far.
    pub(crate) fn starting_percentiles(&self) -> Option<Percentiles> {
        Percentiles::of(&mut self.to_starting.clone())
    }

    /// (launch → RUNNING, launch → terminal) percentiles so far.
    pub(crate) fn percentiles(&self) -> (Option<Percentiles>, Option<Percentiles>) {
        let mut r = self.to_running.clone();
        let mut e = self.to_end.clone();
        (Percentiles::of(&mut r), Percentiles::of(&mut e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(Percentiles::of(&mut []), None);
        let mut one = [ms(7)];
        let p = Percentiles::of(&mut one).expect("one sample");
        assert_eq!((p.count, p.p50, p.p99, p.max), (1, ms(7), ms(7), ms(7)));
        // 1..=100 ms shuffled: p50 is the 50th, p99 the 99th.
        let mut v: Vec<Duration> = (1..=100).rev().map(ms).collect();
        v.swap(3, 77);
        let p = Percentiles::of(&mut v).expect("samples");
        assert_eq!(
            (p.count, p.p50, p.p99, p.max),
            (100, ms(50), ms(99), ms(100))
        );
    }

    #[test]
    fn tracker_counts_first_running_and_one_end_per_task() {
        let t0 = Instant::now();
        let mut t = LatencyTracker::default();
        t.launched(0, t0, t0);
        t.launched(1, t0 + ms(4), t0 + ms(10));
        t.starting(0, t0 + ms(1));
        t.starting(0, t0 + ms(2)); // a re-sent STARTING does not count twice
        t.starting(1, t0 + ms(12));
        t.running(0, t0 + ms(3));
        t.running(0, t0 + ms(30)); // a re-sent RUNNING does not count twice
        t.running(5, t0 + ms(3)); // never launched
        t.ended(0, t0 + ms(8));
        t.ended(0, t0 + ms(9));
        t.ended(1, t0 + ms(30));
        let waited = t.launch_percentiles().expect("launch samples");
        assert_eq!((waited.count, waited.max), (2, ms(6)));
        let (run, end) = t.percentiles();
        let run = run.expect("running samples");
        let end = end.expect("end samples");
        assert_eq!((run.count, run.max), (1, ms(3)));
        assert_eq!((end.count, end.p50, end.max), (2, ms(8), ms(20)));
        let start = t.starting_percentiles().expect("starting samples");
        assert_eq!((start.count, start.p50, start.max), (2, ms(1), ms(2)));
    }
}
