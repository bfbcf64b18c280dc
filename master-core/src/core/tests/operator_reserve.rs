//! Operator reservations (Mesos `/reserve`, `/unreserve`): unused resources of an agent are
//! relabelled, outstanding offers on it are rescinded, refusals change nothing.

use proffer_proto::Resources;
use proffer_proto::v1::{self, event::Event};

use super::harness::{H, res, task};
use crate::core::{MasterError, Timestamp};

const A1: u64 = 1;
const F1: u64 = 101;

fn r(text: &str) -> Resources {
    Resources::parse(text).expect("resources")
}

/// One agent, a framework in role `web` holding the agent's first offer.
fn setup(agent_res: &str) -> (H, String, v1::CallHeader, v1::Offer) {
    let mut h = H::new();
    let agent = h.register_agent(A1, "host1", agent_res);
    let info = v1::FrameworkInfo {
        name: "web-fw".into(),
        roles: vec!["web".into()],
        ..Default::default()
    };
    let fw = h.subscribe_with(F1, info);
    h.advance(1);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1);
    (h, agent, fw, offers[0].clone())
}

fn total(h: &H) -> String {
    let snap = h.m.snapshot(Timestamp(h.now));
    snap.agents
        .first()
        .map(|a| a.total.clone())
        .unwrap_or_default()
}

#[test]
fn operator_reservation_rescinds_offers_and_goes_to_the_role() {
    let (mut h, agent, _fw, offer) = setup("cpus:4;mem:4096");
    h.m.reserve_resources(
        &agent,
        &r("cpus(web,dynamic=ops):2;mem(web,dynamic=ops):1024"),
    )
    .expect("reserve");
    h.out.extend(h.m.take_outbox());
    let rescinded: Vec<String> = h
        .events(F1)
        .into_iter()
        .filter_map(|e| match e {
            Event::Rescind(r) => Some(r.offer_id),
            _ => None,
        })
        .collect();
    assert_eq!(rescinded, vec![offer.id]);
    assert_eq!(
        total(&h),
        "cpus:2;cpus(web,dynamic=ops):2;mem:3072;mem(web,dynamic=ops):1024"
    );
    h.advance(1_000);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1);
    assert_eq!(
        res(&offers[0]).to_string(),
        "cpus:2;cpus(web,dynamic=ops):2;mem:3072;mem(web,dynamic=ops):1024"
    );
    // And back.
    h.m.unreserve_resources(
        &agent,
        &r("cpus(web,dynamic=ops):2;mem(web,dynamic=ops):1024"),
    )
    .expect("unreserve");
    assert_eq!(total(&h), "cpus:4;mem:4096");
}

#[test]
fn operator_reservation_refusals_change_nothing() {
    let (mut h, agent, fw, offer) = setup("cpus:4;cpus(db):1;mem:4096");
    // A task uses part of the agent.
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:3;mem:1024")])
        .expect("launch");
    h.advance(10_000);
    h.drain();
    let before = h.m.snapshot(Timestamp(h.now));
    let cases: Vec<(&str, &str, bool, &str)> = vec![
        ("nope", "cpus(web):1", true, "unknown agent `nope`"),
        (&agent, "", true, "names no resources"),
        (&agent, "cpus:1", true, "names no role"),
        (
            &agent,
            "cpus(web,dynamic):2",
            true,
            "not available unused there",
        ),
        (
            &agent,
            "disk(web)[v:v]:1",
            true,
            "it holds a persistent volume",
        ),
        (&agent, "cpus(db):1", false, "reserved statically"),
        (
            &agent,
            "cpus(web,dynamic):1",
            false,
            "not available unused there",
        ),
    ];
    for (agent_id, text, reserve, want) in cases {
        let resources = r(text);
        let result = if reserve {
            h.m.reserve_resources(agent_id, &resources)
        } else {
            h.m.unreserve_resources(agent_id, &resources)
        };
        let err: MasterError = result.expect_err(want);
        assert!(err.to_string().contains(want), "`{err}` lacks `{want}`");
        h.out.extend(h.m.take_outbox());
        assert!(h.drain().is_empty(), "nothing sent for `{want}`");
        assert_eq!(
            h.m.snapshot(Timestamp(h.now)),
            before,
            "unchanged after `{want}`"
        );
    }
    // What the task does not use can be reserved.
    h.m.reserve_resources(&agent, &r("cpus(web,dynamic):1"))
        .expect("reserve the unused cpu");
}

/// Operator CREATE_VOLUMES / DESTROY_VOLUMES (Mesos `/create-volumes`, `/destroy-volumes`):
/// volumes on reserved disk no task uses; an id is unique on the agent; DESTROY tells the
/// agent which directories to delete; bad requests change nothing and say why.
#[test]
fn operator_volumes_are_created_and_destroyed_on_unused_reserved_disk() {
    use crate::core::OperatorOp::{CreateVolumes, DestroyVolumes};
    let (mut h, agent, _fw, _offer) = setup("cpus:4;mem:4096;disk:1000");
    h.m.reserve_resources(&agent, &r("disk(web,dynamic=ops):300"))
        .expect("reserve");
    let volume = r("disk(web,dynamic=ops)[data:data]:100");
    h.m.operator_operation(CreateVolumes, &agent, &volume)
        .expect("create");
    assert!(total(&h).contains("[data:data]"), "{}", total(&h));
    let before = total(&h);
    let refusals = [
        (
            CreateVolumes,
            "disk(web,dynamic=ops)[data:other]:50",
            "exists on agent",
        ),
        (
            CreateVolumes,
            "disk(web,dynamic=ops):50",
            "without a volume",
        ),
        (
            CreateVolumes,
            "disk(web,dynamic=ops)[big:big]:900",
            "not available unused",
        ),
        (
            DestroyVolumes,
            "disk(web,dynamic=ops)[nope:nope]:10",
            "not available unused",
        ),
    ];
    for (op, text, want) in refusals {
        let err = h.m.operator_operation(op, &agent, &r(text)).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(want), "{text}: `{err}` lacks `{want}`");
        assert_eq!(total(&h), before, "{text}: nothing changed");
    }
    h.out.extend(h.m.take_outbox());
    h.m.operator_operation(DestroyVolumes, &agent, &volume)
        .expect("destroy");
    assert!(!total(&h).contains("[data:"), "{}", total(&h));
    let destroyed: Vec<Vec<String>> =
        h.m.take_outbox()
            .into_iter()
            .filter_map(|o| match o {
                crate::core::Output::ToAgent {
                    msg:
                        v1::MasterMessage {
                            msg: Some(v1::master_message::Msg::DestroyVolumes(d)),
                        },
                    ..
                } => Some(d.volume_ids),
                _ => None,
            })
            .collect();
    assert_eq!(destroyed, vec![vec!["data".to_string()]]);
}
