//! RESERVE, UNRESERVE, CREATE and DESTROY inside ACCEPT, with virtual time: applied in order,
//! validated whole, reserved resources offered only to their role, clear errors that change
//! nothing.

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, master_message::Msg as AOut, operation::Op};

use super::harness::{H, res, task};
use crate::core::{Call, MasterError, Timestamp};

const A1: u64 = 1;
const F1: u64 = 101;
const F2: u64 = 102;

/// Subscribes a framework in `roles`.
fn subscribe_roles(h: &mut H, conn: u64, name: &str, roles: &[&str]) -> v1::CallHeader {
    let info = v1::FrameworkInfo {
        name: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    h.subscribe_with(conn, info)
}

fn wire(text: &str) -> Vec<v1::Resource> {
    Resources::parse(text).expect("resources").to_proto()
}

fn reserve(text: &str) -> v1::Operation {
    v1::Operation {
        op: Some(Op::Reserve(v1::Reserve {
            resources: wire(text),
        })),
    }
}

fn unreserve(text: &str) -> v1::Operation {
    v1::Operation {
        op: Some(Op::Unreserve(v1::Unreserve {
            resources: wire(text),
        })),
    }
}

fn create(text: &str) -> v1::Operation {
    v1::Operation {
        op: Some(Op::Create(v1::CreateVolume {
            volumes: wire(text),
        })),
    }
}

fn destroy(text: &str) -> v1::Operation {
    v1::Operation {
        op: Some(Op::Destroy(v1::DestroyVolume {
            volumes: wire(text),
        })),
    }
}

fn launch(tasks: Vec<v1::TaskInfo>) -> v1::Operation {
    v1::Operation {
        op: Some(Op::Launch(v1::Launch { tasks })),
    }
}

/// ACCEPT `offer` with `ops`; the rest is given back without a filter.
fn accept(
    h: &mut H,
    fw: &v1::CallHeader,
    offer: &v1::Offer,
    ops: Vec<v1::Operation>,
) -> Result<(), MasterError> {
    h.call(Call::Accept(v1::AcceptRequest {
        header: Some(fw.clone()),
        offer_ids: vec![offer.id.clone()],
        operations: ops,
        filters: Some(v1::Filters {
            refuse_seconds: Some(0.0),
        }),
    }))
}

/// The agent's total as the operator sees it.
fn agent_total(h: &H) -> String {
    let snap = h.m.snapshot(Timestamp(h.now));
    snap.agents
        .first()
        .map(|a| a.total.clone())
        .unwrap_or_default()
}

/// One agent and one framework in role `web`, with the first offer.
fn setup(agent_res: &str) -> (H, v1::CallHeader, v1::Offer) {
    let mut h = H::new();
    h.register_agent(A1, "host1", agent_res);
    let fw = subscribe_roles(&mut h, F1, "web-fw", &["web"]);
    h.advance(1);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1);
    (h, fw, offers[0].clone())
}

/// The next offer to `conn` after time passes.
fn next_offer(h: &mut H, conn: u64) -> v1::Offer {
    h.advance(1_000);
    let offers = h.offers(conn);
    assert_eq!(offers.len(), 1, "one offer");
    offers[0].clone()
}

#[test]
fn reserve_create_and_launch_in_one_accept() {
    let (mut h, fw, offer) = setup("cpus:4;mem:4096;disk:1000");
    let ops = vec![
        reserve("cpus(web,dynamic):1;mem(web,dynamic):512;disk(web,dynamic):100"),
        create("disk(web,dynamic)[data:data]:100"),
        launch(vec![task(
            "t1",
            "cpus(web,dynamic):1;mem(web,dynamic):512;disk(web,dynamic)[data:data]:100",
        )]),
    ];
    accept(&mut h, &fw, &offer, ops).expect("accept");
    // The agent is told its new total (twice: after the RESERVE, after the CREATE), then runs
    // the task.
    let run = h.agent_msgs(A1);
    assert!(
        matches!(&run[..], [AOut::CheckpointResources(_), AOut::CheckpointResources(_), AOut::RunTask(r)] if r.task.as_ref().is_some_and(|t| t.task_id == "t1")),
        "{run:?}"
    );
    assert_eq!(
        agent_total(&h),
        "cpus:3;cpus(web,dynamic):1;disk:900;disk(web,dynamic)[data:data]:100;mem:3584;\
         mem(web,dynamic):512"
    );
    // The allocator's view agrees: the cluster total is relabelled, quantities unchanged.
    let total = h.m.allocator().total().clone();
    assert_eq!(total.cpus_milli(), 4000);
    assert_eq!(total.for_role("web").cpus_milli(), 1000);
    // The rest comes back without the reserved part (the task holds it).
    let again = next_offer(&mut h, F1);
    assert_eq!(res(&again).to_string(), "cpus:3;disk:900;mem:3584");
}

