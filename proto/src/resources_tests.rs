use super::*;
use proptest::prelude::*;

fn r(s: &str) -> Resources {
    match Resources::parse(s) {
        Ok(r) => r,
        Err(e) => panic!("parse `{s}`: {e}"),
    }
}

#[test]
fn parses_mesos_text_form() {
    let res = r("cpus:4;mem:8192;ports:[31000-32000];disks:{a,b}");
    assert_eq!(res.cpus_milli(), 4000);
    assert_eq!(res.mem_milli(), 8_192_000);
    assert_eq!(res.ranges("ports").count(), 1001);
    assert_eq!(
        res.to_string(),
        "cpus:4;disks:{a,b};mem:8192;ports:[31000-32000]"
    );
}

#[test]
fn parses_roles_fractions_and_merges_duplicates() {
    let res = r("cpus(eng/ml):1.5; cpus:0.25; cpus:0.25; ports:[1-3,4-6,10-10]");
    assert_eq!(res.cpus_milli(), 2000);
    assert_eq!(res.for_role("eng/ml").cpus_milli(), 1500);
    assert_eq!(
        res.to_string(),
        "cpus:0.5;cpus(eng/ml):1.5;ports:[1-6,10-10]"
    );
}

#[test]
fn rounds_to_three_decimals() {
    assert_eq!(r("cpus:0.0014").cpus_milli(), 1);
    assert_eq!(r("cpus:0.1").cpus_milli(), 100);
    assert_eq!(format_milli(1), "0.001");
    assert_eq!(format_milli(1500), "1.5");
}

#[test]
fn rejects_malformed_text_with_a_clear_error() {
    let table = [
        ("cpus", "expected `name:value`"),
        ("cpus:-1", "negative"),
        ("cpus:abc", "not a number"),
        ("cpus:NaN", "not a finite number"),
        ("cpus:inf", "not a finite number"),
        ("ports:[5-1]", "invalid range `5-1`"),
        ("ports:[1-2", "unclosed `[`"),
        ("cpus:[1-2]", "must be a scalar"),
        ("ports:3", "must be ranges"),
        (":3", "empty name"),
        ("cpus(a b):1", "invalid role"),
        ("cpus(..):1", "invalid role"),
        ("cp us:1", "not allowed in a name"),
        ("cpus(x:1", "unclosed `(role)`"),
        // Values that would silently vanish or leave the valid domain.
        (
            "cpus:1e-9",
            "resource `cpus`: invalid scalar 1e-9: rounds to zero",
        ),
        (
            "cpus:1e300",
            "resource `cpus`: invalid scalar 1e300: too large",
        ),
        (
            "mem:0.0004",
            "resource `mem`: invalid scalar 0.0004: rounds to zero",
        ),
        ("cpus:1e13", "too large (at most 1000000000000)"),
        (
            "gpus:0.5",
            "resource `gpus`: invalid scalar 0.5: gpus are allocated whole",
        ),
        ("gpus(ml):1.25", "gpus are allocated whole"),
        (
            "ports:[1-70000]",
            "invalid range `1-70000`: ports end at 65535",
        ),
        ("ports:[31000-32000,65535-65536]", "ports end at 65535"),
        ("ports:[a-2]", "invalid range `a-2`: not a number"),
    ];
    for (input, want) in table {
        match Resources::parse(input) {
            Ok(v) => panic!("`{input}` parsed as {v}"),
            Err(e) => assert!(
                e.to_string().contains(want),
                "`{input}`: got `{e}`, want `{want}`"
            ),
        }
    }
}

