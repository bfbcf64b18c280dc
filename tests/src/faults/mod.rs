//! A deterministic in-process cluster for fault injection: the real master core, simulated
//! agents and frameworks that speak the real protocol messages, and a network of connections
//! on a virtual clock. Every connection is a FIFO (like TCP) with seeded delays; faults break
//! connections (both ends notice, messages in flight are lost) and the peers reconnect.
//!
//! Agents keep their tasks across a broken session (as with per-task executors) and re-register
//! with them; their status updates are retried until acknowledged. Frameworks re-subscribe
//! with their id and reconcile. Everything is driven by one seeded RNG, so a seed replays the
//! same run exactly.
//!
//! With several masters ([`Cluster::with_ha`], module `ha`) one leads at a time by a simulated
//! etcd election (module `election`): leaders crash, lose their lease, are cut off from etcd or
//! paused, and clients follow the leader.
//!
//! # Layout
//! - `agent`, `framework`: the simulated peers.
//! - `net`: connections on the virtual clock.
//! - `node`: one master process (core, writes in flight, election view).
//! - `election`: the simulated etcd, its election and the fenced registry.
//! - `ha`: the high-availability profile (faults, failover, its invariants).

mod agent;
mod election;
mod framework;
mod ha;
mod net;
mod node;

use std::collections::BTreeMap;

use proffer_master_core::core::rng::SplitMix64;
use proffer_master_core::core::{ConnId, Input, Master, MasterConfig, Output, Timestamp};
use proffer_master_core::registry::{MemoryRegistry, Registry};

pub use agent::SimAgent;
pub use election::{
    Election, FencedRegistry, KEEPALIVE_MS, MARGIN_MS, SimElection, SimEtcd, TTL_MS,
};
pub use framework::SimFramework;
pub use ha::{HaFaults, HaStats};
use net::{Delivery, Net};
pub use node::{MasterNode, NodeState};

/// Fault settings.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Largest one-way delay (ms) of a message.
    pub max_delay_ms: u64,
    /// Chance per tick (every `tick_ms`) that one random agent session breaks.
    pub agent_break: f64,
    /// Chance per tick that one random framework stream breaks.
    pub framework_break: f64,
    /// Faults stop after this time (ms) so the run can settle.
    pub until_ms: u64,
    /// Chance per tick that the master crashes (needs a registry: [`Cluster::with_registry`]);
    /// it restarts from its registry at once.
    pub master_crash: f64,
    /// Chance that a status update or a framework call is delivered twice.
    pub duplicate: f64,
    /// Chance per tick that one agent goes away for 6–10 s (longer than a short ping timeout:
    /// it is marked unreachable, then comes back).
    pub agent_outage: f64,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults {
            max_delay_ms: 0,
            agent_break: 0.0,
            framework_break: 0.0,
            until_ms: 0,
            master_crash: 0.0,
            duplicate: 0.0,
            agent_outage: 0.0,
        }
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The master processes: one, always leading, unless HA ([`Cluster::with_ha`]).
    pub masters: Vec<MasterNode>,
    /// Simulated agents.
    pub agents: Vec<SimAgent>,
    /// Simulated frameworks.
    pub frameworks: Vec<SimFramework>,
    net: Net,
    rng: SplitMix64,
    now: u64,
    next_conn: ConnId,
    /// conn → (is_agent, index)
    owners: BTreeMap<ConnId, (bool, usize)>,
    /// conn → the master it was opened to.
    conn_master: BTreeMap<ConnId, usize>,
    faults: Faults,
    /// Every delivered message, as text, for determinism checks.
    pub log: Vec<String>,
    /// Connections broken so far.
    pub breaks: u32,
    /// The master's registry (None: the master persists nothing); with HA, what the simulated
    /// etcd holds (written only through the fence).
    pub registry: Option<MemoryRegistry>,
    config: MasterConfig,
    /// Master crashes so far (with HA: leader crashes).
    pub master_crashes: u32,
    /// Broken accounting invariants (`Master::check_accounting`, checked after every step),
    /// with the virtual time they were seen; with several masters also the HA invariants.
    pub violations: Vec<String>,
    /// The HA profile's state (None: one master).
    ha: Option<ha::Ha>,
}

