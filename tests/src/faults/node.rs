//! One master process of the harness: its core while it leads, the registry writes it has in
//! flight, what reached it while paused, and (with several masters) its view of the election.

use std::collections::VecDeque;

use proffer_master_core::core::{Input, Master};
use proffer_master_core::registry::RegistryOp;

use super::election::Election;

/// A persist batch being written.
#[derive(Debug, Clone)]
pub(super) struct Write {
    /// When the write reaches the registry.
    pub at: u64,
    /// The epoch it is fenced on (0: one master, no fencing).
    pub epoch: u64,
    /// The core's batch number.
    pub seq: u64,
    /// The changes.
    pub ops: Vec<RegistryOp>,
}

/// Whether the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running.
    Up,
    /// Crashed; restarts (as a standby) at `until`.
    Down {
        /// Restart time.
        until: u64,
    },
    /// Stopped (as by SIGSTOP) until `until`: nothing runs, what reaches it waits.
    Paused {
        /// Resume time.
        until: u64,
        /// On resume, the registry writer and the core run (held writes sent, what waited
        /// handled) before the shell checks its deadline; otherwise the check comes first.
        core_first: bool,
    },
}

/// One master process.
#[derive(Debug)]
pub struct MasterNode {
    /// The core while this master acts as leader (standbys, stepped-down and crashed masters
    /// hold none).
    pub core: Option<Master>,
    /// Whether the process runs.
    pub state: NodeState,
    /// The epoch of the term its core serves (0: the only master).
    pub epoch: u64,
    /// Its view of the election (None: the only master, always leading).
    pub(super) election: Option<Box<dyn Election>>,
    /// Registry writes in flight, in order.
    pub(super) disk: VecDeque<Write>,
    /// Inputs that reached it while paused.
    pub(super) inbox: VecDeque<Input>,
}

impl MasterNode {
    /// The only master, leading with `core`.
    pub(super) fn only(core: Master) -> MasterNode {
        MasterNode {
            core: Some(core),
            state: NodeState::Up,
            epoch: 0,
            election: None,
            disk: VecDeque::new(),
            inbox: VecDeque::new(),
        }
    }

    /// A standby taking part in `election`.
    pub(super) fn standby(election: Box<dyn Election>) -> MasterNode {
        MasterNode {
            core: None,
            state: NodeState::Up,
            epoch: 0,
            election: Some(election),
            disk: VecDeque::new(),
            inbox: VecDeque::new(),
        }
    }

    /// Queues a write done at `at` at the earliest, after those already queued (in order).
    pub(super) fn queue_write(&mut self, at: u64, seq: u64, ops: Vec<RegistryOp>) {
        let at = self.disk.back().map_or(at, |w| w.at.max(at));
        let epoch = self.epoch;
        self.disk.push_back(Write {
            at,
            epoch,
            seq,
            ops,
        });
    }

    /// True if the process runs and its core acts as leader by its own deadline rule (the
    /// only master always does).
    pub fn acting(&self, now: u64) -> bool {
        self.state == NodeState::Up
            && self.core.is_some()
            && self.election.as_ref().is_none_or(|e| e.is_leader(now))
    }

    /// True if the process runs.
    pub fn up(&self) -> bool {
        self.state == NodeState::Up
    }
}