#[test]
fn accepts_values_at_the_edges() {
    assert_eq!(
        r("cpus:0;mem:32").cpus_milli(),
        0,
        "an explicit zero is no entry"
    );
    assert_eq!(
        r("cpus:0.0005").cpus_milli(),
        1,
        "rounds up to the resolution"
    );
    assert_eq!(r("gpus:2").scalar_milli("gpus"), 2000);
    assert_eq!(r("ports:[0-65535]").ranges("ports").count(), 65_536);
    assert_eq!(r("cpus:1e12").cpus_milli(), MAX_SCALAR_MILLI);
    // The port bound is for `ports` only; other range resources keep the u64 domain.
    assert_eq!(r("ids:[1-70000]").ranges("ids").count(), 70_000);
}

#[test]
fn numbers_in_messages_stay_short() {
    let table = [
        (0.5, "0.5"),
        (-1.0, "-1"),
        (0.0, "0"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (1e300, "1e300"),
        (-2.5e20, "-2.5e20"),
        (1e-9, "1e-9"),
        (123_456.0, "123456"),
    ];
    for (v, want) in table {
        assert_eq!(format_f64(v), want);
    }
}

#[test]
fn allocatable_needs_cpus_or_mem_above_mesos_minimum() {
    let table = [
        ("", false),
        ("disk:1000;ports:[31000-32000]", false),
        ("cpus:0.009;mem:31.999", false),
        ("cpus:0.01", true),
        ("mem:32", true),
        ("cpus(web):0.5", true),
    ];
    for (text, want) in table {
        assert_eq!(r(text).is_allocatable(), want, "`{text}`");
    }
}

#[test]
fn parses_json_forms() {
    let mesos = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},
        {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":5}]}},
        {"name":"mem","role":"web","scalar":{"value":64}}]"#;
    assert_eq!(r(mesos).to_string(), "cpus:2;mem(web):64;ports:[1-5]");
    assert_eq!(
        r(r#"{"cpus": 1, "mem": 128, "ports": "[80-81]"}"#).to_string(),
        "cpus:1;mem:128;ports:[80-81]"
    );
    for bad in [
        r#"{"cpus": -1}"#,
        r#"[{"type":"SCALAR"}]"#,
        r#"{"cpus": true}"#,
        "[1,",
        "7",
    ] {
        assert!(Resources::parse(bad).is_err(), "{bad}");
    }
    let table = [
        (r#"{"gpus": 0.5}"#, "gpus are allocated whole"),
        (r#"{"cpus": 1e-9}"#, "rounds to zero"),
        (
            r#"[{"name":"gpus","type":"SCALAR","scalar":{"value":1.5}}]"#,
            "gpus are allocated whole",
        ),
        (
            r#"[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":70000}]}}]"#,
            "ports end at 65535",
        ),
        (
            r#"[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]"#,
            "begin is after end",
        ),
        (
            r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":1e300}}]"#,
            "too large",
        ),
    ];
    for (input, want) in table {
        match Resources::parse(input) {
            Ok(v) => panic!("`{input}` parsed as {v}"),
            Err(e) => assert!(e.to_string().contains(want), "`{input}`: got `{e}`"),
        }
    }
}

#[test]
fn proto_round_trip_and_validation() {
    let res = r("cpus:1;mem(web):64;ports:[1-5];disks:{x}");
    assert_eq!(Resources::from_proto(&res.to_proto()), Ok(res));
    let neg = vec![v1::Resource {
        name: "cpus".into(),
        role: String::new(),
        value: Some(v1::resource::Value::ScalarMilli(-5)),
        ..Default::default()
    }];
    assert!(Resources::from_proto(&neg).is_err());
}

/// The wire form (what the master validates agents, tasks, quotas and reservations with)
/// refuses what the text form refuses.
#[test]
fn proto_refuses_out_of_domain_values() {
    let scalar = |name: &str, m: i64| v1::Resource {
        name: name.into(),
        value: Some(v1::resource::Value::ScalarMilli(m)),
        ..Default::default()
    };
    let ports = |begin: u64, end: u64| v1::Resource {
        name: "ports".into(),
        value: Some(v1::resource::Value::Ranges(v1::Ranges {
            range: vec![v1::Range { begin, end }],
        })),
        ..Default::default()
    };
    let table = [
        (
            scalar("cpus", -5),
            "resource `cpus`: invalid scalar -0.005: negative",
        ),
        (scalar("cpus", i64::MAX), "resource `cpus`: invalid scalar"),
        (scalar("mem", MAX_SCALAR_MILLI + 1), "too large"),
        (
            scalar("gpus", 500),
            "resource `gpus`: invalid scalar 0.5: gpus are allocated whole",
        ),
        (
            ports(1, 70_000),
            "resource `ports`: invalid range `1-70000`: ports end at 65535",
        ),
        (ports(9, 3), "invalid range `9-3`: begin is after end"),
    ];
    for (wire, want) in table {
        match Resources::from_proto(std::slice::from_ref(&wire)) {
            Ok(v) => panic!("{wire:?} accepted as {v}"),
            Err(e) => assert!(e.to_string().contains(want), "{wire:?}: got `{e}`"),
        }
    }
    for ok in [
        scalar("gpus", 3000),
        scalar("cpus", MAX_SCALAR_MILLI),
        ports(0, 65_535),
    ] {
        assert!(
            Resources::from_proto(std::slice::from_ref(&ok)).is_ok(),
            "{ok:?}"
        );
    }
}

#[test]
fn arithmetic() {
    let a = r("cpus:4;mem:1024;ports:[1-10]");
    let b = r("cpus:1;mem:24;ports:[3-4]");
    assert!(a.contains(&b));
    assert!(!b.contains(&a));
    let d = a.checked_sub(&b).expect("contained");
    assert_eq!(d.to_string(), "cpus:3;mem:1000;ports:[1-2,5-10]");
    assert_eq!(d.plus(&b), a);
    assert!(a.checked_sub(&r("cpus:5")).is_none());
    assert!(!a.contains(&r("cpus(web):1")), "reserved is not unreserved");
    assert!((r("cpus:2;mem:512").dominant_share(&a) - 0.5).abs() < 1e-9);
}

fn arb_resources() -> impl Strategy<Value = Resources> {
    (
        0i64..10_000,
        0i64..100_000,
        proptest::collection::vec((0u64..200, 0u64..20), 0..4),
    )
        .prop_map(|(c, m, ports)| {
            let mut r = Resources::scalar("cpus", c);
            r.add(&Resources::scalar("mem", m));
            let rs = RangeSet::from_ranges(ports.into_iter().map(|(b, len)| (b, b + len)));
            if !rs.is_empty() {
                r.add_value(
                    ResourceKey::new("ports", UNRESERVED, Kind::Ranges),
                    Value::Ranges(rs),
                );
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn add_then_sub_is_identity(a in arb_resources(), b in arb_resources()) {
        let sum = a.plus(&b);
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        let back = sum.checked_sub(&b);
        prop_assert!(back.is_some());
        // Ranges may overlap, so only scalars are exactly restored.
        let back = back.unwrap_or_default();
        prop_assert_eq!(back.cpus_milli(), a.cpus_milli());
        prop_assert_eq!(back.mem_milli(), a.mem_milli());
    }

    #[test]
    fn text_form_round_trips(a in arb_resources()) {
        let parsed = Resources::parse(&a.to_string());
        prop_assert_eq!(parsed, Ok(a));
    }

    #[test]
    fn range_difference_is_disjoint(a in arb_resources(), b in arb_resources()) {
        let (ra, rb) = (a.ranges("ports"), b.ranges("ports"));
        let d = ra.difference(&rb);
        prop_assert!(ra.contains(&d));
        for &(x, y) in d.ranges() {
            for &(p, q) in rb.ranges() {
                prop_assert!(y < p || x > q);
            }
        }
        prop_assert_eq!(d.union(&rb), ra.union(&rb));
    }
}

#[test]
fn short_string_order_matches_str_order() {
    let words = [
        "",
        "a",
        "ab",
        "ab\0",
        "abc",
        "b",
        "cpus",
        "mem",
        "disk",
        "ports",
        "*",
        "role/a",
        "role/b",
        "0123456789abcdef",
        "0123456789abcdeg",
        "0123456789abcdef0",
        "zz",
        "é",
    ];
    for a in words {
        for b in words {
            assert_eq!(super::short_str_cmp(a, b), a.cmp(b), "{a:?} vs {b:?}");
        }
    }
}

// Inputs the fuzz targets (`fuzz_tests`) found, kept as plain tests.

/// Refused with an error naming `want`.
fn refused(input: &str, want: &str) {
    match Resources::parse(input) {
        Ok(r) => panic!("{input:?} accepted as {r}"),
        Err(e) => assert!(e.to_string().contains(want), "{input:?}: got `{e}`"),
    }
}

/// Repeated entries added up past the largest scalar: accepted, then printed as a value the
/// parser refuses.
#[test]
fn regression_repeated_entries_add_up_within_the_domain() {
    refused(
        "cpus:6e11;cpus:6e11",
        "resource `cpus`: invalid scalar 1200000000000: the sum of its entries is too large",
    );
    refused(
        r#"[{"name":"mem","scalar":{"value":1e12}},{"name":"mem","scalar":{"value":1}}]"#,
        "the sum of its entries is too large",
    );
    assert!(
        Resources::parse("cpus:5e11;cpus:5e11").is_ok(),
        "the bound itself"
    );
}

/// The JSON and wire forms took any resource name (empty, `{em`, `a;b`) and any set item
/// (empty, `a,b`): the value printed as text that does not parse back.
#[test]
fn regression_json_and_wire_names_and_set_items_are_checked() {
    refused(
        r#"[{"name":"","scalar":{"value":1}}]"#,
        "invalid resource item ``: empty name",
    );
    refused(
        r#"[{"name":"{em","role":"web","scalar":{"value":64}}]"#,
        "invalid resource item `{em`: character `{` not allowed in a name",
    );
    refused(
        r#"[{"name":"disks","type":"SET","set":{"item":["a,b"]}}]"#,
        "set item \"a,b\"",
    );
    let wire = |name: &str, item: &str| v1::Resource {
        name: name.into(),
        role: "a".into(),
        value: Some(v1::resource::Value::Set(v1::Set {
            item: vec![item.into()],
        })),
        ..Default::default()
    };
    for (name, item, want) in [
        ("disks", "", "set item \"\""),
        ("disks", " x", "set item \" x\""),
        ("a;b", "x", "character `;` not allowed in a name"),
    ] {
        match Resources::from_proto(&[wire(name, item)]) {
            Ok(r) => panic!("{name:?} {item:?} accepted as {r}"),
            Err(e) => assert!(e.to_string().contains(want), "got `{e}`"),
        }
    }
    assert!(Resources::from_proto(&[wire("disks", "a}b")]).is_ok());
}

#[test]
fn role_limits_just_below_pass_and_just_above_are_refused() {
    let seg = |n: usize| "a".repeat(n);
    assert_eq!(validate_role(&seg(MAX_ROLE_LEN)), Ok(()));
    let err = validate_role(&seg(MAX_ROLE_LEN + 1)).expect_err("too long");
    assert!(err.contains("257 bytes") && err.contains("256"), "{err}");
    let deep = |n: usize| vec!["a"; n].join("/");
    assert_eq!(validate_role(&deep(MAX_ROLE_DEPTH)), Ok(()));
    let err = validate_role(&deep(MAX_ROLE_DEPTH + 1)).expect_err("too deep");
    assert!(err.contains("16 path segments"), "{err}");
}

#[test]
fn a_role_name_of_3_9_mb_is_refused_quickly() {
    let huge = "r".repeat(3_900_000);
    let start = std::time::Instant::now();
    let err = validate_role(&huge).expect_err("3.9 MB role");
    assert!(err.contains("the limit is 256"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}
