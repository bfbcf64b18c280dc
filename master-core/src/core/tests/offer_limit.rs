//! `FrameworkInfo.max_outstanding_offers` and `offer_filters`. A framework holds at most its
//! limit of offers (and gets no offer below its minimum); the
//! rest of the cluster goes to others, and answering (accept, decline) or losing an offer
//! (rescind on failover) makes room again.

use proffer_proto::v1::{self};

use super::harness::{H, task};
use super::scenarios::{F1, F2};
use crate::core::{Call, Input};

fn subscribe_capped(h: &mut H, conn: u64, name: &str, limit: Option<u32>) -> v1::CallHeader {
    let info = v1::FrameworkInfo {
        name: name.into(),
        failover_timeout: 60.0,
        max_outstanding_offers: limit,
        ..Default::default()
    };
    h.subscribe_with(conn, info)
}

fn four_agents() -> H {
    let mut h = H::new();
    for i in 0..4u64 {
        h.register_agent(10 + i, &format!("host{i}"), "cpus:4;mem:4096");
    }
    h
}

#[test]
fn a_capped_framework_holds_at_most_its_limit_and_the_rest_goes_elsewhere() {
    let mut h = four_agents();
    let _capped = subscribe_capped(&mut h, F1, "capped", Some(1));
    let _free = subscribe_capped(&mut h, F2, "free", None);
    h.advance(1_000);
    assert_eq!(h.offers(F1).len(), 1, "limit 1");
    assert_eq!(
        h.offers(F2).len(),
        3,
        "the other agents go to the uncapped framework"
    );
    // The operator's view shows the limit next to the outstanding offers.
    let state = h.m.snapshot(crate::core::Timestamp(1_000));
    let capped = state.frameworks.iter().find(|f| f.name == "capped");
    let capped = capped.expect("capped in /state");
    assert_eq!(
        (capped.outstanding_offers, capped.max_outstanding_offers),
        (1, Some(1))
    );
    let free = state.frameworks.iter().find(|f| f.name == "free");
    assert_eq!(free.map(|f| f.max_outstanding_offers), Some(None));
}

#[test]
fn answering_an_offer_makes_room_for_the_next() {
    let mut h = four_agents();
    let fw = subscribe_capped(&mut h, F1, "capped", Some(1));
    h.advance(1_000);
    let first = h.offers(F1);
    assert_eq!(first.len(), 1);
    // While it holds the offer, further cycles send nothing.
    h.advance(1_000);
    assert!(h.offers(F1).is_empty(), "still at its limit");
    // Accepting consumes the offer: the next cycle offers another agent.
    h.launch(&fw, &[&first[0].id], vec![task("t1", "cpus:1;mem:128")])
        .expect("launch");
    h.advance(1_000);
    let second = h.offers(F1);
    assert_eq!(second.len(), 1, "room for one more");
    // Declining (with a filter) makes room as well.
    h.call(Call::Decline(v1::DeclineRequest {
        header: Some(fw.clone()),
        offer_ids: vec![second[0].id.clone()],
        filters: Some(v1::Filters {
            refuse_seconds: Some(60.0),
        }),
    }))
    .expect("decline");
    h.advance(1_000);
    let third = h.offers(F1);
    assert_eq!(third.len(), 1);
    assert_ne!(
        third[0].agent_id, second[0].agent_id,
        "the declined agent is filtered"
    );
}

#[test]
fn resubscribing_changes_the_limit_and_rescinded_offers_free_their_slots() {
    let mut h = four_agents();
    let fw = subscribe_capped(&mut h, F1, "capped", Some(2));
    h.advance(1_000);
    assert_eq!(h.offers(F1).len(), 2);
    // Failover on a new connection with a higher limit: the old offers are rescinded (their
    // slots freed) and the new limit applies.
    let info = v1::FrameworkInfo {
        id: fw.framework_id.clone(),
        name: "capped".into(),
        failover_timeout: 60.0,
        max_outstanding_offers: Some(3),
        ..Default::default()
    };
    h.input(Input::Subscribe {
        conn: F2,
        info: Box::new(info),
    })
    .expect("failover");
    h.advance(1_000);
    assert_eq!(
        h.offers(F2).len(),
        3,
        "new limit, old offers no longer counted"
    );
}

fn min_filters(role: &str, name: &str, value: f64) -> v1::FrameworkInfo {
    let filters = v1::OfferFilters::minimum([(name, value)]);
    v1::FrameworkInfo {
        name: "min".into(),
        roles: vec!["web".into()],
        offer_filters: [(role.to_string(), filters)].into_iter().collect(),
        ..Default::default()
    }
}

#[test]
fn bad_offer_filters_are_refused_naming_the_field() {
    let mut h = H::new();
    for (info, field, says) in [
        (
            min_filters("db", "cpus", 1.0),
            "offer_filters[db]",
            "not one of the framework's roles",
        ),
        (
            min_filters("web", "ports", 1.0),
            "quantities[0].ports",
            "only cpus, mem, disk and gpus",
        ),
        (
            min_filters("web", "cpus", -1.0),
            "quantities[0].cpus",
            "not a non-negative number",
        ),
        (
            min_filters("web", "mem", f64::NAN),
            "quantities[0].mem",
            "not a non-negative number",
        ),
    ] {
        let err = h
            .input(Input::Subscribe {
                conn: F1,
                info: Box::new(info),
            })
            .expect_err("refused")
            .to_string();
        assert!(err.contains(field) && err.contains(says), "{err}");
        assert!(h.m.frameworks.is_empty(), "nothing was registered");
    }
}

