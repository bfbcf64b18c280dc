//! The master's sans-IO core.
//!
//! ```text
//! let mut master = Master::new(config, seed);
//! master.handle(now, Input::Agent { conn, msg })?;   // events in, with the time they happened
//! master.tick(now);                                  // timers: allocation, pings, timeouts
//! for out in master.take_outbox() { /* send */ }     // messages out, addressed to connections
//! ```
//!
//! # Layout of this module
//! - `types`: [`Timestamp`], [`ConnId`], [`Input`], [`Call`], [`Output`], [`MasterConfig`], errors.
//! - `master`: the [`Master`] state machine.

mod types;

pub use types::{Call, ConnId, ErrorKind, Input, MasterConfig, MasterError, Output, Timestamp};

use proffer_proto::v1;

/// The master state machine.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    outbox: Vec<Output>,
    master_id: String,
}

impl Master {
    /// A new master; `seed` drives every id and random choice it makes.
    pub fn new(config: MasterConfig, seed: u64) -> Self {
        Master { config, outbox: Vec::new(), master_id: format!("{seed:016x}") }
    }

    /// This master's id.
    pub fn master_id(&self) -> &str {
        &self.master_id
    }

    /// The configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// Feeds one input that happened at `now`. On error nothing changed, except that the core may
    /// have queued an error message to the connection concerned.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<(), MasterError> {
        let _ = (now, input);
        Ok(())
    }

    /// Runs timers due at `now`: allocation, pings, heartbeats, offer and failover timeouts.
    pub fn tick(&mut self, now: Timestamp) {
        let _ = now;
    }

    /// Takes the queued outputs, in order.
    pub fn take_outbox(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// A snapshot of the whole state for operators.
    pub fn snapshot(&self, now: Timestamp) -> v1::StateSnapshot {
        v1::StateSnapshot { master_id: self.master_id.clone(), now_ms: now.0, ..Default::default() }
    }
}
