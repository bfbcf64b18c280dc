//! Ownership of framework and agent ids, and the ACLs the core applies (issue 18, items 4 and
//! 6): the take-over attack of the issue (subscribe with another framework's id) is refused
//! and its tasks keep running; an agent id cannot be re-registered by another principal.

use proffer_proto::v1::{self, agent_message::Msg as AIn, master_message::Msg as AOut};

use super::harness::{H, agent_info, task};
use crate::authz::{Acls, Authorizer};
use crate::core::{Call, ErrorKind, Input, MasterConfig, MasterError, Output, Timestamp};

const A1: u64 = 1;
const A2: u64 = 2;
const F1: u64 = 101;
const F2: u64 = 102;
const F3: u64 = 103;

fn framework(name: &str, principal: &str, id: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        id: id.into(),
        name: name.into(),
        user: "nobody".into(),
        principal: principal.into(),
        failover_timeout: 60.0,
        roles: vec!["web".into()],
        ..Default::default()
    }
}

fn authorizer(json: &str) -> Authorizer {
    Authorizer::new(Acls::parse(json, "test").expect("acls"))
}

/// An agent and a framework owned by `alice` running one task.
fn running(h: &mut H) -> (String, v1::CallHeader) {
    let agent = h.register_agent(A1, "host1", "cpus:4;mem:4096");
    let hdr = h.subscribe_with(F1, framework("web", "alice", ""));
    h.advance(1_000);
    let offer = h.offers(F1).remove(0);
    h.launch(&hdr, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.status(
        A1,
        &hdr.framework_id,
        "t1",
        v1::TaskState::TaskRunning,
        b"u1",
    )
    .expect("running");
    h.drain();
    (agent, hdr)
}

fn kills_or_closes(out: &[Output], framework_conn: u64) -> usize {
    out.iter()
        .filter(|o| match o {
            Output::ToAgent { msg, .. } => matches!(
                msg.msg,
                Some(AOut::KillTask(_) | AOut::ShutdownFramework(_))
            ),
            Output::CloseFramework { conn } => *conn == framework_conn,
            _ => false,
        })
        .count()
}

#[test]
fn another_principal_cannot_take_over_a_framework_id() {
    let mut h = H::new();
    let (_agent, hdr) = running(&mut h);
    let fw = hdr.framework_id.clone();
    for (conn, principal) in [(F2, "eve"), (F3, "")] {
        let err = h
            .try_subscribe(conn, framework("web", principal, &fw))
            .err()
            .unwrap_or_default();
        assert!(
            err.contains(&format!("framework `{fw}` belongs to another principal")),
            "{principal:?}: {err}"
        );
        assert!(!err.contains("alice"), "the owner is not named: {err}");
    }
    // Nothing happened to the owner: still subscribed on its stream, its task running.
    assert_eq!(kills_or_closes(&h.drain(), F1), 0);
    let snap = h.m.snapshot(Timestamp(h.now));
    assert!(snap.frameworks.iter().all(|f| f.connected));
    assert_eq!(snap.tasks.len(), 1);
    assert_eq!(snap.tasks[0].state, "TASK_RUNNING");
    assert_eq!(snap.frameworks[0].principal, "alice");
    // Its own calls still work on its stream.
    h.call(Call::Revive(v1::ReviveRequest {
        header: Some(hdr.clone()),
        ..Default::default()
    }))
    .expect("the owner's calls still work");
    // The owner may fail over.
    let again = h
        .try_subscribe(F2, framework("web", "alice", &fw))
        .expect("the owner re-subscribes");
    assert_eq!(again.framework_id, fw);
}

#[test]
fn an_authenticated_caller_must_own_the_framework() {
    let mut h = H::new();
    let (_agent, hdr) = running(&mut h);
    let fw = hdr.framework_id.as_str();
    assert_eq!(h.m.check_caller(fw, Some("alice")), Ok(()));
    assert_eq!(h.m.check_caller(fw, None), Ok(()));
    let err = h.m.check_caller(fw, Some("eve"));
    assert!(
        matches!(&err, Err(e) if e.kind() == ErrorKind::PermissionDenied
            && e.to_string().contains("principal `eve` may not make calls for it")),
        "{err:?}"
    );
}

#[test]
fn update_framework_cannot_change_the_owner() {
    let mut h = H::new();
    let (_agent, hdr) = running(&mut h);
    let mut info = framework("web", "eve", &hdr.framework_id);
    info.name = "renamed".into();
    h.call(Call::UpdateFramework(Box::new(
        v1::UpdateFrameworkRequest {
            header: Some(hdr.clone()),
            framework_info: Some(info),
        },
    )))
    .expect("update");
    let snap = h.m.snapshot(Timestamp(h.now));
    assert_eq!(snap.frameworks[0].name, "renamed");
    assert_eq!(snap.frameworks[0].principal, "alice");
}

#[test]
fn ownership_survives_a_master_restart() {
    let mut h = H::persistent(MasterConfig::default(), Default::default(), 1_000);
    let (_agent, hdr) = running(&mut h);
    let store = h.store.clone().unwrap_or_default();
    let mut h2 = H::persistent(MasterConfig::default(), store, h.now + 10);
    let err = h2
        .try_subscribe(F2, framework("web", "eve", &hdr.framework_id))
        .err()
        .unwrap_or_default();
    assert!(err.contains("belongs to another principal"), "{err}");
    h2.try_subscribe(F3, framework("web", "alice", &hdr.framework_id))
        .expect("the owner re-subscribes after the restart");
}

fn reregister_as(h: &mut H, conn: u64, agent: &str, principal: &str) -> Result<(), MasterError> {
    let mut info = agent_info(agent, "host1", "cpus:4;mem:4096");
    info.principal = principal.into();
    h.input(Input::Agent {
        conn,
        msg: v1::AgentMessage {
            msg: Some(AIn::Reregister(v1::ReregisterAgent {
                info: Some(Box::new(info)),
                tasks: Vec::new(),
            })),
        },
    })
}

#[test]
fn an_agent_id_belongs_to_the_principal_that_registered_it() {
    let mut h = H::new();
    let mut info = agent_info("", "host1", "cpus:4;mem:4096");
    info.principal = "agent-a".into();
    h.input(Input::Agent {
        conn: A1,
        msg: v1::AgentMessage {
            msg: Some(AIn::Register(v1::RegisterAgent {
                info: Some(Box::new(info)),
            })),
        },
    })
    .expect("register");
    let agent = h.m.snapshot(Timestamp(h.now)).agents[0].id.clone();
    h.drain();
    let err = reregister_as(&mut h, A2, &agent, "eve");
    assert!(
        matches!(&err, Err(MasterError::NotOwner { what: "agent", .. })),
        "{err:?}"
    );
    let out = h.drain();
    // The claimant is told (fatally) and its session closed; the owner's session stays.
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::CloseAgent { conn } if *conn == A2))
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::CloseAgent { conn } if *conn == A1))
    );
    let snap = h.m.snapshot(Timestamp(h.now));
    assert!(snap.agents[0].connected);
    assert!(reregister_as(&mut h, A2, &agent, "").is_err());
    reregister_as(&mut h, A2, &agent, "agent-a").expect("the owner re-registers");
}

