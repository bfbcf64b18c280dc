//! Unit tests of the batch framework: spec validation, task ids, the offer demand at a rate.

use super::*;

fn invalid(spec: BatchSpec) -> String {
    match spec.validate() {
        Err(BatchError::InvalidSpec(m)) => m,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn validation_names_the_problem() {
    let ok = BatchSpec::new("b", 3, "true");
    assert!(ok.validate().is_ok());
    // `ok` with one field made wrong.
    let with = |wrong: fn(&mut BatchSpec)| {
        let mut spec = ok.clone();
        wrong(&mut spec);
        spec
    };
    let cases: [(BatchSpec, &str); 9] = [
        (with(|s| s.tasks = 0), "tasks"),
        (with(|s| s.cmd = " ".into()), "cmd"),
        (with(|s| s.cpus = 0.0), "cpus"),
        (with(|s| s.cpus = 0.0001), "rounds to zero"),
        (with(|s| s.mem = -1.0), "mem"),
        (with(|s| s.mem = f64::NAN), "mem"),
        (with(|s| s.name = String::new()), "name"),
        (with(|s| s.role = "a b".into()), "role"),
        (with(|s| s.failover_timeout_secs = -1.0), "failover"),
    ];
    for (spec, names) in cases {
        let m = invalid(spec);
        assert!(m.contains(names), "`{m}` does not name {names}");
    }
}

#[test]
fn at_a_rate_the_offer_limit_does_not_follow_every_arrival() {
    let t0 = Instant::now();
    let mut arrivals = Arrivals::new(10_000, Some(500.0), t0);
    let _ = arrivals.release(t0);
    // The queue alternates between empty and one task, as it does at every arrival.
    let updates = |demand: &dyn Fn(usize) -> usize| {
        let mut limit = adaptive_offer_limit(10_000, None, OFFER_CAP);
        let mut updates = 0;
        for pending in [0, 1, 0, 2, 0, 1, 0, 1, 3, 0, 1, 0] {
            if let Some(l) = adaptive_offer_limit(demand(pending), limit, OFFER_CAP) {
                limit = Some(l);
                updates += 1;
            }
        }
        (updates, limit)
    };
    assert_eq!(updates(&|p| offer_demand(p, &arrivals)), (0, Some(16)));
    // Asking for the queue, or for the tasks due soon only while it is empty (the first
    // version), the limit moved at almost every arrival.
    let due = arrivals.expected_within(ARRIVAL_LOOKAHEAD);
    assert_eq!(updates(&|p| if p == 0 { due } else { p }).0, 11);
    // Without a rate, the demand is the queue.
    let all = Arrivals::new(3, None, t0);
    assert_eq!(offer_demand(2, &all), 2 + 3);
    let mut done = Arrivals::new(3, None, t0);
    let _ = done.release(t0);
    assert_eq!(offer_demand(2, &done), 2);
}

#[test]
fn task_ids_are_zero_padded() {
    assert_eq!(task_id("job", 7), "job-0007");
    assert_eq!(task_id("job", 12345), "job-12345");
}
