//! The result of a batch run.

use std::fmt;
use std::time::Duration;

use proffer_proto::v1::TaskState;

use super::latency::Percentiles;

/// Counts from one batch run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSummary {
    /// Tasks asked for.
    pub tasks: usize,
    /// Tasks handed to the master in a successful ACCEPT.
    pub launched: usize,
    /// Tasks that ended TASK_FINISHED.
    pub finished: usize,
    /// Tasks that ended TASK_FAILED.
    pub failed: usize,
    /// Tasks that ended TASK_KILLED.
    pub killed: usize,
    /// Tasks that ended TASK_LOST.
    pub lost: usize,
    /// Tasks that ended TASK_ERROR.
    pub errored: usize,
    /// From the start of the run until the last task ended (or the run stopped).
    pub elapsed: Duration,
    /// Finished tasks per second of `elapsed`.
    pub tasks_per_sec: f64,
    /// Offers received.
    pub offers_received: usize,
    /// Offers declined outright (none of their resources used).
    pub offers_declined: usize,
    /// From a task's arrival (the start, or its time at the spec's rate) to the ACCEPT that
    /// launched it: how long it waited for offers.
    pub arrival_to_launch: Option<Percentiles>,
    /// From the ACCEPT that launched a task to its first TASK_STARTING (the agent has taken
    /// the task and made it durable).
    pub launch_to_starting: Option<Percentiles>,
    /// From the ACCEPT that launched a task to its first TASK_RUNNING.
    pub launch_to_running: Option<Percentiles>,
    /// From the ACCEPT that launched a task to its terminal update.
    pub launch_to_end: Option<Percentiles>,
}

impl BatchSummary {
    /// True when every task asked for ended TASK_FINISHED.
    pub fn all_finished(&self) -> bool {
        self.tasks > 0 && self.finished == self.tasks
    }

    /// Tasks that reached any terminal state.
    pub fn terminal(&self) -> usize {
        self.finished + self.failed + self.killed + self.lost + self.errored
    }

    /// Counts one task reaching terminal `state` (non-terminal states are ignored).
    pub(crate) fn count_terminal(&mut self, state: TaskState) {
        match state {
            TaskState::TaskFinished => self.finished += 1,
            TaskState::TaskFailed => self.failed += 1,
            TaskState::TaskKilled => self.killed += 1,
            TaskState::TaskLost => self.lost += 1,
            TaskState::TaskError => self.errored += 1,
            _ => {}
        }
    }

    /// Sets `elapsed` and the derived rate.
    pub(crate) fn finish_timing(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        let secs = elapsed.as_secs_f64();
        self.tasks_per_sec = if secs > 0.0 {
            self.finished as f64 / secs
        } else {
            0.0
        };
    }
}

impl fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}/{} tasks finished in {:.2}s ({:.1} tasks/s)",
            self.finished,
            self.tasks,
            self.elapsed.as_secs_f64(),
            self.tasks_per_sec
        )?;
        writeln!(
            f,
            "  launched {}, finished {}, failed {}, killed {}, lost {}, errored {}",
            self.launched, self.finished, self.failed, self.killed, self.lost, self.errored
        )?;
        write!(
            f,
            "  offers received {}, declined {}",
            self.offers_received, self.offers_declined
        )?;
        // On the same line: the summary stays three lines.
        for (label, p) in [
            ("waited for offers", &self.arrival_to_launch),
            ("launch→RUNNING", &self.launch_to_running),
            ("launch→end", &self.launch_to_end),
        ] {
            if let Some(p) = p {
                write!(
                    f,
                    "; {label} p50 {}, p99 {}, max {}",
                    format_ms(p.p50),
                    format_ms(p.p99),
                    format_ms(p.max),
                )?;
            }
        }
        Ok(())
    }
}

/// A latency in milliseconds, with one decimal below 10 ms.
pub fn format_ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_display() {
        let mut s = BatchSummary {
            tasks: 3,
            launched: 3,
            ..Default::default()
        };
        s.count_terminal(TaskState::TaskFinished);
        s.count_terminal(TaskState::TaskFinished);
        s.count_terminal(TaskState::TaskRunning);
        assert!(!s.all_finished());
        s.count_terminal(TaskState::TaskFailed);
        assert_eq!((s.finished, s.failed, s.terminal()), (2, 1, 3));
        assert!(!s.all_finished());
        s.finish_timing(Duration::from_secs(2));
        assert!((s.tasks_per_sec - 1.0).abs() < 1e-9);
        let text = s.to_string();
        assert!(
            text.starts_with("2/3 tasks finished in 2.00s (1.0 tasks/s)"),
            "{text}"
        );
        assert!(text.contains("failed 1"), "{text}");
        assert!(text.contains("offers received 0, declined 0"), "{text}");
        assert!(!text.contains("launch→RUNNING"), "{text}");
        // Three samples with these percentiles, in microseconds.
        let p = |p50, p99, max| {
            Some(Percentiles {
                count: 3,
                p50: Duration::from_micros(p50),
                p99: Duration::from_micros(p99),
                max: Duration::from_micros(max),
            })
        };
        s.launch_to_running = p(2500, 40_000, 41_000);
        let text = s.to_string();
        assert!(
            text.ends_with("declined 0; launch→RUNNING p50 2.5 ms, p99 40 ms, max 41 ms"),
            "{text}"
        );
        s.arrival_to_launch = p(4200, 12_000, 13_000);
        let text = s.to_string();
        assert!(
            text.ends_with(
                "declined 0; waited for offers p50 4.2 ms, p99 12 ms, max 13 ms; \
                 launch→RUNNING p50 2.5 ms, p99 40 ms, max 41 ms"
            ),
            "{text}"
        );
    }

    #[test]
    fn all_finished_needs_every_task() {
        let s = BatchSummary {
            tasks: 2,
            launched: 2,
            finished: 2,
            ..Default::default()
        };
        assert!(s.all_finished());
        assert!(!BatchSummary::default().all_finished());
    }
}
