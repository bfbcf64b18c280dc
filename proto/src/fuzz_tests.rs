//! Fuzz tests of the parsers of this crate: the resources text form, its JSON forms and the
//! wire form, and master lists. Inputs are built from the grammar of each format (names,
//! labels, reservations, volumes, scalars at the edges, ranges, sets), then mutated at the
//! byte level, plus byte-level mutations of valid seeds.
//!
//! Properties: nothing panics; an error names what was wrong (the item, resource or entry it
//! is about, taken from the input); whatever parses prints back to text that parses to the
//! same value, converts to the wire form and back unchanged, reads back from the Mesos JSON
//! form, and stays in the domain (scalars in (0, MAX], whole gpus, ports ≤ 65535, valid
//! roles).
//!
//! `PROFFER_FUZZ_CASES=N` runs N cases per target (default: a few hundred), and
//! `PROFFER_FUZZ_SEED=S` changes the seed (see [`crate::fuzzing`]).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::fuzzing;
use crate::leader::{MasterList, MasterListError};
use crate::resources::{MAX_PORT, MAX_SCALAR_MILLI, Reservation, Value, validate_role};
use crate::{ResourceError, Resources};

fn config(default_cases: u32) -> Config {
    Config {
        cases: fuzzing::cases(default_cases),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0xF0221)),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

/// Byte-level mutation ops for [`fuzzing::mutate`].
fn mutations(max: usize) -> impl Strategy<Value = Vec<(u8, usize, usize, u32)>> {
    prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..max)
}

fn resource_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["cpus", "mem", "disk", "gpus", "ports", "disks", "ids"])
            .prop_map(String::from),
        2 => "[a-z0-9_.-]{1,10}",
        1 => "\\PC{0,6}",
    ]
}

fn role() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "*", "", "web", "db", "eng/ml", "a.b", "a_b-c", "-x", "..", ".", "a//b", "a/", "/a",
            "a b", "é", "web,dynamic",
        ])
        .prop_map(String::from),
        2 => "[a-z][a-z0-9/._-]{0,12}",
        1 => "\\PC{0,8}",
    ]
}

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "alice", "ops@corp", "a b", "a=b", "x:y", "p)"])
            .prop_map(String::from),
        1 => "\\PC{0,8}",
        1 => Just("p".repeat(256)),
    ]
}

/// `(role[,static|,dynamic[=PRINCIPAL]|,junk])`, or nothing.
fn labels() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just(String::new()),
        Just(",static".to_string()),
        Just(",dynamic".to_string()),
        principal().prop_map(|p| format!(",dynamic={p}")),
        principal().prop_map(|p| format!(", dynamic = {p} ")),
        "\\PC{0,6}".prop_map(|j| format!(",{j}")),
        Just(",dynamic,static".to_string()),
    ];
    prop_oneof![
        3 => Just(String::new()),
        4 => (role(), kind).prop_map(|(r, k)| format!("({r}{k})")),
        1 => role().prop_map(|r| format!("({r}")),
    ]
}

/// `[id:container_path]`, or nothing.
fn volume() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        4 => "[a-z0-9_.-]{1,8}",
        1 => prop::sample::select(vec!["", ".", "..", "a b", "a:b", "é"]).prop_map(String::from),
        1 => Just("v".repeat(256)),
    ];
    let path = prop_oneof![
        4 => "[a-z0-9_./-]{1,12}",
        1 => prop::sample::select(vec!["", "/abs", "../up", "a/../b", "a b", "a;b", "a]b", "x:y"])
            .prop_map(String::from),
    ];
    prop_oneof![
        5 => Just(String::new()),
        2 => (id, path).prop_map(|(i, p)| format!("[{i}:{p}]")),
        1 => "\\PC{0,6}".prop_map(|j| format!("[{j}")),
    ]
}

fn scalar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..100_000).prop_map(|n| n.to_string()),
        3 => (0u64..10_000, 0u32..100_000).prop_map(|(w, f)| format!("{w}.{f}")),
        2 => (any::<f64>()).prop_map(|f| f.to_string()),
        1 => (1u32..9, -20i32..20).prop_map(|(m, e)| format!("{m}e{e}")),
        1 => (1u32..10).prop_map(|m| format!("{m}e11")),
        2 => prop::sample::select(fuzzing::TOKENS.to_vec()).prop_map(String::from),
    ]
}

