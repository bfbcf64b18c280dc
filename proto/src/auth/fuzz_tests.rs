//! Fuzz tests of authentication's parsers (issue 18, item 7): the credentials file and the
//! `authorization` header. Inputs are built from the formats (principals at the edges, secrets
//! and tokens, Basic and Bearer values), then mutated at the byte level.
//!
//! Properties: nothing panics; no error ever quotes a secret or a token; a file that parses
//! proves exactly its principals — `Basic principal:secret` gives the principal, anything
//! else is refused.
//!
//! `PROFFER_FUZZ_CASES=N` and `PROFFER_FUZZ_SEED=S` as for the other targets
//! (see [`crate::fuzzing`]).

use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::{Credentials, Gate};
use crate::fuzzing;

fn config() -> Config {
    Config {
        cases: fuzzing::cases(256),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0xA7_1418)),
        failure_persistence: None,
        ..Config::default()
    }
}

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z][a-z0-9_.-]{0,10}",
        1 => prop::sample::select(vec!["", " ", "a:b", "é", "a\u{0}b", "x".repeat(300).leak()])
            .prop_map(String::from),
        1 => "\\PC{0,6}",
    ]
}

/// Secrets carry a marker so that a leak into an error message is recognisable.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9]{4,20}".prop_map(|s| format!("SeCrEt{s}")),
        1 => Just(String::new()),
    ]
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9]{10,24}".prop_map(|s| format!("ToKeN{s}")),
        1 => "[a-z]{0,8}".prop_map(|s| format!("ToKeN{s}")),
    ]
}

/// A credentials file: structured, then maybe mutated.
fn file() -> impl Strategy<Value = (String, Vec<(String, String)>, Vec<String>)> {
    (
        prop::collection::vec((principal(), secret()), 0..4),
        prop::collection::vec((principal(), token()), 0..3),
        prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..3),
    )
        .prop_map(|(creds, tokens, ops)| {
            let json = serde_json::json!({
                "credentials": creds.iter().map(|(p, s)| serde_json::json!({"principal": p, "secret": s})).collect::<Vec<_>>(),
                "tokens": tokens.iter().map(|(p, t)| serde_json::json!({"principal": p, "token": t})).collect::<Vec<_>>(),
            });
            let text = fuzzing::mutate(&json.to_string(), &ops);
            let toks = tokens.into_iter().map(|(_, t)| t).collect();
            (text, creds, toks)
        })
}

/// Secrets and tokens (at least 4 characters) that must never appear in a message.
fn leaks<'a>(
    message: &str,
    creds: &'a [(String, String)],
    tokens: &'a [String],
) -> Option<&'a str> {
    creds
        .iter()
        .map(|(_, s)| s.as_str())
        .chain(tokens.iter().map(String::as_str))
        .filter(|s| s.len() >= 8)
        .find(|s| message.contains(*s))
}

fn basic(principal: &str, secret: &str) -> String {
    let raw = format!("{principal}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (principal(), secret()).prop_map(|(p, s)| basic(&p, &s)),
        2 => token().prop_map(|t| format!("Bearer {t}")),
        1 => "\\PC{0,24}",
        1 => "[A-Za-z]{0,7} [A-Za-z0-9+/=]{0,24}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn credentials_files_never_panic_never_leak_and_prove_their_principals(
        (text, creds, tokens) in file(),
        wrong in header(),
    ) {
        match Credentials::parse(&text, "fuzz.json") {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("fuzz.json"), "names the file: {msg}");
                prop_assert!(leaks(&msg, &creds, &tokens).is_none(), "leaks a secret: {msg}");
            }
            Ok(parsed) => {
                let gate = Gate::new(Some(std::sync::Arc::new(parsed.clone())), true, "fuzz");
                for (p, s) in &creds {
                    if text.contains(s.as_str())
                        && text.contains(p.as_str())
                        && let Ok(who) = parsed.verify(&basic(p, s))
                    {
                        prop_assert_eq!(&who, p);
                    }
                }
                // A presented value either proves a listed principal or is refused without
                // quoting a secret.
                match gate.authenticate(Some(&wrong), None) {
                    Ok(who) => {
                        let p = who.0.unwrap_or_default();
                        let listed = creds.iter().any(|(c, s)| *c == p && wrong == basic(c, s))
                            || tokens.iter().any(|t| wrong.trim() == format!("Bearer {t}"));
                        prop_assert!(listed, "`{wrong}` proved `{p}`");
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        prop_assert!(leaks(&msg, &creds, &tokens).is_none(), "leaks: {msg}");
                    }
                }
            }
        }
    }

    #[test]
    fn authorization_values_never_panic(value in "\\PC{0,40}", creds in (principal(), secret())) {
        let (p, s) = creds;
        let json = serde_json::json!({"credentials": [{"principal": p, "secret": s}]});
        if let Ok(parsed) = Credentials::parse(&json.to_string(), "fuzz") {
            let r = parsed.verify(&value);
            if let Err(e) = r {
                prop_assert!(s.len() < 8 || !e.to_string().contains(&s));
            }
        }
    }
}
