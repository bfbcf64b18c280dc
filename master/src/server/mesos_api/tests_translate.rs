//! Table tests of the Mesos ⇄ Proffer translation.

use proffer_proto::mesos::v1::scheduler as ms;
use proffer_proto::v1;
use serde_json::json;

use super::to_mesos::{self, Context};
use super::to_proffer::{self, Action, TranslateError};
use crate::core::Call;

fn header() -> v1::CallHeader {
    v1::CallHeader {
        framework_id: "fw".into(),
        stream_id: "s".into(),
    }
}

/// A Mesos call from its JSON.
fn mesos_call(value: serde_json::Value) -> ms::Call {
    serde_json::from_value(value).expect("a valid Mesos call")
}

/// The single core call a Mesos call (JSON) translates to.
fn core_call(value: serde_json::Value) -> Call {
    match to_proffer::call(mesos_call(value), &header()).expect("translates") {
        Action::Core(mut calls) if calls.len() == 1 => calls.remove(0),
        other => panic!("expected one core call, got {other:?}"),
    }
}

fn cpus(amount: f64) -> serde_json::Value {
    json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": amount}})
}

#[test]
fn every_call_type_translates() {
    let h = Some(header());
    let table: Vec<(serde_json::Value, Call)> = vec![
        (
            json!({"type": "TEARDOWN"}),
            Call::Teardown(v1::TeardownRequest { header: h.clone() }),
        ),
        (
            json!({"type": "DECLINE", "decline": {"offer_ids": [{"value": "o1"}],
                "filters": {"refuse_seconds": 10.0}}}),
            Call::Decline(v1::DeclineRequest {
                header: h.clone(),
                offer_ids: vec!["o1".into()],
                filters: Some(v1::Filters {
                    refuse_seconds: Some(10.0),
                }),
            }),
        ),
        (
            json!({"type": "REVIVE", "revive": {"roles": ["a"]}}),
            Call::Revive(v1::ReviveRequest {
                header: h.clone(),
                roles: vec!["a".into()],
            }),
        ),
        (
            json!({"type": "REVIVE"}),
            Call::Revive(v1::ReviveRequest {
                header: h.clone(),
                roles: vec![],
            }),
        ),
        (
            json!({"type": "SUPPRESS", "suppress": {"roles": ["a"]}}),
            Call::Suppress(v1::SuppressRequest {
                header: h.clone(),
                roles: vec!["a".into()],
            }),
        ),
        (
            json!({"type": "KILL", "kill": {"task_id": {"value": "t"},
                "agent_id": {"value": "a"},
                "kill_policy": {"grace_period": {"nanoseconds": 2_500_000_000_i64}}}}),
            Call::Kill(v1::KillRequest {
                header: h.clone(),
                task_id: "t".into(),
                agent_id: "a".into(),
                kill_grace_period_ms: Some(2500),
            }),
        ),
        (
            json!({"type": "SHUTDOWN", "shutdown": {"executor_id": {"value": "t"},
                "agent_id": {"value": "a"}}}),
            Call::Kill(v1::KillRequest {
                header: h.clone(),
                task_id: "t".into(),
                agent_id: "a".into(),
                kill_grace_period_ms: None,
            }),
        ),
        (
            json!({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": {"value": "a"},
                "task_id": {"value": "t"}, "uuid": "AQI="}}),
            Call::Acknowledge(v1::AcknowledgeRequest {
                header: h.clone(),
                agent_id: "a".into(),
                task_id: "t".into(),
                uuid: vec![1, 2],
            }),
        ),
        (
            json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "t"}}]}}),
            Call::Reconcile(v1::ReconcileRequest {
                header: h.clone(),
                tasks: vec![v1::ReconcileTask {
                    task_id: "t".into(),
                    agent_id: String::new(),
                }],
            }),
        ),
        (
            json!({"type": "RECONCILE", "reconcile": {}}),
            Call::Reconcile(v1::ReconcileRequest {
                header: h.clone(),
                tasks: vec![],
            }),
        ),
        (
            json!({"type": "MESSAGE", "message": {"agent_id": {"value": "a"},
                "executor_id": {"value": "t"}, "data": "aGk="}}),
            Call::Message(v1::MessageRequest {
                header: h.clone(),
                agent_id: "a".into(),
                task_id: "t".into(),
                data: b"hi".to_vec(),
            }),
        ),
        (
            json!({"type": "ACCEPT_INVERSE_OFFERS",
                "accept_inverse_offers": {"inverse_offer_ids": [{"value": "i"}]}}),
            Call::AcceptInverseOffers(v1::InverseOffersRequest {
                header: h.clone(),
                inverse_offer_ids: vec!["i".into()],
            }),
        ),
        (
            json!({"type": "DECLINE_INVERSE_OFFERS",
                "decline_inverse_offers": {"inverse_offer_ids": [{"value": "i"}]}}),
            Call::DeclineInverseOffers(v1::InverseOffersRequest {
                header: h.clone(),
                inverse_offer_ids: vec!["i".into()],
            }),
        ),
    ];
    for (mesos, want) in table {
        assert_eq!(core_call(mesos.clone()), want, "{mesos}");
    }
}

