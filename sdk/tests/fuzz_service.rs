//! Fuzz targets of the service layer: the YAML service spec, and the service scheduler core
//! driven by what its HTTP API and the master feed it.
//!
//! Specs are built as trees shaped like real specs (options and `{{templates}}`, pods with
//! counts, placement rules, volumes, tasks with ports, env, uris, checks; custom plans with
//! phases and dependencies), with wrong types, unknown fields and odd values at random places,
//! serialized to YAML and then mutated at the byte level; valid example specs are mutated too.
//!
//! Properties: parsing never panics; an error names where (a field path or a line of the
//! text); an accepted spec serializes to YAML that parses back equal, compiles into plans, is
//! a valid update of itself, and its every pod instance can be evaluated against offers.
//! The scheduler core, opened on an accepted spec, takes any sequence of offers, launch
//! results, status updates (any state, any task), plan and pod actions with any names (what
//! `POST /v1/plans/NAME/ACTION?phase=P&step=S` and `POST /v1/pod/NAME/ACTION` pass it), spec
//! updates (`POST /v1/update` bodies), uninstall, lost agents and ticks without panicking, and
//! every view the API serves (`/v1/plans`, `/v1/why`, `/v1/pod`, offers) serializes. Over
//! HTTP, the API itself (one scheduler on the kitchen-sink spec) answers any method, path,
//! query and body without a server error and keeps answering.
//!
//! `PROFFER_FUZZ_CASES=N` runs N cases per target, `PROFFER_FUZZ_SEED=S` another seed.

use std::collections::BTreeMap;

use proffer_proto::{Resources, fuzzing, v1};
use proffer_sdk::service::core::{Action, CoreConfig, ServiceCore};
use proffer_sdk::service::evaluate::{EvalConfig, OfferView, StepRequest, evaluate};
use proffer_sdk::service::placement::AgentView;
use proffer_sdk::service::store::StateStore;
use proffer_sdk::service::validate::validate_update;
use proffer_sdk::service::{ServiceSpec, SpecError, compile};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Value, json};

fn config(default_cases: u32) -> Config {
    Config {
        cases: fuzzing::cases(default_cases),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0x5E2_F022)),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

const EXAMPLES: &[&str] = &[
    include_str!("../examples-specs/kitchen-sink.yaml"),
    include_str!("../examples-specs/hello-world.yaml"),
    include_str!("../examples-specs/etcd.yaml"),
    include_str!("../examples-specs/batch.yaml"),
];

/// Names: mostly valid, sometimes not.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        120 => prop::sample::select(vec!["web", "db", "server", "init", "app", "data", "a-b", "x0"])
            .prop_map(String::from),
        1 => "[a-z0-9-]{1,8}",
        1 => prop::sample::select(vec!["", "-x", "x-", "a--b", "Web", "a_b", "é", "deploy", "recovery"])
            .prop_map(String::from),
    ]
}

/// Any YAML-able value (for a field at a random place).
fn junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"x": 1})),
    ]
}

/// A number for cpus, memory, disk, intervals: sensible, at the edges, or junk.
fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        120 => prop::sample::select(vec![0.1, 0.5, 1.0, 32.0, 64.0, 256.0]).prop_map(|f| json!(f)),
        1 => prop::sample::select(vec![0.0, -1.0, 0.0001, 1e12, 1e13, 1e300]).prop_map(|f| json!(f)),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => junk(),
    ]
}

/// A map of `n` named things built by `value`.
fn named<S: Strategy<Value = Value>>(
    value: S,
    n: std::ops::Range<usize>,
) -> impl Strategy<Value = Value> {
    prop::collection::vec((name(), value), n).prop_map(|kv| {
        let mut m = serde_json::Map::new();
        for (k, v) in kv {
            m.insert(k, v);
        }
        Value::Object(m)
    })
}

/// Sets `key` of object `v` (when it is one).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Value::Object(m) = v {
        m.insert(key.to_string(), value);
    }
}

