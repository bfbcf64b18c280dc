//! A tiny driver for the core: virtual time, connections, and output inspection.

use proffer_proto::Resources;
use proffer_proto::v1::{
    self, agent_message::Msg as AIn, event::Event, master_message::Msg as AOut,
};

use crate::core::{Call, ConnId, Input, Master, MasterConfig, MasterError, Output, Timestamp};

/// The core plus a clock and a log of everything it sent.
pub struct H {
    pub m: Master,
    pub now: u64,
    pub out: Vec<Output>,
    /// With persistence: what the registry holds (batches are written and acknowledged at
    /// once unless `hold_writes` is set, when they wait in `unwritten`).
    pub store: Option<crate::registry::Stored>,
    pub hold_writes: bool,
    pub unwritten: Vec<(u64, Vec<crate::registry::RegistryOp>)>,
}

impl H {
    pub fn new() -> Self {
        Self::with(MasterConfig::default())
    }

    pub fn with(config: MasterConfig) -> Self {
        H {
            m: Master::new(config, 42),
            now: 0,
            out: Vec::new(),
            store: None,
            hold_writes: false,
            unwritten: Vec::new(),
        }
    }

    /// A master with persistence on, recovered from `store` (empty: a fresh registry).
    pub fn persistent(config: MasterConfig, store: crate::registry::Stored, now: u64) -> Self {
        let m = Master::recover(config, 42, &store, Timestamp(now)).expect("recover");
        let mut h = H {
            m,
            now,
            out: Vec::new(),
            store: Some(store),
            hold_writes: false,
            unwritten: Vec::new(),
        };
        h.pump();
        h
    }

    /// Moves the core's outputs to `out`, writing persist batches to `store` (and
    /// acknowledging them) unless writes are held.
    pub fn pump(&mut self) {
        loop {
            let mut acked = false;
            for o in self.m.take_outbox() {
                match o {
                    Output::Persist { seq, ops } => {
                        if self.hold_writes || self.store.is_none() {
                            self.unwritten.push((seq, ops));
                        } else if let Some(store) = &mut self.store {
                            store.apply(&ops);
                            let _ = self.m.handle(Timestamp(self.now), Input::Persisted { seq });
                            acked = true;
                        }
                    }
                    other => self.out.push(other),
                }
            }
            if !acked {
                break;
            }
        }
    }

    /// Writes and acknowledges every held batch.
    pub fn write_held(&mut self) {
        for (seq, ops) in std::mem::take(&mut self.unwritten) {
            if let Some(store) = &mut self.store {
                store.apply(&ops);
            }
            let _ = self.m.handle(Timestamp(self.now), Input::Persisted { seq });
        }
        self.pump();
    }

    pub fn input(&mut self, input: Input) -> Result<(), MasterError> {
        let r = self.m.handle(Timestamp(self.now), input);
        self.pump();
        r
    }

    pub fn call(&mut self, call: Call) -> Result<(), MasterError> {
        self.input(Input::Call(call))
    }