#[test]
fn accept_translates_every_supported_operation() {
    let task = json!({"name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "a1"},
        "resources": [cpus(0.5)],
        "command": {"value": "echo hi", "environment": {"variables": [{"name": "K", "value": "V"}]},
            "uris": [{"value": "http://x/f.tgz"}]},
        "labels": {"labels": [{"key": "k", "value": "v"}]},
        "kill_policy": {"grace_period": {"nanoseconds": 1_000_000_000}},
        "health_check": {"type": "TCP", "tcp": {"port": 80}, "interval_seconds": 2.0}});
    let reserved = json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 64.0},
        "reservations": [{"type": "DYNAMIC", "role": "r", "principal": "p"}],
        "disk": {"persistence": {"id": "v1"}, "volume": {"mode": "RW", "container_path": "data"}}});
    let call = core_call(json!({"type": "ACCEPT", "accept": {
        "offer_ids": [{"value": "o1"}],
        "operations": [
            {"type": "LAUNCH", "launch": {"task_infos": [task.clone()]}},
            {"type": "LAUNCH_GROUP", "launch_group": {
                "executor": {"executor_id": {"value": "e"}},
                "task_group": {"tasks": [task]}}},
            {"type": "RESERVE", "reserve": {"resources": [reserved.clone()]}},
            {"type": "UNRESERVE", "unreserve": {"resources": [reserved.clone()]}},
            {"type": "CREATE", "create": {"volumes": [reserved.clone()]}},
            {"type": "DESTROY", "destroy": {"volumes": [reserved]}}
        ],
        "filters": {"refuse_seconds": 1.0}}}));
    let Call::Accept(a) = call else {
        panic!("not an accept: {call:?}")
    };
    assert_eq!(a.offer_ids, vec!["o1".to_string()]);
    use v1::operation::Op;
    let ops: Vec<Op> = a.operations.into_iter().filter_map(|o| o.op).collect();
    assert_eq!(ops.len(), 6);
    let Op::Launch(l) = &ops[0] else {
        panic!("{:?}", ops[0])
    };
    let t = &l.tasks[0];
    assert_eq!((t.task_id.as_str(), t.agent_id.as_str()), ("t1", "a1"));
    assert_eq!(
        t.resources[0].value,
        Some(v1::resource::Value::ScalarMilli(500))
    );
    assert_eq!(t.resources[0].role, "*");
    let cmd = t.command.as_ref().expect("command");
    assert!(cmd.shell, "Mesos's default is a shell command");
    assert_eq!(cmd.value, "echo hi");
    assert_eq!(cmd.environment.get("K").map(String::as_str), Some("V"));
    assert!(cmd.uris[0].extract, "Mesos extracts archives by default");
    assert_eq!(t.labels.get("k").map(String::as_str), Some("v"));
    assert_eq!(t.kill_grace_period_ms, 1000);
    let hc = t.health_check.as_ref().expect("health check");
    assert_eq!(
        (hc.r#type, hc.port),
        (v1::health_check::CheckType::Tcp as i32, 80)
    );
    assert_eq!(hc.interval_ms, Some(2000));
    assert!(matches!(&ops[1], Op::LaunchGroup(g) if g.tasks.len() == 1));
    let Op::Reserve(r) = &ops[2] else {
        panic!("{:?}", ops[2])
    };
    let res = &r.resources[0];
    assert_eq!(res.role, "r");
    assert_eq!(res.principal, "p");
    assert_eq!(res.reservation_type, v1::ReservationType::Dynamic as i32);
    assert_eq!(res.volume.as_ref().map(|v| v.id.as_str()), Some("v1"));
    assert!(matches!(&ops[3], Op::Unreserve(_)));
    assert!(matches!(&ops[4], Op::Create(_)));
    assert!(matches!(&ops[5], Op::Destroy(_)));
    assert_eq!(a.filters.and_then(|f| f.refuse_seconds), Some(1.0));
}