#[test]
fn reserved_resources_are_offered_only_to_their_role() {
    let (mut h, fw, offer) = setup("cpus:4;mem:4096");
    accept(
        &mut h,
        &fw,
        &offer,
        vec![reserve("cpus(web,dynamic=ops):2;mem(web,dynamic=ops):1024")],
    )
    .expect("reserve");
    // The web framework steps aside; a framework of another role gets only unreserved resources.
    h.call(Call::Suppress(v1::SuppressRequest {
        header: Some(fw.clone()),
        roles: vec![],
    }))
    .expect("suppress");
    let other = subscribe_roles(&mut h, F2, "batch-fw", &["batch"]);
    let o2 = next_offer(&mut h, F2);
    assert_eq!(res(&o2).to_string(), "cpus:2;mem:3072");
    assert_eq!(o2.framework_id, other.framework_id);
    // Back in play, the web framework is offered its reservation.
    h.call(Call::Revive(v1::ReviveRequest {
        header: Some(fw.clone()),
        roles: vec![],
    }))
    .expect("revive");
    let o1 = next_offer(&mut h, F1);
    assert_eq!(
        res(&o1).to_string(),
        "cpus(web,dynamic=ops):2;mem(web,dynamic=ops):1024"
    );
    assert!(h.offers(F2).is_empty());
}

#[test]
fn unreserve_returns_resources_to_everyone() {
    let (mut h, fw, offer) = setup("cpus:4;mem:4096");
    accept(&mut h, &fw, &offer, vec![reserve("cpus(web,dynamic):2")]).expect("reserve");
    let o = next_offer(&mut h, F1);
    assert_eq!(res(&o).to_string(), "cpus:2;cpus(web,dynamic):2;mem:4096");
    accept(&mut h, &fw, &o, vec![unreserve("cpus(web,dynamic):2")]).expect("unreserve");
    assert_eq!(agent_total(&h), "cpus:4;mem:4096");
    let o = next_offer(&mut h, F1);
    assert_eq!(res(&o).to_string(), "cpus:4;mem:4096");
}

#[test]
fn destroy_after_the_task_ends_then_unreserve() {
    let (mut h, fw, offer) = setup("cpus:2;mem:1024;disk:100");
    accept(
        &mut h,
        &fw,
        &offer,
        vec![
            reserve("cpus(web,dynamic):1;mem(web,dynamic):128;disk(web,dynamic):50"),
            create("disk(web,dynamic)[data:data]:50"),
            launch(vec![task(
                "t1",
                "cpus(web,dynamic):1;mem(web,dynamic):128;disk(web,dynamic)[data:data]:50",
            )]),
        ],
    )
    .expect("accept");
    h.drain();
    // While t1 runs the volume cannot be destroyed, even if it were in an offer.
    let o = next_offer(&mut h, F1);
    let err = accept(
        &mut h,
        &fw,
        &o,
        vec![destroy("disk(web,dynamic)[data:data]:50")],
    )
    .expect_err("in use");
    assert!(
        err.to_string()
            .contains("destroying volume `data` which task `t1` uses"),
        "{err}"
    );
    assert!(
        !h.agent_msgs(A1)
            .iter()
            .any(|m| matches!(m, AOut::DestroyVolumes(_))),
        "a refused DESTROY tells the agent nothing"
    );
    h.status(A1, &fw.framework_id, "t1", TaskState::TaskFinished, b"u1")
        .expect("status");
    h.drain();
    h.call(Call::Decline(v1::DeclineRequest {
        header: Some(fw.clone()),
        offer_ids: vec![o.id.clone()],
        filters: Some(v1::Filters {
            refuse_seconds: Some(0.0),
        }),
    }))
    .expect("decline");
    let o = next_offer(&mut h, F1);
    assert!(
        res(&o)
            .to_string()
            .contains("disk(web,dynamic)[data:data]:50")
    );
    accept(
        &mut h,
        &fw,
        &o,
        vec![
            destroy("disk(web,dynamic)[data:data]:50"),
            unreserve("cpus(web,dynamic):1;mem(web,dynamic):128;disk(web,dynamic):50"),
        ],
    )
    .expect("destroy + unreserve");
    assert_eq!(agent_total(&h), "cpus:2;disk:100;mem:1024");
    // The agent is told to delete the volume's directory (and only that).
    let destroyed: Vec<Vec<String>> = h
        .agent_msgs(A1)
        .into_iter()
        .filter_map(|m| match m {
            AOut::DestroyVolumes(d) => Some(d.volume_ids),
            _ => None,
        })
        .collect();
    assert_eq!(destroyed, vec![vec!["data".to_string()]]);
}

