//! Limits (issue 18, item 6): for each, just below passes and just above is refused with an
//! error naming the field and the limit; nothing is applied.

use proffer_proto::v1::{self, agent_message::Msg as AIn};

use super::harness::{H, agent_info};
use crate::core::limits::*;
use crate::core::{Input, MasterError};

fn register(h: &mut H, info: v1::AgentInfo) -> Result<(), MasterError> {
    h.input(Input::Agent {
        conn: 7,
        msg: v1::AgentMessage {
            msg: Some(AIn::Register(v1::RegisterAgent {
                info: Some(Box::new(info)),
            })),
        },
    })
}

/// An agent advertising `n` distinct resource names (`r0`..), each a scalar.
fn agent_with_names(n: usize) -> v1::AgentInfo {
    let mut info = agent_info("", "host1", "cpus:1;mem:128");
    info.resources.extend((2..n).map(|i| v1::Resource {
        name: format!("r{i}"),
        value: Some(v1::resource::Value::ScalarMilli(1000)),
        role: "*".into(),
        ..Default::default()
    }));
    info
}

fn refused(r: Result<(), MasterError>, field: &str, limit: usize) {
    let err = r.expect_err("over the limit").to_string();
    assert!(
        err.contains(field) && err.contains(&format!("limit is {limit}")),
        "`{err}` should name `{field}` and the limit {limit}"
    );
}

#[test]
fn agent_resource_names_and_attributes_are_bounded() {
    let mut h = H::new();
    assert!(register(&mut h, agent_with_names(MAX_RESOURCE_NAMES)).is_ok());
    let mut h = H::new();
    refused(
        register(&mut h, agent_with_names(MAX_RESOURCE_NAMES + 1)),
        "agent_info.resources",
        MAX_RESOURCE_NAMES,
    );
    assert!(
        h.m.snapshot(crate::core::Timestamp(h.now))
            .agents
            .is_empty(),
        "nothing registered"
    );

    let attrs = |n: usize| {
        let mut info = agent_info("", "host1", "cpus:1;mem:128");
        info.attributes = (0..n)
            .map(|i| v1::Attribute {
                name: format!("a{i}"),
                value: "v".into(),
            })
            .collect();
        info
    };
    assert!(register(&mut H::new(), attrs(MAX_AGENT_ATTRIBUTES)).is_ok());
    refused(
        register(&mut H::new(), attrs(MAX_AGENT_ATTRIBUTES + 1)),
        "agent_info.attributes",
        MAX_AGENT_ATTRIBUTES,
    );
}

#[test]
fn agent_strings_are_bounded() {
    type Set = fn(&mut v1::AgentInfo, String);
    let cases: [(&str, usize, Set); 4] = [
        ("agent_info.hostname", MAX_NAME_LEN, |i, s| i.hostname = s),
        ("agent_info.version", MAX_NAME_LEN, |i, s| i.version = s),
        ("agent_info.sandboxes_dir", MAX_PATH_LEN, |i, s| {
            i.sandboxes_dir = s
        }),
        ("agent_info.resources[0].name", MAX_NAME_LEN, |i, s| {
            i.resources[0].name = s
        }),
    ];
    for (field, max, set) in cases {
        let mut ok = agent_info("", "host1", "cpus:1;mem:128;x:1");
        ok.resources.rotate_left(2); // x first
        let mut bad = ok.clone();
        set(&mut ok, "x".repeat(max));
        set(&mut bad, "x".repeat(max + 1));
        let err = register(&mut H::new(), ok).err().map(|e| e.to_string());
        assert!(
            err.as_ref().is_none_or(|e| !e.contains("limit is")),
            "{field}: {err:?}"
        );
        refused(register(&mut H::new(), bad), field, max);
    }
}

#[test]
fn an_agent_advertising_100_000_resource_names_is_refused() {
    let mut h = H::new();
    refused(
        register(&mut h, agent_with_names(100_000)),
        "agent_info.resources",
        MAX_RESOURCE_ENTRIES,
    );
    assert!(
        h.m.snapshot(crate::core::Timestamp(h.now))
            .agents
            .is_empty()
    );
}

