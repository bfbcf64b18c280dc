use super::*;

fn acls(json: &str) -> Authorizer {
    match Acls::parse(json, "test") {
        Ok(a) => Authorizer::new(a),
        Err(e) => panic!("{json}: {e}"),
    }
}

/// A table row: (ACLs, principal, action, object, allowed).
type Case<'a> = (&'a str, Option<&'a str>, Action, Option<&'a str>, bool);

/// Mesos's local authorizer semantics, one request per row.
#[test]
fn first_matching_rule_decides_else_permissive() {
    let two_rules = r#"{"register_frameworks": [
        {"principals": {"values": ["web"]}, "roles": {"values": ["web", "shared"]}},
        {"principals": {"values": ["web"]}, "roles": {"type": "NONE"}},
        {"principals": {"type": "ANY"}, "roles": {"values": ["shared"]}}
    ]}"#;
    let strict = r#"{"permissive": false, "run_tasks": [
        {"principals": {"values": ["batch"]}, "users": {"values": ["nobody"]}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
    ]}"#;
    let nested = r#"{"permissive": false, "update_quotas": [
        {"principals": {"values": ["eng-admin"]}, "roles": {"values": ["eng/%", "ops"]}}
    ]}"#;
    let none_subject = r#"{"teardown_frameworks": [
        {"principals": {"type": "NONE"}, "framework_principals": {"values": ["prod"]}}
    ]}"#;
    use Action::*;
    let table: &[Case<'_>] = &[
        // No ACLs: permissive by default.
        ("{}", Some("anyone"), RegisterFramework, Some("prod"), true),
        ("{}", None, DrainAgent, Some("a1"), true),
        (
            r#"{"permissive": false}"#,
            Some("ops"),
            DrainAgent,
            None,
            false,
        ),
        // The first matching rule decides.
        (two_rules, Some("web"), RegisterFramework, Some("web"), true),
        (
            two_rules,
            Some("web"),
            RegisterFramework,
            Some("shared"),
            true,
        ),
        (
            two_rules,
            Some("web"),
            RegisterFramework,
            Some("prod"),
            false,
        ),
        // Another principal falls through to the ANY rule, then to permissive.
        (
            two_rules,
            Some("db"),
            RegisterFramework,
            Some("shared"),
            true,
        ),
        (two_rules, Some("db"), RegisterFramework, Some("prod"), true),
        // Anonymous is subject ANY: rules naming principals do not match it.
        (two_rules, None, RegisterFramework, Some("shared"), true),
        (two_rules, None, RegisterFramework, Some("web"), true),
        (strict, Some("batch"), RunTask, Some("nobody"), true),
        (strict, Some("batch"), RunTask, Some("root"), false),
        (strict, Some("other"), RunTask, Some("nobody"), false),
        (strict, None, RunTask, Some("nobody"), false),
        // Other actions are not governed by run_tasks rules: permissive false refuses.
        (strict, Some("batch"), RegisterFramework, Some("web"), false),
        // Recursive role rules: eng/% covers roles below eng, not eng itself.
        (nested, Some("eng-admin"), UpdateQuota, Some("eng/ml"), true),
        (
            nested,
            Some("eng-admin"),
            UpdateQuota,
            Some("eng/ml/gpu"),
            true,
        ),
        (nested, Some("eng-admin"), UpdateQuota, Some("eng"), false),
        (
            nested,
            Some("eng-admin"),
            UpdateQuota,
            Some("engineering/x"),
            false,
        ),
        (nested, Some("eng-admin"), UpdateQuota, Some("ops"), true),
        (nested, Some("someone"), UpdateQuota, Some("eng/ml"), false),
        // A NONE subject matches everyone and allows no one.
        (
            none_subject,
            Some("ops"),
            TeardownFramework,
            Some("prod"),
            false,
        ),
        (none_subject, None, TeardownFramework, Some("prod"), false),
        (
            none_subject,
            Some("ops"),
            TeardownFramework,
            Some("dev"),
            true,
        ),
    ];
    for (json, principal, action, object, want) in table {
        let got = acls(json).is_allowed(*principal, *action, *object);
        assert_eq!(
            got, *want,
            "{json}\n{principal:?} {action} {object:?}: got {got}"
        );
    }
}