/// Random damage to a tree: drop a key, retype a value, add an unknown field.
fn damage(v: &mut Value, how: &[(u8, usize, Value)]) {
    for (kind, at, with) in how {
        let Value::Object(m) = v else { return };
        if m.is_empty() {
            return;
        }
        let key = m.keys().nth(at % m.len()).cloned().unwrap_or_default();
        match kind % 4 {
            0 => {
                m.remove(&key);
            }
            1 => {
                m.insert(key, with.clone());
            }
            2 => {
                m.insert(format!("{key}-x"), with.clone());
            }
            _ => {
                // Go one level down and damage there.
                if let Some(inner) = m.get_mut(&key) {
                    damage(inner, &[(0, *at / 7, with.clone())]);
                }
            }
        }
    }
}

fn damages() -> impl Strategy<Value = Vec<(u8, usize, Value)>> {
    prop_oneof![
        30 => Just(Vec::new()),
        1 => prop::collection::vec((any::<u8>(), any::<usize>(), junk()), 1..3),
    ]
}

fn check() -> BoxedStrategy<Value> {
    (
        prop_oneof![
            60 => "[a-z]{1,4}[a-z ]{0,6}".prop_map(|c| json!({"cmd": c})),
            1 => (name(), prop::sample::select(vec!["/", "/health", "x"]))
                .prop_map(|(p, path)| json!({"http": {"port": p, "path": path}})),
            1 => Just(json!({})),
            1 => Just(json!({"cmd": "x", "http": {"port": "web"}})),
        ],
        prop::option::of(amount()),
        prop::option::of(amount()),
        prop::option::of(prop_oneof![30 => 1u32..5, 1 => 0u32..1, 1 => any::<u32>()]),
        damages(),
    )
        .prop_map(|(mut c, interval, grace, failures, dmg)| {
            if let Some(i) = interval {
                set(&mut c, "interval", i);
            }
            if let Some(g) = grace {
                set(&mut c, "grace-period", g);
            }
            if let Some(f) = failures {
                set(&mut c, "max-consecutive-failures", json!(f));
            }
            damage(&mut c, &dmg);
            c
        })
        .boxed()
}

fn task() -> BoxedStrategy<Value> {
    let ports = named(
        prop_oneof![
            60 => Just(json!({})),
            30 => prop_oneof![30 => 0u64..40_000, 1 => any::<u64>()].prop_map(|p| json!({"port": p})),
            10 => (0u64..1, "[A-Z]{1,6}").prop_map(|(p, e)| json!({"port": p, "env": e})),
            1 => junk(),
        ],
        0..3,
    );
    (
        (
            prop_oneof![
                20 => prop::sample::select(vec!["RUNNING", "FINISH", "ONCE"]),
                1 => prop::sample::select(vec!["running", ""]),
            ],
            prop_oneof![
                30 => "[a-z][a-z $]{0,11}",
                4 => Just("echo {{POD_INDEX}} {{TASK_NAME}}".to_string()),
                4 => Just("echo {{OPT}}".to_string()),
                1 => Just("echo {{NOPE}}".to_string()),
                1 => Just("echo {{".to_string()),
                1 => Just(String::new()),
            ],
            amount(),
            amount(),
            prop::option::of(amount()),
        ),
        (
            ports,
            prop::option::of(prop::collection::btree_map(
                prop_oneof![
                    20 => prop::sample::select(vec!["A", "B_1"]),
                    1 => prop::sample::select(vec!["1X", "a-b", ""]),
                ],
                prop_oneof![
                    20 => prop::sample::select(vec!["v", "{{POD_NAME}}", "{{OPT}}"]),
                    1 => prop::sample::select(vec!["{{X}}", "", "{{"]),
                ],
                0..3,
            )),
            prop::option::of(prop::collection::vec(
                prop_oneof![
                    20 => prop::sample::select(vec!["file:///x", "http://h/{{POD_INDEX}}"]),
                    1 => Just("{{"),
                ],
                0..2,
            )),
            prop::option::weighted(0.3, check()),
            prop::option::weighted(0.3, check()),
            prop::option::of(amount()),
            damages(),
        ),
    )
        .prop_map(
            |((goal, cmd, cpus, memory, disk), (ports, env, uris, health, ready, grace, dmg))| {
                let mut t = json!({"goal": goal, "cmd": cmd, "cpus": cpus, "memory": memory});
                if let Some(d) = disk {
                    set(&mut t, "disk", d);
                }
                if ports.as_object().is_some_and(|m| !m.is_empty()) {
                    set(&mut t, "ports", ports);
                }
                if let Some(e) = env {
                    set(&mut t, "env", json!(e));
                }
                if let Some(u) = uris {
                    set(&mut t, "uris", json!(u));
                }
                if let Some(h) = health {
                    set(&mut t, "health-check", h);
                }
                if let Some(r) = ready {
                    set(&mut t, "readiness-check", r);
                }
                if let Some(g) = grace {
                    set(&mut t, "kill-grace-period", g);
                }
                damage(&mut t, &dmg);
                t
            },
        )
        .boxed()
}

