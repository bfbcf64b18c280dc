use std::sync::Arc;

use super::*;

const FILE: &str = r#"{
  "credentials": [{"principal": "ops", "secret": "s3cret"}, {"principal": "fw", "secret": "x"}],
  "tokens": [{"principal": "ci", "token": "0123456789abcdef0123"}]
}"#;

fn creds() -> Arc<Credentials> {
    Arc::new(Credentials::parse(FILE, "test.json").expect("parses"))
}

#[test]
fn basic_and_bearer_round_trip() {
    let c = creds();
    let ops = Credential::basic("ops", "s3cret").expect("valid");
    assert_eq!(c.verify(&ops.authorization()), Ok("ops".to_string()));
    let ci = Credential::bearer("0123456789abcdef0123").expect("valid");
    assert_eq!(c.verify(&ci.authorization()), Ok("ci".to_string()));
    let wrong = Credential::basic("ops", "s3creT").expect("valid");
    assert_eq!(
        c.verify(&wrong.authorization()),
        Err(AuthError::Rejected("ops".into()))
    );
    let unknown = Credential::basic("eve", "s3cret").expect("valid");
    assert_eq!(
        c.verify(&unknown.authorization()),
        Err(AuthError::Rejected("eve".into()))
    );
    assert_eq!(c.verify("Bearer nope"), Err(AuthError::BadToken));
    for bad in ["Basic !!!", "Digest abc", "Basic", "Basic b3Bz"] {
        assert!(
            matches!(c.verify(bad), Err(AuthError::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn gates_require_or_allow_anonymous_and_always_check_what_is_presented() {
    let c = creds();
    let required = Gate::new(Some(c.clone()), true, "framework calls");
    let optional = Gate::new(Some(c.clone()), false, "operator reads");
    let open = Gate::open("operator reads");
    let good = Credential::basic("fw", "x").expect("valid").authorization();
    let bad = Credential::basic("fw", "y").expect("valid").authorization();
    let who = |g: &Gate, a: Option<&str>, peer: Option<&str>| g.authenticate(a, peer);
    assert_eq!(
        who(&required, None, None),
        Err(AuthError::Missing {
            surface: "framework calls"
        })
    );
    assert_eq!(
        who(&required, Some(&good), None),
        Ok(Authenticated(Some("fw".into())))
    );
    assert_eq!(who(&optional, None, None), Ok(Authenticated(None)));
    assert_eq!(
        who(&optional, Some(&bad), None),
        Err(AuthError::Rejected("fw".into()))
    );
    // A transport identity (a TLS client certificate, later) is a principal too.
    assert_eq!(
        who(&required, None, Some("agent-7")),
        Ok(Authenticated(Some("agent-7".into())))
    );
    // A server without credentials ignores what is presented (as Mesos).
    assert_eq!(who(&open, Some(&bad), None), Ok(Authenticated(None)));
    let missing = who(&required, None, None).err().map(|e| e.to_string());
    assert!(
        missing.is_some_and(|m| m.contains("framework calls require authentication")),
        "names what was missing"
    );
}

#[test]
fn credentials_files_are_checked_without_quoting_secrets() {
    let table = [
        (r#"{"credentials":[]}"#, "no credentials and no tokens"),
        (
            r#"{"credentials":[{"principal":"a b","secret":"hunter2"}]}"#,
            "credentials[0].principal",
        ),
        (
            r#"{"credentials":[{"principal":"a","secret":""}]}"#,
            "the secret is empty",
        ),
        (
            r#"{"credentials":[{"principal":"a","secret":"x"},{"principal":"a","secret":"hunter2"}]}"#,
            "listed twice",
        ),
        (
            r#"{"tokens":[{"principal":"a","token":"short"}]}"#,
            "at least 16 characters",
        ),
        (
            r#"{"credentials":[{"principal":"a","secret":"hunter2","x":1}]}"#,
            "an unknown field (expected `principal` or `secret`)",
        ),
        (
            r#"{"credentials":[{"principal":"a","secret":12345678}]}"#,
            "wrong type",
        ),
        ("hunter2", "not a JSON object"),
    ];
    for (text, want) in table {
        let err = Credentials::parse(text, "f.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "{text}: `{err}` lacks `{want}`");
        assert!(
            !err.contains("hunter2") && !err.contains("12345678"),
            "{err}"
        );
    }
}

#[test]
fn debug_output_never_shows_a_secret() {
    let c = Credential::basic("ops", "s3cret").expect("valid");
    let all = format!(
        "{c:?} {:?} {:?} {:?}",
        creds(),
        Authorize::new(Some(&c)),
        Secret::new("s3cret")
    );
    assert!(
        !all.contains("s3cret") && !all.contains("0123456789abcdef"),
        "{all}"
    );
    assert!(all.contains("ops"), "{all}");
}

#[test]
fn credentials_come_from_a_file_or_the_environment() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("proffer-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("secret");
    std::fs::write(&file, "s3cret\n")?;
    let c = Credential::from_sources(Some("ops"), Some(&file), Some("ignored"))?;
    assert_eq!(
        c.map(|c| c.authorization()),
        Some(Credential::basic("ops", "s3cret")?.authorization())
    );
    let t = Credential::from_sources(None, None, Some("tok"))?;
    assert_eq!(t.map(|c| c.authorization()), Some("Bearer tok".into()));
    assert!(Credential::from_sources(None, None, None)?.is_none());
    assert!(matches!(
        Credential::from_sources(Some("ops"), None, None),
        Err(CredentialError::NoSecret(_))
    ));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn constant_time_compare_is_equality() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(constant_time_eq(b"", b""));
}