#[test]
fn any_object_requests_match_only_any_or_none_rules() {
    let a = acls(
        r#"{"permissive": false, "register_agents": [
            {"principals": {"values": ["agents"]}, "agents": {"type": "ANY"}}
        ], "view_roles": [
            {"principals": {"values": ["ops"]}, "roles": {"values": ["web"]}}
        ]}"#,
    );
    assert!(a.is_allowed(Some("agents"), Action::RegisterAgent, None));
    assert!(!a.is_allowed(Some("eve"), Action::RegisterAgent, None));
    // A request about no particular role is not covered by a rule listing roles.
    assert!(!a.is_allowed(Some("ops"), Action::ViewRole, None));
    assert!(a.is_allowed(Some("ops"), Action::ViewRole, Some("web")));
}

#[test]
fn refusals_name_the_action_the_principal_and_the_object() {
    let a = acls(r#"{"permissive": false}"#);
    let err = a
        .authorize(Some("alice"), Action::RegisterFramework, Some("prod"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("not authorized: principal `alice` may not register_frameworks (role `prod`)")
    );
    let err = a
        .authorize(None, Action::DrainAgent, Some("a1"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("not authorized: an unauthenticated caller may not drain_agents (agent `a1`)")
    );
    assert!(
        Authorizer::default()
            .authorize(None, Action::GetQuota, None)
            .is_ok()
    );
}

#[test]
fn acl_files_are_checked() {
    let table = [
        ("[]", "expected a JSON object"),
        (
            r#"{"permissive": "yes"}"#,
            "permissive: expected true or false",
        ),
        (r#"{"register_framework": []}"#, "unknown action"),
        (r#"{"run_tasks": {}}"#, "expected a list of rules"),
        (
            r#"{"run_tasks": [{"principals": {"type": "ANY"}}]}"#,
            "run_tasks[0]: missing `users`",
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#,
            "unknown key `roles`",
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}"#,
            "run_tasks[0].principals: unknown type `ALL`",
        ),
        (
            r#"{"run_tasks": [{"principals": {"values": "alice"}, "users": {"type": "ANY"}}]}"#,
            "expected `values`",
        ),
        (
            r#"{"run_tasks": [{"principals": {"values": [1]}, "users": {"type": "ANY"}}]}"#,
            "expected strings",
        ),
    ];
    for (json, want) in table {
        let err = Acls::parse(json, "acls.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("ACLs acls.json: ") && err.contains(want),
            "{json}: `{err}` lacks `{want}`"
        );
    }
    // Mesos's numeric types and the default type SOME are accepted.
    let ok = Acls::parse(
        r#"{"view_tasks": [{"principals": {"type": 1}, "users": {"values": ["a"]}}]}"#,
        "x",
    );
    assert!(ok.is_ok(), "{ok:?}");
    assert!(Acls::default().allows_everything());
}

#[test]
fn every_action_has_a_distinct_key() {
    let keys: std::collections::BTreeSet<&str> = Action::ALL.iter().map(|a| a.key()).collect();
    assert_eq!(keys.len(), Action::ALL.len());
    for a in Action::ALL {
        let json = format!(
            r#"{{"{}": [{{"principals": {{"type": "ANY"}}, "{}": {{"type": "NONE"}}}}]}}"#,
            a.key(),
            a.object_key()
        );
        let acl = acls(&json);
        assert!(!acl.is_allowed(Some("p"), *a, Some("x")), "{a}");
        assert!(
            Action::ALL
                .iter()
                .filter(|b| *b != a)
                .all(|b| acl.is_allowed(Some("p"), *b, Some("x"))),
            "{a}'s rules govern only {a}"
        );
    }
}