fn placement_rule() -> BoxedStrategy<Value> {
    prop_oneof![
        30 => Just(json!("one-per-agent")),
        10 => ("[a-z]{1,5}", prop_oneof![30 => 1u32..4, 1 => any::<u32>(), 1 => Just(0)])
            .prop_map(|(a, m)| json!({"max-per": {"attribute": a, "max": m}})),
        10 => ("[a-z]{1,5}", "[a-z]{0,3}")
            .prop_map(|(a, v)| json!({"attribute-equals": {"attribute": a, "value": v}})),
        10 => ("[a-z]{1,5}", "[a-z*?]{0,4}")
            .prop_map(|(a, p)| json!({"attribute-like": {"attribute": a, "pattern": p}})),
        5 => prop::sample::select(vec!["web", "db", "app"]).prop_map(|p| json!({"avoid": p})),
        5 => prop::sample::select(vec!["web", "db", "app"]).prop_map(|p| json!({"colocate": p})),
        1 => name().prop_map(|p| json!({"avoid": p})),
        1 => junk(),
        1 => Just(json!({"avoid": "db", "colocate": "db"})),
    ]
    .boxed()
}

fn pod() -> BoxedStrategy<Value> {
    (
        prop_oneof![
            120 => (0u32..4).prop_map(|c| json!(c)),
            20 => Just(json!("{{N}}")),
            1 => any::<u32>().prop_map(|c| json!(c)),
            1 => junk(),
        ],
        prop::option::of(prop::collection::vec(placement_rule(), 0..3)),
        prop::option::of(named(
            (
                prop_oneof![
                    20 => prop::sample::select(vec!["data", "a/b"]),
                    1 => prop::sample::select(vec!["/abs", "../up", "", "a//b"]),
                ],
                prop_oneof![20 => 1u64..1_000, 1 => any::<u64>(), 1 => Just(0)],
            )
                .prop_map(|(p, s)| json!({"path": p, "size": s})),
            0..2,
        )),
        named(task(), 1..3),
        damages(),
    )
        .prop_map(|(count, placement, volumes, tasks, dmg)| {
            let mut p = json!({"count": count, "tasks": tasks});
            if let Some(r) = placement {
                set(&mut p, "placement", json!(r));
            }
            if let Some(v) = volumes {
                set(&mut p, "volumes", v);
            }
            damage(&mut p, &dmg);
            p
        })
        .boxed()
}

fn plan() -> BoxedStrategy<Value> {
    let phase = (
        prop::sample::select(vec!["serial", "serial", "parallel", "dependency", "x"]),
        name(),
        prop::option::of(prop::collection::vec(name(), 0..3)),
        prop::option::of(prop::collection::vec(name(), 0..2)),
    )
        .prop_map(|(strategy, pod, tasks, depends)| {
            let mut p = json!({"strategy": strategy, "pod": pod});
            if let Some(t) = tasks {
                set(&mut p, "tasks", json!(t));
            }
            if let Some(d) = depends {
                set(&mut p, "depends", json!(d));
            }
            p
        });
    (
        prop::sample::select(vec!["serial", "parallel", "dependency"]),
        named(phase, 0..3),
    )
        .prop_map(|(strategy, phases)| json!({"strategy": strategy, "phases": phases}))
        .boxed()
}

