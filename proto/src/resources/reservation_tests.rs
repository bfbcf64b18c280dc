//! Static and dynamic reservations and persistent volumes: parsing, printing, proto and JSON
//! round trips, conversions, and refusals.

use proptest::prelude::*;

use super::*;

fn r(s: &str) -> Resources {
    match Resources::parse(s) {
        Ok(r) => r,
        Err(e) => panic!("parse `{s}`: {e}"),
    }
}

#[test]
fn text_form_of_reservations_and_volumes() {
    let res = r(
        "cpus(web):1; cpus(web,dynamic):2; cpus(web,dynamic=alice):3; \
                 disk(web,dynamic=alice)[data:mnt/data]:100; disk(db)[logs:logs]:5; mem:64",
    );
    // Different reservations never merge.
    assert_eq!(res.for_role("web").cpus_milli(), 6000);
    assert_eq!(res.dynamically_reserved().cpus_milli(), 5000);
    assert_eq!(
        res.to_string(),
        "cpus(web):1;cpus(web,dynamic):2;cpus(web,dynamic=alice):3;\
         disk(db)[logs:logs]:5;disk(web,dynamic=alice)[data:mnt/data]:100;mem:64"
    );
    assert_eq!(r(&res.to_string()), res, "text round trip");
    assert_eq!(Resources::from_proto(&res.to_proto()), Ok(res.clone()));
    let vols: Vec<&str> = res.volumes().map(|(_, v, _)| v.id.as_str()).collect();
    assert_eq!(vols, ["logs", "data"]);
    // `static` is accepted and printed as the plain form.
    assert_eq!(r("cpus(web,static):1").to_string(), "cpus(web):1");
    assert_eq!(
        r("cpus(web , dynamic = bob ):1").to_string(),
        "cpus(web,dynamic=bob):1"
    );
}

#[test]
fn conversions_keep_quantities() {
    let res = r("cpus(web,dynamic):2;disk(web,dynamic)[d:d]:10;ports(web):[1-2]");
    assert_eq!(res.unreserved().to_string(), "cpus:2;disk:10;ports:[1-2]");
    assert_eq!(
        res.without_volumes().to_string(),
        "cpus(web,dynamic):2;disk(web,dynamic):10;ports(web):[1-2]"
    );
    let entries: Vec<String> = res.entries().map(|e| e.to_string()).collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1], "disk(web,dynamic)[d:d]:10");
    // Arithmetic tells labels apart.
    assert!(!res.contains(&r("cpus(web):1")), "static is not dynamic");
    assert!(
        !res.contains(&r("disk(web,dynamic):1")),
        "volume is not plain disk"
    );
    assert!(res.contains(&r("cpus(web,dynamic):1")));
    assert!(!r("cpus(web,dynamic=a):1").contains(&r("cpus(web,dynamic=b):1")));
}