fn ranges_text() -> impl Strategy<Value = String> {
    let range = prop_oneof![
        6 => (0u64..70_000, 0u64..100).prop_map(|(b, l)| format!("{b}-{}", b + l)),
        1 => (0u64..70_000).prop_map(|b| b.to_string()),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(b, e)| format!("{b}-{e}")),
        1 => (0u64..100, 0u64..100).prop_map(|(b, e)| format!(" {b} - {e} ")),
        1 => "\\PC{0,5}",
    ];
    (prop::collection::vec(range, 0..5), any::<bool>())
        .prop_map(|(rs, close)| format!("[{}{}", rs.join(","), if close { "]" } else { "" }))
}

fn set_text() -> impl Strategy<Value = String> {
    let item = prop_oneof![4 => "[a-z0-9]{0,5}", 1 => "\\PC{0,5}"];
    (prop::collection::vec(item, 0..4), any::<bool>())
        .prop_map(|(items, close)| format!("{{{}{}", items.join(","), if close { "}" } else { "" }))
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![5 => scalar_text(), 2 => ranges_text(), 1 => set_text()]
}

/// One `name(LABELS)[VOLUME]:value` item, with optional spaces around its parts.
fn item() -> impl Strategy<Value = String> {
    (
        resource_name(),
        labels(),
        volume(),
        value_text(),
        any::<bool>(),
        0u8..8,
    )
        .prop_map(|(n, l, v, val, spaces, drop)| {
            let sep = if spaces { " : " } else { ":" };
            match drop {
                // An item without its `:`, or without a name.
                0 => format!("{n}{l}{v}{val}"),
                1 => format!("{l}{v}{sep}{val}"),
                _ => format!("{n}{l}{v}{sep}{val}"),
            }
        })
}

/// Grammar-built text (items repeated at times: repeated entries add up), then mutated at
/// the byte level.
fn resource_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(item(), 0..6),
        0usize..4,
        prop::sample::select(vec![";", "; ", " ;", ";;"]),
        mutations(3),
    )
        .prop_map(|(mut items, repeat, sep, ops)| {
            if repeat > 0 && !items.is_empty() {
                let again = items[..repeat.min(items.len())].to_vec();
                items.extend(again);
            }
            fuzzing::mutate(&items.join(sep), &ops)
        })
}

const SEEDS: &[&str] = &[
    "cpus:4;mem:8192;ports:[31000-32000];disks:{a,b}",
    "cpus(eng/ml):1.5; cpus:0.25; ports:[1-3,4-6,10-10]",
    "cpus(web,dynamic=alice):2;mem(web,dynamic):64;disk(web)[data:data/x]:100",
    "gpus:2;disk(db,dynamic=ops)[v1:vol]:10;ids:[1-70000]",
    r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":5}]}},{"name":"mem","role":"web","scalar":{"value":64}}]"#,
    r#"{"cpus": 1, "mem(web,dynamic=a)": 128, "ports": "[80-81]", "disks": "{x,y}"}"#,
    r#"[{"name":"disk","role":"db","reservations":[{"type":"DYNAMIC","role":"db","principal":"p"}],"disk":{"persistence":{"id":"v"},"volume":{"container_path":"data"}},"scalar":{"value":5}}]"#,
];

/// A valid seed mutated at the byte level.
fn mutated_seed() -> impl Strategy<Value = String> {
    (prop::sample::select(SEEDS), mutations(6)).prop_map(|(s, ops)| fuzzing::mutate(s, &ops))
}

/// A JSON value of any shape (for fields that expect something specific).
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "\\PC{0,6}".prop_map(serde_json::Value::String),
        value_text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON number or a string holding one, mostly sensible.
fn json_number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        4 => (0u32..100_000).prop_map(|n| serde_json::json!(n)),
        3 => (0.0f64..10_000.0).prop_map(|f| serde_json::json!(f)),
        1 => any::<f64>().prop_map(|f| serde_json::json!(f)),
        1 => any::<i64>().prop_map(|n| serde_json::json!(n)),
        1 => any_json(),
    ]
}

/// One entry of `reservations` (or the old `reservation` object).
fn json_reservation() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::option::of(prop::sample::select(vec![
            "DYNAMIC", "STATIC", "dynamic", "OTHER",
        ])),
        prop::option::of(role()),
        prop::option::of(principal()),
    )
        .prop_map(|(t, r, p)| {
            let mut m = serde_json::Map::new();
            if let Some(t) = t {
                m.insert("type".into(), serde_json::json!(t));
            }
            if let Some(r) = r {
                m.insert("role".into(), serde_json::json!(r));
            }
            if let Some(p) = p {
                m.insert("principal".into(), serde_json::json!(p));
            }
            serde_json::Value::Object(m)
        })
}