    /// Advances time and ticks.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.m.tick(Timestamp(self.now));
        self.pump();
    }

    /// Drains the output log.
    pub fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    pub fn register_agent(&mut self, conn: ConnId, host: &str, res: &str) -> String {
        let info = agent_info("", host, res);
        self.input(Input::Agent {
            conn,
            msg: v1::AgentMessage {
                msg: Some(AIn::Register(v1::RegisterAgent {
                    info: Some(Box::new(info)),
                })),
            },
        })
        .expect("register");
        self.agent_msgs(conn)
            .into_iter()
            .find_map(|m| match m {
                AOut::Registered(r) => Some(r.agent_id),
                _ => None,
            })
            .expect("registered")
    }

    /// Re-registers agent `agent` (host `host1`) on `conn` with `res` and `tasks`.
    pub fn reregister(
        &mut self,
        conn: ConnId,
        agent: &str,
        res: &str,
        tasks: Vec<v1::RunningTask>,
    ) {
        self.input(Input::Agent {
            conn,
            msg: v1::AgentMessage {
                msg: Some(AIn::Reregister(v1::ReregisterAgent {
                    info: Some(Box::new(agent_info(agent, "host1", res))),
                    tasks,
                })),
            },
        })
        .expect("reregister");
    }

    pub fn subscribe(&mut self, conn: ConnId, name: &str, failover: f64) -> v1::CallHeader {
        let info = v1::FrameworkInfo {
            name: name.into(),
            failover_timeout: failover,
            ..Default::default()
        };
        self.subscribe_with(conn, info)
    }

    /// Subscribes with `info` and returns the header from the SUBSCRIBED event (panics if the
    /// subscription is refused).
    pub fn subscribe_with(&mut self, conn: ConnId, info: v1::FrameworkInfo) -> v1::CallHeader {
        self.try_subscribe(conn, info)
            .unwrap_or_else(|e| panic!("subscribe: {e}"))
    }

    /// Subscribes with `info`: the header from the SUBSCRIBED event, or why there was none.
    pub fn try_subscribe(
        &mut self,
        conn: ConnId,
        info: v1::FrameworkInfo,
    ) -> Result<v1::CallHeader, String> {
        self.input(Input::Subscribe {
            conn,
            info: Box::new(info),
        })
        .map_err(|e| e.to_string())?;
        self.events(conn)
            .into_iter()
            .find_map(|e| match e {
                Event::Subscribed(s) => Some(v1::CallHeader {
                    framework_id: s.framework_id,
                    stream_id: s.stream_id,
                }),
                _ => None,
            })
            .ok_or_else(|| "no SUBSCRIBED event".to_string())
    }

    /// Events sent to a framework connection (drained from the log; other outputs are kept).
    pub fn events(&mut self, conn: ConnId) -> Vec<Event> {
        let mut keep = Vec::new();
        let mut got = Vec::new();
        for o in self.out.drain(..) {
            match o {
                Output::ToFramework { conn: c, event } if c == conn => {
                    if let Some(e) = event.event {
                        got.push(e);
                    }
                }
                other => keep.push(other),
            }
        }
        self.out = keep;
        got
    }

    /// Messages sent to an agent connection (drained from the log; other outputs are kept).
    pub fn agent_msgs(&mut self, conn: ConnId) -> Vec<AOut> {
        let mut keep = Vec::new();
        let mut got = Vec::new();
        for o in self.out.drain(..) {
            match o {
                Output::ToAgent { conn: c, msg } if c == conn => {
                    if let Some(m) = msg.msg {
                        got.push(m);
                    }
                }
                other => keep.push(other),
            }
        }
        self.out = keep;
        got
    }

    pub fn offers(&mut self, conn: ConnId) -> Vec<v1::Offer> {
        self.events(conn)
            .into_iter()
            .flat_map(|e| match e {
                Event::Offers(o) => o.offers,
                _ => Vec::new(),
            })
            .collect()
    }

    pub fn updates(&mut self, conn: ConnId) -> Vec<v1::TaskStatus> {
        self.events(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::Update(u) => u.status,
                _ => None,
            })
            .collect()
    }

    pub fn launch(
        &mut self,
        h: &v1::CallHeader,
        offer_ids: &[&str],
        tasks: Vec<v1::TaskInfo>,
    ) -> Result<(), MasterError> {
        self.call(Call::Accept(v1::AcceptRequest {
            header: Some(h.clone()),
            offer_ids: offer_ids.iter().map(|s| s.to_string()).collect(),
            operations: vec![v1::Operation {
                op: Some(v1::operation::Op::Launch(v1::Launch { tasks })),
            }],
            filters: None,
        }))
    }

    pub fn status(
        &mut self,
        conn: ConnId,
        fw: &str,
        task: &str,
        state: v1::TaskState,
        uuid: &[u8],
    ) -> Result<(), MasterError> {
        self.status_latest(conn, fw, task, state, uuid, None)
    }

    /// [`H::status`] carrying the task's latest state on its agent (`latest_state`).
    pub fn status_latest(
        &mut self,
        conn: ConnId,
        fw: &str,
        task: &str,
        state: v1::TaskState,
        uuid: &[u8],
        latest: Option<i32>,
    ) -> Result<(), MasterError> {
        self.input(Input::Agent {
            conn,
            msg: v1::AgentMessage {
                msg: Some(AIn::StatusUpdate(agent_update(
                    fw, task, state, uuid, latest,
                ))),
            },
        })
    }
}

/// An agent's status update of `task` in `state` (uuid `uuid`), with its latest state.
pub fn agent_update(
    fw: &str,
    task: &str,
    state: v1::TaskState,
    uuid: &[u8],
    latest: Option<i32>,
) -> v1::StatusUpdate {
    v1::StatusUpdate {
        framework_id: fw.into(),
        latest_state: latest,
        status: Some(v1::TaskStatus {
            task_id: task.into(),
            state: state as i32,
            uuid: uuid.to_vec(),
            source: v1::StatusSource::SourceAgent as i32,
            ..Default::default()
        }),
    }
}

pub fn agent_info(id: &str, host: &str, res: &str) -> v1::AgentInfo {
    v1::AgentInfo {
        id: id.into(),
        hostname: host.into(),
        port: 5051,
        resources: Resources::parse(res).expect("resources").to_proto(),
        sandboxes_dir: "/w/sandboxes".into(),
        ..Default::default()
    }
}

pub fn task(id: &str, res: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: id.into(),
        resources: Resources::parse(res).expect("resources").to_proto(),
        command: Some(v1::CommandInfo {
            value: "true".into(),
            shell: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn res(offer: &v1::Offer) -> Resources {
    Resources::from_proto(&offer.resources).expect("offer resources")
}
