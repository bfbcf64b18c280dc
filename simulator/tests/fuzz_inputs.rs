//! Fuzz targets of the simulator's inputs: scenario TOML and the four trace readers.
//!
//! Scenarios are built as TOML tables shaped like real ones (master and sim settings, agent
//! groups with resources, attributes and churn, frameworks of every behaviour with arrival
//! processes and duration distributions, trace entries), with values at the edges (zero,
//! negative, NaN, inf, huge), wrong types and unknown keys, then mutated at the byte level;
//! the example scenarios are mutated too. Traces are rows of each format with fields at the
//! edges, and mutated samples.
//!
//! Properties: nothing panics; an error names the file, and a field (the scenario's, with a
//! line within the text) or a trace line within the text; an accepted scenario small enough
//! runs to its end in the engine, trace spans included.
//!
//! `PROFFER_FUZZ_CASES=N` runs N cases per target, `PROFFER_FUZZ_SEED=S` another seed.

use std::path::Path;

use proffer_proto::fuzzing;
use proffer_sim::dist::Arrivals;
use proffer_sim::scenario::TraceSpec;
use proffer_sim::{Scenario, Sim, SimError, trace};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use toml::{Table, Value};

fn config(default_cases: u32) -> Config {
    Config {
        cases: fuzzing::cases(default_cases),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0x51_F022)),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

const SCENARIOS: &[&str] = &[
    include_str!("../scenarios/mixed.toml"),
    include_str!("../scenarios/drf-paper.toml"),
    include_str!("../scenarios/traces.toml"),
];

/// A number for a seconds, rate or scale field: sensible mostly, else at the edges.
fn num() -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => prop::sample::select(vec![0.5, 1.0, 2.0, 10.0, 60.0, 300.0]).prop_map(Value::Float),
        10 => (1i64..100).prop_map(Value::Integer),
        1 => prop::sample::select(vec![
            0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, 1e-300, 1.5,
        ])
        .prop_map(Value::Float),
        1 => any::<i64>().prop_map(Value::Integer),
        1 => Just(Value::String("x".into())),
    ]
}

fn int() -> impl Strategy<Value = Value> {
    prop_oneof![
        60 => (0i64..8).prop_map(Value::Integer),
        1 => any::<i64>().prop_map(Value::Integer),
        1 => Just(Value::Float(1.5)),
        1 => Just(Value::Boolean(true)),
    ]
}

fn resources() -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => prop::sample::select(vec![
            "cpus:4;mem:4096",
            "cpus:16;mem:65536",
            "cpus:1;mem:512",
            "cpus:0.5;mem:256;disk:100",
            "cpus(web):2;mem:1024",
            "cpus:2;mem:1024;gpus:1;ports:[31000-31009]",
        ]),
        1 => prop::sample::select(vec!["", "cpus:x", "mem:64", "cpus:0;mem:0", "cpus:1e12;mem:1e12"]),
    ]
    .prop_map(|s| Value::String(s.into()))
}

fn attrs() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => prop::sample::select(vec!["rack:r1", "rack:r2;kind:big", "", "kind:big"]),
        1 => prop::sample::select(vec!["x", "a:b:c", ";;"]),
    ]
    .prop_map(|s| Value::String(s.into()))
}

fn table(pairs: Vec<(&str, Option<Value>)>) -> Table {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
}

fn opt<S: Strategy<Value = Value>>(s: S) -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(0.5, s)
}

