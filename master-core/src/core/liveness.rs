//! Agent liveness: when each agent was last heard from, when it is next pinged and when it is
//! next checked for removal. Kept in a dense table by slot, apart from the agents' records,
//! with a queue of due pings and a queue of due removal checks, so that a tick touches only
//! the agents that are due and a PONG touches one small record (at 10k agents, pings are
//! about three quarters of the master's messages).
//!
//! Queue entries are not removed when an agent goes away or is rescheduled: an entry counts
//! only while it matches its slot's generation and the record's current due time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rustc_hash::FxHashMap;

use super::{ConnId, Timestamp};

/// (due, slot, slot generation).
type Entry = (Timestamp, usize, u32);

/// One agent's liveness.
#[derive(Debug, Clone, Default)]
struct Record {
    agent_id: String,
    generation: u32,
    live: bool,
    conn: Option<ConnId>,
    last_seen: Timestamp,
    next_ping: Timestamp,
    removal_check: Timestamp,
    ping_seq: u64,
}

/// The table and its queues.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    records: Vec<Record>,
    free: Vec<usize>,
    by_conn: FxHashMap<ConnId, usize>,
    /// Pings are always queued `now + interval`, so due times only grow: first in, first due.
    pings: VecDeque<Entry>,
    /// Checks are queued at `last_seen + timeout`, which may be earlier than entries queued
    /// before: a heap.
    checks: BinaryHeap<Reverse<Entry>>,
}

/// What a tick found: pings to send (session, sequence number) and agents to remove.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Due {
    pub pings: Vec<(ConnId, u64)>,
    pub dead: Vec<String>,
}

impl Liveness {
    /// `agent_id` (re-)registered on `conn` at `now`: heard from now, pinged after
    /// `ping_ms`, checked after `timeout_ms`. `slot` is the agent's slot if it has one (a
    /// re-registration keeps it, and its ping sequence). Returns the slot.
    pub fn register(
        &mut self,
        slot: Option<usize>,
        agent_id: &str,
        conn: ConnId,
        now: Timestamp,
        ping_ms: u64,
        timeout_ms: u64,
    ) -> usize {
        let reuse = slot.filter(|s| {
            self.records
                .get(*s)
                .is_some_and(|r| r.live && r.agent_id == agent_id)
        });
        let slot = match reuse {
            Some(s) => s,
            None => {
                let s = self.free.pop().unwrap_or_else(|| {
                    self.records.push(Record::default());
                    self.records.len() - 1
                });
                let r = &mut self.records[s];
                r.generation = r.generation.wrapping_add(1);
                r.agent_id = agent_id.to_string();
                r.live = true;
                r.ping_seq = 0;
                r.conn = None;
                s
            }
        };
        let r = &mut self.records[slot];
        if let Some(old) = r.conn.replace(conn) {
            self.by_conn.remove(&old);
        }
        r.last_seen = now;
        r.next_ping = now.plus_ms(ping_ms);
        r.removal_check = now.plus_ms(timeout_ms);
        self.by_conn.insert(conn, slot);
        self.pings.push_back((r.next_ping, slot, r.generation));
        self.checks
            .push(Reverse((r.removal_check, slot, r.generation)));
        slot
    }

    /// A message (a PONG) arrived on `conn`; false if no registered agent has that session.
    pub fn heard_on(&mut self, conn: ConnId, now: Timestamp) -> bool {
        let Some(&slot) = self.by_conn.get(&conn) else {
            return false;
        };
        self.heard_from(slot, now);
        true
    }

    /// The agent in `slot` said something at `now`.
    pub fn heard_from(&mut self, slot: usize, now: Timestamp) {
        if let Some(r) = self.records.get_mut(slot).filter(|r| r.live) {
            r.last_seen = now;
        }
    }

    /// The session `conn` ended (the agent stays known; it is no longer pinged).
    pub fn disconnected(&mut self, conn: ConnId) {
        if let Some(slot) = self.by_conn.remove(&conn)
            && let Some(r) = self.records.get_mut(slot)
            && r.conn == Some(conn)
        {
            r.conn = None;
        }
    }

    /// The agent in `slot` was removed.
    pub fn remove(&mut self, slot: usize) {
        let Some(r) = self.records.get_mut(slot).filter(|r| r.live) else {
            return;
        };
        r.live = false;
        if let Some(conn) = r.conn.take() {
            self.by_conn.remove(&conn);
        }
        self.free.push(slot);
    }

