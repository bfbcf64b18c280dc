//! The event queue: a binary min-heap on (virtual time, insertion order).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Something scheduled to happen at a virtual time. Small and `Copy`: no allocation per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    /// Run the master's timers (allocation, pings, timeouts).
    Tick,
    /// Sample metrics.
    Sample,
    /// Agent `0` (index) connects and registers.
    AgentUp(u32),
    /// Agent fails (its session breaks; its tasks die with it).
    AgentDown(u32),
    /// Framework subscribes.
    Join(u32),
    /// Framework tears down.
    Leave(u32),
    /// Next synthetic arrival at a framework.
    Arrive(u32),
    /// Next trace arrival(s) at a framework.
    TraceNext(u32),
    /// A task on an agent ends by itself.
    TaskDone {
        /// Agent index.
        agent: u32,
        /// Task slot on the agent.
        slot: u32,
        /// Slot generation (stale events are ignored).
        generation: u32,
    },
    /// A hoarding framework answers the offers it held.
    Release(u32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    time: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest (then first-scheduled).
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// Events ordered by time; events at the same time run in the order they were scheduled.
#[derive(Debug, Default)]
pub struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl Queue {
    /// Schedules `ev` at `time`.
    pub fn push(&mut self, time: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Entry {
            time,
            seq: self.seq,
            ev,
        });
    }

    /// The earliest event, if any is due at or before `until`.
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, Ev)> {
        if self.heap.peek().is_some_and(|e| e.time <= until) {
            self.heap.pop().map(|e| (e.time, e.ev))
        } else {
            None
        }
    }

    /// Number of scheduled events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_then_insertion_order() {
        let mut q = Queue::default();
        q.push(5, Ev::Join(1));
        q.push(3, Ev::Join(2));
        q.push(5, Ev::Join(3));
        q.push(9, Ev::Join(4));
        let got: Vec<_> = std::iter::from_fn(|| q.pop_until(5)).collect();
        assert_eq!(got, [(3, Ev::Join(2)), (5, Ev::Join(1)), (5, Ev::Join(3))]);
        assert_eq!(q.len(), 1);
    }
}