fn arrivals() -> BoxedStrategy<Value> {
    let process = |name: &str, fields: Vec<(&'static str, Value)>| {
        let mut t = Table::new();
        t.insert("process".into(), Value::String(name.into()));
        for (k, v) in fields {
            t.insert(k.into(), v);
        }
        Value::Table(t)
    };
    prop_oneof![
        6 => num().prop_map(move |r| process("poisson", vec![("rate_per_s", r)])),
        3 => (num(), num()).prop_map(move |(r, b)| process("bursty", vec![("rate_per_s", r), ("burst_size", b)])),
        3 => (num(), opt(prop_oneof![3 => (0.0f64..=1.0).prop_map(Value::Float), 1 => num()]), opt(num()))
            .prop_map(move |(r, a, p)| {
                let mut f = vec![("rate_per_s", r)];
                f.extend(a.map(|a| ("amplitude", a)));
                f.extend(p.map(|p| ("period_s", p)));
                process("diurnal", f)
            }),
        1 => (prop::sample::select(vec!["periodic", "x", "poisson"]), num(), num())
            .prop_map(move |(p, r, b)| process(p, vec![("rate_per_s", r), ("burst_size", b)])),
    ]
    .boxed()
}

fn duration() -> BoxedStrategy<Value> {
    prop_oneof![
        (num()).prop_map(|m| table(vec![
            ("dist", Some(Value::String("exponential".into()))),
            ("mean_s", Some(m))
        ])),
        (num(), num()).prop_map(|(a, b)| table(vec![
            ("dist", Some(Value::String("uniform".into()))),
            ("min_s", Some(a)),
            ("max_s", Some(b)),
        ])),
        (num(), num()).prop_map(|(m, s)| table(vec![
            ("dist", Some(Value::String("lognormal".into()))),
            ("median_s", Some(m)),
            ("sigma", Some(s)),
        ])),
        (num()).prop_map(|v| table(vec![
            ("dist", Some(Value::String("constant".into()))),
            ("value_s", Some(v))
        ])),
        Just(table(vec![("dist", Some(Value::String("forever".into())))])),
        Just(table(vec![("dist", Some(Value::String("forever".into())))])),
        Just(table(vec![("dist", Some(Value::String("forever".into())))])),
        Just(table(vec![("dist", Some(Value::String("x".into())))])),
    ]
    .prop_map(Value::Table)
    .boxed()
}

fn framework() -> BoxedStrategy<Value> {
    (
        (
            prop_oneof![
                12 => prop::sample::select(vec!["a", "b", "batch"]),
                1 => prop::sample::select(vec!["", " "]),
            ],
            opt(int()),
            opt(prop_oneof![
                12 => prop::sample::select(vec!["*", "web"]),
                1 => prop::sample::select(vec!["-x", ""]),
            ]
            .prop_map(|r| Value::String(r.into()))),
            opt(num()),
            prop_oneof![
                12 => prop::sample::select(vec!["greedy", "picky", "elastic", "hoarding"]),
                1 => Just("x"),
            ],
            opt(prop_oneof![8 => (0.0f64..=1.0).prop_map(Value::Float), 1 => num()]),
            opt(num()),
            opt(int()),
        ),
        (
            opt(int()),
            opt(int()),
            opt(any::<bool>().prop_map(Value::Boolean)),
            opt(num()),
            opt(attrs()),
            resources(),
            opt(int()),
            opt(arrivals()),
            opt(duration()),
            opt(num()),
            opt(num()),
        ),
    )
        .prop_map(
            |(
                (name, count, role, weight, behaviour, decline, hold, max_running),
                (
                    per_offer,
                    outstanding,
                    adaptive,
                    refuse,
                    constraints,
                    task,
                    tasks,
                    arr,
                    dur,
                    join,
                    leave,
                ),
            )| {
                Value::Table(table(vec![
                    ("name", Some(Value::String(name.into()))),
                    ("count", count),
                    ("role", role),
                    ("weight", weight),
                    ("behaviour", Some(Value::String(behaviour.into()))),
                    ("decline_probability", decline),
                    ("hold_s", hold),
                    ("max_running", max_running),
                    ("max_tasks_per_offer", per_offer),
                    ("max_outstanding_offers", outstanding),
                    ("adaptive_offer_limit", adaptive),
                    ("refuse_s", refuse),
                    ("constraints", constraints),
                    ("task", Some(task)),
                    ("tasks", tasks),
                    ("arrivals", arr),
                    ("duration", dur),
                    ("join_at_s", join),
                    ("leave_at_s", leave),
                ]))
            },
        )
        .boxed()
}