    /// The pings due at `now` (each agent's next one queued `ping_ms` later) and the agents
    /// not heard from for more than `timeout_ms` (not pinged; the caller removes them).
    #[cfg(test)]
    pub fn due(&mut self, now: Timestamp, ping_ms: u64, timeout_ms: u64) -> Due {
        let mut out = Due::default();
        self.due_into(now, ping_ms, timeout_ms, &mut out);
        out
    }

    /// As `due`, into `out` (cleared first; its buffers are kept from tick to tick, as a fresh
    /// vector of a tick's pings grew by reallocation every tick).
    pub fn due_into(&mut self, now: Timestamp, ping_ms: u64, timeout_ms: u64, out: &mut Due) {
        out.pings.clear();
        out.dead.clear();
        while let Some(&Reverse((at, slot, generation))) = self.checks.peek() {
            // Removed once more than the timeout has passed: strictly after the check time.
            if at >= now {
                break;
            }
            self.checks.pop();
            let Some(r) = current(&mut self.records, slot, generation, |r| {
                r.removal_check == at
            }) else {
                continue;
            };
            if now.since(r.last_seen) > timeout_ms {
                out.dead.push(r.agent_id.clone());
            } else {
                // Heard from since: check again once the timeout has passed from then.
                r.removal_check = r.last_seen.plus_ms(timeout_ms);
                self.checks
                    .push(Reverse((r.removal_check, slot, generation)));
            }
        }
        while let Some(&(at, slot, generation)) = self.pings.front() {
            if at > now {
                break;
            }
            self.pings.pop_front();
            let Some(r) = current(&mut self.records, slot, generation, |r| r.next_ping == at)
            else {
                continue;
            };
            if now.since(r.last_seen) > timeout_ms {
                continue; // about to be removed
            }
            r.next_ping = now.plus_ms(ping_ms);
            r.ping_seq += 1;
            if let Some(conn) = r.conn {
                out.pings.push((conn, r.ping_seq));
            }
            self.pings.push_back((r.next_ping, slot, generation));
        }
    }
}

/// The record a queue entry for `slot` (of `generation`) stands for, if the entry is still
/// current: the agent is live, the slot not reused, and `due` says the record still has this
/// time queued.
fn current(
    records: &mut [Record],
    slot: usize,
    generation: u32,
    due: impl Fn(&Record) -> bool,
) -> Option<&mut Record> {
    records
        .get_mut(slot)
        .filter(|r| r.live && r.generation == generation && due(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_on_time_and_removes_the_silent() {
        let mut l = Liveness::default();
        let a = l.register(None, "a", 10, Timestamp(0), 100, 300);
        let b = l.register(None, "b", 20, Timestamp(50), 100, 300);
        assert_ne!(a, b);
        assert_eq!(l.due(Timestamp(99), 100, 300), Due::default());
        assert_eq!(l.due(Timestamp(100), 100, 300).pings, [(10, 1)]);
        assert_eq!(l.due(Timestamp(150), 100, 300).pings, [(20, 1)]);
        // a answers, b does not.
        assert!(l.heard_on(10, Timestamp(160)));
        assert!(!l.heard_on(99, Timestamp(160)), "unknown session");
        for t in [200, 250, 300] {
            l.due(Timestamp(t), 100, 300);
        }
        // b: last heard at 50, removed once more than 300 ms passed (at 351, not 350).
        assert!(l.due(Timestamp(350), 100, 300).dead.is_empty());
        let due = l.due(Timestamp(351), 100, 300);
        assert_eq!(due.dead, ["b"]);
        assert!(
            due.pings.iter().all(|(c, _)| *c != 20),
            "the dead are not pinged"
        );
        l.remove(b);
        // a's slot survives; a re-registration keeps it and its ping sequence.
        assert_eq!(l.register(Some(a), "a", 11, Timestamp(400), 100, 300), a);
        assert!(!l.heard_on(10, Timestamp(400)), "the old session is gone");
        let pings = l.due(Timestamp(500), 100, 300).pings;
        assert_eq!(pings.len(), 1);
        assert_eq!(pings[0].0, 11);
        assert!(pings[0].1 > 1, "sequence continues: {pings:?}");
        // A freed slot is reused with a new generation: b's old entries do not match it.
        let c = l.register(None, "c", 30, Timestamp(500), 100, 300);
        assert_eq!(c, b);
        assert_eq!(l.due(Timestamp(599), 100, 300).pings, []);
        // Disconnected agents are not pinged but still time out.
        assert!(l.heard_on(11, Timestamp(700)));
        l.disconnected(30);
        assert!(
            l.due(Timestamp(600), 100, 300)
                .pings
                .iter()
                .all(|(s, _)| *s != 30)
        );
        assert_eq!(l.due(Timestamp(801), 100, 300).dead, ["c"]);
    }
}