/// A spec-shaped tree, as YAML, with `{{N}}` unquoted at times, then mutated.
fn spec_text() -> impl Strategy<Value = String> {
    (
        (
            name(),
            prop::option::of(prop_oneof![
                12 => prop::sample::select(vec!["*", "svc", "a/b"]),
                1 => prop::sample::select(vec!["", "-x"]),
            ]),
            prop::option::of(amount()),
            prop_oneof![
                1 => Just(None),
                12 => prop::collection::btree_map(
                    prop::sample::select(vec!["N", "OPT", "OPT", "N", "X", "1", ""]),
                    prop_oneof![
                        8 => (0u32..4).prop_map(|n| json!(n)),
                        8 => "[a-z ]{0,5}".prop_map(Value::String),
                        1 => Just(json!("{{N}}")),
                        1 => junk(),
                    ],
                    0..4,
                )
                .prop_map(|extra| {
                    let mut o: BTreeMap<&str, Value> =
                        [("N", json!(2)), ("OPT", json!("a"))].into();
                    o.extend(extra);
                    Some(o)
                }),
            ],
        ),
        named(pod(), 1..4),
        prop::option::of(named(plan(), 0..2)),
        damages(),
        any::<bool>(),
        prop_oneof![
            8 => Just(Vec::new()),
            1 => prop::collection::vec(any::<(u8, usize, usize, u32)>(), 1..3),
        ],
    )
        .prop_map(
            |((name, role, failover, options), pods, plans, dmg, unquote, ops)| {
                let mut s = json!({"name": name, "pods": pods});
                if let Some(r) = role {
                    set(&mut s, "role", json!(r));
                }
                if let Some(f) = failover {
                    set(&mut s, "failover-timeout", f);
                }
                if let Some(o) = options {
                    set(&mut s, "options", json!(o));
                }
                if let Some(p) = plans {
                    set(&mut s, "plans", p);
                }
                damage(&mut s, &dmg);
                let mut text = serde_norway::to_string(&s).unwrap_or_default();
                if unquote {
                    text = text.replace("'{{N}}'", "{{N}}");
                }
                fuzzing::mutate(&text, &ops)
            },
        )
}

fn mutated_example() -> impl Strategy<Value = String> {
    (
        prop::sample::select(EXAMPLES),
        prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..6),
    )
        .prop_map(|(s, ops)| fuzzing::mutate(s, &ops))
}

fn overrides() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["N", "OPT", "DB_COUNT", "APP_COUNT", "NODE_COUNT"])
            .prop_map(String::from),
        prop::sample::select(vec!["1", "2", "0", "x", "{{N}}", "4294967296", ""])
            .prop_map(String::from),
        0..2,
    )
}

/// Parse errors say where: a field path (possibly empty for the document) with a reason, or
/// a line of the text.
fn check_error(yaml: &str, e: &SpecError) -> Result<(), TestCaseError> {
    match e {
        SpecError::Field { reason, .. } => {
            prop_assert!(!reason.trim().is_empty(), "{yaml:?}: empty reason in {e:?}");
        }
        SpecError::Template { line, reason } => {
            prop_assert!(!reason.trim().is_empty(), "{yaml:?}: empty reason");
            let lines = yaml.split_inclusive('\n').count().max(1);
            prop_assert!(
                *line >= 1 && *line <= lines,
                "{yaml:?}: line {line} of {lines}"
            );
        }
    }
    Ok(())
}

