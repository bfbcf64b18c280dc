//! The high-availability profile: several master processes, one leading at a time by the
//! simulated etcd election (`election`), the registry written through the fence.
//!
//! Each master's shell follows the production rules:
//! - a standby holds no core; it campaigns when the election key is free, and on winning loads
//!   the registry and recovers a core from it exactly as a restarted master does;
//! - the leader renews its lease every `KEEPALIVE_MS` and steps down (core dropped, streams
//!   closed) as soon as its local deadline passes, checked every tick and before every message
//!   to a client; and at once when a fenced write is refused;
//! - what a master sends to a client while not acting as leader is never sent.
//!
//! Faults (in the fault window, chosen by the seed) hit the acting leader: it crashes (and
//! restarts as a standby), its keep-alives are dropped for a while, it is cut off from etcd
//! (keep-alives are lost, writes wait and reach etcd when it heals, where the fence judges
//! them; clients still reach it), or it is paused (nothing runs; what reaches it waits) and
//! resumed — often after a new leader exists, in either order of core and shell. Clients that hear nothing
//! for `HaFaults::silence_ms` give up their connection; clients find the leader by asking a
//! random master (a standby names the key's holder).
//!
//! Invariants checked after every step ([`Cluster::violations`]): at most one running master
//! holds a core (acts as leader); no master sends to a client after its term's deadline as
//! etcd saw it, nor once a newer epoch exists; no write of a stale epoch is accepted (judged
//! from the terms granted, independently of the fence); every core's accounting.

use std::collections::BTreeMap;

use proffer_master_core::core::{ConnId, Input, Master, MasterConfig, Timestamp};
use proffer_master_core::registry::{MemoryRegistry, Registry};
use proffer_proto::v1::{self, TaskState, event::Event};

use super::election::SimEtcd;
use super::node::{MasterNode, NodeState};
use super::{Cluster, Faults};

/// Settings of the HA profile.
#[derive(Debug, Clone)]
pub struct HaFaults {
    /// Master processes (2–3).
    pub masters: usize,
    /// Chance per tick, in the fault window, that one fault hits the acting leader.
    pub leader_fault: f64,
    /// A client hearing nothing from its master this long closes the connection and looks
    /// for the leader again (the master pings agents and heartbeats frameworks more often).
    pub silence_ms: u64,
}

/// What the HA profile injected and saw.
#[derive(Debug, Clone, Default)]
pub struct HaStats {
    /// Leaders that crashed.
    pub crashes: u32,
    /// Leaders whose keep-alives were dropped for a while.
    pub lease_losses: u32,
    /// Leaders cut off from etcd for a while.
    pub partitions: u32,
    /// Leaders paused.
    pub pauses: u32,
    /// Paused leaders resumed after a newer leader was elected (deposed, still running).
    pub deposed_resumes: u32,
    /// Leaders elected (the first included).
    pub elections: u32,
    /// Step-downs by the local deadline rule.
    pub deadline_step_downs: u32,
    /// Step-downs because a fenced write was refused.
    pub fence_step_downs: u32,
    /// Writes the fence refused.
    pub refused_writes: u64,
    /// Messages a master's core produced but its shell did not send (deadline passed).
    pub unsent: u64,
    /// Connections clients gave up after hearing nothing.
    pub silences: u32,
    /// Failovers: when a new leader was elected, and whether every framework was done then.
    pub failovers: Vec<(u64, bool)>,
    /// When a framework last heard of a finished task.
    pub last_finish: u64,
    /// Longest time from a failover to the next finished task a framework heard of (ms).
    pub max_failover_to_finish_ms: u64,
    /// When the last fault injected is over (a crashed master restarted; a pause, a partition
    /// or a loss of keep-alives ended).
    pub faults_over_at: u64,
}

/// The HA profile's state inside a [`Cluster`].
#[derive(Debug)]
pub(super) struct Ha {
    pub(super) etcd: SimEtcd,
    faults: HaFaults,
    stats: HaStats,
    /// conn → when its client last heard from the master.
    last_heard: BTreeMap<ConnId, u64>,
    /// Failovers not yet followed by a finished task.
    awaiting_finish: Vec<u64>,
    /// Stale writes already reported as violations.
    stale_reported: usize,
}