fn agents() -> BoxedStrategy<Value> {
    (
        opt(int()),
        resources(),
        opt(num()),
        opt((num(), num()).prop_map(|(u, d)| {
            Value::Table(table(vec![
                ("mean_uptime_s", Some(u)),
                ("mean_downtime_s", Some(d)),
            ]))
        })),
        opt(attrs()),
    )
        .prop_map(|(count, res, join, churn, attributes)| {
            Value::Table(table(vec![
                ("count", count),
                ("resources", Some(res)),
                ("join_at_s", join),
                ("churn", churn),
                ("attributes", attributes),
            ]))
        })
        .boxed()
}

fn traces_entry() -> BoxedStrategy<Value> {
    (
        prop::sample::select(vec![
            ("google2011", "traces/google-task_events-sample.csv"),
            ("alibaba2018", "traces/alibaba-batch_task-sample.csv"),
            ("csv", "traces/own-sample.csv"),
            ("json", "traces/own-sample.json"),
            ("csv", "traces/missing.csv"),
            ("x", "x"),
        ]),
        opt(int()),
        opt(num()),
        opt(num()),
        opt(num()),
        opt(int()),
        opt(num()),
    )
        .prop_map(|((format, path), max, cpu, mem, speed, limit, default)| {
            Value::Table(table(vec![
                ("format", Some(Value::String(format.into()))),
                ("path", Some(Value::String(path.into()))),
                ("max_frameworks", max),
                ("cpu_scale", cpu),
                ("mem_scale_mb", mem),
                ("speedup", speed),
                ("limit", limit),
                ("default_duration_s", default),
            ]))
        })
        .boxed()
}

/// A scenario-shaped table, as TOML text, with an unknown key or a mutation at times.
fn scenario_text() -> impl Strategy<Value = String> {
    (
        (
            opt(prop::sample::select(vec!["s", ""]).prop_map(|s| Value::String(s.into()))),
            opt(int()),
            prop_oneof![10 => (1i64..300).prop_map(Value::Integer), 1 => num()],
            prop::option::weighted(
                0.5,
                (
                    opt(int()),
                    opt(num()),
                    opt(num()),
                    opt(num()),
                    opt(int()),
                    opt(prop::sample::select(vec!["drf", "wdrf", "random", "x"])
                        .prop_map(|p| Value::String(p.into()))),
                ),
            ),
            prop::option::weighted(
                0.5,
                (
                    opt(int()),
                    opt(num()),
                    opt(any::<bool>().prop_map(Value::Boolean)),
                ),
            ),
        ),
        prop_oneof![12 => prop::collection::vec(agents(), 1..3), 1 => Just(Vec::new())],
        prop::collection::vec(framework(), 0..3),
        prop::collection::vec(traces_entry(), 0..2),
        prop_oneof![12 => Just(None), 1 => "[a-z_]{1,8}".prop_map(Some)],
        prop_oneof![
            6 => Just(Vec::new()),
            1 => prop::collection::vec(any::<(u8, usize, usize, u32)>(), 1..3),
        ],
    )
        .prop_map(
            |((name, seed, duration, master, sim), agents, fws, traces, unknown, ops)| {
                let mut t = table(vec![
                    ("name", name),
                    ("seed", seed),
                    ("duration_s", Some(duration)),
                ]);
                if let Some((interval, refuse, timeout, ping, missed, policy)) = master {
                    t.insert(
                        "master".into(),
                        Value::Table(table(vec![
                            ("allocation_interval_ms", interval),
                            ("default_refuse_s", refuse),
                            ("offer_timeout_s", timeout),
                            ("agent_ping_interval_s", ping),
                            ("agent_max_missed_pings", missed),
                            ("policy", policy),
                        ])),
                    );
                }
                if let Some((tick, sample, record)) = sim {
                    t.insert(
                        "sim".into(),
                        Value::Table(table(vec![
                            ("tick_ms", tick),
                            ("sample_interval_s", sample),
                            ("record_decisions", record),
                        ])),
                    );
                }
                for (key, list) in [("agents", agents), ("frameworks", fws), ("traces", traces)] {
                    if !list.is_empty() {
                        t.insert(key.into(), Value::Array(list));
                    }
                }
                if let Some(k) = unknown {
                    t.insert(k, Value::Integer(1));
                }
                fuzzing::mutate(&toml::to_string(&t).unwrap_or_default(), &ops)
            },
        )
}