#[test]
fn an_id_recorded_without_a_principal_is_claimed_by_the_first_one() {
    // Registered before authentication was turned on: no owner yet.
    let mut h = H::new();
    let hdr = h.subscribe_with(F1, framework("web", "", ""));
    let fw = hdr.framework_id.clone();
    h.try_subscribe(F2, framework("web", "alice", &fw))
        .expect("the first principal claims it");
    let err = h
        .try_subscribe(F3, framework("web", "eve", &fw))
        .err()
        .unwrap_or_default();
    assert!(err.contains("belongs to another principal"), "{err}");
    let agent = h.register_agent(A1, "host1", "cpus:4;mem:4096");
    reregister_as(&mut h, A2, &agent, "agent-a").expect("claimed");
    assert!(reregister_as(&mut h, A1, &agent, "eve").is_err());
}

#[test]
fn register_frameworks_limits_a_principal_to_its_roles() {
    let mut h = H::new();
    h.m.set_authorizer(authorizer(
        r#"{"register_frameworks": [
            {"principals": {"values": ["alice"]}, "roles": {"values": ["web"]}},
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
        ]}"#,
    ));
    let mut prod = framework("web", "alice", "");
    prod.roles = vec!["web".into(), "prod".into()];
    let err = h.try_subscribe(F1, prod).err().unwrap_or_default();
    assert_eq!(
        err,
        "not authorized: principal `alice` may not register_frameworks (role `prod`)"
    );
    let err = h
        .try_subscribe(F2, framework("web", "", ""))
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("an unauthenticated caller may not register_frameworks"),
        "{err}"
    );
    h.try_subscribe(F3, framework("web", "alice", ""))
        .expect("alice may use web");
}