/// One item of the Mesos JSON array form, fields present or not, right type or not.
fn json_item() -> impl Strategy<Value = serde_json::Value> {
    let ty = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "SCALAR", "RANGES", "SET", "scalar", "ranges", "TEXT", ""
        ])
        .prop_map(|t| Some(serde_json::json!(t))),
    ];
    let range = (any::<u32>(), 0u64..100, 0u8..6).prop_map(|(b, l, how)| {
        let b = u64::from(b % 70_000);
        match how {
            0 => serde_json::json!({"begin": b + l, "end": b}),
            1 => serde_json::json!({"begin": -1, "end": b}),
            2 => serde_json::json!({"begin": b}),
            _ => serde_json::json!({"begin": b, "end": b + l}),
        }
    });
    (
        (
            prop_oneof![
                8 => resource_name().prop_map(|n| Some(serde_json::json!(n))),
                1 => Just(None),
                1 => any_json().prop_map(Some),
            ],
            ty,
            prop::option::of(json_number()),
            prop::option::of(prop::collection::vec(range, 0..4)),
            prop::option::of(prop::collection::vec(
                prop_oneof![3 => "[a-z]{0,4}".prop_map(|s| serde_json::json!(s)), 1 => any_json()],
                0..4,
            )),
        ),
        (
            prop::option::of(role()),
            prop::option::of(prop::collection::vec(json_reservation(), 0..3)),
            prop::option::of(json_reservation()),
            prop::option::of((
                prop::sample::select(vec!["DYNAMIC", "STATIC", "RESERVATION_DYNAMIC", "", "x"]),
                principal(),
            )),
            prop::option::of(("[a-z0-9.]{0,5}", "[a-z0-9/.]{0,6}", any::<bool>())),
            prop::option::of(any_json()),
        ),
    )
        .prop_map(
            |((name, ty, scalar, ranges, set), (role, stack, old, flat, vol, junk))| {
                let mut m = serde_json::Map::new();
                if let Some(n) = name {
                    m.insert("name".into(), n);
                }
                if let Some(t) = ty {
                    m.insert("type".into(), t);
                }
                if let Some(v) = scalar {
                    m.insert("scalar".into(), serde_json::json!({ "value": v }));
                }
                if let Some(r) = ranges {
                    m.insert("ranges".into(), serde_json::json!({ "range": r }));
                }
                if let Some(s) = set {
                    m.insert("set".into(), serde_json::json!({ "item": s }));
                }
                if let Some(r) = role {
                    m.insert("role".into(), serde_json::json!(r));
                }
                if let Some(s) = stack {
                    m.insert("reservations".into(), serde_json::Value::Array(s));
                }
                if let Some(r) = old {
                    m.insert("reservation".into(), r);
                }
                if let Some((t, p)) = flat {
                    m.insert("reservation_type".into(), serde_json::json!(t));
                    m.insert("principal".into(), serde_json::json!(p));
                }
                if let Some((id, path, mesos)) = vol {
                    if mesos {
                        m.insert(
                            "disk".into(),
                            serde_json::json!({"persistence": {"id": id}, "volume": {"container_path": path}}),
                        );
                    } else {
                        m.insert(
                            "volume".into(),
                            serde_json::json!({"id": id, "container_path": path}),
                        );
                    }
                }
                if let Some(j) = junk {
                    m.insert("disk".into(), j);
                }
                serde_json::Value::Object(m)
            },
        )
}

/// The Mesos array form, the plain object form or any JSON, serialized and maybe mutated.
fn resource_json() -> impl Strategy<Value = String> {
    let doc = prop_oneof![
        4 => prop::collection::vec(json_item(), 0..4).prop_map(serde_json::Value::Array),
        3 => prop::collection::vec(
            ((resource_name(), labels()), prop_oneof![json_number(), value_text().prop_map(serde_json::Value::String)]),
            0..4,
        )
        .prop_map(|kv| {
            serde_json::Value::Object(kv.into_iter().map(|((n, l), v)| (format!("{n}{l}"), v)).collect())
        }),
        1 => any_json(),
    ];
    (doc, mutations(2)).prop_map(|(d, ops)| fuzzing::mutate(&d.to_string(), &ops))
}