#[test]
fn calls_without_a_core_equivalent() {
    let call = mesos_call(json!({"type": "REQUEST", "request": {}}));
    assert_eq!(
        to_proffer::call(call, &header()).expect("REQUEST"),
        Action::Nothing
    );
    let call = mesos_call(
        json!({"type": "RECONCILE_OPERATIONS", "reconcile_operations":
        {"operations": [{"operation_id": {"value": "op"}, "agent_id": {"value": "a"}}]}}),
    );
    assert_eq!(
        to_proffer::call(call, &header()).expect("RECONCILE_OPERATIONS"),
        Action::ReconcileOperations(vec![("op".into(), Some("a".into()))])
    );
    let call = mesos_call(json!({"type": "UPDATE_FRAMEWORK", "update_framework": {
        "framework_info": {"user": "u", "name": "n", "id": {"value": "fw"}},
        "suppressed_roles": ["r"]}}));
    let Action::Core(calls) = to_proffer::call(call, &header()).expect("UPDATE_FRAMEWORK") else {
        panic!("not core calls")
    };
    assert!(matches!(&calls[0], Call::UpdateFramework(u)
        if u.framework_info.as_ref().is_some_and(|i| i.id == "fw" && i.name == "n")));
    assert!(matches!(&calls[1], Call::Suppress(s) if s.roles == vec!["r".to_string()]));
}

#[test]
fn refusals_name_the_field() {
    let table: Vec<(serde_json::Value, TranslateError)> = vec![
        (
            json!({"type": "ACCEPT"}),
            TranslateError::Missing("accept".into()),
        ),
        (
            json!({"type": "KILL"}),
            TranslateError::Missing("kill".into()),
        ),
        (json!({}), TranslateError::Missing("type".into())),
        (
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH"}]}}),
            TranslateError::Missing("accept.operations[0].launch".into()),
        ),
        (
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "GROW_VOLUME"}]}}),
            TranslateError::Unsupported(
                "operation GROW_VOLUME ('accept.operations[0].type')".into(),
            ),
        ),
        (
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH",
                "id": {"value": "x"}, "launch": {}}]}}),
            TranslateError::Unsupported(
                "operation feedback ('accept.operations[0].id' = `x`)".into(),
            ),
        ),
        (
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH", "launch": {
                "task_infos": [{"name": "t", "task_id": {"value": "t"},
                    "agent_id": {"value": "a"}, "executor": {"executor_id": {"value": "e"}}}]}}]}}),
            TranslateError::Unsupported(
                "a custom executor ('accept.operations[0].launch.task_infos[0].executor')".into(),
            ),
        ),
        (
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH", "launch": {
                "task_infos": [{"name": "t", "task_id": {"value": "t"},
                    "agent_id": {"value": "a"}, "command": {"value": "x"},
                    "resources": [cpus(-1.0)]}]}}]}}),
            TranslateError::Invalid {
                field: "accept.operations[0].launch.task_infos[0].resources[0].scalar.value".into(),
                reason: "-1 is not a non-negative amount".into(),
            },
        ),
        (
            json!({"type": "KILL", "kill": {"task_id": {"value": "t"},
                "kill_policy": {"grace_period": {"nanoseconds": -1}}}}),
            TranslateError::Invalid {
                field: "kill.kill_policy.grace_period".into(),
                reason: "-1 ns is negative".into(),
            },
        ),
        (
            json!({"type": "ACKNOWLEDGE_OPERATION_STATUS", "acknowledge_operation_status": {
                "uuid": "AQ==", "operation_id": {"value": "op"}}}),
            TranslateError::Invalid {
                field: "acknowledge_operation_status.operation_id".into(),
                reason: "operation `op` has no status update to acknowledge: Proffer sends \
                         none that need one (operation feedback is not supported)"
                    .into(),
            },
        ),
    ];
    for (mesos, want) in table {
        let got = to_proffer::call(mesos_call(mesos.clone()), &header());
        assert_eq!(got, Err(want), "{mesos}");
    }
}

