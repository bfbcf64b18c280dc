//! Offer coalescing: while offers flow, resources that come back are offered together once the
//! window that the first of them opened has passed (`MasterConfig::offer_coalesce_ms`); after a
//! quiet spell they are offered at once. In virtual time.

use proffer_proto::v1::{self, TaskState};

use super::harness::{H, res, task};
use super::scenarios::{A1, F1, F2};
use crate::core::{MasterConfig, Timestamp};

/// One agent with 4 slots, a framework running 4 tasks on them; `window` ms of coalescing.
fn four_running(window: u64) -> (H, v1::CallHeader) {
    let mut h = H::with(MasterConfig {
        offer_coalesce_ms: window,
        ..MasterConfig::default()
    });
    h.register_agent(A1, "host1", "cpus:4;mem:4096");
    let fw = h.subscribe(F1, "fw", 0.0);
    h.advance(1);
    let offer = h.offers(F1).remove(0);
    let tasks = (1..=4)
        .map(|i| task(&format!("t{i}"), "cpus:1;mem:1024"))
        .collect();
    h.launch(&fw, &[&offer.id], tasks).expect("launch");
    h.drain();
    (h, fw)
}

fn finish(h: &mut H, fw: &v1::CallHeader, task_id: &str) {
    h.status(
        A1,
        &fw.framework_id,
        task_id,
        TaskState::TaskFinished,
        task_id.as_bytes(),
    )
    .expect("status");
}

#[test]
fn after_a_quiet_spell_a_slot_is_offered_at_once_and_while_offers_flow_they_are_gathered() {
    let (mut h, fw) = four_running(5);
    h.advance(100);
    assert!(h.offers(F1).is_empty(), "nothing free yet");
    // The last allocation ran 100 ms ago: the first slot freed is offered at the next tick.
    finish(&mut h, &fw, "t1");
    assert_eq!(h.m.next_wakeup(), Some(Timestamp(h.now)));
    h.advance(0);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(res(&offers[0]).to_string(), "cpus:1;mem:1024");
    // Offers are flowing now: slots freed within a window of that allocation are gathered, the
    // window running from the first of them, not the last.
    h.advance(1);
    let opened = h.now;
    finish(&mut h, &fw, "t2");
    assert_eq!(h.m.next_wakeup(), Some(Timestamp(opened + 5)));
    h.advance(2);
    assert!(h.offers(F1).is_empty(), "the window is still open");
    finish(&mut h, &fw, "t3");
    assert_eq!(h.m.next_wakeup(), Some(Timestamp(opened + 5)));
    h.advance(2);
    assert!(h.offers(F1).is_empty(), "4 ms into a 5 ms window");
    h.advance(1);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1, "one offer for both slots: {offers:?}");
    assert_eq!(res(&offers[0]).to_string(), "cpus:2;mem:2048");
    assert_eq!(h.m.next_wakeup(), None, "nothing pending after the offer");
}

#[test]
fn a_zero_window_offers_each_slot_at_the_next_tick() {
    let (mut h, fw) = four_running(0);
    h.advance(100);
    finish(&mut h, &fw, "t1");
    assert_eq!(h.m.next_wakeup(), Some(Timestamp(h.now)));
    h.advance(0);
    let offers = h.offers(F1);
    assert_eq!(offers.len(), 1);
    assert_eq!(res(&offers[0]).to_string(), "cpus:1;mem:1024");
    finish(&mut h, &fw, "t2");
    h.advance(0);
    assert_eq!(res(&h.offers(F1)[0]).to_string(), "cpus:1;mem:1024");
}

#[test]
fn the_allocation_interval_still_bounds_the_wait() {
    // A window longer than the interval: the interval's cycle comes first.
    let mut h = H::with(MasterConfig {
        offer_coalesce_ms: 5_000,
        allocation_interval_ms: 1_000,
        ..MasterConfig::default()
    });
    h.register_agent(A1, "host1", "cpus:4;mem:4096");
    h.advance(1);
    h.subscribe(F1, "fw", 0.0);
    assert_eq!(h.m.next_wakeup(), Some(Timestamp(1_001)));
    h.advance(999);
    assert!(h.offers(F1).is_empty());
    h.advance(1);
    assert_eq!(h.offers(F1).len(), 1);
}

/// A scripted run with tasks ending at seeded random times: every offer made (when, what) and
/// every other output.
fn scripted_run(window: u64) -> (Vec<String>, Vec<crate::core::Output>) {
    let mut rng = crate::rng::SplitMix64::new(7);
    let (mut h, fw) = four_running(window);
    let mut running: Vec<String> = (1..=4).map(|i| format!("t{i}")).collect();
    let mut next = 5;
    let mut log = Vec::new();
    for _ in 0..400 {
        h.advance(rng.next_u64() % 3);
        if !running.is_empty() && rng.next_u64().is_multiple_of(2) {
            let i = (rng.next_u64() % running.len() as u64) as usize;
            let t = running.swap_remove(i);
            finish(&mut h, &fw, &t);
        }
        for o in h.offers(F1) {
            log.push(format!("{} {} {}", h.now, o.id, res(&o)));
            let n = res(&o).scalar_milli("cpus") / 1000;
            let tasks: Vec<v1::TaskInfo> = (0..n)
                .map(|k| task(&format!("t{}", next + k), "cpus:1;mem:1024"))
                .collect();
            running.extend(tasks.iter().map(|t| t.task_id.clone()));
            next += n;
            h.launch(&fw, &[&o.id], tasks).expect("launch");
        }
    }
    (log, h.drain())
}

#[test]
fn coalescing_is_deterministic_and_makes_fewer_larger_offers() {
    let (offers_a, rest_a) = scripted_run(3);
    let (offers_b, rest_b) = scripted_run(3);
    assert_eq!(
        offers_a, offers_b,
        "same inputs at the same times, same offers"
    );
    assert_eq!(rest_a, rest_b, "and the same other outputs");
    let (offers_now, _) = scripted_run(0);
    assert!(
        offers_a.len() < offers_now.len(),
        "a 3 ms window made {} offers, none made {}",
        offers_a.len(),
        offers_now.len()
    );
}

#[test]
fn coalesced_resources_go_to_the_lowest_dominant_share_first() {
    let mut h = H::with(MasterConfig {
        offer_coalesce_ms: 5,
        ..MasterConfig::default()
    });
    h.register_agent(A1, "host1", "cpus:2;mem:2048");
    let f1 = h.subscribe(F1, "f1", 0.0);
    h.advance(1);
    let offer = h.offers(F1).remove(0);
    let tasks = vec![task("a", "cpus:1;mem:1024"), task("b", "cpus:1;mem:1024")];
    h.launch(&f1, &[&offer.id], tasks).expect("launch");
    h.subscribe(F2, "f2", 0.0);
    h.advance(100);
    assert!(h.offers(F2).is_empty(), "nothing free yet");
    // F1's task ends: F1 still holds half the agent, F2 nothing, so DRF offers the freed slot
    // to F2 once the window has passed, not back to F1.
    finish(&mut h, &f1, "a");
    h.advance(4);
    assert!(
        h.offers(F2).is_empty() && h.offers(F1).is_empty(),
        "window still open"
    );
    h.advance(1);
    let offers = h.offers(F2);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(res(&offers[0]).to_string(), "cpus:1;mem:1024");
    assert!(h.offers(F1).is_empty());
}