/// An accepted spec: round trip, plans, self-update, evaluation of every instance.
fn check_spec(yaml: &str, spec: &ServiceSpec) -> Result<(), TestCaseError> {
    let again = serde_norway::to_string(spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
    // Known: an option value holding a placeholder (`N: "{{M}}"`, or such an override) is read
    // as `x` when the spec is parsed again (option defaults are read from the text with every
    // placeholder neutralized), so such specs do not round-trip.
    let templated_options = spec.options.values().any(|v| v.contains("{{"));
    if !templated_options {
        match ServiceSpec::parse(&again, &BTreeMap::new()) {
            Ok(back) => prop_assert_eq!(&back, spec, "{:?} printed as {:?}", yaml, again),
            Err(e) => prop_assert!(false, "{yaml:?} printed as {again:?}, which fails: {e}"),
        }
    }
    prop_assert!(
        validate_update(spec, spec).is_ok(),
        "{yaml:?}: not an update of itself"
    );
    let plans = compile::compile(spec, "deploy");
    let _ = compile::render_plans(&plans);
    let _ = compile::compile(spec, "update");
    let offers = [
        "cpus:8;mem:16384;disk:100000;ports:[1-65535]",
        "cpus(svc):2;mem(svc,dynamic=p):512;disk(svc,dynamic=p)[svc.web-0.data:data]:100;ports:[31000-31001]",
        "cpus:0.1;mem:32",
    ];
    let attrs = vec![("rack".to_string(), "r1".to_string())];
    for (reservations, offer) in [false, true]
        .into_iter()
        .zip(offers)
        .chain([(true, offers[0])])
    {
        let remaining = Resources::parse(offer).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cfg = EvalConfig {
            role: spec.role.clone(),
            reservations,
        };
        for (pod_name, pod) in &spec.pods {
            for index in 0..pod.count.min(3) {
                let req = StepRequest {
                    step: format!("{pod_name}-{index}"),
                    pod_name,
                    index,
                    pod,
                    tasks: pod.tasks.iter().map(|(t, _)| t.clone()).collect(),
                    pinned: None,
                    tag: format!("{}.{pod_name}-{index}", spec.name),
                };
                let view = OfferView {
                    agent: AgentView {
                        agent_id: "a1",
                        hostname: "h1",
                        attributes: &attrs,
                    },
                    remaining: &remaining,
                };
                let _ = evaluate(&cfg, &view, &req, &[]);
            }
        }
    }
    Ok(())
}

fn check_text(yaml: &str, overrides: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    match ServiceSpec::parse(yaml, overrides) {
        Ok(spec) => check_spec(yaml, &spec),
        Err(e) => check_error(yaml, &e),
    }
}

proptest! {
    #![proptest_config(config(1_500))]

    #[test]
    fn spec_trees_never_panic_and_round_trip(yaml in spec_text(), over in overrides()) {
        check_text(&yaml, &over)?;
    }

    #[test]
    fn mutated_example_specs_never_panic_and_round_trip(yaml in mutated_example(), over in overrides()) {
        check_text(&yaml, &over)?;
    }

    #[test]
    fn two_specs_never_panic_as_an_update(a in mutated_example(), b in mutated_example()) {
        if let (Ok(a), Ok(b)) = (
            ServiceSpec::parse(&a, &BTreeMap::new()),
            ServiceSpec::parse(&b, &BTreeMap::new()),
        ) {
            let _ = validate_update(&a, &b);
        }
    }
}

// ───────────────────────── the scheduler core ─────────────────────────

/// What happens to the scheduler core next.
#[derive(Debug, Clone)]
enum Step {
    /// Offers from agents `a0..a3` with one of the resource shapes.
    Offers(Vec<(u8, u8)>),
    /// The master's answer to an ACCEPT the core asked for.
    AcceptResult(usize, bool),
    /// A status update for a launched (or made-up) task.
    Status {
        task: usize,
        made_up: bool,
        state: i32,
        ready: Option<bool>,
        healthy: Option<bool>,
    },
    /// `POST /v1/plans/NAME/ACTION?phase=P&step=S`.
    PlanAction {
        plan: usize,
        action: &'static str,
        phase: Option<usize>,
        step: Option<usize>,
    },
    /// `POST /v1/pod/NAME/ACTION`.
    PodAction(usize, bool),
    /// `POST /v1/update` with a spec (an example, maybe mutated).
    Update(String),
    Uninstall,
    AgentLost(u8),
    Subscribed,
    Tick(u64),
}

const OFFERS: &[&str] = &[
    "cpus:4;mem:8192;disk:10000;ports:[31000-31100]",
    "cpus:0.5;mem:128;ports:[31000-31001]",
    "cpus(hello):2;mem(hello):1024;disk(hello):1000;ports:[2379-2380,31000-31010]",
    "cpus:16;mem:65536;disk:1000000;ports:[1-65535]",
];

fn core_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::collection::vec((0u8..4, 0u8..4), 1..3).prop_map(Step::Offers),
        4 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(i, ok)| Step::AcceptResult(i, ok)),
        6 => (
            any::<usize>(),
            prop::bool::weighted(0.1),
            prop_oneof![6 => 1i32..15, 1 => any::<i32>()],
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(task, made_up, state, ready, healthy)| Step::Status {
                task, made_up, state, ready, healthy,
            }),
        2 => (
            any::<usize>(),
            prop::sample::select(vec![
                "pause", "resume", "continue", "start", "restart", "force-complete", "x", "",
            ]),
            prop::option::of(any::<usize>()),
            prop::option::of(any::<usize>()),
        )
            .prop_map(|(plan, action, phase, step)| Step::PlanAction { plan, action, phase, step }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, r)| Step::PodAction(i, r)),
        1 => mutated_example().prop_map(Step::Update),
        1 => Just(Step::Uninstall),
        1 => (0u8..4).prop_map(Step::AgentLost),
        1 => Just(Step::Subscribed),
        3 => prop_oneof![1u64..5_000, Just(400_000u64)].prop_map(Step::Tick),
    ]
}