#[test]
fn subscribe_translates_the_framework_info() {
    let call = mesos_call(json!({"type": "SUBSCRIBE", "subscribe": {
        "framework_info": {"user": "u", "name": "n", "role": "old-style",
            "failover_timeout": 60.0, "principal": "p", "hostname": "h",
            "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "MULTI_ROLE"}],
            "labels": {"labels": [{"key": "k"}]},
            "offer_filters": {"r": {"min_allocatable_resources": {"quantities": [
                {"quantities": {"cpus": {"value": 2.0}}}]}}}},
        "suppressed_roles": ["old-style"]}}));
    let sub = to_proffer::subscribe(call).expect("subscribe");
    let info = &sub.info;
    assert_eq!((info.user.as_str(), info.name.as_str()), ("u", "n"));
    assert_eq!(info.roles, vec!["old-style".to_string()]);
    assert_eq!(info.failover_timeout, 60.0);
    assert_eq!(info.principal, "p");
    assert_eq!(
        info.capabilities,
        vec!["PARTITION_AWARE".to_string(), "MULTI_ROLE".to_string()]
    );
    assert_eq!(info.labels.get("k").map(String::as_str), Some(""));
    let q = &info.offer_filters["r"]
        .min_allocatable_resources
        .as_ref()
        .expect("filters")
        .quantities[0];
    assert_eq!(q.quantities.get("cpus"), Some(&2.0));
    assert_eq!(sub.suppressed_roles, vec!["old-style".to_string()]);

    let call = mesos_call(json!({"type": "SUBSCRIBE", "framework_id": {"value": "a"},
        "subscribe": {"framework_info": {"user": "u", "name": "n", "id": {"value": "b"}}}}));
    let err = to_proffer::subscribe(call).expect_err("ids differ");
    assert!(err.to_string().contains("`a` differs"), "{err}");
}

fn ctx() -> Context {
    Context {
        master_id: "m1".into(),
        hostname: "10.0.0.1".into(),
        ip: Some("10.0.0.1".parse().expect("ip")),
        port: 5050,
        now_ms: 1_000,
    }
}

/// A Proffer event translated and written as Mesos JSON.
fn mesos_json(event: v1::event::Event) -> serde_json::Value {
    let e = to_mesos::event(v1::Event { event: Some(event) }, &ctx()).expect("an event");
    serde_json::to_value(&e).expect("JSON")
}

