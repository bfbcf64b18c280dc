//! Fuzz: arbitrary sequences of inputs into the master core, in any order and with any ids —
//! agents registering and re-registering (with random resources, ids and running tasks),
//! status updates for known and unknown tasks, pongs, empty messages, disconnects;
//! frameworks subscribing (new, failing over, with odd roles, timeouts, filters), every call
//! with right, wrong and made-up headers, offers, tasks, agents and uuids, and operations
//! cut from real offers or made up; operator calls (weights, quotas, reservations, drains,
//! maintenance, gone agents); ticks small and huge; with a registry: held and late writes and
//! a recovery of the master from what was written.
//!
//! Ids are drawn from what the core handed out (agent, framework, stream, offer, inverse offer
//! and task ids, update uuids, ping sequence numbers) or made up. The world behaves as the
//! server shell does in what it guarantees: connection ids are fresh, a closed connection is
//! followed by its disconnect input, persist batches are written in order.
//!
//! After every step: nothing panicked, the accounting invariant holds
//! ([`Master::check_accounting`](crate::core::Master::check_accounting)), no agent runs tasks
//! beyond its total, `/state`, roles, `why` and the maintenance schedule can be built, and
//! with a registry and no batch in flight the registry holds what the core would recover to.
//!
//! `PROFFER_FUZZ_CASES=N` runs N sequences (default 160), `PROFFER_FUZZ_SEED=S` another seed.

use proffer_proto::fuzzing;
use proffer_proto::resources::{ResourceKey, Resources, Value};
use proffer_proto::v1::{
    self, agent_message::Msg as AIn, event::Event, master_message::Msg as AOut, operation::Op,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::harness::H;
use crate::core::{Call, ConnId, Input, Master, MasterConfig, Output, Timestamp};
use crate::registry::Stored;

fn config() -> Config {
    Config {
        cases: fuzzing::cases(160),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0xC0_2E_F0_22)),
        failure_persistence: None,
        max_shrink_iters: 4_000,
        ..Config::default()
    }
}

/// Roles a framework, a quota or a reservation may name (some invalid).
const ROLES: &[&str] = &[
    "*", "web", "db", "web/api", "eng", "", "-bad", "a b", "..", "é",
];

/// Agents' resources, as an agent's `--resources` would give them.
const AGENTS: &[&str] = &[
    "cpus:4;mem:4096;disk:1000;ports:[31000-31009]",
    "cpus:2;cpus(web):1;mem:2048;mem(web):512;disk:500;disk(db):200",
    "cpus:0.5;mem:64",
    "cpus:8;mem:16384;gpus:2;disk:10000;ports:[1-2,100-200]",
    "cpus(db):3;mem(db):1024;disk(db,dynamic=ops)[v1:data]:100",
    "mem:16",
    "",
];

/// An id: one the core handed out (index into what was seen, modulo), or a made-up one.
#[derive(Debug, Clone)]
enum Id {
    Known(usize),
    Empty,
    Made(String),
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        8 => any::<usize>().prop_map(Id::Known),
        1 => Just(Id::Empty),
        1 => prop::sample::select(vec!["x", "../x", "a/b", "\0", "*", "S0-0", "O1", "T1", "web"])
            .prop_map(|s| Id::Made(s.to_string())),
        1 => "\\PC{0,6}".prop_map(Id::Made),
        1 => Just(Id::Made("i".repeat(300))),
    ]
}

/// The `i`-th of `list` (modulo), or what `id` makes up.
fn pick(list: &[String], id: &Id) -> String {
    match id {
        Id::Known(i) if !list.is_empty() => list[i % list.len()].clone(),
        Id::Known(_) => "unknown".into(),
        Id::Empty => String::new(),
        Id::Made(s) => s.clone(),
    }
}

/// Resources for an operation, a task, a quota or an agent.
#[derive(Debug, Clone)]
enum Res {
    /// `num/den` of the scalars (and the first ports) of a known offer (or agent total),
    /// relabeled.
    Part {
        of: usize,
        num: u8,
        den: u8,
        relabel: Relabel,
    },
    /// Text (mostly valid).
    Text(String),
    /// Wire entries, anything.
    Wire(Vec<v1::Resource>),
}

#[derive(Debug, Clone)]
enum Relabel {
    Keep,
    Unreserved,
    Dynamic { role: usize, principal: bool },
    Volume { id: u8, path: u8 },
    Static { role: usize },
}

fn relabel() -> impl Strategy<Value = Relabel> {
    prop_oneof![
        4 => Just(Relabel::Keep),
        1 => Just(Relabel::Unreserved),
        2 => (any::<usize>(), any::<bool>())
            .prop_map(|(role, principal)| Relabel::Dynamic { role, principal }),
        2 => (0u8..4, 0u8..4).prop_map(|(id, path)| Relabel::Volume { id, path }),
        1 => any::<usize>().prop_map(|role| Relabel::Static { role }),
    ]
}

fn res_text() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        4 => (0u32..5_000).prop_map(|m| format!("{}", f64::from(m) / 1000.0)),
        2 => (1u32..20_000).prop_map(|n| n.to_string()),
        1 => Just("1e12".to_string()),
        1 => Just("0.001".to_string()),
    ];
    let entry = (
        prop::sample::select(vec!["cpus", "mem", "disk", "gpus", "ports", "disks"]),
        prop::sample::select(vec![
            "",
            "(web)",
            "(db)",
            "(web,dynamic=ops)",
            "(db,dynamic)",
            "(web/api,dynamic=fw)",
            "(db,dynamic=ops)[v1:data]",
            "(web)[v2:x]",
        ]),
        scalar,
        (31_000u32..31_010, 0u32..5),
    )
        .prop_map(|(name, labels, s, (b, l))| match name {
            "ports" => format!("ports{labels}:[{b}-{}]", b + l),
            "disks" => format!("disks{labels}:{{a,b}}"),
            "gpus" => format!("gpus{labels}:{}", b % 3),
            _ => format!("{name}{labels}:{s}"),
        });
    prop::collection::vec(entry, 0..4).prop_map(|e| e.join(";"))
}