/// Names the API could be given: the real ones (plans, phases, steps, instances) or not.
fn pick(names: &[String], i: usize) -> String {
    if names.is_empty() || i % 7 == 6 {
        ["", "x", "../x", "deploy", "web-99"][i % 5].to_string()
    } else {
        names[i % names.len()].clone()
    }
}

struct CoreWorld {
    core: ServiceCore,
    now: u64,
    /// ACCEPTs not answered yet (their task record names).
    accepts: Vec<Vec<String>>,
    /// Launched tasks: (task id, agent id).
    launched: Vec<(String, String)>,
    next_offer: u64,
}

impl CoreWorld {
    fn take_actions(&mut self) {
        for a in self.core.take_actions() {
            if let Action::Accept {
                operations, tasks, ..
            } = a
            {
                for op in operations {
                    if let Some(v1::operation::Op::Launch(l)) = op.op {
                        self.launched
                            .extend(l.tasks.into_iter().map(|t| (t.task_id, t.agent_id)));
                    }
                }
                self.accepts.push(tasks);
            }
        }
        if self.launched.len() > 64 {
            self.launched.drain(..self.launched.len() - 64);
        }
    }

    fn run(&mut self, s: &Step) {
        self.now += 1;
        let now = self.now;
        match s {
            Step::Offers(list) => {
                let offers: Vec<v1::Offer> = list
                    .iter()
                    .map(|(agent, shape)| {
                        self.next_offer += 1;
                        v1::Offer {
                            id: format!("o{}", self.next_offer),
                            framework_id: "fw".into(),
                            agent_id: format!("a{agent}"),
                            hostname: format!("h{agent}"),
                            resources: Resources::parse(OFFERS[usize::from(*shape)])
                                .unwrap_or_default()
                                .to_proto(),
                            attributes: vec![v1::Attribute {
                                name: "rack".into(),
                                value: format!("r{}", agent % 2),
                            }],
                            ..Default::default()
                        }
                    })
                    .collect();
                let _ = self.core.handle_offers(now, &offers);
            }
            Step::AcceptResult(i, ok) => {
                if !self.accepts.is_empty() {
                    let tasks = self.accepts.remove(i % self.accepts.len());
                    let result = if *ok { Ok(()) } else { Err("refused".into()) };
                    let _ = self.core.accept_result(now, &tasks, result);
                }
            }
            Step::Status {
                task,
                made_up,
                state,
                ready,
                healthy,
            } => {
                let (task_id, agent_id) = if self.launched.is_empty() || *made_up {
                    ("web-0-server__x".to_string(), "a9".to_string())
                } else {
                    self.launched[task % self.launched.len()].clone()
                };
                let status = v1::TaskStatus {
                    task_id,
                    agent_id,
                    state: *state,
                    message: "fuzz".into(),
                    ready: *ready,
                    healthy: *healthy,
                    ..Default::default()
                };
                let _ = self.core.handle_status(now, &status);
            }
            Step::PlanAction {
                plan,
                action,
                phase,
                step,
            } => {
                let plans: Vec<String> = self.core.plans().iter().map(|p| p.name.clone()).collect();
                let plan = pick(&plans, *plan);
                let (phases, steps): (Vec<String>, Vec<String>) = self
                    .core
                    .plan(&plan)
                    .map(|p| {
                        (
                            p.phases.iter().map(|ph| ph.name.clone()).collect(),
                            p.steps().map(|(_, s)| s.name.clone()).collect(),
                        )
                    })
                    .unwrap_or_default();
                let phase = phase.map(|i| pick(&phases, i));
                let step = step.map(|i| pick(&steps, i));
                let _ =
                    self.core
                        .plan_action(now, &plan, action, phase.as_deref(), step.as_deref());
            }
            Step::PodAction(i, replace) => {
                let instances: Vec<String> = self.core.pods().into_keys().collect();
                let _ = self.core.pod_action(now, &pick(&instances, *i), *replace);
            }
            Step::Update(yaml) => {
                if let Ok(spec) = ServiceSpec::parse(yaml, &BTreeMap::new()) {
                    let _ = self.core.update_spec(now, spec);
                }
            }
            Step::Uninstall => {
                let _ = self.core.uninstall(now);
            }
            Step::AgentLost(a) => self.core.agent_lost(now, &format!("a{a}")),
            Step::Subscribed => self.core.on_subscribed(now),
            Step::Tick(ms) => {
                self.now += ms;
                self.core.tick(self.now);
            }
        }
        self.take_actions();
    }