/// The Mesos JSON array form of `r` (the printer the parser's JSON form is checked against).
fn mesos_json(r: &Resources) -> String {
    let items: Vec<serde_json::Value> = r
        .iter()
        .map(|(k, v)| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), serde_json::json!(k.name.as_str()));
            match v {
                Value::Scalar(milli) => {
                    m.insert("type".into(), serde_json::json!("SCALAR"));
                    let value = *milli as f64 / 1000.0;
                    m.insert("scalar".into(), serde_json::json!({ "value": value }));
                }
                Value::Ranges(rs) => {
                    m.insert("type".into(), serde_json::json!("RANGES"));
                    let list: Vec<_> = rs
                        .ranges()
                        .iter()
                        .map(|(b, e)| serde_json::json!({"begin": b, "end": e}))
                        .collect();
                    m.insert("ranges".into(), serde_json::json!({ "range": list }));
                }
                Value::Set(s) => {
                    m.insert("type".into(), serde_json::json!("SET"));
                    m.insert("set".into(), serde_json::json!({ "item": s }));
                }
            }
            m.insert("role".into(), serde_json::json!(k.role.as_str()));
            if let Reservation::Dynamic { principal } = &k.reservation {
                m.insert(
                    "reservations".into(),
                    serde_json::json!([{"type": "DYNAMIC", "role": k.role.as_str(), "principal": principal}]),
                );
            }
            if let Some(vol) = &k.volume {
                m.insert(
                    "disk".into(),
                    serde_json::json!({"persistence": {"id": vol.id}, "volume": {"container_path": vol.container_path}}),
                );
            }
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// What every accepted value satisfies, and its round trips through every printer.
fn check_accepted(input: &str, r: &Resources) -> Result<(), TestCaseError> {
    for (k, v) in r.iter() {
        prop_assert!(validate_role(&k.role).is_ok(), "{input:?}: role {}", k.role);
        match v {
            Value::Scalar(m) => {
                prop_assert!(
                    *m > 0 && *m <= MAX_SCALAR_MILLI,
                    "{input:?}: {} = {m} milli is out of (0, {MAX_SCALAR_MILLI}]",
                    k.name
                );
                if k.name == "gpus" {
                    prop_assert!(m % 1000 == 0, "{input:?}: fractional gpus {m}");
                }
            }
            Value::Ranges(rs) => {
                prop_assert!(!rs.is_empty(), "{input:?}: empty ranges stored");
                if k.name == "ports" {
                    prop_assert!(rs.ranges().iter().all(|&(_, e)| e <= MAX_PORT));
                }
            }
            Value::Set(s) => prop_assert!(!s.is_empty(), "{input:?}: empty set stored"),
        }
    }
    let text = r.to_string();
    let back = Resources::parse(&text);
    prop_assert_eq!(back.as_ref(), Ok(r), "{:?} printed as {:?}", input, text);
    let wire = Resources::from_proto(&r.to_proto());
    prop_assert_eq!(wire.as_ref(), Ok(r), "{:?}: wire form", input);
    let json = mesos_json(r);
    let from_json = Resources::parse_json(&json);
    prop_assert_eq!(from_json.as_ref(), Ok(r), "{:?}: JSON {}", input, json);
    Ok(())
}

/// An error says what was wrong: its message is not empty, and in the text form the item or
/// resource name it names is in the input.
fn check_refused(input: &str, e: &ResourceError, text_form: bool) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.trim().is_empty(), "{input:?}: empty error");
    if !text_form {
        return Ok(());
    }
    let named = match e {
        ResourceError::InvalidItem { item, .. } => Some(item),
        ResourceError::InvalidScalar { name, .. }
        | ResourceError::InvalidRange { name, .. }
        | ResourceError::WrongType { name, .. }
        | ResourceError::InvalidReservation { name, .. }
        | ResourceError::InvalidVolume { name, .. }
        | ResourceError::InvalidRole { name, .. } => Some(name),
        ResourceError::Json(_) => None,
    };
    if let Some(named) = named {
        prop_assert!(
            !named.is_empty() && input.contains(named.as_str()),
            "{input:?}: the error `{msg}` names `{named}`, not in the input"
        );
    }
    Ok(())
}

fn check_text(input: &str) -> Result<(), TestCaseError> {
    let text_form = !input.trim_start().starts_with(['[', '{']);
    match Resources::parse(input) {
        Ok(r) => check_accepted(input, &r),
        Err(e) => check_refused(input, &e, text_form),
    }
}

