//! Fidelity: a scenario run by the simulator and the same scenario driven by hand through the
//! master core (harness style: a FIFO of inputs, outputs answered in order, virtual time) give
//! the same decision log — the same offers, launches and declines in the same order.

use std::collections::VecDeque;
use std::path::Path;

use proffer_master_core::core::{Call, Input, Master, Output, Timestamp};
use proffer_proto::Resources;
use proffer_proto::v1::{
    self, TaskState, agent_message::Msg as AOut, event::Event, master_message::Msg as AIn,
};
use proffer_sim::{Policy, Scenario, Sim};

const SCENARIO: &str = r#"
name = "fidelity"
seed = 11
duration_s = 40
[sim]
record_decisions = true
sample_interval_s = 100
[[agents]]
count = 3
resources = "cpus:4;mem:8192"
[[frameworks]]
name = "a"
task = "cpus:1;mem:1024"
tasks = 9
max_tasks_per_offer = 2
refuse_s = 1
suppress_when_idle = false
duration = { dist = "constant", value_s = 2.5 }
[[frameworks]]
name = "b"
task = "cpus:2;mem:3072"
tasks = 5
refuse_s = 1
suppress_when_idle = false
duration = { dist = "constant", value_s = 3.7 }
"#;

type Line = (u64, String, String, String, String, String);

/// A framework as the harness models it: a queue of (cpus, mem) tasks, greedy.
struct Fw {
    conn: u64,
    header: Option<v1::CallHeader>,
    queue: VecDeque<(i64, i64)>,
    duration_ms: u64,
    limit: usize,
    next_task: u64,
}

struct Harness {
    m: Master,
    now: u64,
    fifo: VecDeque<Input>,
    log: Vec<Line>,
    agent_conns: Vec<u64>,
    fws: Vec<Fw>,
    /// (end time, agent conn, framework id, task id), in launch order.
    running: Vec<(u64, u64, String, String)>,
    uuid: u64,
}

impl Harness {
    fn feed(&mut self) {
        while let Some(input) = self.fifo.pop_front() {
            let r = self.m.handle(Timestamp(self.now), input);
            assert!(r.is_ok(), "{r:?}");
            self.react();
        }
    }

    fn react(&mut self) {
        for out in self.m.take_outbox() {
            match out {
                Output::ToFramework { conn, event } => {
                    let f = self.fws.iter().position(|f| f.conn == conn);
                    if let (Some(f), Some(e)) = (f, event.event) {
                        self.on_event(f, e);
                    }
                }
                Output::ToAgent { conn, msg } => {
                    if let Some(m) = msg.msg {
                        self.on_agent(conn, m);
                    }
                }
                _ => {}
            }
        }
    }

    fn status(&mut self, conn: u64, fw: &str, task: &str, state: TaskState) {
        self.uuid += 1;
        self.fifo.push_back(Input::Agent {
            conn,
            msg: v1::AgentMessage {
                msg: Some(AOut::StatusUpdate(v1::StatusUpdate {
                    framework_id: fw.into(),
                    latest_state: None,
                    status: Some(v1::TaskStatus {
                        task_id: task.into(),
                        state: state as i32,
                        uuid: self.uuid.to_le_bytes().to_vec(),
                        ..Default::default()
                    }),
                })),
            },
        });
    }

    fn on_agent(&mut self, conn: u64, m: AIn) {
        match m {
            AIn::RunTask(r) => {
                let task = r.task.unwrap_or_default();
                let f = self
                    .fws
                    .iter()
                    .position(|f| {
                        f.header.as_ref().map(|h| &h.framework_id) == Some(&r.framework_id)
                    })
                    .unwrap_or(0);
                self.status(
                    conn,
                    &r.framework_id,
                    &task.task_id,
                    TaskState::TaskStarting,
                );
                self.status(conn, &r.framework_id, &task.task_id, TaskState::TaskRunning);
                let end = self.now + self.fws[f].duration_ms;
                self.running.push((end, conn, r.framework_id, task.task_id));
            }
            AIn::Ping(p) => self.fifo.push_back(Input::Agent {
                conn,
                msg: v1::AgentMessage {
                    msg: Some(AOut::Pong(v1::Pong { seq: p.seq })),
                },
            }),
            _ => {}
        }
    }

    fn on_event(&mut self, f: usize, e: Event) {
        match e {
            Event::Subscribed(s) => {
                self.fws[f].header = Some(v1::CallHeader {
                    framework_id: s.framework_id,
                    stream_id: s.stream_id,
                })
            }
            Event::Offers(o) => {
                for offer in o.offers {
                    self.answer(f, offer);
                }
            }
            Event::Update(u) => {
                let s = u.status.unwrap_or_default();
                if !s.uuid.is_empty() {
                    let header = self.fws[f].header.clone();
                    self.fifo
                        .push_back(Input::Call(Call::Acknowledge(v1::AcknowledgeRequest {
                            header,
                            agent_id: s.agent_id,
                            task_id: s.task_id,
                            uuid: s.uuid,
                        })));
                }
            }
            _ => {}
        }
    }

