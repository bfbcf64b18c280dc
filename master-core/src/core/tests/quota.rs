//! Operator changes through the core: quota and weight refusals leave everything as it was; role
//! summaries and explanations reflect reservations, suppression and quota.

use proffer_proto::Resources;
use proffer_proto::v1;

use super::harness::H;
use crate::core::{Call, Timestamp};

fn r(text: &str) -> Resources {
    Resources::parse(text).expect("resources")
}

#[test]
fn quota_and_weight_refusals_change_nothing() {
    let mut h = H::new();
    h.m.set_quota("eng", r("cpus:1;mem:512"), Some(r("cpus:2")))
        .expect("quota");
    h.m.set_weight("eng", 2.0).expect("weight");
    let before = h.m.role_summaries();
    let eng = before.iter().find(|s| s.role == "eng").expect("eng listed");
    assert_eq!(
        (eng.weight, eng.guarantees.as_str(), eng.limits.as_str()),
        (2.0, "cpus:1;mem:512", "cpus:2")
    );
    let quota_cases = [
        ("a//b", "cpus:1", None, "empty path segment"),
        ("-x", "cpus:1", None, "starts with `-`"),
        ("eng", "ports:[1-2]", None, "not a quota resource"),
        ("eng", "disks:{a}", None, "not a quota resource"),
        ("eng", "cpus(eng):1", None, "reservation"),
        ("eng", "cpus:4", Some("cpus:2"), "exceeds its limit"),
        ("*", "cpus:1", None, "cannot have a quota"),
    ];
    for (role, g, l, want) in quota_cases {
        let err =
            h.m.set_quota(role, r(g), l.map(r))
                .expect_err(want)
                .to_string();
        assert!(err.contains(want), "{role} {g}: `{err}` lacks `{want}`");
    }
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err =
            h.m.set_weight("eng", w)
                .expect_err("bad weight")
                .to_string();
        assert!(err.contains("positive finite"), "{w}: {err}");
    }
    assert!(h.m.set_weight("a b", 1.0).is_err());
    let err =
        h.m.remove_quota("nobody")
            .expect_err("no quota")
            .to_string();
    assert!(err.contains("has no quota"), "{err}");
    assert_eq!(h.m.role_summaries(), before, "nothing changed");
    // Negative and NaN quotas cannot even be written down.
    assert!(Resources::parse("cpus:-1").is_err());
    assert!(Resources::parse("cpus:NaN").is_err());
}

#[test]
fn why_names_suppression_and_other_roles_reservations() {
    let mut h = H::new();
    h.register_agent(1, "host1", "cpus:4;mem:4096;cpus(db):2");
    let info = v1::FrameworkInfo {
        name: "web-fw".into(),
        roles: vec!["web".into()],
        ..Default::default()
    };
    let fw = h.subscribe_with(101, info);
    h.call(Call::Suppress(v1::SuppressRequest {
        header: Some(fw.clone()),
        roles: vec![],
    }))
    .expect("suppress");
    h.advance(1_000);
    assert!(h.offers(101).is_empty(), "suppressed: no offers");
    let now = Timestamp(h.now);
    let lines = h.m.why(&fw.framework_id, now);
    assert!(
        lines.iter().any(|l| l.contains("suppressed in role `web`")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("reserved for other roles")),
        "{lines:?}"
    );
    let role_lines = h.m.why("web", now);
    assert!(
        role_lines.iter().any(|l| l.contains(&fw.framework_id)),
        "{role_lines:?}"
    );
    let summaries = h.m.role_summaries();
    let web = summaries
        .iter()
        .find(|s| s.role == "web")
        .expect("web listed");
    assert_eq!(web.frameworks, vec![fw.framework_id.clone()]);
}