#[test]
fn events_carry_their_payload_under_the_lower_cased_type() {
    use v1::event::Event as E;
    let table: Vec<(E, &str)> = vec![
        (
            E::Subscribed(v1::Subscribed {
                framework_id: "fw".into(),
                stream_id: "s".into(),
                heartbeat_interval_seconds: 15.0,
                master_id: "m1".into(),
            }),
            "subscribed",
        ),
        (E::Offers(v1::Offers { offers: vec![] }), "offers"),
        (
            E::Rescind(v1::Rescind {
                offer_id: "o".into(),
            }),
            "rescind",
        ),
        (E::Update(v1::Update { status: None }), "update"),
        (E::Message(v1::FrameworkMessage::default()), "message"),
        (E::Failure(v1::Failure::default()), "failure"),
        (
            E::Error(v1::Error {
                message: "bye".into(),
            }),
            "error",
        ),
        (
            E::InverseOffers(v1::InverseOffers::default()),
            "inverse_offers",
        ),
    ];
    for (event, key) in table {
        let json = mesos_json(event);
        assert_eq!(json["type"], key.to_uppercase(), "{json}");
        assert!(json.get(key).is_some(), "{json}");
    }
    let heartbeat = mesos_json(E::Heartbeat(v1::Heartbeat {}));
    assert_eq!(heartbeat, json!({"type": "HEARTBEAT"}));
}

#[test]
fn subscribed_offers_and_updates_in_mesos_json() {
    use v1::event::Event as E;
    let json = mesos_json(E::Subscribed(v1::Subscribed {
        framework_id: "fw".into(),
        stream_id: "s".into(),
        heartbeat_interval_seconds: 15.0,
        master_id: "m1".into(),
    }));
    assert_eq!(json["subscribed"]["framework_id"]["value"], "fw");
    assert_eq!(json["subscribed"]["heartbeat_interval_seconds"], 15.0);
    assert_eq!(json["subscribed"]["master_info"]["id"], "m1");
    assert_eq!(json["subscribed"]["master_info"]["port"], 5050);

    let offer = v1::Offer {
        id: "o1".into(),
        framework_id: "fw".into(),
        agent_id: "a1".into(),
        hostname: "h".into(),
        resources: vec![
            v1::Resource {
                name: "cpus".into(),
                value: Some(v1::resource::Value::ScalarMilli(1500)),
                role: "*".into(),
                ..Default::default()
            },
            v1::Resource {
                name: "ports".into(),
                value: Some(v1::resource::Value::Ranges(v1::Ranges {
                    range: vec![v1::Range {
                        begin: 31000,
                        end: 31005,
                    }],
                })),
                role: "r".into(),
                reservation_type: v1::ReservationType::Static as i32,
                ..Default::default()
            },
        ],
        attributes: vec![
            v1::Attribute {
                name: "rack".into(),
                value: "r1".into(),
            },
            v1::Attribute {
                name: "gen".into(),
                value: "3".into(),
            },
        ],
        allocation_role: "r".into(),
        unavailability: Some(v1::Unavailability {
            starts_in_ms: 2_000,
            duration_ms: 500,
        }),
    };
    let json = mesos_json(E::Offers(v1::Offers {
        offers: vec![offer],
    }));
    let o = &json["offers"]["offers"][0];
    assert_eq!(o["id"]["value"], "o1");
    assert_eq!(o["agent_id"]["value"], "a1");
    assert_eq!(o["allocation_info"]["role"], "r");
    assert_eq!(
        o["resources"][0],
        json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}, "role": "*",
            "allocation_info": {"role": "r"}})
    );
    assert_eq!(
        o["resources"][1]["ranges"],
        json!({"range": [{"begin": 31000, "end": 31005}]})
    );
    assert_eq!(
        o["resources"][1]["reservations"],
        json!([{"type": "STATIC", "role": "r"}])
    );
    assert_eq!(o["attributes"][0]["text"]["value"], "r1");
    assert_eq!(o["attributes"][1]["scalar"]["value"], 3.0);
    assert_eq!(
        o["unavailability"]["start"]["nanoseconds"],
        3_000_000_000_i64
    );
    assert_eq!(
        o["unavailability"]["duration"]["nanoseconds"],
        500_000_000_i64
    );

    let json = mesos_json(E::Update(v1::Update {
        status: Some(v1::TaskStatus {
            task_id: "t".into(),
            state: v1::TaskState::TaskFinished as i32,
            message: "done".into(),
            reason: "REASON_RECONCILIATION".into(),
            source: v1::StatusSource::SourceExecutor as i32,
            agent_id: "a1".into(),
            uuid: vec![1, 2, 3],
            timestamp_ms: 1_500,
            ..Default::default()
        }),
    }));
    assert_eq!(
        json["update"]["status"],
        json!({"task_id": {"value": "t"}, "state": "TASK_FINISHED", "message": "done",
            "reason": "REASON_RECONCILIATION", "source": "SOURCE_EXECUTOR",
            "agent_id": {"value": "a1"}, "uuid": "AQID", "timestamp": 1.5})
    );
}