    /// Every view the HTTP API serves can be built and serialized.
    fn views(&self) -> Result<(), TestCaseError> {
        for p in self.core.plans() {
            let _ = p.status();
            serde_json::to_string(p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        serde_json::to_string(&self.core.why()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        serde_json::to_string(&self.core.pods()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let offers: Vec<_> = self.core.offer_log().collect();
        serde_json::to_string(&offers).map_err(|e| TestCaseError::fail(e.to_string()))?;
        Ok(())
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn the_scheduler_core_takes_any_sequence(
        spec in mutated_example(),
        reservations in any::<bool>(),
        steps in prop::collection::vec(core_step(), 1..50),
    ) {
        // Mutated examples that still parse, else the example itself.
        let spec = ServiceSpec::parse(&spec, &BTreeMap::new())
            .or_else(|_| ServiceSpec::parse(EXAMPLES[1], &BTreeMap::new()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let store = StateStore::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cfg = CoreConfig {
            reservations,
            permanent_after_ms: 60_000,
            ..CoreConfig::default()
        };
        let core = ServiceCore::open(spec, cfg, store).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut w = CoreWorld { core, now: 0, accepts: Vec::new(), launched: Vec::new(), next_offer: 0 };
        w.core.on_subscribed(0);
        w.take_actions();
        for s in &steps {
            w.run(s);
            w.views()?;
        }
    }
}

// ───────────────────────── the scheduler's HTTP API ─────────────────────────

/// One request to the scheduler's API: method, path (with query) and body.
fn api_request() -> impl Strategy<Value = (&'static str, String, Vec<u8>)> {
    let name = prop_oneof![
        6 => prop::sample::select(vec![
            "deploy", "update", "recovery", "decommission", "uninstall", "backup", "db", "app",
            "db-0", "app-1", "web-0", "server", "dump",
        ]),
        1 => prop::sample::select(vec!["", "x", "%2F", "..", "%00", "a%20b", "%E2%82"]),
    ];
    let action = prop::sample::select(vec![
        "pause",
        "resume",
        "continue",
        "start",
        "restart",
        "force-complete",
        "replace",
        "x",
    ]);
    let query = prop_oneof![
        3 => Just(String::new()),
        2 => (name.clone(), name.clone()).prop_map(|(p, s)| format!("?phase={p}&step={s}")),
        1 => name.clone().prop_map(|p| format!("?phase={p}")),
        1 => name.clone().prop_map(|s| format!("?step={s}")),
        1 => Just("?phase=a&phase=b&x".to_string()),
    ];
    // Updates of the served spec (scaled, or mutated), and junk.
    let body = prop_oneof![
        3 => (0u32..4, 0u32..5).prop_map(|(db, app)| EXAMPLES[0]
            .replace("DB_COUNT: 2", &format!("DB_COUNT: {db}"))
            .replace("APP_COUNT: 3", &format!("APP_COUNT: {app}"))
            .into_bytes()),
        2 => prop::collection::vec(any::<(u8, usize, usize, u32)>(), 1..4)
            .prop_map(|ops| fuzzing::mutate(EXAMPLES[0], &ops).into_bytes()),
        1 => mutated_example().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop_oneof![
        3 => (name.clone(), action.clone(), query)
            .prop_map(|(n, a, q)| ("POST", format!("/v1/plans/{n}/{a}{q}"), Vec::new())),
        2 => (name.clone(), action).prop_map(|(n, a)| ("POST", format!("/v1/pod/{n}/{a}"), Vec::new())),
        2 => body.prop_map(|b| ("POST", "/v1/update".to_string(), b)),
        2 => name.prop_map(|n| ("GET", format!("/v1/plans/{n}"), Vec::new())),
        2 => prop::sample::select(vec![
            ("GET", "/v1/plans"),
            ("GET", "/v1/why"),
            ("GET", "/v1/pod"),
            ("GET", "/v1/debug/offers"),
            ("GET", "/v1/update"),
            ("POST", "/v1/plans"),
            ("DELETE", "/v1/pod"),
            ("GET", "/nope"),
        ])
        .prop_map(|(m, p)| (m, p.to_string(), Vec::new())),
    ]
}

/// One HTTP/1.1 request on a new connection: the status.
async fn api_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await?;
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer within 30 s"))??;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))
}

/// One scheduler (the kitchen-sink spec, every feature) serves every case: its API answers
/// any request without a server error, and keeps answering.
#[test]
fn the_scheduler_api_answers_any_request() {
    use std::sync::{Arc, Mutex};

    use proffer_sdk::service::http::{Shared, router};

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let spec = ServiceSpec::parse(EXAMPLES[0], &BTreeMap::new())
        .unwrap_or_else(|e| panic!("kitchen-sink: {e}"));
    let store = StateStore::open(dir.path()).unwrap_or_else(|e| panic!("store: {e}"));
    let core = ServiceCore::open(spec, CoreConfig::default(), store)
        .unwrap_or_else(|e| panic!("core: {e}"));
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        notify: Default::default(),
        options: BTreeMap::new(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let app = router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let mut runner = proptest::test_runner::TestRunner::new(config(300));
    let result = runner.run(&prop::collection::vec(api_request(), 1..6), |requests| {
        rt.block_on(async {
            for (method, path, body) in &requests {
                let code = api_call(addr, method, path, body)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{method} {path}: {e}")))?;
                prop_assert!(code < 500, "{} {}: {}", method, path, code);
                let alive = api_call(addr, "GET", "/v1/plans", b"")
                    .await
                    .map_err(|e| TestCaseError::fail(format!("after {method} {path}: {e}")))?;
                prop_assert_eq!(alive, 200, "after {} {}", method, path);
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