    fn answer(&mut self, f: usize, offer: v1::Offer) {
        let res = Resources::from_proto(&offer.resources).unwrap_or_default();
        self.log.push((
            self.now,
            "offer".into(),
            offer.framework_id.clone(),
            offer.agent_id.clone(),
            offer.id.clone(),
            res.to_string(),
        ));
        let (mut cpus, mut mem) = (res.cpus_milli(), res.mem_milli());
        let fw = &mut self.fws[f];
        let mut tasks = Vec::new();
        let mut i = 0;
        while i < fw.queue.len() && tasks.len() < fw.limit {
            let (c, m) = fw.queue[i];
            if c <= cpus && m <= mem {
                cpus -= c;
                mem -= m;
                fw.queue.remove(i);
                let id = fw.next_task.to_string();
                fw.next_task += 1;
                tasks.push(v1::TaskInfo {
                    name: id.clone(),
                    task_id: id,
                    resources: Resources::scalar("cpus", c)
                        .plus(&Resources::scalar("mem", m))
                        .to_proto(),
                    command: Some(v1::CommandInfo {
                        value: "sleep".into(),
                        shell: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            } else {
                i += 1;
            }
        }
        let header = fw.header.clone();
        let filters = Some(v1::Filters {
            refuse_seconds: Some(1.0),
        });
        let (kind, detail) = if tasks.is_empty() {
            ("decline", String::new())
        } else {
            let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
            ("launch", ids.join(" "))
        };
        self.log.push((
            self.now,
            kind.into(),
            offer.framework_id,
            offer.agent_id,
            offer.id.clone(),
            detail,
        ));
        let call = if tasks.is_empty() {
            Call::Decline(v1::DeclineRequest {
                header,
                offer_ids: vec![offer.id],
                filters,
            })
        } else {
            Call::Accept(v1::AcceptRequest {
                header,
                offer_ids: vec![offer.id],
                operations: vec![v1::Operation {
                    op: Some(v1::operation::Op::Launch(v1::Launch { tasks })),
                }],
                filters,
            })
        };
        self.fifo.push_back(Input::Call(call));
    }
}

fn harness_log(s: &Scenario) -> Vec<Line> {
    let mut h = Harness {
        m: Master::new(s.master_config(), s.seed),
        now: 0,
        fifo: VecDeque::new(),
        log: Vec::new(),
        agent_conns: Vec::new(),
        fws: Vec::new(),
        running: Vec::new(),
        uuid: 0,
    };
    // t = 0: agents register, then frameworks subscribe, then the first tick.
    for g in &s.agents {
        for _ in 0..g.count {
            let conn = 1000 + h.agent_conns.len() as u64;
            h.agent_conns.push(conn);
            h.fifo.push_back(Input::Agent {
                conn,
                msg: v1::AgentMessage {
                    msg: Some(AOut::Register(v1::RegisterAgent {
                        info: Some(Box::new(v1::AgentInfo {
                            hostname: format!("sim-{}", h.agent_conns.len() - 1),
                            port: 5051,
                            resources: g.resources.resources.to_proto(),
                            ..Default::default()
                        })),
                    })),
                },
            });
            h.feed();
        }
    }
    for (i, spec) in s.frameworks.iter().enumerate() {
        let duration_ms = match spec.duration {
            proffer_sim::dist::DurationDist::Constant { value_s } => (value_s * 1000.0) as u64,
            _ => panic!("constant durations only"),
        };
        let conn = 5000 + i as u64;
        h.fws.push(Fw {
            conn,
            header: None,
            queue: (0..spec.tasks)
                .map(|_| (spec.task.cpus_milli, spec.task.mem_milli))
                .collect(),
            duration_ms,
            limit: match spec.model.max_tasks_per_offer {
                0 => usize::MAX,
                n => n as usize,
            },
            next_task: 0,
        });
        h.fifo.push_back(Input::Subscribe {
            conn,
            info: Box::new(v1::FrameworkInfo {
                name: spec.name.clone(),
                roles: vec![spec.role.clone()],
                ..Default::default()
            }),
        });
        h.feed();
    }
    let end = s.duration_ms();
    let mut next_tick = 0;
    loop {
        // The earliest task end, if before the next tick.
        let due = h
            .running
            .iter()
            .enumerate()
            .filter(|(_, r)| r.0 < next_tick)
            .min_by_key(|(i, r)| (r.0, *i))
            .map(|(i, _)| i);
        if let Some(i) = due {
            let (t, conn, fw, task) = h.running.remove(i);
            h.now = t;
            h.status(conn, &fw, &task, TaskState::TaskFinished);
            h.feed();
            continue;
        }
        if next_tick > end {
            break;
        }
        h.now = next_tick;
        h.m.tick(Timestamp(h.now));
        h.react();
        h.feed();
        next_tick += s.tick_ms();
    }
    h.log
}

#[test]
fn simulator_matches_a_direct_harness_run() -> anyhow::Result<()> {
    let s = Scenario::parse(SCENARIO, Path::new("fidelity.toml"))?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    let simulated: Vec<Line> = sim
        .decisions()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d.time_ms,
                d.kind.to_string(),
                d.framework_id.clone(),
                d.agent_id.clone(),
                d.offer_id.clone(),
                d.detail.clone(),
            )
        })
        .collect();
    let direct = harness_log(&s);
    let launches = direct.iter().filter(|l| l.1 == "launch").count();
    assert!(
        launches >= 7,
        "the scenario should launch repeatedly: {direct:#?}"
    );
    assert!(direct.iter().any(|l| l.1 == "decline"));
    assert!(
        direct.iter().any(|l| l.0 > 15_000),
        "runs past the first pings"
    );
    assert_eq!(simulated.len(), direct.len());
    for (i, (a, b)) in simulated.iter().zip(&direct).enumerate() {
        assert_eq!(a, b, "decision {i} differs");
    }
    Ok(())
}