fn wire_resource() -> impl Strategy<Value = v1::Resource> {
    let value = prop_oneof![
        Just(None),
        prop_oneof![4 => 0i64..10_000_000, 1 => any::<i64>()]
            .prop_map(|m| Some(v1::resource::Value::ScalarMilli(m))),
        (any::<u64>(), 0u64..10).prop_map(|(b, l)| Some(v1::resource::Value::Ranges(v1::Ranges {
            range: vec![v1::Range {
                begin: b % 70_000,
                end: b % 70_000 + l
            }],
        }))),
        prop::collection::vec("[a-z]{0,3}", 0..3)
            .prop_map(|item| Some(v1::resource::Value::Set(v1::Set { item }))),
    ];
    (
        prop::sample::select(vec!["cpus", "mem", "disk", "gpus", "ports", "x", "", "a;b"]),
        value,
        prop::sample::select(ROLES.to_vec()),
        prop_oneof![3 => 0i32..3, 1 => any::<i32>()],
        prop::sample::select(vec!["", "ops", "a b"]),
        prop::option::of(prop::sample::select(vec![
            ("v1", "data"),
            ("", "x"),
            ("v2", "/abs"),
            ("v3", "../up"),
        ])),
    )
        .prop_map(|(name, value, role, rt, principal, vol)| v1::Resource {
            name: name.into(),
            value,
            role: role.into(),
            reservation_type: rt,
            principal: principal.into(),
            volume: vol.map(|(id, path)| v1::PersistentVolume {
                id: id.into(),
                container_path: path.into(),
            }),
        })
}

fn res() -> impl Strategy<Value = Res> {
    prop_oneof![
        6 => (any::<usize>(), 1u8..4, 1u8..5, relabel())
            .prop_map(|(of, num, den, relabel)| Res::Part { of, num, den, relabel }),
        2 => res_text().prop_map(Res::Text),
        1 => prop::collection::vec(wire_resource(), 0..4).prop_map(Res::Wire),
    ]
}

/// A task of a LAUNCH or LAUNCH_GROUP.
#[derive(Debug, Clone)]
struct TaskSpec {
    /// A new id, or a known/made-up one.
    id: Option<Id>,
    res: Res,
    command: u8,
    check: u8,
    agent: Option<Id>,
    grace: u64,
    labels: bool,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        prop_oneof![4 => Just(None), 1 => id().prop_map(Some)],
        res(),
        0u8..4,
        0u8..5,
        prop_oneof![5 => Just(None), 1 => id().prop_map(Some)],
        prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
        any::<bool>(),
    )
        .prop_map(|(id, res, command, check, agent, grace, labels)| TaskSpec {
            id,
            res,
            command,
            check,
            agent,
            grace,
            labels,
        })
}

#[derive(Debug, Clone)]
enum OpSpec {
    Launch(Vec<TaskSpec>),
    LaunchGroup(Vec<TaskSpec>),
    Reserve(Res),
    Unreserve(Res),
    Create(Res),
    Destroy(Res),
    Empty,
}

fn op_spec() -> impl Strategy<Value = OpSpec> {
    prop_oneof![
        6 => prop::collection::vec(task_spec(), 0..4).prop_map(OpSpec::Launch),
        1 => prop::collection::vec(task_spec(), 0..3).prop_map(OpSpec::LaunchGroup),
        2 => res().prop_map(OpSpec::Reserve),
        1 => res().prop_map(OpSpec::Unreserve),
        2 => res().prop_map(OpSpec::Create),
        1 => res().prop_map(OpSpec::Destroy),
        1 => Just(OpSpec::Empty),
    ]
}

/// A FrameworkInfo, from sensible to odd.
#[derive(Debug, Clone)]
struct FwSpec {
    /// Fail over as a known framework (or a made-up id); `None`: a new framework.
    id: Option<Id>,
    roles: Vec<usize>,
    failover: f64,
    max_offers: Option<u32>,
    filters: Vec<(usize, String, f64)>,
    capabilities: Vec<&'static str>,
    name: String,
}

fn fw_spec() -> impl Strategy<Value = FwSpec> {
    (
        prop_oneof![3 => Just(None), 2 => id().prop_map(Some)],
        prop::collection::vec(any::<usize>(), 0..3),
        prop_oneof![
            4 => prop::sample::select(vec![0.0, 1.0, 60.0, 3600.0]),
            1 => any::<f64>(),
        ],
        prop_oneof![3 => Just(None), 1 => (0u32..4).prop_map(Some)],
        prop::collection::vec(
            (
                any::<usize>(),
                prop::sample::select(vec!["cpus", "mem", "disk", "x"]).prop_map(String::from),
                prop_oneof![3 => 0.0f64..4.0, 1 => any::<f64>()],
            ),
            0..2,
        ),
        prop::sample::subsequence(vec!["PARTITION_AWARE", "MULTI_ROLE", "bogus"], 0..3),
        prop_oneof![4 => "[a-z]{1,6}", 1 => "\\PC{0,6}"],
    )
        .prop_map(
            |(id, roles, failover, max_offers, filters, capabilities, name)| FwSpec {
                id,
                roles,
                failover,
                max_offers,
                filters,
                capabilities,
                name,
            },
        )
}

/// The header of a call.
#[derive(Debug, Clone)]
enum Hdr {
    /// The right framework and stream of a subscription seen.
    Known(usize),
    /// A known framework with a stale or made-up stream.
    WrongStream(usize, Id),
    Made(Id, Id),
    None,
}

fn hdr() -> impl Strategy<Value = Hdr> {
    prop_oneof![
        8 => any::<usize>().prop_map(Hdr::Known),
        1 => (any::<usize>(), id()).prop_map(|(f, s)| Hdr::WrongStream(f, s)),
        1 => (id(), id()).prop_map(|(f, s)| Hdr::Made(f, s)),
        1 => Just(Hdr::None),
    ]
}

fn refuse() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        3 => Just(None),
        3 => prop::sample::select(vec![0.0, 1.0, 5.0]).prop_map(Some),
        1 => any::<f64>().prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