#[test]
fn reasons_mesos_lacks_are_mapped_or_left_out() {
    let table = [
        ("REASON_TASK_INVALID", Some("REASON_TASK_INVALID")),
        (
            "REASON_FETCHER_FAILED",
            Some("REASON_CONTAINER_LAUNCH_FAILED"),
        ),
        (
            "REASON_AGENT_UNREACHABLE",
            Some("REASON_AGENT_DISCONNECTED"),
        ),
        ("REASON_COMMAND_EXITED", None),
        ("", None),
    ];
    for (proffer, mesos) in table {
        let status = to_mesos::task_status(v1::TaskStatus {
            reason: proffer.into(),
            ..Default::default()
        });
        let got = status
            .reason
            .and_then(|r| proffer_proto::mesos::v1::task_status::Reason::try_from(r).ok())
            .map(|r| r.as_str_name());
        assert_eq!(got, mesos, "{proffer}");
    }
}

#[test]
fn a_translated_offer_reads_back_as_the_same_resources() {
    let resources = vec![
        v1::Resource {
            name: "mem".into(),
            value: Some(v1::resource::Value::ScalarMilli(128_000)),
            role: "*".into(),
            ..Default::default()
        },
        v1::Resource {
            name: "disk".into(),
            value: Some(v1::resource::Value::ScalarMilli(10_000)),
            role: "r".into(),
            reservation_type: v1::ReservationType::Dynamic as i32,
            principal: "p".into(),
            volume: Some(v1::PersistentVolume {
                id: "v".into(),
                container_path: "data".into(),
            }),
        },
        v1::Resource {
            name: "disks".into(),
            value: Some(v1::resource::Value::Set(v1::Set {
                item: vec!["ssd1".into()],
            })),
            role: "r".into(),
            reservation_type: v1::ReservationType::Static as i32,
            ..Default::default()
        },
    ];
    for r in resources {
        let mesos = to_mesos::resource(r.clone(), Some("r"));
        let back = to_proffer::resource(mesos, "r").expect("reads back");
        assert_eq!(back, r);
    }
}

#[test]
fn a_mesos_image_by_path_or_url_becomes_a_container() {
    let launch = |image: serde_json::Value| {
        let call = json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH", "launch": {
            "task_infos": [{"name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a"},
                "command": {"value": "true"},
                "container": {"type": "MESOS", "mesos": {"image": image}}}]}}]}});
        to_proffer::call(mesos_call(call), &header())
    };
    let got = launch(json!({"type": "DOCKER", "docker": {"name": "file:///srv/app.tar"}}));
    let Ok(Action::Core(calls)) = got else {
        panic!("expected a core call, got {got:?}");
    };
    let Some(Call::Accept(accept)) = calls.first() else {
        panic!("expected an accept, got {calls:?}");
    };
    let text = format!("{accept:?}");
    assert!(text.contains("image: \"file:///srv/app.tar\""), "{text}");
    let refused = launch(json!({"type": "DOCKER", "docker": {"name": "library/busybox"}}));
    assert!(
        matches!(&refused, Err(TranslateError::Unsupported(m)) if m.contains("registry")),
        "{refused:?}"
    );
}