/// A wire-form resource with every field random.
fn wire_resource() -> impl Strategy<Value = crate::v1::Resource> {
    use crate::v1;
    let value = prop_oneof![
        Just(None),
        prop_oneof![
            4 => 0i64..10_000_000,
            1 => any::<i64>(),
        ]
        .prop_map(|m| Some(v1::resource::Value::ScalarMilli(m))),
        prop::collection::vec(
            prop_oneof![3 => (0u64..70_000, 0u64..100).prop_map(|(b, l)| (b, b + l)), 1 => any::<(u64, u64)>()],
            0..3
        )
        .prop_map(|rs| Some(v1::resource::Value::Ranges(v1::Ranges {
            range: rs.into_iter().map(|(begin, end)| v1::Range { begin, end }).collect(),
        }))),
        prop::collection::vec("\\PC{0,4}", 0..3)
            .prop_map(|item| Some(v1::resource::Value::Set(v1::Set { item }))),
    ];
    (
        resource_name(),
        value,
        role(),
        prop_oneof![3 => 0i32..3, 1 => any::<i32>()],
        principal(),
        prop::option::of(("\\PC{0,4}", "\\PC{0,6}")),
    )
        .prop_map(
            |(name, value, role, reservation_type, principal, vol)| v1::Resource {
                name,
                value,
                role,
                reservation_type,
                principal,
                volume: vol.map(|(id, container_path)| v1::PersistentVolume { id, container_path }),
            },
        )
}

fn master_list_text() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        4 => "[a-z][a-z0-9.-]{0,8}",
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        1 => prop::sample::select(vec!["[::1]", "::1", "", "[", "h é", "a/b"]).prop_map(String::from),
    ];
    let port = prop_oneof![
        4 => (1u32..65_536).prop_map(|p| p.to_string()),
        1 => prop::sample::select(vec!["0", "65536", "", "x", "-1", "5050/"]).prop_map(String::from),
    ];
    let entry = (
        prop::sample::select(vec!["", "", "http://", "HTTP://", "https://", " "]),
        host,
        prop_oneof![4 => Just(":"), 1 => Just(""), 1 => Just("::")],
        port,
        prop::sample::select(vec!["", "", "/", " ", "//"]),
    )
        .prop_map(|(scheme, h, colon, p, tail)| format!("{scheme}{h}{colon}{p}{tail}"));
    (prop::collection::vec(entry, 0..4), mutations(2))
        .prop_map(|(entries, ops)| fuzzing::mutate(&entries.join(","), &ops))
}

proptest! {
    #![proptest_config(config(5_000))]

    #[test]
    fn resource_text_never_panics_and_round_trips(input in resource_text()) {
        check_text(&input)?;
    }

    #[test]
    fn mutated_valid_resources_never_panic_and_round_trip(input in mutated_seed()) {
        check_text(&input)?;
    }

    #[test]
    fn resource_json_never_panics_and_round_trips(input in resource_json()) {
        match Resources::parse_json(&input) {
            Ok(r) => check_accepted(&input, &r)?,
            Err(e) => check_refused(&input, &e, false)?,
        }
        // `parse` detects JSON by its first character; either way it must not panic.
        let _ = Resources::parse(&input);
    }

    #[test]
    fn wire_resources_never_panic_and_round_trip(
        list in prop::collection::vec(wire_resource(), 0..5),
    ) {
        match Resources::from_proto(&list) {
            Ok(r) => check_accepted(&format!("{list:?}"), &r)?,
            Err(e) => check_refused("", &e, false)?,
        }
    }

    #[test]
    fn master_lists_never_panic_and_round_trip(input in master_list_text()) {
        match MasterList::parse(&input) {
            Ok(list) => {
                let again = MasterList::parse(&list.to_string());
                prop_assert_eq!(
                    again.as_ref().map(MasterList::masters),
                    Ok(list.masters()),
                    "{:?} printed as {}", input, list
                );
                let mut l = list.clone();
                for m in list.masters() {
                    let _ = l.follow_address(m);
                    let _ = l.advance();
                }
            }
            Err(MasterListError::Empty) => prop_assert!(input.trim().is_empty()),
            Err(MasterListError::BadEntry { entry, list, position, .. }) => {
                prop_assert_eq!(list, input.clone());
                prop_assert_eq!(input.split(',').nth(position - 1), Some(entry.as_str()));
            }
        }
    }
}