#[test]
fn run_tasks_and_reservations_follow_the_acls() {
    let mut h = H::new();
    h.m.set_authorizer(authorizer(
        r#"{"run_tasks": [
            {"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
        ], "reserve_resources": [
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
        ]}"#,
    ));
    h.register_agent(A1, "host1", "cpus:4;mem:4096");
    let hdr = h.subscribe_with(F1, framework("web", "alice", ""));
    h.advance(1_000);
    let offer = h.offers(F1).remove(0);
    let mut root = task("t-root", "cpus:1;mem:128");
    if let Some(c) = root.command.as_mut() {
        c.user = "root".into();
    }
    let err = h.launch(&hdr, &[&offer.id], vec![root]);
    assert!(
        matches!(&err, Err(e) if e.to_string()
            == "not authorized: principal `alice` may not run_tasks (user `root`)"),
        "{err:?}"
    );
    let reserve = h.call(Call::Accept(v1::AcceptRequest {
        header: Some(hdr.clone()),
        offer_ids: vec![offer.id.clone()],
        operations: vec![v1::Operation {
            op: Some(v1::operation::Op::Reserve(v1::Reserve {
                resources: proffer_proto::Resources::parse("cpus(web,dynamic=alice):1")
                    .expect("resources")
                    .to_proto(),
            })),
        }],
        filters: None,
    }));
    assert!(
        matches!(&reserve, Err(MasterError::Forbidden(d)) if d.object.as_deref() == Some("web")),
        "{reserve:?}"
    );
    // The framework's own user (nobody) is allowed.
    h.launch(&hdr, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch as the framework's user");
    let snap = h.m.snapshot(Timestamp(h.now));
    assert_eq!(snap.tasks[0].user, "nobody");
}

#[test]
fn operator_teardown_follows_teardown_frameworks() {
    let mut h = H::new();
    let (_agent, hdr) = running(&mut h);
    h.m.set_authorizer(authorizer(
        r#"{"teardown_frameworks": [
            {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
            {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}
        ]}"#,
    ));
    let fw = hdr.framework_id.as_str();
    let now = Timestamp(h.now);
    let err = h.m.teardown_framework(now, Some("dev"), fw);
    assert!(matches!(err, Err(MasterError::Forbidden(_))), "{err:?}");
    assert_eq!(h.m.snapshot(now).frameworks.len(), 1);
    h.m.teardown_framework(now, Some("ops"), fw)
        .expect("ops may tear down");
    assert!(h.m.snapshot(now).frameworks.is_empty());
}

