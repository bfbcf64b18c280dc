//! Maintenance windows and inverse offers.

use proffer_proto::v1::{self, event::Event, master_message::Msg as AOut};

use super::harness::{H, task};
use super::scenarios::{A1, F1, one_offer};
use crate::core::{Call, Input, MasterError, Timestamp};

fn inverse_offers(h: &mut H) -> Vec<v1::InverseOffer> {
    h.events(F1)
        .into_iter()
        .flat_map(|e| match e {
            Event::InverseOffers(i) => i.inverse_offers,
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn frameworks_on_the_agent_get_inverse_offers_and_the_window_drains_it() {
    let (mut h, agent, fw, offer) = one_offer();
    h.launch(&fw, &[&offer.id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.drain();
    h.m.schedule_maintenance(Timestamp(h.now), &agent, 10_000, 5_000)
        .expect("schedule");
    h.out.extend(h.m.take_outbox());
    let inv = inverse_offers(&mut h);
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].agent_id, agent);
    let u = inv[0].unavailability.expect("unavailability");
    assert_eq!((u.starts_in_ms, u.duration_ms), (10_000, 5_000));
    // Offers from the agent announce the window; no second inverse offer while one is out.
    h.advance(6_000);
    let offers = h.offers(F1);
    assert!(
        offers
            .iter()
            .all(|o| o.unavailability.is_some_and(|u| u.starts_in_ms <= 10_000))
    );
    assert!(inverse_offers(&mut h).is_empty());
    // Answering: unknown ids are refused, a real one is recorded.
    let answer = |ids: Vec<String>| {
        Call::AcceptInverseOffers(v1::InverseOffersRequest {
            header: Some(fw.clone()),
            inverse_offer_ids: ids,
        })
    };
    let err = h.call(answer(vec!["nope".into()])).expect_err("unknown");
    assert!(matches!(err, MasterError::UnknownOffer { .. }));
    h.call(answer(vec![inv[0].id.clone()])).expect("accept");
    let sched = h.m.maintenance_schedule(Timestamp(h.now));
    assert_eq!(sched[0].frameworks[0].status, "ACCEPTED");
    // The window starts: the agent is drained.
    h.advance(4_000);
    assert!(h.agent_msgs(A1).iter().any(|m| matches!(m, AOut::Drain(_))));
    assert!(h.m.snapshot(Timestamp(h.now)).agents[0].draining);
    // It ends: the agent is offered again and the window is gone.
    h.advance(5_000);
    assert!(!h.m.snapshot(Timestamp(h.now)).agents[0].draining);
    assert!(h.m.maintenance_schedule(Timestamp(h.now)).is_empty());
    // ... and the agent is told, so it accepts tasks again.
    assert!(
        h.agent_msgs(A1)
            .iter()
            .any(|m| matches!(m, AOut::Reactivate(_)))
    );
}

#[test]
fn reactivate_tells_the_agent_and_a_drain_survives_reregistration() {
    let (mut h, agent, _fw, _offer) = one_offer();
    h.drain();
    h.m.drain_agent(&agent, "test").expect("drain");
    h.out.extend(h.m.take_outbox());
    assert!(h.agent_msgs(A1).iter().any(|m| matches!(m, AOut::Drain(_))));
    // The agent's session breaks and it re-registers: still drained, and told so again.
    h.input(Input::AgentDisconnected { conn: A1 })
        .expect("disconnect");
    h.drain();
    h.reregister(9, &agent, "cpus:4;mem:4096;ports:[31000-31009]", Vec::new());
    let msgs = h.agent_msgs(9);
    assert!(
        matches!(
            &msgs[..],
            [
                AOut::Registered(_),
                AOut::Drain(_),
                AOut::CheckpointResources(_)
            ]
        ),
        "{msgs:?}"
    );
    assert!(h.m.snapshot(Timestamp(h.now)).agents[0].draining);
    h.advance(2_000);
    assert!(h.offers(F1).is_empty(), "a drained agent is not offered");
    // Reactivate: the agent is told and offered again.
    h.m.reactivate_agent(&agent).expect("reactivate");
    h.out.extend(h.m.take_outbox());
    assert!(
        h.agent_msgs(9)
            .iter()
            .any(|m| matches!(m, AOut::Reactivate(_)))
    );
    h.advance(2_000);
    assert_eq!(h.offers(F1).len(), 1, "offered again after reactivation");
    assert!(matches!(
        h.m.reactivate_agent("nope"),
        Err(MasterError::UnknownAgent { .. })
    ));
}

#[test]
fn bad_maintenance_requests_are_refused() {
    let (mut h, agent, _fw, _offer) = one_offer();
    assert!(matches!(
        h.m.schedule_maintenance(Timestamp(0), "ghost", 0, 1_000),
        Err(MasterError::UnknownAgent { .. })
    ));
    let err =
        h.m.schedule_maintenance(Timestamp(0), &agent, 0, 0)
            .expect_err("zero");
    assert!(err.to_string().contains("more than 0 s"), "{err}");
    assert!(h.m.maintenance_schedule(Timestamp(0)).is_empty());
}