#[test]
fn range_and_set_items_are_bounded() {
    let ranges = |n: u64| {
        let mut info = agent_info("", "host1", "cpus:1;mem:128");
        info.resources.push(v1::Resource {
            name: "ports".into(),
            role: "*".into(),
            value: Some(v1::resource::Value::Ranges(v1::Ranges {
                range: (0..n)
                    .map(|i| v1::Range {
                        begin: 10 * i + 1,
                        end: 10 * i + 2,
                    })
                    .collect(),
            })),
            ..Default::default()
        });
        info
    };
    assert!(register(&mut H::new(), ranges(MAX_VALUE_ITEMS as u64)).is_ok());
    refused(
        register(&mut H::new(), ranges(MAX_VALUE_ITEMS as u64 + 1)),
        "agent_info.resources[2].value",
        MAX_VALUE_ITEMS,
    );
}

#[test]
fn framework_names_labels_and_roles_are_bounded() {
    type Set = fn(&mut v1::FrameworkInfo, usize);
    let cases: [(&str, usize, Set); 5] = [
        ("framework_info.name", MAX_NAME_LEN, |i, n| {
            i.name = "f".repeat(n)
        }),
        ("framework_info.labels", MAX_LABELS, |i, n| {
            i.labels = (0..n).map(|k| (format!("k{k}"), "v".into())).collect()
        }),
        ("framework_info.labels[k]", MAX_LABEL_LEN, |i, n| {
            i.labels = [("k".to_string(), "v".repeat(n))].into()
        }),
        ("framework_info.roles", MAX_FRAMEWORK_ROLES, |i, n| {
            i.roles = (0..n).map(|k| format!("r{k}")).collect()
        }),
        ("framework_info.user", MAX_NAME_LEN, |i, n| {
            i.user = "u".repeat(n)
        }),
    ];
    for (field, max, set) in cases {
        let mut ok = v1::FrameworkInfo {
            name: "f".into(),
            ..Default::default()
        };
        let mut bad = ok.clone();
        set(&mut ok, max);
        set(&mut bad, max + 1);
        assert!(
            H::new().try_subscribe(1, ok).is_ok(),
            "{field} at the limit"
        );
        let err = H::new().try_subscribe(1, bad).expect_err(field);
        assert!(
            err.contains(field) && err.contains(&format!("limit is {max}")),
            "{err}"
        );
    }
}

#[test]
fn the_role_tree_is_bounded() {
    let mut h = H::new();
    // The root node counts: MAX_ROLES - 1 roles fit.
    for i in 0..MAX_ROLES - 1 {
        h.m.set_weight(&format!("r{i}"), 2.0)
            .expect("below the limit");
    }
    let err =
        h.m.set_weight("one-more", 2.0)
            .expect_err("over")
            .to_string();
    assert!(
        err.contains("role") && err.contains("at most 10000 roles"),
        "{err}"
    );
    h.m.set_weight("r0", 3.0)
        .expect("an existing role can change");
    let quota = h.m.set_quota("another", Default::default(), None);
    assert!(quota.is_err_and(|e| e.to_string().contains("10000")));
}

#[test]
fn task_labels_and_resources_are_bounded() {
    type Set = fn(&mut v1::TaskInfo, usize);
    let cases: [(&str, usize, Set); 3] = [
        ("labels", MAX_LABELS, |t, n| {
            t.labels = (0..n).map(|k| (format!("k{k}"), "v".into())).collect()
        }),
        ("labels[k]", MAX_LABEL_LEN, |t, n| {
            t.labels = [("k".to_string(), "v".repeat(n))].into()
        }),
        ("resources", MAX_RESOURCE_ENTRIES, |t, n| {
            let extra = n - t.resources.len();
            t.resources.extend((0..extra).map(|i| v1::Resource {
                name: format!("x{}", i % 100),
                value: Some(v1::resource::Value::ScalarMilli(1)),
                role: format!("r{i}"),
                ..Default::default()
            }))
        }),
    ];
    for (field, max, set) in cases {
        let (mut h, _agent, fw, offer) = super::scenarios::one_offer();
        let mut over = super::harness::task("t1", "cpus:1;mem:128");
        set(&mut over, max + 1);
        let err = h
            .launch(&fw, &[offer.id.as_str()], vec![over])
            .expect_err(field)
            .to_string();
        assert!(
            err.contains(field) && err.contains(&format!("limit is {max}")),
            "{field}: {err}"
        );
        // At the limit, the limits say nothing (other checks may still refuse).
        let mut at = super::harness::task("t1", "cpus:1;mem:128");
        set(&mut at, max);
        let (mut h, _agent, fw, offer) = super::scenarios::one_offer();
        let r = h.launch(&fw, &[offer.id.as_str()], vec![at]);
        assert!(
            r.as_ref().is_ok()
                || r.as_ref()
                    .is_err_and(|e| !e.to_string().contains("limit is")),
            "{field}: {r:?}"
        );
    }
}
