//! Connections as FIFO queues with delays on a virtual clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proffer_master_core::core::{ConnId, Input};
use proffer_proto::v1;

/// A message in flight.
#[allow(clippy::large_enum_variant)] // test harness: moved once per delivery
#[derive(Debug, Clone)]
pub enum Delivery {
    /// To the master.
    Master(Input),
    /// To the agent on this connection.
    Agent(v1::MasterMessage),
    /// To the framework on this connection.
    Framework(v1::Event),
}

/// All connections. Within one connection and direction, order is kept (like TCP).
#[derive(Debug, Default)]
pub struct Net {
    queues: BTreeMap<ConnId, VecDeque<(u64, u64, Delivery)>>,
    dead: BTreeSet<ConnId>,
    seq: u64,
}

impl Net {
    /// Queues `d` on `conn`, due at `now + delay` but never before what is already queued.
    pub fn send(&mut self, conn: ConnId, now: u64, delay: u64, d: Delivery) {
        if self.dead.contains(&conn) {
            return;
        }
        let q = self.queues.entry(conn).or_default();
        let due = q
            .back()
            .map_or(now + delay, |(t, _, _)| (*t).max(now + delay));
        self.seq += 1;
        q.push_back((due, self.seq, d));
    }

    /// The earliest due message across connections (ties by send order).
    pub fn pop_due(&mut self, now: u64) -> Option<(ConnId, Delivery)> {
        let (conn, _) = self
            .queues
            .iter()
            .filter_map(|(c, q)| {
                q.front()
                    .filter(|(t, _, _)| *t <= now)
                    .map(|(t, s, _)| (*c, (*t, *s)))
            })
            .min_by_key(|(_, k)| *k)?;
        let q = self.queues.get_mut(&conn)?;
        let (_, _, d) = q.pop_front()?;
        if q.is_empty() {
            self.queues.remove(&conn);
        }
        Some((conn, d))
    }

    /// Loses everything in flight on `conn` and refuses further sends on it.
    pub fn drop_conn(&mut self, conn: ConnId) {
        self.queues.remove(&conn);
        self.dead.insert(conn);
    }
}