impl Ha {
    /// The client on `conn` heard from its master at `now`.
    pub(super) fn heard(&mut self, conn: ConnId, now: u64) {
        self.last_heard.insert(conn, now);
    }

    /// Progress: a framework heard that a task finished.
    pub(super) fn saw_event(&mut self, now: u64, event: &v1::Event) {
        let finished = matches!(
            &event.event,
            Some(Event::Update(u)) if u.status.as_ref().is_some_and(|s| s.state == TaskState::TaskFinished as i32)
        );
        if finished {
            self.stats.last_finish = now;
            for at in self.awaiting_finish.drain(..) {
                let took = now - at;
                self.stats.max_failover_to_finish_ms =
                    self.stats.max_failover_to_finish_ms.max(took);
            }
        }
    }
}

impl Cluster {
    /// `ha.masters` master processes electing a leader through a simulated etcd, whose
    /// registry they write through the fence; agents and frameworks as in [`Cluster::new`].
    pub fn with_ha(
        seed: u64,
        config: MasterConfig,
        ha: HaFaults,
        agents: usize,
        agent_res: &str,
        frameworks: &[(usize, &str, u64)],
        faults: Faults,
    ) -> Cluster {
        let mut c = Cluster::new(seed, config, agents, agent_res, frameworks, faults);
        let registry = MemoryRegistry::new();
        let etcd = SimEtcd::new(c.rng.next_u64(), registry.clone());
        c.masters = (0..ha.masters)
            .map(|i| MasterNode::standby(Box::new(etcd.member(i))))
            .collect();
        c.registry = Some(registry);
        c.ha = Some(Ha {
            etcd,
            faults: ha,
            stats: HaStats::default(),
            last_heard: BTreeMap::new(),
            awaiting_finish: Vec::new(),
            stale_reported: 0,
        });
        c
    }

    /// What the HA profile injected and saw (None without HA).
    pub fn ha_stats(&self) -> Option<&HaStats> {
        self.ha.as_ref().map(|h| &h.stats)
    }

    /// True once the fault window and every fault injected are over, every master runs and
    /// one acts as leader (always true without HA).
    pub fn ha_calm(&self) -> bool {
        let Some(ha) = self.ha.as_ref() else {
            return true;
        };
        let now = self.now;
        now >= self.faults.until_ms
            && now >= ha.stats.faults_over_at
            && self.masters.iter().all(MasterNode::up)
            && self.masters.iter().any(|m| m.acting(now))
    }

    /// The simulated etcd (None without HA).
    pub fn etcd(&self) -> Option<&SimEtcd> {
        self.ha.as_ref().map(|h| &h.etcd)
    }

    /// Counts something in the HA statistics.
    fn count(&mut self, f: impl FnOnce(&mut HaStats)) {
        if let Some(ha) = self.ha.as_mut() {
            f(&mut ha.stats);
        }
    }

    /// Start of a step: restarts and resumes, renewals and step-downs, elections.
    pub(super) fn ha_before_step(&mut self) {
        let now = self.now;
        if let Some(ha) = &self.ha {
            ha.etcd.advance(now);
        }
        for n in 0..self.masters.len() {
            match self.masters[n].state {
                NodeState::Down { until } if until <= now => {
                    self.masters[n].state = NodeState::Up;
                    self.log
                        .push(format!("{now} master {n} restarts as a standby"));
                }
                NodeState::Paused { until, core_first } if until <= now => {
                    self.resume(n, core_first);
                }
                _ => {}
            }
        }
        for n in 0..self.masters.len() {
            let node = &mut self.masters[n];
            if !node.up() || node.core.is_none() {
                continue;
            }
            let Some(election) = node.election.as_mut() else {
                continue;
            };
            if !election.keep_alive(now) {
                self.count(|s| s.deadline_step_downs += 1);
                self.step_down(n, "its lease deadline passed");
            }
        }
        for n in 0..self.masters.len() {
            self.drain_inbox(n);
        }
        self.elect();
    }