#[test]
fn leftovers_below_the_minimum_are_not_offered() {
    let mut h = H::new();
    h.register_agent(10, "small", "cpus:1;mem:4096");
    h.register_agent(11, "big", "cpus:8;mem:4096");
    h.subscribe_with(F1, min_filters("web", "cpus", 2.0));
    h.advance(1_000);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].hostname, "big");
}

fn update(h: &mut H, header: &v1::CallHeader, info: v1::FrameworkInfo) -> Result<(), String> {
    h.call(Call::UpdateFramework(Box::new(
        v1::UpdateFrameworkRequest {
            header: Some(header.clone()),
            framework_info: Some(info),
        },
    )))
    .map_err(|e| e.to_string())
}

#[test]
fn update_framework_changes_the_limit_without_rescinding() {
    let mut h = four_agents();
    let fw = subscribe_capped(&mut h, F1, "capped", Some(1));
    h.advance(1_000);
    let first = h.offers(F1);
    assert_eq!(first.len(), 1);
    let info = |limit: Option<u32>| v1::FrameworkInfo {
        id: fw.framework_id.clone(),
        name: "capped".into(),
        failover_timeout: 60.0,
        max_outstanding_offers: limit,
        ..Default::default()
    };
    // Raising the limit: the next cycle fills the new slots; the first offer stays out.
    update(&mut h, &fw, info(Some(3))).expect("raise");
    h.advance(1_000);
    assert_eq!(h.offers(F1).len(), 2, "two more, up to three");
    let snapshot = h.m.snapshot(crate::core::Timestamp(h.now));
    let f = &snapshot.frameworks[0];
    assert_eq!(
        (f.outstanding_offers, f.max_outstanding_offers),
        (3, Some(3))
    );
    // Lowering it: nothing is rescinded, but nothing more comes until the framework is below.
    update(&mut h, &fw, info(Some(1))).expect("lower");
    h.call(Call::Decline(v1::DeclineRequest {
        header: Some(fw.clone()),
        offer_ids: vec![first[0].id.clone()],
        filters: None,
    }))
    .expect("decline");
    h.advance(1_000);
    assert!(h.offers(F1).is_empty(), "two out, limit one");
    assert!(
        h.events(F1)
            .iter()
            .all(|e| !matches!(e, v1::event::Event::Rescind(_))),
        "an update rescinds nothing"
    );
    // No limit at all.
    update(&mut h, &fw, info(None)).expect("unlimited");
    h.advance(1_000);
    assert_eq!(
        h.offers(F1).len(),
        1,
        "the agent neither out nor declined (declined: filtered for 5 s)"
    );
}

#[test]
fn update_framework_refuses_bad_updates_naming_the_field() {
    let mut h = four_agents();
    let fw = subscribe_capped(&mut h, F1, "capped", Some(1));
    let base = v1::FrameworkInfo {
        id: fw.framework_id.clone(),
        name: "capped".into(),
        failover_timeout: 60.0,
        ..Default::default()
    };
    let cases = [
        (
            v1::FrameworkInfo {
                id: "someone-else".into(),
                ..base.clone()
            },
            "framework_info.id",
        ),
        (
            v1::FrameworkInfo {
                roles: vec!["other".into()],
                ..base.clone()
            },
            "framework_info.roles",
        ),
        (
            v1::FrameworkInfo {
                user: "root".into(),
                ..base.clone()
            },
            "framework_info.user",
        ),
        (
            v1::FrameworkInfo {
                name: String::new(),
                ..base.clone()
            },
            "framework_info.name",
        ),
        (
            v1::FrameworkInfo {
                offer_filters: [("db".to_string(), v1::OfferFilters::minimum([("cpus", 1.0)]))]
                    .into_iter()
                    .collect(),
                ..base.clone()
            },
            "offer_filters[db]",
        ),
    ];
    for (info, field) in cases {
        let err = update(&mut h, &fw, info).expect_err("refused");
        assert!(err.contains(field), "{field}: {err}");
    }
    let err = h
        .call(Call::UpdateFramework(Box::new(
            v1::UpdateFrameworkRequest {
                header: Some(fw.clone()),
                framework_info: None,
            },
        )))
        .expect_err("missing info")
        .to_string();
    assert!(err.contains("framework_info"), "{err}");
    // Nothing changed: the limit is still one.
    h.advance(1_000);
    assert_eq!(h.offers(F1).len(), 1);
    // A framework that is not subscribed cannot update.
    let stranger = v1::CallHeader {
        framework_id: "nobody".into(),
        stream_id: "x".into(),
    };
    let err = update(&mut h, &stranger, base).expect_err("not subscribed");
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn update_framework_sets_a_minimum_offer() {
    let mut h = H::new();
    h.register_agent(10, "small", "cpus:1;mem:4096");
    h.register_agent(11, "big", "cpus:8;mem:4096");
    let mut info = min_filters("web", "cpus", 0.0);
    info.offer_filters.clear();
    let fw = h.subscribe_with(F1, info.clone());
    h.advance(1_000);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 2, "no minimum yet");
    let ids: Vec<String> = offers.iter().map(|o| o.id.clone()).collect();
    h.call(Call::Decline(v1::DeclineRequest {
        header: Some(fw.clone()),
        offer_ids: ids,
        filters: Some(v1::Filters {
            refuse_seconds: Some(0.0),
        }),
    }))
    .expect("decline");
    let mut with_min = min_filters("web", "cpus", 2.0);
    with_min.id = fw.framework_id.clone();
    update(&mut h, &fw, with_min).expect("minimum");
    h.advance(1_000);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].hostname, "big");
}
