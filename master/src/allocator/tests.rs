use super::*;

fn r(s: &str) -> Resources {
    Resources::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn offers_for(allocs: &[Allocation], fw: &str) -> usize {
    allocs.iter().filter(|a| a.framework_id == fw).count()
}

#[test]
fn lowest_share_framework_gets_each_agent() {
    let mut a = Allocator::new(1);
    a.add_framework("f1", "*", true);
    a.add_framework("f2", "*", true);
    for i in 0..4 {
        a.add_agent(&format!("a{i}"), r("cpus:4;mem:4096"), &[]);
    }
    let allocs = a.allocate(Timestamp(0));
    assert_eq!(allocs.len(), 4);
    assert_eq!(
        offers_for(&allocs, "f1"),
        2,
        "DRF alternates between equal frameworks"
    );
    assert_eq!(offers_for(&allocs, "f2"), 2);
    // Everything is allocated: a second cycle offers nothing.
    assert!(a.allocate(Timestamp(1)).is_empty());
}

#[test]
fn existing_usage_counts_towards_share() {
    let mut a = Allocator::new(1);
    a.add_framework("big", "*", true);
    a.add_framework("small", "*", true);
    a.add_agent(
        "a0",
        r("cpus:4;mem:4096"),
        &[("big".into(), r("cpus:3;mem:1024"))],
    );
    a.add_agent("a1", r("cpus:4;mem:4096"), &[]);
    let allocs = a.allocate(Timestamp(0));
    // `small` has the lower share, so it is served first (it gets a1 whole, then a0's rest goes
    // to whoever is lower then: big has 3/8 cpus, small 4/8 → big).
    assert_eq!(allocs[0].framework_id, "small");
    assert_eq!(allocs.len(), 2);
}

#[test]
fn decline_filter_expires() {
    let mut a = Allocator::new(1);
    a.add_framework("f", "*", true);
    a.add_agent("a", r("cpus:1;mem:128"), &[]);
    let first = a.allocate(Timestamp(0));
    assert_eq!(first.len(), 1);
    a.recover("f", "a", &first[0].resources, Some(Timestamp(5_000)));
    assert!(
        a.allocate(Timestamp(4_999)).is_empty(),
        "filtered until 5 s"
    );
    assert_eq!(a.allocate(Timestamp(5_000)).len(), 1, "filter expired");
}

#[test]
fn suppress_and_revive() {
    let mut a = Allocator::new(1);
    a.add_framework("f", "*", true);
    a.add_agent("a", r("cpus:1;mem:128"), &[]);
    a.suppress("f");
    assert!(a.allocate(Timestamp(0)).is_empty());
    a.revive("f");
    assert_eq!(a.allocate(Timestamp(0)).len(), 1);
}

#[test]
fn inactive_agents_and_frameworks_get_nothing() {
    let mut a = Allocator::new(1);
    a.add_framework("f", "*", true);
    a.add_agent("a", r("cpus:1;mem:128"), &[]);
    a.deactivate_agent("a");
    assert!(a.allocate(Timestamp(0)).is_empty());
    a.activate_agent("a");
    a.deactivate_framework("f");
    assert!(a.allocate(Timestamp(0)).is_empty());
    a.activate_framework("f");
    assert_eq!(a.allocate(Timestamp(0)).len(), 1);
}

#[test]
fn below_min_allocatable_is_not_offered() {
    let mut a = Allocator::new(1);
    a.add_framework("f", "*", true);
    a.add_agent("a", r("cpus:0.005;mem:16"), &[]);
    assert!(a.allocate(Timestamp(0)).is_empty());
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let mut a = Allocator::new(1);
    a.add_framework("web", "web", true);
    a.add_framework("other", "*", true);
    a.add_agent("a", r("cpus(web):2;mem(web):512"), &[]);
    let allocs = a.allocate(Timestamp(0));
    assert_eq!(allocs.len(), 1);
    assert_eq!(allocs[0].framework_id, "web");
    assert_eq!(allocs[0].role, "web");
}

#[test]
fn same_seed_same_decisions() {
    let run = |seed| {
        let mut a = Allocator::new(seed);
        for f in 0..5 {
            a.add_framework(&format!("f{f}"), "*", true);
        }
        for i in 0..20 {
            a.add_agent(&format!("a{i:02}"), r("cpus:2;mem:1024"), &[]);
        }
        a.allocate(Timestamp(0))
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4), "the agent order depends on the seed");
}

#[test]
fn filters_refuse_only_subsets_of_the_declined_resources() {
    let mut a = Allocator::new(1);
    a.add_framework("f", "*", true);
    a.add_agent("a", r("cpus:4;mem:4096"), &[]);
    let first = a.allocate(Timestamp(0));
    // The framework keeps cpus:3 (a task) and declines the rest for 5 s.
    let rest = r("cpus:1;mem:1024");
    let used = first[0].resources.checked_sub(&rest).expect("subset");
    a.recover("f", "a", &rest, Some(Timestamp(5_000)));
    assert!(
        a.allocate(Timestamp(1)).is_empty(),
        "the same leftover stays filtered"
    );
    // The task ends: more is free than was declined, so the offer goes out despite the filter.
    a.recover("f", "a", &used, None);
    let again = a.allocate(Timestamp(2));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, r("cpus:4;mem:4096"));
}

#[test]
fn weights_scale_shares() {
    let mut a = Allocator::new(1);
    a.add_framework("heavy", "heavy", true);
    a.add_framework("light", "light", true);
    a.set_weight("heavy", 3.0).expect("weight");
    for i in 0..8 {
        a.add_agent(&format!("a{i}"), r("cpus:1;mem:1024"), &[]);
    }
    let allocs = a.allocate(Timestamp(0));
    assert_eq!(
        offers_for(&allocs, "heavy"),
        6,
        "weight 3 gets three times the agents"
    );
    assert_eq!(offers_for(&allocs, "light"), 2);
    assert!(a.set_weight("x", 0.0).is_err());
    assert!(a.set_weight("x", f64::NAN).is_err());
    assert!(a.set_weight("x", -1.0).is_err());
}

#[test]
fn random_policy_is_seeded_and_ignores_shares() {
    let run = |seed| {
        let mut a = Allocator::with_policy(seed, Policy::Random);
        for f in 0..4 {
            a.add_framework(&format!("f{f}"), "*", true);
        }
        for i in 0..40 {
            a.add_agent(&format!("a{i:02}"), r("cpus:1;mem:128"), &[]);
        }
        a.allocate(Timestamp(0))
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    let allocs = run(5);
    // Random is not DRF: with 40 agents the counts are very unlikely to be exactly 10 each.
    let counts: Vec<usize> = (0..4)
        .map(|f| offers_for(&allocs, &format!("f{f}")))
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 40);
    assert_ne!(
        counts,
        vec![10, 10, 10, 10],
        "seed 5 gives an uneven split: {counts:?}"
    );
    assert_eq!(Policy::parse("RANDOM"), Some(Policy::Random));
    assert_eq!(Policy::parse("wdrf"), Some(Policy::Drf));
    assert_eq!(Policy::parse("nope"), None);
}