    /// Master `n` runs again after a pause.
    fn resume(&mut self, n: usize, core_first: bool) {
        let now = self.now;
        self.masters[n].state = NodeState::Up;
        let newer = self
            .etcd()
            .and_then(SimEtcd::newest)
            .is_some_and(|(e, _, _)| e > self.masters[n].epoch);
        if self.masters[n].core.is_some() && newer {
            self.count(|s| s.deposed_resumes += 1);
        }
        self.log.push(format!(
            "{now} master {n} resumes ({} first)",
            if core_first { "core" } else { "shell" }
        ));
        if core_first {
            // The registry writer and the core run before the shell's deadline check: writes
            // held by the pause go out first (a deposed leader's are refused by the fence).
            self.write_fenced(n);
            self.drain_inbox(n);
            if let Some(core) = self.masters[n].core.as_mut() {
                core.tick(Timestamp(now));
                self.flush_node(n);
            }
        }
    }

    /// Master `n` (running) handles what reached it while it was paused.
    fn drain_inbox(&mut self, n: usize) {
        if !self.masters[n].up() {
            return;
        }
        while let Some(input) = self.masters[n].inbox.pop_front() {
            self.master_input(n, input);
        }
    }

    /// When the key is free, the running standbys campaign (in a seeded order); the winner
    /// recovers a core from the registry.
    fn elect(&mut self) {
        let now = self.now;
        if self.etcd().is_none_or(|e| e.holder().is_some()) {
            return;
        }
        let candidates: Vec<usize> = (0..self.masters.len())
            .filter(|&n| self.masters[n].up() && self.masters[n].core.is_none())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let start = self.rng.below(candidates.len() as u64) as usize;
        for k in 0..candidates.len() {
            let n = candidates[(start + k) % candidates.len()];
            let won = self.masters[n]
                .election
                .as_mut()
                .and_then(|e| e.campaign(now));
            if let Some(epoch) = won {
                self.become_leader(n, epoch);
                return;
            }
        }
    }

    /// Master `n` won `epoch`: loads the registry and recovers, as a restarted master does.
    fn become_leader(&mut self, n: usize, epoch: u64) {
        let now = self.now;
        let Some(etcd) = self.etcd().cloned() else {
            return;
        };
        let recovered = etcd.fenced(epoch).load().and_then(|stored| {
            let seed = self.rng.next_u64();
            Master::recover(self.config.clone(), seed, &stored, Timestamp(now))
        });
        let core = match recovered {
            Ok(core) => core,
            Err(e) => {
                self.violations
                    .push(format!("at {now} ms: master {n} cannot recover: {e}"));
                if let Some(el) = self.masters[n].election.as_mut() {
                    el.resign();
                }
                return;
            }
        };
        self.masters[n].core = Some(core);
        self.masters[n].epoch = epoch;
        self.log
            .push(format!("{now} master {n} leads with epoch {epoch}"));
        let all_done = self.frameworks.iter().all(|f| f.done());
        if let Some(ha) = self.ha.as_mut() {
            ha.stats.elections += 1;
            if ha.stats.elections > 1 {
                ha.stats.failovers.push((now, all_done));
                if !all_done {
                    ha.awaiting_finish.push(now);
                }
            }
        }
        self.flush_node(n);
    }

    /// Master `n` stops acting: its core is dropped, its term given up, its streams closed
    /// (writes already sent stay on the wire: the fence judges them).
    fn step_down(&mut self, n: usize, why: &str) {
        let now = self.now;
        self.masters[n].core = None;
        self.masters[n].inbox.clear();
        if let Some(e) = self.masters[n].election.as_mut() {
            e.resign();
        }
        self.log.push(format!("{now} master {n} steps down: {why}"));
        self.drop_conns_of(n, 500);
    }