#[test]
fn bad_operations_are_refused_whole_and_change_nothing() {
    let (mut h, fw, offer) = setup("cpus:4;cpus(web):1;cpus(db,dynamic):1;mem:4096;disk:100");
    let before = h.m.snapshot(Timestamp(h.now));
    let table: Vec<(Vec<v1::Operation>, &str)> = vec![
        (
            vec![reserve("cpus(web,dynamic):100")],
            "do not contain cpus:100",
        ),
        (
            vec![reserve("cpus(db,dynamic):1")],
            "not one of the framework's roles [web]",
        ),
        (vec![reserve("cpus:1")], "names no role"),
        (vec![reserve("")], "names no resources"),
        (
            vec![unreserve("cpus(web):1")],
            "unreserving cpus(web):1 which is reserved statically",
        ),
        (
            vec![unreserve("cpus(db,dynamic):1")],
            "reserved for role `db`, not one of the framework's roles",
        ),
        (vec![unreserve("cpus:1")], "which is not reserved"),
        (
            vec![unreserve("cpus(web,dynamic):1")],
            "do not contain cpus(web,dynamic):1",
        ),
        (vec![create("disk(web,dynamic):10")], "without a volume"),
        (
            vec![create("disk(web,dynamic)[v:v]:10")],
            "do not contain disk(web,dynamic):10",
        ),
        (
            vec![
                reserve("disk(web,dynamic):20"),
                create("disk(web,dynamic)[v:v]:10;disk(web,dynamic)[v:w]:10"),
            ],
            "volume `v` which already exists",
        ),
        (
            vec![destroy("disk(web)[v:v]:10")],
            "do not contain disk(web)[v:v]:10",
        ),
        (
            vec![destroy("disk(web,dynamic):10")],
            "is not a persistent volume",
        ),
        // A valid RESERVE followed by an impossible launch: nothing at all happens.
        (
            vec![
                reserve("cpus(web,dynamic):1"),
                launch(vec![task("t1", "cpus(web,dynamic):2;mem:1")]),
            ],
            "task `t1` needs",
        ),
        (
            vec![launch(vec![task("t2", "cpus:1;mem:1;disk(web)[v:v]:1")])],
            "needs",
        ),
    ];
    for (ops, want) in table {
        let err = accept(&mut h, &fw, &offer, ops).expect_err(want);
        assert!(err.to_string().contains(want), "got `{err}`, want `{want}`");
        assert!(h.agent_msgs(A1).is_empty(), "nothing sent for `{want}`");
        assert_eq!(
            h.m.snapshot(Timestamp(h.now)),
            before,
            "state unchanged after `{want}`"
        );
    }
    // The offer is still good.
    accept(&mut h, &fw, &offer, vec![reserve("cpus(web,dynamic):1")]).expect("valid");
}

#[test]
fn volumes_are_used_whole_and_ids_stay_unique() {
    let (mut h, fw, offer) = setup("cpus:2;mem:1024;disk(web):100");
    accept(&mut h, &fw, &offer, vec![create("disk(web)[data:data]:60")]).expect("create");
    let o = next_offer(&mut h, F1);
    assert_eq!(
        res(&o).to_string(),
        "cpus:2;disk(web):40;disk(web)[data:data]:60;mem:1024"
    );
    let err = accept(
        &mut h,
        &fw,
        &o,
        vec![launch(vec![task(
            "t1",
            "cpus:1;mem:64;disk(web)[data:data]:30",
        )])],
    )
    .expect_err("part of a volume");
    assert!(err.to_string().contains("must be used whole"), "{err}");
    let err = accept(&mut h, &fw, &o, vec![create("disk(web)[data:other]:10")])
        .expect_err("duplicate id");
    assert!(
        err.to_string()
            .contains("volume `data` which already exists"),
        "{err}"
    );
    // A statically reserved volume can be destroyed and the disk stays statically reserved.
    accept(&mut h, &fw, &o, vec![destroy("disk(web)[data:data]:60")]).expect("destroy");
    assert_eq!(agent_total(&h), "cpus:2;disk(web):100;mem:1024");
}