#[test]
fn refuses_bad_reservations_and_volumes() {
    let table = [
        ("cpus(*,dynamic):1", "needs a role other than `*`"),
        ("cpus(web,weird):1", "is not `static`, `dynamic`"),
        ("cpus(web,dynamic,x):1", "expected `(role)`"),
        ("cpus(web,dynamic=a b):1", "not allowed in a principal"),
        ("mem(web)[v:p]:1", "only on `disk`"),
        ("disk[v:p]:1", "needs reserved disk"),
        ("disk(web)[v]:1", "`[id:container_path]`"),
        ("disk(web)[v:p:1", "unclosed `[id:container_path]`"),
        ("disk(web)[:p]:1", "volume id is empty"),
        ("disk(web)[a/b:p]:1", "not allowed in volume id"),
        ("disk(web)[v:/abs]:1", "must be relative"),
        ("disk(web)[v:a/../b]:1", "must not contain `..`"),
        ("disk(web)[v:]:1", "empty container path"),
        ("disk(web)[v:p]x:1", "expected `name:value`"),
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
fn json_forms_of_reservations_and_volumes() {
    let mesos = r#"[
        {"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"web",
         "reservations":[{"type":"DYNAMIC","role":"web","principal":"ops"}]},
        {"name":"cpus","scalar":{"value":2},"role":"web","reservation":{}},
        {"name":"disk","scalar":{"value":64},"role":"db","reservation":{"principal":"p"},
         "disk":{"persistence":{"id":"v1"},"volume":{"container_path":"data","mode":"RW"}}},
        {"name":"disk","scalar":{"value":8},"role":"db","reservation_type":"STATIC",
         "volume":{"id":"v2","container_path":"x"}},
        {"name":"mem","scalar":{"value":3},"role":"db"}
    ]"#;
    assert_eq!(
        r(mesos).to_string(),
        "cpus(web,dynamic):2;cpus(web,dynamic=ops):1;disk(db)[v2:x]:8;\
         disk(db,dynamic=p)[v1:data]:64;mem(db):3"
    );
    assert_eq!(
        r(r#"{"cpus(web,dynamic)": 1.5, "disk(web)[v:v]": "10"}"#).to_string(),
        "cpus(web,dynamic):1.5;disk(web)[v:v]:10"
    );
    for bad in [
        r#"[{"name":"cpus","scalar":{"value":1},"reservations":[{"role":"a"},{"role":"a/b"}]}]"#,
        r#"[{"name":"cpus","scalar":{"value":1},"reservation":{}}]"#,
        r#"[{"name":"cpus","scalar":{"value":1},"role":"a","reservation_type":"MAYBE"}]"#,
        r#"[{"name":"disk","scalar":{"value":1},"role":"a","volume":{"id":"v"}}]"#,
        r#"[{"name":"disk","scalar":{"value":1},"role":7}]"#,
    ] {
        assert!(Resources::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn proto_fields_and_refusals() {
    let res = r("cpus(web,dynamic=alice):1;disk(web)[v:v]:2;mem:3");
    let wire = res.to_proto();
    assert_eq!(
        wire[0].reservation_type,
        v1::ReservationType::Dynamic as i32
    );
    assert_eq!(wire[0].principal, "alice");
    assert_eq!(wire[1].reservation_type, v1::ReservationType::Static as i32);
    assert_eq!(wire[1].volume.as_ref().map(|v| v.id.as_str()), Some("v"));
    assert_eq!(
        wire[2].reservation_type,
        v1::ReservationType::Unspecified as i32
    );
    // A reserved resource without a reservation type (an older sender) is static.
    let old = v1::Resource {
        name: "cpus".into(),
        role: "web".into(),
        value: Some(v1::resource::Value::ScalarMilli(1000)),
        ..Default::default()
    };
    assert_eq!(
        Resources::from_proto(std::slice::from_ref(&old)),
        Ok(r("cpus(web):1"))
    );
    let bad = [
        v1::Resource {
            reservation_type: v1::ReservationType::Dynamic as i32,
            role: "*".into(),
            ..old.clone()
        },
        v1::Resource {
            principal: "p".into(),
            ..old.clone()
        },
        v1::Resource {
            reservation_type: 42,
            ..old.clone()
        },
        v1::Resource {
            volume: Some(v1::PersistentVolume {
                id: "v".into(),
                container_path: "p".into(),
            }),
            ..old.clone()
        },
    ];
    for b in bad {
        assert!(
            Resources::from_proto(std::slice::from_ref(&b)).is_err(),
            "{b:?}"
        );
    }
}

fn arb_labelled() -> impl Strategy<Value = Resources> {
    let role = prop::sample::select(vec!["*", "web", "eng/ml"]);
    let kind = 0u8..3;
    let principal = prop::sample::select(vec!["", "alice"]);
    let vol = prop::option::of(prop::sample::select(vec!["v1", "v2"]));
    proptest::collection::vec((role, kind, principal, vol, 1i64..5_000), 0..6).prop_map(|items| {
        let mut out = Resources::new();
        for (role, kind, principal, vol, milli) in items {
            let reserved = role != UNRESERVED;
            let reservation = if reserved && kind == 2 {
                Reservation::dynamic(principal)
            } else {
                Reservation::Static
            };
            let (name, volume) = match vol {
                Some(id) if reserved && kind > 0 => (
                    "disk",
                    Some(Volume {
                        id: id.into(),
                        container_path: format!("mnt/{id}"),
                    }),
                ),
                _ => ("cpus", None),
            };
            let key = ResourceKey {
                name: name.into(),
                role: role.into(),
                kind: Kind::Scalar,
                reservation,
                volume,
            };
            out.add(&Resources::from_entry(key, Value::Scalar(milli)));
        }
        out
    })
}

proptest! {
    #[test]
    fn labelled_text_json_and_proto_round_trip(a in arb_labelled()) {
        prop_assert_eq!(Resources::parse(&a.to_string()), Ok(a.clone()));
        prop_assert_eq!(Resources::from_proto(&a.to_proto()), Ok(a.clone()));
        let unreserved = a.unreserved();
        prop_assert_eq!(unreserved.scalar_milli("cpus") + unreserved.scalar_milli("disk"),
            a.scalar_milli("cpus") + a.scalar_milli("disk"));
        prop_assert!(unreserved.iter().all(|(k, _)| !k.is_reserved() && k.volume.is_none()));
    }
}

#[test]
fn reported_totals_regain_known_reservations_and_volumes() {
    let known = r(
        "cpus:3;cpus(web,dynamic=a):1;disk:50;disk(web,dynamic)[v:v]:50;\
                   disk(db)[w:w]:10;disk(db):5;mem:1024",
    );
    let reported = r("cpus:4;disk:100;disk(db):15;mem:1024");
    assert_eq!(reported.with_operations_of(&known), known);
    // Resources the agent no longer has are not invented.
    let smaller = r("cpus:4;disk:20;mem:1024");
    assert_eq!(
        smaller.with_operations_of(&known).to_string(),
        "cpus:3;cpus(web,dynamic=a):1;disk:20;mem:1024"
    );
    // Static reservations and plain resources come from the report alone.
    assert_eq!(reported.with_operations_of(&r("cpus(web):2")), reported);
}