enum CallSpec {
    Accept {
        offers: Vec<Id>,
        ops: Vec<OpSpec>,
        refuse: Option<f64>,
    },
    Decline {
        offers: Vec<Id>,
        refuse: Option<f64>,
    },
    Revive(Vec<usize>),
    Suppress(Vec<usize>),
    Update(FwSpec),
    Kill {
        task: Id,
        agent: Id,
        grace: Option<u64>,
    },
    /// Acknowledge a known update (its fields, maybe one made up), alone or in a batch.
    Ack {
        update: Id,
        tweak: u8,
    },
    Reconcile(Vec<(Id, Id)>),
    Message {
        agent: Id,
        task: Id,
    },
    Teardown,
    AcceptInverse(Vec<Id>),
    DeclineInverse(Vec<Id>),
}

fn call_spec() -> impl Strategy<Value = CallSpec> {
    prop_oneof![
        8 => (prop::collection::vec(id(), 0..3), prop::collection::vec(op_spec(), 0..3), refuse())
            .prop_map(|(offers, ops, refuse)| CallSpec::Accept { offers, ops, refuse }),
        2 => (prop::collection::vec(id(), 0..3), refuse())
            .prop_map(|(offers, refuse)| CallSpec::Decline { offers, refuse }),
        1 => prop::collection::vec(any::<usize>(), 0..3).prop_map(CallSpec::Revive),
        1 => prop::collection::vec(any::<usize>(), 0..3).prop_map(CallSpec::Suppress),
        1 => fw_spec().prop_map(CallSpec::Update),
        2 => (id(), id(), prop::option::of(any::<u64>()))
            .prop_map(|(task, agent, grace)| CallSpec::Kill { task, agent, grace }),
        3 => (id(), 0u8..8).prop_map(|(update, tweak)| CallSpec::Ack { update, tweak }),
        1 => prop::collection::vec((id(), id()), 0..3).prop_map(CallSpec::Reconcile),
        1 => (id(), id()).prop_map(|(agent, task)| CallSpec::Message { agent, task }),
        1 => Just(CallSpec::Teardown),
        1 => prop::collection::vec(id(), 0..2).prop_map(CallSpec::AcceptInverse),
        1 => prop::collection::vec(id(), 0..2).prop_map(CallSpec::DeclineInverse),
    ]
}

#[derive(Debug, Clone)]
enum Operator {
    Weight(usize, f64),
    Quota {
        role: usize,
        guarantees: String,
        limits: Option<String>,
    },
    RemoveQuota(usize),
    Reserve(Id, Res),
    Unreserve(Id, Res),
    Drain(Id),
    Reactivate(Id),
    Gone(Id),
    Maintenance(Id, u64, u64),
    Why(Id),
}

fn operator() -> impl Strategy<Value = Operator> {
    let quota_text = prop::collection::vec(
        (
            prop::sample::select(vec!["cpus", "mem", "disk", "gpus", "ports", "cpus(web)"]),
            0u32..20_000,
        ),
        0..3,
    )
    .prop_map(|e| {
        e.into_iter()
            .map(|(n, v)| match n {
                "ports" => format!("ports:[1-{}]", v % 100 + 1),
                "gpus" => format!("gpus:{}", v % 4),
                _ => format!("{n}:{v}"),
            })
            .collect::<Vec<_>>()
            .join(";")
    });
    let ms = prop_oneof![
        3 => 0u64..100_000,
        1 => Just(Master::MAX_MAINTENANCE_MS),
        1 => 0..=Master::MAX_MAINTENANCE_MS,
    ];
    prop_oneof![
        2 => (any::<usize>(), prop_oneof![3 => 0.1f64..10.0, 1 => any::<f64>()])
            .prop_map(|(r, w)| Operator::Weight(r, w)),
        2 => (any::<usize>(), quota_text.clone(), prop::option::of(quota_text))
            .prop_map(|(role, guarantees, limits)| Operator::Quota { role, guarantees, limits }),
        1 => any::<usize>().prop_map(Operator::RemoveQuota),
        2 => (id(), res()).prop_map(|(a, r)| Operator::Reserve(a, r)),
        1 => (id(), res()).prop_map(|(a, r)| Operator::Unreserve(a, r)),
        1 => id().prop_map(Operator::Drain),
        1 => id().prop_map(Operator::Reactivate),
        1 => id().prop_map(Operator::Gone),
        1 => (id(), ms.clone(), ms).prop_map(|(a, s, d)| Operator::Maintenance(a, s, d)),
        1 => id().prop_map(Operator::Why),
    ]
}

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Step {
    /// A new agent session registers.
    Register {
        res: usize,
        host: u8,
        attrs: bool,
    },
    /// A new agent session re-registers as a known (or made-up) agent, with running tasks.
    Reregister {
        agent: Id,
        res: usize,
        tasks: Vec<(Id, Id, usize, i32)>,
    },
    /// A second REGISTER on a live session.
    RegisterAgain {
        conn: usize,
        res: usize,
    },
    /// A status update on an agent session about a task the core launched (or made up).
    Status {
        task: Id,
        conn: Option<usize>,
        state: i32,
        uuid: u8,
        source: i32,
        made_fw: Option<Id>,
    },
    Pong {
        conn: usize,
        seq: Id,
    },
    /// An agent message without content, or with an empty part.
    Empty {
        conn: usize,
        kind: u8,
    },
    AgentGone(usize),
    Subscribe(FwSpec),
    FrameworkGone(usize),
    Call(Hdr, CallSpec),
    Operator(Operator),
    Tick(u64),
    /// With a registry: hold the next writes, or write what is held.
    HoldWrites(bool),
    /// With a registry: the master crashes and is recovered from what was written.
    Recover,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..AGENTS.len(), any::<u8>(), any::<bool>())
            .prop_map(|(res, host, attrs)| Step::Register { res, host, attrs }),
        1 => (
            id(),
            0..AGENTS.len(),
            prop::collection::vec((id(), id(), 0..AGENTS.len(), prop_oneof![3 => 1i32..4, 1 => any::<i32>()]), 0..3),
        )
            .prop_map(|(agent, res, tasks)| Step::Reregister { agent, res, tasks }),
        1 => (any::<usize>(), 0..AGENTS.len()).prop_map(|(conn, res)| Step::RegisterAgain { conn, res }),
        6 => (
            id(),
            prop_oneof![4 => Just(None), 1 => any::<usize>().prop_map(Some)],
            prop_oneof![6 => 1i32..15, 1 => any::<i32>()],
            0u8..5,
            prop_oneof![3 => Just(2i32), 1 => any::<i32>()],
            prop_oneof![6 => Just(None), 1 => id().prop_map(Some)],
        )
            .prop_map(|(task, conn, state, uuid, source, made_fw)| Step::Status {
                task, conn, state, uuid, source, made_fw,
            }),
        1 => (any::<usize>(), id()).prop_map(|(conn, seq)| Step::Pong { conn, seq }),
        1 => (any::<usize>(), 0u8..4).prop_map(|(conn, kind)| Step::Empty { conn, kind }),
        1 => any::<usize>().prop_map(Step::AgentGone),
        3 => fw_spec().prop_map(Step::Subscribe),
        1 => any::<usize>().prop_map(Step::FrameworkGone),
        12 => (hdr(), call_spec()).prop_map(|(h, c)| Step::Call(h, c)),
        3 => operator().prop_map(Step::Operator),
        6 => prop_oneof![
            6 => 1u64..3_000,
            2 => 3_000u64..200_000,
            1 => Just(3_600_000u64),
            1 => Just(30 * 86_400_000u64),
        ]
        .prop_map(Step::Tick),
        1 => any::<bool>().prop_map(Step::HoldWrites),
        1 => Just(Step::Recover),
    ]
}