fn mutated_scenario() -> impl Strategy<Value = String> {
    (
        prop::sample::select(SCENARIOS),
        prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..6),
    )
        .prop_map(|(s, ops)| fuzzing::mutate(s, &ops))
}

/// Where the scenarios (and their traces) are.
fn scenario_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/fuzz.toml")
}

fn check_scenario(text: &str) -> Result<(), TestCaseError> {
    let path = scenario_path();
    match Scenario::parse(text, &path) {
        Ok(s) => run_small(text, &s),
        Err(SimError::Scenario {
            path: p,
            line,
            field,
            message,
        }) => {
            prop_assert_eq!(&p, &path);
            // A syntax error on a line without a key names the line only.
            prop_assert!(
                (!field.is_empty() || line > 0) && !message.trim().is_empty(),
                "{text:?}: field {field:?}, line {line}: {message}"
            );
            let lines = text.lines().count();
            prop_assert!(line <= lines.max(1), "{text:?}: line {line} of {lines}");
            Ok(())
        }
        Err(other) => {
            prop_assert!(false, "{text:?}: not a scenario error: {other}");
            Ok(())
        }
    }
}

/// Runs an accepted scenario when it is small (a few agents and frameworks, short): the
/// engine takes whatever parsing accepted.
fn run_small(text: &str, s: &Scenario) -> Result<(), TestCaseError> {
    let agents: u64 = s.agents.iter().map(|a| u64::from(a.count)).sum();
    let fws: u64 = s.frameworks.iter().map(|f| u64::from(f.count)).sum();
    if agents > 40 || fws > 8 || s.duration_ms() > 600_000 || s.tick_ms() < 10 {
        return Ok(());
    }
    // A workload the scenario asks to be huge (many tasks, bursts of a million) is not small.
    let heavy = |a: &Arrivals| match *a {
        Arrivals::Poisson { rate_per_s } | Arrivals::Diurnal { rate_per_s, .. } => rate_per_s > 5.0,
        Arrivals::Bursty {
            rate_per_s,
            burst_size,
        } => rate_per_s * burst_size > 5.0,
    };
    if s.frameworks.iter().any(|f| {
        f.tasks > 500
            || f.max_tasks > 500
            || f.model.max_running > 500
            || f.arrivals.as_ref().is_some_and(heavy)
    }) {
        return Ok(());
    }
    match Sim::new(s, s.master.policy) {
        Ok(mut sim) => {
            sim.run();
            prop_assert!(sim.now_ms() >= sim.end_ms(), "{text:?}: stopped early");
        }
        Err(e) => prop_assert!(!e.to_string().is_empty(), "{text:?}"),
    }
    Ok(())
}