#[test]
fn snapshots_and_roles_are_filtered_per_principal() {
    let mut h = H::new();
    running(&mut h);
    h.subscribe_with(F2, {
        let mut f = framework("db", "bob", "");
        f.user = "postgres".into();
        f
    });
    h.m.set_quota(
        "web",
        proffer_proto::Resources::parse("cpus:1").expect("quota"),
        None,
    )
    .expect("quota");
    let acl = authorizer(
        r#"{"permissive": false,
            "view_frameworks": [{"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}}],
            "view_tasks": [{"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}}],
            "view_roles": [{"principals": {"values": ["alice"]}, "roles": {"values": ["web"]}}]}"#,
    );
    let now = Timestamp(h.now);
    let mut snap = h.m.snapshot(now);
    assert_eq!(snap.frameworks.len(), 2);
    let hidden = crate::core::filter_snapshot(&acl, Some("alice"), &mut snap);
    assert_eq!(snap.frameworks.len(), 1);
    assert_eq!(snap.frameworks[0].name, "web");
    assert_eq!(snap.tasks.len(), 1);
    assert!(
        snap.agents.is_empty(),
        "no view_agents rule and not permissive"
    );
    assert!(hidden >= 2);
    let mut snap = h.m.snapshot(now);
    crate::core::filter_snapshot(&acl, None, &mut snap);
    assert!(snap.frameworks.is_empty() && snap.tasks.is_empty());
    let mut roles = h.m.role_summaries();
    crate::core::filter_roles(&acl, Some("alice"), &mut roles);
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].role, "web");
    assert_eq!(roles[0].guarantees, "", "get_quotas is not granted");
}

/// ACCEPT `ops` on the framework's next offer (the one it still holds if a refused ACCEPT
/// left it outstanding).
fn accept_ops(
    h: &mut H,
    hdr: &v1::CallHeader,
    held: &mut String,
    ops: Vec<v1::Operation>,
) -> Result<(), MasterError> {
    h.advance(1_000);
    if let Some(o) = h.offers(F1).first() {
        held.clone_from(&o.id);
    }
    h.call(Call::Accept(v1::AcceptRequest {
        header: Some(hdr.clone()),
        offer_ids: vec![held.clone()],
        operations: ops,
        filters: Some(v1::Filters {
            refuse_seconds: Some(0.0),
        }),
    }))
}

fn op(kind: &str, text: &str) -> v1::Operation {
    use v1::operation::Op;
    let resources = proffer_proto::Resources::parse(text)
        .expect("resources")
        .to_proto();
    let op = match kind {
        "reserve" => Op::Reserve(v1::Reserve { resources }),
        "unreserve" => Op::Unreserve(v1::Unreserve { resources }),
        "create" => Op::Create(v1::CreateVolume { volumes: resources }),
        _ => Op::Destroy(v1::DestroyVolume { volumes: resources }),
    };
    v1::Operation { op: Some(op) }
}

#[test]
fn unreserve_create_and_destroy_follow_the_acls_with_the_frameworks_principal() {
    let mut h = H::new();
    h.register_agent(A1, "host1", "cpus:4;mem:4096;disk:1000");
    let hdr = h.subscribe_with(F1, framework("web", "alice", ""));
    let mut held = String::new();
    let reserved = "disk(web,dynamic=alice):100";
    let volume = "disk(web,dynamic=alice)[data:data]:100";
    // A reservation naming another principal than the framework's is refused.
    let err = accept_ops(
        &mut h,
        &hdr,
        &mut held,
        vec![op("reserve", "disk(web,dynamic=eve):100")],
    );
    assert!(
        matches!(&err, Err(e) if e.to_string().contains("the framework's principal is `alice`")),
        "{err:?}"
    );
    accept_ops(&mut h, &hdr, &mut held, vec![op("reserve", reserved)])
        .expect("reserve (permissive)");
    h.m.set_authorizer(authorizer(
        r#"{"create_volumes": [{"principals": {"values": ["alice"]}, "roles": {"type": "NONE"}}]}"#,
    ));
    let denied = |r: Result<(), MasterError>| match r {
        Err(MasterError::Forbidden(d)) => Some((d.action.key(), d.object)),
        other => panic!("not refused by an ACL: {other:?}"),
    };
    assert_eq!(
        denied(accept_ops(
            &mut h,
            &hdr,
            &mut held,
            vec![op("create", volume)]
        )),
        Some(("create_volumes", Some("web".to_string())))
    );
    // Allowed again, a volume is made; then DESTROY is refused on its creator.
    h.m.set_authorizer(Authorizer::default());
    accept_ops(&mut h, &hdr, &mut held, vec![op("create", volume)]).expect("create");
    h.m.set_authorizer(authorizer(
        r#"{"destroy_volumes": [{"principals": {"type": "ANY"}, "creator_principals": {"type": "NONE"}}]}"#,
    ));
    assert_eq!(
        denied(accept_ops(
            &mut h,
            &hdr,
            &mut held,
            vec![op("destroy", volume)]
        )),
        Some(("destroy_volumes", Some("alice".to_string())))
    );
    h.m.set_authorizer(Authorizer::default());
    accept_ops(&mut h, &hdr, &mut held, vec![op("destroy", volume)]).expect("destroy");
    h.m.set_authorizer(authorizer(
        r#"{"unreserve_resources": [{"principals": {"type": "ANY"}, "reserver_principals": {"type": "NONE"}}]}"#,
    ));
    assert_eq!(
        denied(accept_ops(
            &mut h,
            &hdr,
            &mut held,
            vec![op("unreserve", reserved)]
        )),
        Some(("unreserve_resources", Some("alice".to_string())))
    );
}

/// A framework authenticated as `alice` may tag reservations with a sub-principal
/// `alice/POD` (the service layer does, one per pod); ACLs on reserver principals see
/// `alice`. `alicex/…` and `eve/alice` are other principals.
#[test]
fn sub_principals_of_the_framework_may_reserve_and_acls_see_the_principal() {
    let mut h = H::new();
    h.register_agent(A1, "host1", "cpus:4;mem:4096;disk:1000");
    let hdr = h.subscribe_with(F1, framework("web", "alice", ""));
    let mut held = String::new();
    for other in ["alicex/pod-0", "eve/alice", "eve"] {
        let text = format!("disk(web,dynamic={other}):10");
        let err = accept_ops(&mut h, &hdr, &mut held, vec![op("reserve", &text)]);
        assert!(
            matches!(&err, Err(e) if e.to_string().contains("sub-principal `alice/…`")),
            "{other}: {err:?}"
        );
    }
    accept_ops(
        &mut h,
        &hdr,
        &mut held,
        vec![op("reserve", "disk(web,dynamic=alice/svc.pod-0):100")],
    )
    .expect("a sub-principal reserves");
    // Unreserving is authorized on the reserver `alice`, not `alice/svc.pod-0`.
    h.m.set_authorizer(authorizer(
        r#"{"permissive": false,
            "unreserve_resources": [{"principals": {"values": ["alice"]},
                                     "reserver_principals": {"values": ["alice"]}}]}"#,
    ));
    accept_ops(
        &mut h,
        &hdr,
        &mut held,
        vec![op("unreserve", "disk(web,dynamic=alice/svc.pod-0):100")],
    )
    .expect("unreserve allowed by the ACL on `alice`");
}