    /// Every current connection to master `n` ends; its clients reconnect after a backoff of
    /// 100 ms + up to `backoff_ms`.
    fn drop_conns_of(&mut self, n: usize, backoff_ms: u64) {
        let now = self.now;
        let conns: Vec<(ConnId, (bool, usize))> = self
            .owners
            .iter()
            .filter(|(c, _)| self.conn_master.get(c) == Some(&n))
            .map(|(c, o)| (*c, *o))
            .collect();
        for (conn, (is_agent, i)) in conns {
            let current = if is_agent {
                self.agents[i].conn == Some(conn)
            } else {
                self.frameworks[i].conn == Some(conn)
            };
            if !current {
                continue;
            }
            self.net.drop_conn(conn);
            let at = now + 100 + self.rng.below(backoff_ms);
            if is_agent {
                self.agents[i].disconnected(at);
            } else {
                self.frameworks[i].disconnected(at);
            }
        }
    }

    /// The shell's gate before a message to a client: master `n` sends only while it acts by
    /// its deadline rule (past it, it steps down). The monitor then checks what is sent against
    /// etcd's view.
    pub(super) fn ha_may_send(&mut self, n: usize) -> bool {
        let now = self.now;
        if self.masters[n].core.is_none() || !self.masters[n].up() {
            return false;
        }
        let by_rule = self.masters[n]
            .election
            .as_ref()
            .is_some_and(|e| e.is_leader(now));
        if !by_rule {
            self.count(|s| {
                s.unsent += 1;
                s.deadline_step_downs += 1;
            });
            self.step_down(n, "its deadline passed while sending");
            return false;
        }
        let epoch = self.masters[n].epoch;
        let Some(etcd) = self.etcd().cloned() else {
            return true;
        };
        if let Some((newer, holder, since)) = etcd.newest().filter(|(e, _, _)| *e > epoch) {
            self.violations.push(format!(
                "at {now} ms: master {n} (epoch {epoch}) sent to a client while master {holder} leads with epoch {newer} since {since} ms"
            ));
        }
        if let Some(d) = etcd.term_deadline(epoch).filter(|d| now >= *d) {
            self.violations.push(format!(
                "at {now} ms: master {n} (epoch {epoch}) sent to a client after its deadline {d} ms"
            ));
        }
        true
    }

    /// Writes of master `n` that are due reach etcd, in order, unless it is paused, down or cut
    /// off (then they wait). A refused write of the current term makes it step down.
    pub(super) fn write_fenced(&mut self, n: usize) {
        let now = self.now;
        let Some(etcd) = self.etcd().cloned() else {
            return;
        };
        while self.masters[n].up()
            && etcd.reachable(n, now)
            && self.masters[n].disk.front().is_some_and(|w| w.at <= now)
        {
            let Some(w) = self.masters[n].disk.pop_front() else {
                break;
            };
            let current = self.masters[n].core.is_some() && self.masters[n].epoch == w.epoch;
            match etcd.fenced(w.epoch).commit(&w.ops) {
                Ok(_) if current => self.master_input(n, Input::Persisted { seq: w.seq }),
                Ok(_) => {}
                Err(e) => {
                    self.count(|s| s.refused_writes += 1);
                    if current {
                        self.count(|s| s.fence_step_downs += 1);
                        self.step_down(n, &format!("fenced write refused: {e}"));
                    }
                }
            }
        }
    }
}

impl Cluster {
    /// A client looks for the leader: it asks a random master; one acting as leader takes the
    /// connection, a running standby names the key's holder (taken if that one acts), anything
    /// else (down, paused, no leader yet) means trying again later.
    pub(super) fn find_leader(&mut self) -> Option<usize> {
        let now = self.now;
        let asked = self.rng.below(self.masters.len() as u64) as usize;
        if self.masters[asked].acting(now) {
            return Some(asked);
        }
        if !self.masters[asked].up() {
            return None;
        }
        let named = self.masters[asked]
            .election
            .as_ref()
            .and_then(|e| e.observe(now))?;
        self.masters
            .get(named)
            .is_some_and(|m| m.acting(now))
            .then_some(named)
    }

