//! Fuzz test of the ACL parser (issue 18, item 7): ACL files built from Mesos's format (every
//! action, principals and objects as value lists or ANY/NONE, `permissive`), then mutated.
//! Properties: nothing panics; an error names the file; a parsed file answers every question
//! (any principal, any object) without panicking, and with no rule for an action it answers
//! `permissive`.

use proffer_proto::fuzzing;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::{Acls, Action, Authorizer};

fn config() -> Config {
    Config {
        cases: fuzzing::cases(256),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0xAC15)),
        failure_persistence: None,
        ..Config::default()
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["ops", "web", "*", "eng/%", "eng/ml", "", "a b"])
            .prop_map(String::from),
        2 => "[a-z/%*]{0,8}",
        1 => "\\PC{0,6}",
    ]
}

fn entity() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => prop::collection::vec(name(), 0..3).prop_map(|v| serde_json::json!({"values": v})),
        1 => prop::sample::select(vec!["ANY", "NONE", "SOME"])
            .prop_map(|t| serde_json::json!({"type": t})),
        1 => Just(serde_json::json!(42)),
    ]
}

fn acls_text() -> impl Strategy<Value = String> {
    let rule = (
        prop::sample::select(Action::ALL.to_vec()),
        entity(),
        entity(),
    );
    (
        prop::option::of(any::<bool>()),
        prop::collection::vec(rule, 0..5),
        prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..3),
    )
        .prop_map(|(permissive, rules, ops)| {
            let mut root = serde_json::Map::new();
            if let Some(p) = permissive {
                root.insert("permissive".into(), p.into());
            }
            for (action, principals, object) in rules {
                let entry = root
                    .entry(action.key())
                    .or_insert_with(|| serde_json::json!([]));
                if let Some(list) = entry.as_array_mut() {
                    list.push(serde_json::json!({
                        "principals": principals,
                        action.object_key(): object,
                    }));
                }
            }
            fuzzing::mutate(&serde_json::Value::Object(root).to_string(), &ops)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn acl_files_never_panic_and_answer_every_question(
        text in acls_text(),
        principal in prop::option::of(name()),
        object in prop::option::of(name()),
    ) {
        match Acls::parse(&text, "acls.json") {
            Err(e) => prop_assert!(e.to_string().contains("acls.json"), "{e}"),
            Ok(acls) => {
                let permissive = acls.permissive;
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let authz = Authorizer::new(acls);
                for &action in Action::ALL {
                    let allowed = authz.is_allowed(principal.as_deref(), action, object.as_deref());
                    let denied = authz.authorize(principal.as_deref(), action, object.as_deref());
                    prop_assert_eq!(allowed, denied.is_ok());
                    if value.get(action.key()).is_none() {
                        prop_assert_eq!(allowed, permissive, "{} without rules", action.key());
                    }
                }
            }
        }
    }
}