/// Milliseconds between ticks of the master and the peers.
pub const TICK_MS: u64 = 20;

impl Cluster {
    /// A master, `agents` agents of `agent_res`, and frameworks each wanting `tasks` tasks.
    pub fn new(
        seed: u64,
        config: MasterConfig,
        agents: usize,
        agent_res: &str,
        frameworks: &[(usize, &str, u64)],
        faults: Faults,
    ) -> Cluster {
        let mut rng = SplitMix64::new(seed);
        let master = Master::new(config.clone(), rng.next_u64());
        let mut c = Cluster {
            masters: vec![MasterNode::only(master)],
            agents: Vec::new(),
            frameworks: Vec::new(),
            net: Net::default(),
            rng,
            now: 0,
            next_conn: 1,
            owners: BTreeMap::new(),
            conn_master: BTreeMap::new(),
            faults,
            log: Vec::new(),
            breaks: 0,
            violations: Vec::new(),
            registry: None,
            config,
            master_crashes: 0,
            ha: None,
        };
        for i in 0..agents {
            c.agents.push(SimAgent::new(&format!("host{i}"), agent_res));
        }
        for (i, (tasks, res, duration)) in frameworks.iter().enumerate() {
            c.frameworks
                .push(SimFramework::new(&format!("fw{i}"), *tasks, res, *duration));
        }
        c
    }

    /// [`Cluster::new`] with a master that persists to an in-memory registry (and so can
    /// crash and recover: `Faults::master_crash`).
    pub fn with_registry(
        seed: u64,
        config: MasterConfig,
        agents: usize,
        agent_res: &str,
        frameworks: &[(usize, &str, u64)],
        faults: Faults,
    ) -> Cluster {
        let mut c = Cluster::new(seed, config, agents, agent_res, frameworks, faults);
        let mut registry = MemoryRegistry::new();
        let stored = registry.load().unwrap_or_default();
        let seed = c.rng.next_u64();
        let core = Master::recover(c.config.clone(), seed, &stored, Timestamp(0))
            .unwrap_or_else(|e| panic!("recover from an empty registry: {e}"));
        c.masters[0].core = Some(core);
        c.registry = Some(registry);
        c.flush_node(0);
        c
    }

    /// The core of the newest leader still holding one (the only master's core without HA).
    pub fn master(&self) -> Option<&Master> {
        self.masters
            .iter()
            .filter(|m| m.core.is_some())
            .max_by_key(|m| m.epoch)
            .and_then(|m| m.core.as_ref())
    }

    /// The master crashes: every connection breaks, writes in progress are lost (the first
    /// may have reached the registry without being acknowledged), and a new master recovers
    /// from the registry.
    fn crash_master(&mut self) {
        let Some(registry) = self.registry.as_mut() else {
            return;
        };
        let now = self.now;
        self.master_crashes += 1;
        let disk = &mut self.masters[0].disk;
        if let Some(w) = disk.pop_front()
            && self.rng.below(2) == 0
        {
            let _ = registry.commit(&w.ops);
        }
        disk.clear();
        let stored = registry.contents();
        let conns: Vec<(ConnId, (bool, usize))> =
            self.owners.iter().map(|(c, o)| (*c, *o)).collect();
        for (conn, (is_agent, i)) in conns {
            self.net.drop_conn(conn);
            let backoff = 100 + self.rng.below(1_500);
            if is_agent && self.agents[i].conn == Some(conn) {
                self.agents[i].disconnected(now + backoff);
            } else if !is_agent && self.frameworks[i].conn == Some(conn) {
                self.frameworks[i].disconnected(now + backoff);
            }
        }
        let seed = self.rng.next_u64();
        let core = Master::recover(self.config.clone(), seed, &stored, Timestamp(now))
            .unwrap_or_else(|e| panic!("recover at {now} ms: {e}"));
        self.masters[0].core = Some(core);
        self.log.push(format!("{now} master crash"));
        self.flush_node(0);
    }