    /// Clients that heard nothing from their master for too long close the connection (the
    /// master hears of it when it runs) and look for the leader again.
    pub(super) fn clients_give_up(&mut self) {
        let now = self.now;
        let Some(ha) = self.ha.as_ref() else {
            return;
        };
        let silence = ha.faults.silence_ms;
        let quiet = |conn: ConnId| {
            ha.last_heard
                .get(&conn)
                .is_some_and(|t| now.saturating_sub(*t) >= silence)
        };
        let conns: Vec<ConnId> = self
            .agents
            .iter()
            .filter_map(|a| a.conn)
            .chain(self.frameworks.iter().filter_map(|f| f.conn))
            .filter(|c| quiet(*c))
            .collect();
        for conn in conns {
            self.count(|s| s.silences += 1);
            self.break_conn(conn);
        }
    }

    /// In the fault window: by chance, one fault (chosen by the seed) hits the acting leader.
    pub(super) fn ha_faults(&mut self) {
        let now = self.now;
        let Some(p) = self.ha.as_ref().map(|h| h.faults.leader_fault) else {
            return;
        };
        if !self.chance(p) {
            return;
        }
        let Some(n) = (0..self.masters.len()).find(|&n| self.masters[n].acting(now)) else {
            return;
        };
        let Some(etcd) = self.etcd().cloned() else {
            return;
        };
        match self.rng.below(4) {
            0 => self.crash_leader(n),
            1 => {
                let until = now + 1_000 + self.rng.below(5_000);
                etcd.drop_keepalives(n, until);
                self.count(|s| {
                    s.lease_losses += 1;
                    s.faults_over_at = s.faults_over_at.max(until);
                });
                self.log
                    .push(format!("{now} master {n} loses keep-alives until {until}"));
            }
            2 => {
                let until = now + 1_000 + self.rng.below(7_000);
                etcd.cut(n, until);
                self.count(|s| {
                    s.partitions += 1;
                    s.faults_over_at = s.faults_over_at.max(until);
                });
                self.log
                    .push(format!("{now} master {n} cut off from etcd until {until}"));
            }
            _ => {
                let until = now + 1_000 + self.rng.below(7_000);
                let core_first = self.rng.below(2) == 0;
                self.masters[n].state = NodeState::Paused { until, core_first };
                self.count(|s| {
                    s.pauses += 1;
                    s.faults_over_at = s.faults_over_at.max(until);
                });
                self.log
                    .push(format!("{now} master {n} paused until {until}"));
            }
        }
    }

    /// The leader's process dies: its connections break, its writes in flight are lost (the
    /// first may reach etcd, through the fence), and it restarts as a standby 0.5–3 s later.
    fn crash_leader(&mut self, n: usize) {
        let now = self.now;
        self.count(|s| s.crashes += 1);
        self.master_crashes += 1;
        let etcd = self.etcd().cloned();
        let reachable = etcd.as_ref().is_some_and(|e| e.reachable(n, now));
        if let Some(w) = self.masters[n].disk.pop_front()
            && let Some(etcd) = etcd.filter(|_| reachable)
            && self.rng.below(2) == 0
            && etcd.fenced(w.epoch).commit(&w.ops).is_err()
        {
            self.count(|s| s.refused_writes += 1);
        }
        let node = &mut self.masters[n];
        node.disk.clear();
        node.inbox.clear();
        node.core = None;
        if let Some(e) = node.election.as_mut() {
            e.resign();
        }
        let until = now + 500 + self.rng.below(2_500);
        node.state = NodeState::Down { until };
        self.count(|s| s.faults_over_at = s.faults_over_at.max(until));
        self.log.push(format!("{now} master {n} crashes"));
        self.drop_conns_of(n, 1_500);
    }

    /// End of a step: the invariants that involve several masters.
    pub(super) fn ha_after_step(&mut self) {
        let now = self.now;
        // Judged by what the shells do (running with a core), not by their deadline rule.
        let acting: Vec<usize> = (0..self.masters.len())
            .filter(|&n| self.masters[n].up() && self.masters[n].core.is_some())
            .collect();
        if acting.len() > 1 {
            self.violations
                .push(format!("at {now} ms: masters {acting:?} all act as leader"));
        }
        let Some(ha) = self.ha.as_mut() else {
            return;
        };
        let stale = ha.etcd.stale_accepted();
        for s in stale.iter().skip(ha.stale_reported) {
            self.violations.push(format!("stale write: {s}"));
        }
        ha.stale_reported = stale.len();
    }
}
