//! When a batch's tasks are submitted: all at once, or at a steady rate (`--rate`), as an
//! open-loop load generator does (task `i` arrives `i / rate` seconds after the start, whether
//! or not the earlier ones have run), so latencies can be measured at a chosen load rather
//! than only at saturation.

use std::time::Duration;

use tokio::time::Instant;

/// The arrival schedule of a batch's tasks.
#[derive(Debug, Clone)]
pub(crate) struct Arrivals {
    total: usize,
    /// Tasks per second; `None`: every task arrives at the start.
    rate: Option<f64>,
    start: Instant,
    /// Tasks arrived so far (indices `0..released`).
    released: usize,
}

impl Arrivals {
    /// `total` tasks from `start`, at `rate` tasks per second (all at once without one).
    pub(crate) fn new(total: usize, rate: Option<f64>, start: Instant) -> Self {
        Arrivals {
            total,
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            start,
            released: 0,
        }
    }

    /// When task `index` arrives.
    pub(crate) fn arrival_of(&self, index: usize) -> Instant {
        match self.rate {
            None => self.start,
            Some(r) => self.start + Duration::from_secs_f64(index as f64 / r),
        }
    }

    /// The tasks that arrived by `now` and were not returned before, in order.
    pub(crate) fn release(&mut self, now: Instant) -> std::ops::Range<usize> {
        let from = self.released;
        let upto = match self.rate {
            None => self.total,
            Some(r) => {
                let secs = now.saturating_duration_since(self.start).as_secs_f64();
                // Task i arrives at i / r: those with i <= secs * r have arrived.
                let arrived = (secs * r).floor() as usize;
                arrived.saturating_add(1).min(self.total)
            }
        };
        self.released = upto.max(from);
        from..self.released
    }

    /// When the next task arrives; `None` once all have.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        (self.released < self.total).then(|| self.arrival_of(self.released))
    }

    /// Tasks still to arrive.
    pub(crate) fn remaining(&self) -> usize {
        self.total - self.released
    }

    /// How many tasks arrive within `window` from `now` (at least one while any remain):
    /// the demand a rate-limited batch asks offers for while its queue is empty.
    pub(crate) fn expected_within(&self, window: Duration) -> usize {
        match self.rate {
            None => self.remaining(),
            Some(r) => {
                let n = (r * window.as_secs_f64()).ceil() as usize;
                n.max(1).min(self.remaining())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_rate_every_task_arrives_at_once() {
        let t0 = Instant::now();
        let mut a = Arrivals::new(5, None, t0);
        assert_eq!(a.release(t0), 0..5);
        assert_eq!(a.release(t0 + Duration::from_secs(1)), 5..5);
        assert_eq!((a.next_at(), a.remaining()), (None, 0));
    }

    #[test]
    fn at_a_rate_tasks_arrive_on_schedule_and_none_twice() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 1,000 tasks/s: task i at i ms.
        let mut a = Arrivals::new(10, Some(1000.0), t0);
        assert_eq!(a.release(t0), 0..1);
        assert_eq!(a.next_at(), Some(t0 + ms(1)));
        assert_eq!(a.release(t0 + Duration::from_micros(999)), 1..1);
        assert_eq!(a.release(t0 + ms(4)), 1..5);
        assert_eq!(a.expected_within(ms(3)), 3);
        // A late look releases everything due, never beyond the total.
        assert_eq!(a.release(t0 + ms(60)), 5..10);
        assert_eq!((a.next_at(), a.remaining()), (None, 0));
        // Time going backwards (a clock step) releases nothing.
        assert_eq!(a.release(t0), 10..10);
    }

    #[test]
    fn a_useless_rate_means_all_at_once() {
        let t0 = Instant::now();
        for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            let mut a = Arrivals::new(3, Some(bad), t0);
            assert_eq!(a.release(t0), 0..3, "rate {bad}");
        }
        let a = Arrivals::new(3, Some(0.5), t0);
        assert_eq!(a.arrival_of(2), t0 + Duration::from_secs(4));
        assert_eq!(a.expected_within(Duration::from_millis(10)), 1);
    }
}