/// A trace row of `format`, fields at the edges at times.
fn trace_text(format: usize) -> impl Strategy<Value = String> {
    let field = prop_oneof![
        20 => (0u64..100_000).prop_map(|n| n.to_string()),
        4 => prop::sample::select(vec!["0.5", "0.025", "1", "Terminated", "Running", "j_1", "u1", ""])
            .prop_map(String::from),
        1 => prop::sample::select(fuzzing::TOKENS.to_vec()).prop_map(String::from),
    ];
    let width = [13usize, 9, 6, 6][format];
    let row = prop::collection::vec(field, width - 1..width + 2).prop_map(|f| f.join(","));
    (
        prop::collection::vec(row, 0..8),
        prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..3),
    )
        .prop_map(move |(rows, ops)| {
            let body = rows.join("\n");
            let text = match format {
                2 => format!("time_s,framework,cpus,mem_mb,duration_s,count\n{body}"),
                3 => {
                    let items: Vec<String> = body
                        .lines()
                        .map(|l| {
                            let f: Vec<&str> = l.split(',').collect();
                            format!(
                                r#"{{"time_s": {}, "framework": "{}", "cpus": {}, "mem_mb": {}, "duration_s": {}, "count": {}}}"#,
                                f[0],
                                f.get(1).unwrap_or(&"x"),
                                f.get(2).unwrap_or(&"1"),
                                f.get(3).unwrap_or(&"1"),
                                f.get(4).filter(|d| !d.is_empty()).unwrap_or(&"null"),
                                f.get(5).unwrap_or(&"1").parse::<u64>().map_or(1, |c| c % 50),
                            )
                        })
                        .collect();
                    format!("[\n{}\n]", items.join(",\n"))
                }
                _ => body,
            };
            fuzzing::mutate(&text, &ops)
        })
}

const TRACE_SAMPLES: [&str; 4] = [
    include_str!("../scenarios/traces/google-task_events-sample.csv"),
    include_str!("../scenarios/traces/alibaba-batch_task-sample.csv"),
    include_str!("../scenarios/traces/own-sample.csv"),
    include_str!("../scenarios/traces/own-sample.json"),
];

/// The trace spec of a scenario reading `format` (scales and speed-up as given).
fn trace_spec(format: usize, speedup: f64, limit: usize) -> Option<TraceSpec> {
    let name = ["google2011", "alibaba2018", "csv", "json"][format];
    let text = format!(
        "duration_s = 10\n[[agents]]\nresources = \"cpus:1;mem:1024\"\n[[traces]]\nformat = \"{name}\"\npath = \"t\"\nspeedup = {speedup:?}\nlimit = {limit}\nmax_frameworks = 2\n"
    );
    Scenario::parse(&text, Path::new("s.toml"))
        .ok()
        .and_then(|s| s.traces.into_iter().next())
}

fn check_trace(format: usize, text: &str, speedup: f64, limit: usize) -> Result<(), TestCaseError> {
    let Some(spec) = trace_spec(format, speedup, limit) else {
        return Ok(());
    };
    let path = Path::new("trace.file");
    match trace::parse(text, path, &spec) {
        Ok(records) => {
            // Keep what `load` does after parsing: shift, speed up, fold.
            let groups = trace::group(records, spec.max_frameworks, spec.speedup);
            prop_assert!(groups.len() <= spec.max_frameworks as usize);
        }
        Err(SimError::Trace {
            path: p,
            line,
            field,
            message,
        }) => {
            prop_assert_eq!(p, path);
            prop_assert!(
                !field.is_empty() && !message.trim().is_empty(),
                "{text:?}: field {field:?}: {message}"
            );
            // JSON errors at the end of the text are on the line after its last newline.
            let lines = text.split('\n').count();
            prop_assert!(line <= lines, "{text:?}: line {line} of {lines}");
        }
        Err(other) => prop_assert!(false, "{text:?}: not a trace error: {other}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn scenario_tables_never_panic(text in scenario_text()) {
        check_scenario(&text)?;
    }

    #[test]
    fn mutated_example_scenarios_never_panic(text in mutated_scenario()) {
        check_scenario(&text)?;
    }

    #[test]
    fn trace_rows_never_panic(
        (format, text) in (0usize..4).prop_flat_map(|f| (Just(f), trace_text(f))),
        speedup in prop_oneof![Just(1.0), Just(1000.0), Just(1e-9), Just(1e300)],
        limit in 0usize..5,
    ) {
        check_trace(format, &text, speedup, limit)?;
    }

    #[test]
    fn mutated_trace_samples_never_panic(
        format in 0usize..4,
        ops in prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..6),
    ) {
        let text = fuzzing::mutate(TRACE_SAMPLES[format], &ops);
        check_trace(format, &text, 1.0, 0)?;
    }
}