/// A subscription seen: its framework, stream and connection.
#[derive(Debug, Clone)]
struct Sub {
    fw: String,
    stream: String,
    conn: ConnId,
}

/// An update a framework was sent (what an acknowledgement names).
#[derive(Debug, Clone)]
struct Update {
    fw: String,
    agent: String,
    task: String,
    uuid: Vec<u8>,
}

/// The core and what it handed out.
struct World {
    h: H,
    persistent: bool,
    master_config: MasterConfig,
    next_conn: ConnId,
    agent_conns: Vec<ConnId>,
    fw_conns: Vec<ConnId>,
    subs: Vec<Sub>,
    agent_ids: Vec<String>,
    fw_ids: Vec<String>,
    streams: Vec<String>,
    offers: Vec<v1::Offer>,
    inverse: Vec<String>,
    /// Tasks sent to agents: (framework, task, agent connection).
    launched: Vec<(String, String, ConnId)>,
    task_ids: Vec<String>,
    updates: Vec<Update>,
    pings: Vec<(ConnId, u64)>,
    next_task: u64,
}

impl World {
    fn new(persistent: bool, fast: bool) -> Self {
        let master_config = MasterConfig {
            offer_timeout_ms: fast.then_some(10_000),
            agent_ping_interval_ms: if fast { 1_000 } else { 15_000 },
            agent_max_missed_pings: if fast { 2 } else { 5 },
            max_completed_tasks: 8,
            agent_reregister_timeout_ms: 60_000,
            registry_max_agent_age_ms: 3_600_000,
            registry_max_agent_count: 3,
            ..MasterConfig::default()
        };
        let h = if persistent {
            H::persistent(master_config.clone(), Stored::default(), 1_000)
        } else {
            H::with(master_config.clone())
        };
        World {
            h,
            persistent,
            master_config,
            next_conn: 1,
            agent_conns: Vec::new(),
            fw_conns: Vec::new(),
            subs: Vec::new(),
            agent_ids: Vec::new(),
            fw_ids: Vec::new(),
            streams: Vec::new(),
            offers: Vec::new(),
            inverse: Vec::new(),
            launched: Vec::new(),
            task_ids: Vec::new(),
            updates: Vec::new(),
            pings: Vec::new(),
            next_task: 0,
        }
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.h.now)
    }

    /// Feeds an input; errors are fine (they are answers), panics are not.
    fn input(&mut self, input: Input) {
        let _ = self.h.input(input);
    }

    fn agent_info(&self, id: &str, res: usize, host: u8, attrs: bool) -> v1::AgentInfo {
        v1::AgentInfo {
            id: id.into(),
            hostname: format!("h{}", host % 4),
            port: 5051,
            resources: Resources::parse(AGENTS[res])
                .map(|r| r.to_proto())
                .unwrap_or_default(),
            attributes: if attrs {
                vec![v1::Attribute {
                    name: "rack".into(),
                    value: format!("r{}", host % 2),
                }]
            } else {
                Vec::new()
            },
            sandboxes_dir: "/w/sandboxes".into(),
            ..Default::default()
        }
    }

    /// Resources an operation or a task uses.
    fn resources(&self, r: &Res, offers: &[v1::Offer]) -> Vec<v1::Resource> {
        match r {
            Res::Text(t) => Resources::parse(t)
                .map(|r| r.to_proto())
                .unwrap_or_default(),
            Res::Wire(w) => w.clone(),
            Res::Part {
                of,
                num,
                den,
                relabel,
            } => {
                let base = if !offers.is_empty() {
                    Resources::from_proto(&offers[of % offers.len()].resources)
                } else if !self.offers.is_empty() {
                    Resources::from_proto(&self.offers[of % self.offers.len()].resources)
                } else {
                    Resources::parse(AGENTS[of % AGENTS.len()])
                };
                let base = base.unwrap_or_default();
                let part = part(&base, i64::from(*num), i64::from(*den).max(1));
                relabeled(&part, relabel).to_proto()
            }
        }
    }

    fn task_info(&mut self, t: &TaskSpec, offers: &[v1::Offer]) -> v1::TaskInfo {
        let task_id = match &t.id {
            None => {
                self.next_task += 1;
                format!("t{}", self.next_task)
            }
            Some(id) => pick(&self.task_ids, id),
        };
        let command = match t.command {
            0 => None,
            1 => Some(v1::CommandInfo {
                value: "true".into(),
                shell: true,
                ..Default::default()
            }),
            2 => Some(v1::CommandInfo {
                value: "/bin/echo".into(),
                arguments: vec!["a".into(), String::new()],
                user: "nobody".into(),
                ..Default::default()
            }),
            _ => Some(v1::CommandInfo::default()),
        };
        let check = match t.check {
            0 | 1 => None,
            kind => Some(v1::HealthCheck {
                r#type: i32::from(kind) - 1,
                port: u32::from(kind) * 1000,
                interval_ms: Some(u64::from(kind) * 7),
                ..Default::default()
            }),
        };
        v1::TaskInfo {
            name: task_id.clone(),
            task_id,
            agent_id: t
                .agent
                .as_ref()
                .map(|a| pick(&self.agent_ids, a))
                .unwrap_or_default(),
            resources: self.resources(&t.res, offers),
            command,
            kill_grace_period_ms: t.grace,
            labels: if t.labels {
                [("k".to_string(), "v".to_string())].into()
            } else {
                Default::default()
            },
            health_check: check.clone(),
            readiness_check: check,
            ..Default::default()
        }
    }

    fn framework_info(&self, f: &FwSpec) -> v1::FrameworkInfo {
        v1::FrameworkInfo {
            id: f
                .id
                .as_ref()
                .map(|id| pick(&self.fw_ids, id))
                .unwrap_or_default(),
            name: f.name.clone(),
            user: "u".into(),
            roles: f
                .roles
                .iter()
                .map(|r| ROLES[r % ROLES.len()].to_string())
                .collect(),
            failover_timeout: f.failover,
            max_outstanding_offers: f.max_offers,
            offer_filters: f
                .filters
                .iter()
                .map(|(role, name, q)| {
                    (
                        ROLES[role % ROLES.len()].to_string(),
                        proffer_proto::v1::OfferFilters::minimum([(name.as_str(), *q)]),
                    )
                })
                .collect(),
            capabilities: f.capabilities.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    fn header(&self, h: &Hdr) -> Option<v1::CallHeader> {
        match h {
            Hdr::Known(i) if !self.subs.is_empty() => {
                let s = &self.subs[i % self.subs.len()];
                Some(v1::CallHeader {
                    framework_id: s.fw.clone(),
                    stream_id: s.stream.clone(),
                })
            }
            Hdr::Known(_) => Some(v1::CallHeader::default()),
            Hdr::WrongStream(i, s) => Some(v1::CallHeader {
                framework_id: pick(&self.fw_ids, &Id::Known(*i)),
                stream_id: pick(&self.streams, s),
            }),
            Hdr::Made(f, s) => Some(v1::CallHeader {
                framework_id: pick(&self.fw_ids, f),
                stream_id: pick(&self.streams, s),
            }),
            Hdr::None => None,
        }
    }

    fn offer_ids(&self, ids: &[Id]) -> (Vec<String>, Vec<v1::Offer>) {
        let list: Vec<String> = self.offers.iter().map(|o| o.id.clone()).collect();
        let picked: Vec<String> = ids.iter().map(|i| pick(&list, i)).collect();
        let offers = self
            .offers
            .iter()
            .filter(|o| picked.contains(&o.id))
            .cloned()
            .collect();
        (picked, offers)
    }

    fn call(&mut self, h: &Hdr, c: &CallSpec) {
        let header = self.header(h);
        let call = match c {
            CallSpec::Accept {
                offers,
                ops,
                refuse,
            } => {
                let (offer_ids, offers) = self.offer_ids(offers);
                let operations = ops
                    .iter()
                    .map(|op| v1::Operation {
                        op: match op {
                            OpSpec::Launch(tasks) => Some(Op::Launch(v1::Launch {
                                tasks: tasks.iter().map(|t| self.task_info(t, &offers)).collect(),
                            })),
                            OpSpec::LaunchGroup(tasks) => Some(Op::LaunchGroup(v1::LaunchGroup {
                                tasks: tasks.iter().map(|t| self.task_info(t, &offers)).collect(),
                            })),
                            OpSpec::Reserve(r) => Some(Op::Reserve(v1::Reserve {
                                resources: self.resources(r, &offers),
                            })),
                            OpSpec::Unreserve(r) => Some(Op::Unreserve(v1::Unreserve {
                                resources: self.resources(r, &offers),
                            })),
                            OpSpec::Create(r) => Some(Op::Create(v1::CreateVolume {
                                volumes: self.resources(r, &offers),
                            })),
                            OpSpec::Destroy(r) => Some(Op::Destroy(v1::DestroyVolume {
                                volumes: self.resources(r, &offers),
                            })),
                            OpSpec::Empty => None,
                        },
                    })
                    .collect();
                Call::Accept(v1::AcceptRequest {
                    header,
                    offer_ids,
                    operations,
                    filters: refuse.map(|r| v1::Filters {
                        refuse_seconds: Some(r),
                    }),
                })
            }
            CallSpec::Decline { offers, refuse } => Call::Decline(v1::DeclineRequest {
                header,
                offer_ids: self.offer_ids(offers).0,
                filters: refuse.map(|r| v1::Filters {
                    refuse_seconds: Some(r),
                }),
            }),
            CallSpec::Revive(roles) => Call::Revive(v1::ReviveRequest {
                header,
                roles: roles
                    .iter()
                    .map(|r| ROLES[r % ROLES.len()].into())
                    .collect(),
            }),
            CallSpec::Suppress(roles) => Call::Suppress(v1::SuppressRequest {
                header,
                roles: roles
                    .iter()
                    .map(|r| ROLES[r % ROLES.len()].into())
                    .collect(),
            }),
            CallSpec::Update(f) => Call::UpdateFramework(Box::new(v1::UpdateFrameworkRequest {
                header,
                framework_info: Some(self.framework_info(f)),
            })),
            CallSpec::Kill { task, agent, grace } => Call::Kill(v1::KillRequest {
                header,
                task_id: pick(&self.task_ids, task),
                agent_id: pick(&self.agent_ids, agent),
                kill_grace_period_ms: *grace,
            }),
            CallSpec::Ack { update, tweak } => {
                let u = match update {
                    Id::Known(i) if !self.updates.is_empty() => {
                        self.updates[i % self.updates.len()].clone()
                    }
                    other => Update {
                        fw: pick(&self.fw_ids, other),
                        agent: pick(&self.agent_ids, other),
                        task: pick(&self.task_ids, other),
                        uuid: b"u".to_vec(),
                    },
                };
                // The header of the update's own framework, unless `hdr` says otherwise.
                let header = match (h, self.subs.iter().rev().find(|s| s.fw == u.fw)) {
                    (Hdr::Known(_), Some(s)) => Some(v1::CallHeader {
                        framework_id: s.fw.clone(),
                        stream_id: s.stream.clone(),
                    }),
                    _ => header,
                };
                let ack = v1::Acknowledgement {
                    agent_id: if tweak % 8 == 1 { "x".into() } else { u.agent },
                    task_id: if tweak % 8 == 2 { "x".into() } else { u.task },
                    uuid: match tweak % 8 {
                        3 => Vec::new(),
                        4 => b"other".to_vec(),
                        _ => u.uuid,
                    },
                };
                // 5: the same acknowledgement alone in a batch; 6: twice in one batch.
                match tweak % 8 {
                    5 | 6 => Call::AcknowledgeBatch(v1::AcknowledgeBatchRequest {
                        header,
                        acknowledgements: vec![ack; usize::from(tweak % 8 - 4)],
                    }),
                    _ => Call::Acknowledge(v1::AcknowledgeRequest {
                        header,
                        agent_id: ack.agent_id,
                        task_id: ack.task_id,
                        uuid: ack.uuid,
                    }),
                }
            }
            CallSpec::Reconcile(tasks) => Call::Reconcile(v1::ReconcileRequest {
                header,
                tasks: tasks
                    .iter()
                    .map(|(t, a)| v1::ReconcileTask {
                        task_id: pick(&self.task_ids, t),
                        agent_id: pick(&self.agent_ids, a),
                    })
                    .collect(),
            }),
            CallSpec::Message { agent, task } => Call::Message(v1::MessageRequest {
                header,
                agent_id: pick(&self.agent_ids, agent),
                task_id: pick(&self.task_ids, task),
                data: b"hi".to_vec(),
            }),
            CallSpec::Teardown => Call::Teardown(v1::TeardownRequest { header }),
            CallSpec::AcceptInverse(ids) => Call::AcceptInverseOffers(v1::InverseOffersRequest {
                header,
                inverse_offer_ids: ids.iter().map(|i| pick(&self.inverse, i)).collect(),
            }),
            CallSpec::DeclineInverse(ids) => Call::DeclineInverseOffers(v1::InverseOffersRequest {
                header,
                inverse_offer_ids: ids.iter().map(|i| pick(&self.inverse, i)).collect(),
            }),
        };
        self.input(Input::Call(call));
    }

    fn operator(&mut self, op: &Operator) {
        let now = self.now();
        let m = &mut self.h.m;
        let role = |r: &usize| ROLES[r % ROLES.len()];
        let _ = match op {
            Operator::Weight(r, w) => m.set_weight(role(r), *w),
            Operator::Quota {
                role: r,
                guarantees,
                limits,
            } => match (
                Resources::parse(guarantees),
                limits.as_deref().map(Resources::parse).transpose(),
            ) {
                (Ok(g), Ok(l)) => m.set_quota(role(r), g, l),
                _ => Ok(()),
            },
            Operator::RemoveQuota(r) => m.remove_quota(role(r)),
            Operator::Reserve(a, r) | Operator::Unreserve(a, r) => {
                let agent = pick(&self.agent_ids, a);
                let wire = {
                    let total: Vec<v1::Offer> = self
                        .h
                        .m
                        .agents
                        .get(&agent)
                        .map(|s| {
                            vec![v1::Offer {
                                resources: s.total.to_proto(),
                                ..Default::default()
                            }]
                        })
                        .unwrap_or_default();
                    self.resources(r, &total)
                };
                // As the server does: the wire form is validated first.
                match Resources::from_proto(&wire) {
                    Ok(r) if matches!(op, Operator::Reserve(..)) => {
                        self.h.m.reserve_resources(&agent, &r)
                    }
                    Ok(r) => self.h.m.unreserve_resources(&agent, &r),
                    Err(_) => Ok(()),
                }
            }
            Operator::Drain(a) => m.drain_agent(&pick(&self.agent_ids, a), "fuzz"),
            Operator::Reactivate(a) => m.reactivate_agent(&pick(&self.agent_ids, a)),
            Operator::Gone(a) => m.mark_agent_gone(now, &pick(&self.agent_ids, a)),
            Operator::Maintenance(a, s, d) => {
                m.schedule_maintenance(now, &pick(&self.agent_ids, a), *s, *d)
            }
            Operator::Why(x) => {
                let subject = pick(&self.fw_ids, x);
                let _ = m.why(&subject, now);
                let _ = m.why(role(&0), now);
                Ok(())
            }
        };
        self.h.pump();
    }

    fn run(&mut self, s: &Step) {
        match s {
            Step::Register { res, host, attrs } => {
                let conn = self.conn();
                self.agent_conns.push(conn);
                let info = self.agent_info("", *res, *host, *attrs);
                self.input(Input::Agent {
                    conn,
                    msg: v1::AgentMessage {
                        msg: Some(AIn::Register(v1::RegisterAgent {
                            info: Some(Box::new(info)),
                        })),
                    },
                });
            }
            Step::Reregister { agent, res, tasks } => {
                let conn = self.conn();
                self.agent_conns.push(conn);
                let id = pick(&self.agent_ids, agent);
                let info = self.agent_info(&id, *res, 0, false);
                let tasks = tasks
                    .iter()
                    .map(|(fw, t, r, state)| v1::RunningTask {
                        framework_id: pick(&self.fw_ids, fw),
                        task: Some(v1::TaskInfo {
                            task_id: pick(&self.task_ids, t),
                            name: "t".into(),
                            resources: Resources::parse(AGENTS[*r])
                                .map(|r| part(&r, 1, 4).to_proto())
                                .unwrap_or_default(),
                            ..Default::default()
                        }),
                        state: *state,
                    })
                    .collect();
                self.input(Input::Agent {
                    conn,
                    msg: v1::AgentMessage {
                        msg: Some(AIn::Reregister(v1::ReregisterAgent {
                            info: Some(Box::new(info)),
                            tasks,
                        })),
                    },
                });
            }
            Step::RegisterAgain { conn, res } => {
                if let Some(&conn) = nth(&self.agent_conns, *conn) {
                    let info = self.agent_info("", *res, 1, false);
                    self.input(Input::Agent {
                        conn,
                        msg: v1::AgentMessage {
                            msg: Some(AIn::Register(v1::RegisterAgent {
                                info: Some(Box::new(info)),
                            })),
                        },
                    });
                }
            }
            Step::Status {
                task,
                conn,
                state,
                uuid,
                source,
                made_fw,
            } => {
                let (fw, task_id, task_conn) = match task {
                    Id::Known(i) if !self.launched.is_empty() => {
                        self.launched[i % self.launched.len()].clone()
                    }
                    other => (
                        pick(&self.fw_ids, other),
                        pick(&self.task_ids, other),
                        self.agent_conns.first().copied().unwrap_or(0),
                    ),
                };
                let conn = match conn {
                    Some(i) => nth(&self.agent_conns, *i).copied().unwrap_or(task_conn),
                    None => task_conn,
                };
                if !self.agent_conns.contains(&conn) {
                    return;
                }
                let fw = made_fw.as_ref().map_or(fw, |f| pick(&self.fw_ids, f));
                let uuid = match uuid {
                    0 => Vec::new(),
                    1 => b"same".to_vec(),
                    n => format!("u{}-{n}", self.h.now).into_bytes(),
                };
                self.input(Input::Agent {
                    conn,
                    msg: v1::AgentMessage {
                        msg: Some(AIn::StatusUpdate(v1::StatusUpdate {
                            framework_id: fw,
                            latest_state: None,
                            status: Some(v1::TaskStatus {
                                task_id,
                                state: *state,
                                message: "fuzz".into(),
                                source: *source,
                                uuid,
                                healthy: (*state % 2 == 0).then_some(true),
                                ready: (*state % 3 == 0).then_some(true),
                                ..Default::default()
                            }),
                        })),
                    },
                });
            }
            Step::Pong { conn, seq } => {
                if let Some(&conn) = nth(&self.agent_conns, *conn) {
                    let seqs: Vec<String> = self
                        .pings
                        .iter()
                        .filter(|(c, _)| *c == conn)
                        .map(|(_, s)| s.to_string())
                        .collect();
                    let seq = pick(&seqs, seq).parse().unwrap_or(u64::MAX);
                    self.input(Input::Agent {
                        conn,
                        msg: v1::AgentMessage {
                            msg: Some(AIn::Pong(v1::Pong { seq })),
                        },
                    });
                }
            }
            Step::Empty { conn, kind } => {
                if let Some(&conn) = nth(&self.agent_conns, *conn) {
                    let msg = match kind {
                        0 => None,
                        1 => Some(AIn::Register(v1::RegisterAgent { info: None })),
                        2 => Some(AIn::Reregister(v1::ReregisterAgent::default())),
                        _ => Some(AIn::StatusUpdate(v1::StatusUpdate::default())),
                    };
                    self.input(Input::Agent {
                        conn,
                        msg: v1::AgentMessage { msg },
                    });
                }
            }
            Step::AgentGone(i) => {
                if !self.agent_conns.is_empty() {
                    let conn = self.agent_conns.remove(i % self.agent_conns.len());
                    self.input(Input::AgentDisconnected { conn });
                }
            }
            Step::Subscribe(f) => {
                let conn = self.conn();
                self.fw_conns.push(conn);
                let info = self.framework_info(f);
                self.input(Input::Subscribe {
                    conn,
                    info: Box::new(info),
                });
            }
            Step::FrameworkGone(i) => {
                if !self.fw_conns.is_empty() {
                    let conn = self.fw_conns.remove(i % self.fw_conns.len());
                    self.input(Input::FrameworkDisconnected { conn });
                }
            }
            Step::Call(h, c) => self.call(h, c),
            Step::Operator(op) => self.operator(op),
            Step::Tick(ms) => self.h.advance(*ms),
            Step::HoldWrites(hold) => {
                if self.persistent {
                    self.h.hold_writes = *hold;
                    if !hold {
                        self.h.write_held();
                    }
                }
            }
            Step::Recover => {
                if self.persistent {
                    self.recover();
                }
            }
        }
    }

    /// The master crashes (held batches are lost) and is recovered from the registry; every
    /// connection is gone with it.
    fn recover(&mut self) {
        self.h.unwritten.clear();
        let store = self.h.store.clone().unwrap_or_default();
        let now = self.h.now + 1;
        let m = Master::recover(self.master_config.clone(), 42, &store, Timestamp(now));
        let m = match m {
            Ok(m) => m,
            Err(e) => panic!("recovery from what the master wrote failed: {e}"),
        };
        self.h.m = m;
        self.h.now = now;
        self.h.hold_writes = false;
        self.h.out.clear();
        self.h.pump();
        self.agent_conns.clear();
        self.fw_conns.clear();
        self.subs.clear();
        self.offers.clear();
        self.inverse.clear();
        self.launched.clear();
        self.pings.clear();
    }

    /// Collects what the core handed out; feeds the disconnect of every connection it closed
    /// (as the server does).
    fn collect(&mut self) {
        for _ in 0..4 {
            let mut closed = Vec::new();
            for o in std::mem::take(&mut self.h.out) {
                match o {
                    Output::ToFramework { conn, event } => match event.event {
                        Some(Event::Subscribed(s)) => {
                            push_new(&mut self.fw_ids, &s.framework_id);
                            push_new(&mut self.streams, &s.stream_id);
                            self.subs.retain(|x| x.fw != s.framework_id);
                            self.subs.push(Sub {
                                fw: s.framework_id,
                                stream: s.stream_id,
                                conn,
                            });
                        }
                        Some(Event::Offers(o)) => self.offers.extend(o.offers),
                        Some(Event::Rescind(r)) => self.offers.retain(|o| o.id != r.offer_id),
                        Some(Event::Update(u)) => {
                            let fw = self
                                .subs
                                .iter()
                                .find(|s| s.conn == conn)
                                .map(|s| s.fw.clone())
                                .unwrap_or_default();
                            if let Some(st) = u.status
                                && !st.uuid.is_empty()
                            {
                                self.updates.push(Update {
                                    fw,
                                    agent: st.agent_id,
                                    task: st.task_id,
                                    uuid: st.uuid,
                                });
                            }
                        }
                        Some(Event::InverseOffers(io)) => self
                            .inverse
                            .extend(io.inverse_offers.into_iter().map(|i| i.id)),
                        _ => {}
                    },
                    Output::ToAgent { conn, msg } => match msg.msg {
                        Some(AOut::Registered(r)) => push_new(&mut self.agent_ids, &r.agent_id),
                        Some(AOut::RunTask(rt)) => {
                            if let Some(t) = rt.task {
                                push_new(&mut self.task_ids, &t.task_id);
                                self.launched.push((rt.framework_id, t.task_id, conn));
                            }
                        }
                        Some(AOut::RunTaskGroup(g)) => {
                            for t in g.tasks {
                                push_new(&mut self.task_ids, &t.task_id);
                                self.launched
                                    .push((g.framework_id.clone(), t.task_id, conn));
                            }
                        }
                        Some(AOut::Ping(p)) => self.pings.push((conn, p.seq)),
                        _ => {}
                    },
                    Output::CloseFramework { conn } => {
                        if let Some(at) = self.fw_conns.iter().position(|c| *c == conn) {
                            self.fw_conns.remove(at);
                            closed.push(Input::FrameworkDisconnected { conn });
                        }
                    }
                    Output::CloseAgent { conn } => {
                        if let Some(at) = self.agent_conns.iter().position(|c| *c == conn) {
                            self.agent_conns.remove(at);
                            closed.push(Input::AgentDisconnected { conn });
                        }
                    }
                    Output::Persist { .. } => {}
                }
            }
            if closed.is_empty() {
                break;
            }
            for input in closed {
                self.input(input);
            }
        }
        // Bounded memory over long sequences: keep the latest of each.
        for list in [&mut self.task_ids, &mut self.agent_ids, &mut self.fw_ids] {
            trim(list, 64);
        }
        trim(&mut self.streams, 64);
        trim(&mut self.offers, 64);
        trim(&mut self.inverse, 64);
        trim(&mut self.launched, 64);
        trim(&mut self.updates, 64);
        trim(&mut self.pings, 64);
    }

    /// The invariants that hold after every step.
    fn check(&self, step: usize) -> Result<(), TestCaseError> {
        let m = &self.h.m;
        if let Err(e) = m.check_accounting() {
            return Err(TestCaseError::fail(format!("after step {step}: {e}")));
        }
        for (agent_id, agent) in &m.agents {
            let mut tasks = Resources::new();
            for f in m.frameworks.values() {
                for t in f.tasks.values() {
                    if &t.agent_id == agent_id && !t.state.is_terminal() && !t.resources_recovered {
                        tasks.add(&t.resources);
                    }
                }
            }
            prop_assert!(
                agent.total.contains(&tasks),
                "after step {}: tasks {} exceed total {} on {}",
                step,
                tasks,
                agent.total,
                agent_id
            );
        }
        let now = self.now();
        let _ = m.snapshot(now);
        let _ = m.roles();
        let _ = m.role_summaries();
        let _ = m.maintenance_schedule(now);
        let _ = m.stats();
        if let Some(store) = &self.h.store
            && self.h.unwritten.is_empty()
            && let Err(e) = m.check_registry(store)
        {
            return Err(TestCaseError::fail(format!("after step {step}: {e}")));
        }
        Ok(())
    }
}

fn nth<T>(list: &[T], i: usize) -> Option<&T> {
    (!list.is_empty()).then(|| &list[i % list.len()])
}

fn push_new(list: &mut Vec<String>, id: &str) {
    if !id.is_empty() && !list.iter().any(|x| x == id) {
        list.push(id.to_string());
    }
}

fn trim<T>(list: &mut Vec<T>, max: usize) {
    if list.len() > max {
        list.drain(..list.len() - max);
    }
}

/// `num/den` of every scalar of `r` (at most all of it), and the first port of its ranges.
fn part(r: &Resources, num: i64, den: i64) -> Resources {
    let mut out = Resources::new();
    for (k, v) in r.iter() {
        let piece = match v {
            Value::Scalar(m) => {
                let p = m.saturating_mul(num.min(den)) / den;
                (p > 0).then_some(Value::Scalar(p))
            }
            Value::Ranges(rs) => rs.ranges().first().map(|&(b, _)| {
                Value::Ranges(proffer_proto::resources::RangeSet::from_ranges([(b, b)]))
            }),
            Value::Set(s) => s.iter().next().map(|x| Value::Set([x.clone()].into())),
        };
        if let Some(p) = piece {
            out.add(&Resources::from_entry(k.clone(), p));
        }
    }
    out
}

fn relabeled(r: &Resources, how: &Relabel) -> Resources {
    match how {
        Relabel::Keep => r.clone(),
        Relabel::Unreserved => r.unreserved(),
        Relabel::Dynamic { role, principal } => {
            let role = ROLES[role % ROLES.len()];
            r.map_labels(|k| ResourceKey {
                role: role.into(),
                reservation: proffer_proto::resources::Reservation::dynamic(if *principal {
                    "ops"
                } else {
                    ""
                }),
                volume: None,
                ..k.clone()
            })
        }
        Relabel::Volume { id, path } => r.map_labels(|k| {
            let mut k = k.clone();
            if k.name == "disk" {
                k.volume = Some(proffer_proto::resources::Volume {
                    id: ["v1", "v2", "", "a b"][usize::from(*id)].into(),
                    container_path: ["data", "x/y", "/abs", "../up"][usize::from(*path)].into(),
                });
            }
            k
        }),
        Relabel::Static { role } => {
            let role = ROLES[role % ROLES.len()];
            r.map_labels(|k| ResourceKey::new(&k.name, role, k.kind))
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_input_sequence_keeps_the_books_balanced(
        persistent in any::<bool>(),
        fast in any::<bool>(),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut w = World::new(persistent, fast);
        // A few agents and frameworks to start from, then anything.
        for res in 0..3 {
            w.run(&Step::Register { res, host: res as u8, attrs: res == 1 });
        }
        w.collect();
        for (i, s) in steps.iter().enumerate() {
            w.run(s);
            w.collect();
            w.check(i)?;
        }
    }
}