    /// Commits the persist batches whose write is done, in order, and acknowledges them.
    fn write_disk(&mut self) {
        if self.ha.is_some() {
            for n in 0..self.masters.len() {
                self.write_fenced(n);
            }
            return;
        }
        let now = self.now;
        while self.masters[0].disk.front().is_some_and(|w| w.at <= now) {
            let Some(w) = self.masters[0].disk.pop_front() else {
                break;
            };
            if let Some(r) = self.registry.as_mut() {
                let _ = r.commit(&w.ops);
            }
            self.master_input(0, Input::Persisted { seq: w.seq });
        }
    }

    /// Opens a connection from a peer to master `master`.
    fn conn(&mut self, is_agent: bool, idx: usize, master: usize) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.owners.insert(id, (is_agent, idx));
        self.conn_master.insert(id, master);
        if let Some(ha) = self.ha.as_mut() {
            ha.heard(id, self.now);
        }
        id
    }

    /// The master a peer connects to now: the only one, or (HA) the leader it finds.
    fn pick_master(&mut self) -> Option<usize> {
        if self.ha.is_some() {
            self.find_leader()
        } else {
            Some(0)
        }
    }

    /// Gives `input` to master `n`'s core (kept for later while it is paused; lost if it is
    /// down or holds no core) and sends what it says.
    fn master_input(&mut self, n: usize, input: Input) {
        let now = self.now;
        let node = &mut self.masters[n];
        match node.state {
            NodeState::Paused { .. } => {
                node.inbox.push_back(input);
                return;
            }
            NodeState::Down { .. } => return,
            NodeState::Up => {}
        }
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let _ = core.handle(Timestamp(now), input);
        self.flush_node(n);
    }

    /// The master connection `conn` was opened to.
    fn master_of(&self, conn: ConnId) -> usize {
        self.conn_master.get(&conn).copied().unwrap_or(0)
    }

    /// Runs until `limit_ms` or until every framework is done.
    pub fn run(&mut self, limit_ms: u64) {
        while self.now < limit_ms && !self.frameworks.iter().all(SimFramework::done) {
            self.step();
        }
    }

    fn step(&mut self) {
        self.now += TICK_MS;
        let now = self.now;
        if self.ha.is_some() {
            self.ha_before_step();
        }
        self.peers_act();
        if self.ha.is_some() {
            self.clients_give_up();
        }
        if now < self.faults.until_ms {
            self.inject_faults();
        }
        self.write_disk();
        // Deliver what is due, in order.
        while let Some((conn, d)) = self.net.pop_due(now) {
            self.deliver(conn, d);
        }
        for n in 0..self.masters.len() {
            if !self.masters[n].up() {
                continue;
            }
            let Some(core) = self.masters[n].core.as_mut() else {
                continue;
            };
            core.tick(Timestamp(now));
            let checked = core.check_accounting();
            self.flush_node(n);
            if let Err(e) = checked {
                self.violations.push(format!("at {now} ms: {e}"));
            }
        }
        if self.ha.is_some() {
            self.ha_after_step();
        }
    }

    /// Peers that need a connection open one (to the master they find); peers act on their
    /// timers.
    fn peers_act(&mut self) {
        let now = self.now;
        for i in 0..self.agents.len() {
            if self.agents[i].conn.is_none() && self.agents[i].reconnect_at <= now {
                match self.pick_master() {
                    Some(n) => {
                        let conn = self.conn(true, i, n);
                        let msg = self.agents[i].connect(conn);
                        self.send(conn, now, Delivery::Master(Input::Agent { conn, msg }));
                    }
                    None => {
                        let retry = now + 100 + self.rng.below(400);
                        self.agents[i].disconnected(retry);
                    }
                }
            }
            for msg in self.agents[i].tick(now) {
                if let Some(conn) = self.agents[i].conn {
                    self.send(conn, now, Delivery::Master(Input::Agent { conn, msg }));
                }
            }
        }
        for i in 0..self.frameworks.len() {
            if let Some(conn) = self.frameworks[i].conn {
                for call in self.frameworks[i].tick(now) {
                    self.send(conn, now, Delivery::Master(Input::Call(call)));
                }
            }
            if self.frameworks[i].conn.is_none() && self.frameworks[i].reconnect_at <= now {
                let Some(n) = self.pick_master() else {
                    let retry = now + 100 + self.rng.below(400);
                    self.frameworks[i].disconnected(retry);
                    continue;
                };
                let conn = self.conn(false, i, n);
                let info = self.frameworks[i].subscribe_info();
                self.frameworks[i].conn = Some(conn);
                self.send(
                    conn,
                    now,
                    Delivery::Master(Input::Subscribe {
                        conn,
                        info: Box::new(info),
                    }),
                );
            }
        }
    }

    /// Faults of the window: broken sessions and streams, agent outages, master crashes.
    fn inject_faults(&mut self) {
        let now = self.now;
        if !self.agents.is_empty() && self.chance(self.faults.agent_break) {
            let i = self.rng.below(self.agents.len() as u64) as usize;
            if let Some(conn) = self.agents[i].conn {
                self.break_conn(conn);
            }
        }
        if !self.frameworks.is_empty() && self.chance(self.faults.framework_break) {
            let i = self.rng.below(self.frameworks.len() as u64) as usize;
            if let Some(conn) = self.frameworks[i].conn {
                self.break_conn(conn);
            }
        }
        if !self.agents.is_empty() && self.chance(self.faults.agent_outage) {
            let i = self.rng.below(self.agents.len() as u64) as usize;
            if let Some(conn) = self.agents[i].conn {
                self.break_conn(conn);
                let back = now + 6_000 + self.rng.below(4_000);
                self.agents[i].disconnected(back);
            }
        }
        if self.ha.is_some() {
            self.ha_faults();
        } else if self.registry.is_some() && self.chance(self.faults.master_crash) {
            self.crash_master();
        }
    }

    fn send(&mut self, conn: ConnId, now: u64, d: Delivery) {
        let again = matches!(
            &d,
            Delivery::Master(Input::Call(_))
                | Delivery::Master(Input::Agent {
                    msg: proffer_proto::v1::AgentMessage {
                        msg: Some(proffer_proto::v1::agent_message::Msg::StatusUpdate(_)),
                    },
                    ..
                })
        ) && self.faults.duplicate > 0.0
            && self.chance(self.faults.duplicate);
        if again {
            let delay = self.delay();
            self.net.send(conn, now, delay, d.clone());
        }
        let delay = self.delay();
        self.net.send(conn, now, delay, d);
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.below(1_000_000) as f64) < p * 1_000_000.0
    }

    fn delay(&mut self) -> u64 {
        if self.faults.max_delay_ms == 0 {
            0
        } else {
            self.rng.below(self.faults.max_delay_ms + 1)
        }
    }

    /// Breaks a connection: in-flight messages are lost, both ends are told.
    fn break_conn(&mut self, conn: ConnId) {
        self.breaks += 1;
        self.net.drop_conn(conn);
        let now = self.now;
        let backoff = 100 + self.rng.below(500);
        let n = self.master_of(conn);
        match self.owners.get(&conn).copied() {
            Some((true, i)) => {
                self.agents[i].disconnected(now + backoff);
                self.master_input(n, Input::AgentDisconnected { conn });
            }
            Some((false, i)) => {
                self.frameworks[i].disconnected(now + backoff);
                self.master_input(n, Input::FrameworkDisconnected { conn });
            }
            None => {}
        }
        self.log.push(format!("{now} break {conn}"));
    }

    fn deliver(&mut self, conn: ConnId, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Master(input) => {
                self.log.push(format!("{now} ->master {input:?}"));
                let n = self.master_of(conn);
                self.master_input(n, input);
            }
            Delivery::Agent(msg) => {
                self.log.push(format!("{now} ->agent {conn} {msg:?}"));
                let Some((true, i)) = self.owners.get(&conn).copied() else {
                    return;
                };
                if self.agents[i].conn != Some(conn) {
                    return;
                }
                if let Some(ha) = self.ha.as_mut() {
                    ha.heard(conn, now);
                }
                for reply in self.agents[i].handle(now, msg) {
                    self.send(
                        conn,
                        now,
                        Delivery::Master(Input::Agent { conn, msg: reply }),
                    );
                }
            }
            Delivery::Framework(event) => {
                self.log.push(format!("{now} ->framework {conn} {event:?}"));
                let Some((false, i)) = self.owners.get(&conn).copied() else {
                    return;
                };
                if self.frameworks[i].conn != Some(conn) {
                    return;
                }
                if let Some(ha) = self.ha.as_mut() {
                    ha.heard(conn, now);
                    ha.saw_event(now, &event);
                }
                for call in self.frameworks[i].handle(event) {
                    // Calls are unary RPCs: they reach the master on the same connection.
                    self.send(conn, now, Delivery::Master(Input::Call(call)));
                }
            }
        }
    }

    /// Sends what master `n`'s core says: messages (with several masters only while it may
    /// act), registry writes, closed streams.
    fn flush_node(&mut self, n: usize) {
        let Some(core) = self.masters[n].core.as_mut() else {
            return;
        };
        let now = self.now;
        for out in core.take_outbox() {
            match out {
                Output::ToAgent { conn, msg } => {
                    if self.may_send(n) {
                        let d = self.delay();
                        self.net.send(conn, now, d, Delivery::Agent(msg));
                    }
                }
                Output::ToFramework { conn, event } => {
                    if self.may_send(n) {
                        let d = self.delay();
                        self.net.send(conn, now, d, Delivery::Framework(event));
                    }
                }
                Output::Persist { seq, ops } => {
                    if self.registry.is_none() {
                        if let Some(core) = self.masters[n].core.as_mut() {
                            let _ = core.handle(Timestamp(now), Input::Persisted { seq });
                        }
                    } else if self.masters[n].core.is_some() {
                        let d = self.delay();
                        self.masters[n].queue_write(now + d, seq, ops);
                    }
                }
                Output::CloseAgent { conn } | Output::CloseFramework { conn } => {
                    // The master ended the stream: the peer notices and reconnects.
                    self.net.drop_conn(conn);
                    match self.owners.get(&conn).copied() {
                        Some((true, i)) if self.agents[i].conn == Some(conn) => {
                            self.agents[i].disconnected(now + 200)
                        }
                        Some((false, i)) if self.frameworks[i].conn == Some(conn) => {
                            self.frameworks[i].disconnected(now + 200)
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Runs `n` ticks regardless of the frameworks' progress.
    pub fn run_ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Agent `i` disappears for good: its session breaks and it never reconnects.
    pub fn vanish_agent(&mut self, i: usize) {
        self.agents[i].gone = true;
        if let Some(conn) = self.agents[i].conn {
            self.break_conn(conn);
        }
        self.agents[i].disconnected(u64::MAX);
    }

    /// Current virtual time (ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// True if master `n` may send to a client now: always for the only master; with several,
    /// only while it acts as leader (see `ha`).
    fn may_send(&mut self, n: usize) -> bool {
        if self.ha.is_some() {
            self.ha_may_send(n)
        } else {
            true
        }
    }
}
