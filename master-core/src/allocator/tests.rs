use super::*;

fn r(s: &str) -> Resources {
    Resources::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn roles(r: &str) -> Vec<String> {
    vec![r.to_string()]
}

fn offers_for(allocs: &[Allocation], fw: &str) -> usize {
    allocs.iter().filter(|a| a.framework_id == fw).count()
}

#[test]
fn lowest_share_framework_gets_each_agent() {
    let mut a = Allocator::new(1);
    a.add_framework("f1", &roles("*"), true);
    a.add_framework("f2", &roles("*"), true);
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
    a.add_framework("big", &roles("*"), true);
    a.add_framework("small", &roles("*"), true);
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
    a.add_framework("f", &roles("*"), true);
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
    a.add_framework("f", &roles("*"), true);
    a.add_agent("a", r("cpus:1;mem:128"), &[]);
    a.suppress("f");
    assert!(a.allocate(Timestamp(0)).is_empty());
    a.revive("f");
    assert_eq!(a.allocate(Timestamp(0)).len(), 1);
}

#[test]
fn inactive_agents_and_frameworks_get_nothing() {
    let mut a = Allocator::new(1);
    a.add_framework("f", &roles("*"), true);
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
    a.add_framework("f", &roles("*"), true);
    a.add_agent("a", r("cpus:0.005;mem:16"), &[]);
    assert!(a.allocate(Timestamp(0)).is_empty());
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let mut a = Allocator::new(1);
    a.add_framework("web", &roles("web"), true);
    a.add_framework("other", &roles("*"), true);
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
            a.add_framework(&format!("f{f}"), &roles("*"), true);
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
    a.add_framework("f", &roles("*"), true);
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
    a.add_framework("heavy", &roles("heavy"), true);
    a.add_framework("light", &roles("light"), true);
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
            a.add_framework(&format!("f{f}"), &roles("*"), true);
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

// ───────────────────── roles, quotas, limits, reservations ─────────────────────

fn quota(g: &str, l: Option<&str>) -> Quota {
    Quota {
        guarantees: r(g),
        limits: l.map(r),
    }
}

fn held_by(allocs: &[Allocation], fw: &str) -> Resources {
    allocs
        .iter()
        .filter(|a| a.framework_id == fw)
        .fold(Resources::new(), |mut acc, a| {
            acc.add(&a.resources);
            acc
        })
}

#[test]
fn quota_guarantee_is_served_first_and_chops_agents() {
    let mut a = Allocator::new(1);
    // A greedy framework in `*` would otherwise take everything.
    a.add_framework("greedy", &roles("*"), true);
    a.add_framework("q", &roles("prod"), true);
    a.set_quota("prod", quota("cpus:1;mem:1024", None))
        .expect("quota");
    a.add_agent("a0", r("cpus:2;mem:2048"), &[]);
    let allocs = a.allocate(Timestamp(0));
    let q = held_by(&allocs, "q");
    assert_eq!(
        q.cpus_milli(),
        1000,
        "guarantee met exactly by chopping half an agent: {q}"
    );
    assert_eq!(q.mem_milli(), 1_024_000);
    assert_eq!(
        held_by(&allocs, "greedy").cpus_milli(),
        1000,
        "the rest goes to the fair stage"
    );
}

#[test]
fn unmet_guarantee_is_held_back_as_headroom() {
    let mut a = Allocator::new(1);
    a.add_framework("greedy", &roles("*"), true);
    a.add_framework("q", &roles("prod"), true);
    a.set_quota("prod", quota("cpus:2;mem:2048", None))
        .expect("quota");
    a.suppress("q"); // the quota role does not want offers right now
    a.add_agent("a0", r("cpus:2;mem:2048"), &[]);
    a.add_agent("a1", r("cpus:2;mem:2048"), &[]);
    let allocs = a.allocate(Timestamp(0));
    let g = held_by(&allocs, "greedy");
    assert_eq!(
        g.cpus_milli(),
        2000,
        "greedy may not eat prod's guaranteed headroom: got {g}"
    );
    let why = a.explain_framework("greedy", Timestamp(0)).join("\n");
    assert!(why.contains("headroom"), "{why}");
}

#[test]
fn quota_limit_caps_a_role_and_its_children() {
    let mut a = Allocator::new(1);
    a.add_framework("child", &roles("team/batch"), true);
    a.set_quota("team", quota("cpus:0", Some("cpus:3;mem:3072")))
        .expect("quota");
    for i in 0..4 {
        a.add_agent(&format!("a{i}"), r("cpus:2;mem:2048"), &[]);
    }
    let allocs = a.allocate(Timestamp(0));
    let held = held_by(&allocs, "child");
    assert_eq!(
        held.cpus_milli(),
        3000,
        "limit of the parent applies: {held}"
    );
    assert!(
        a.allocate(Timestamp(1)).is_empty(),
        "limit reached: no more offers"
    );
    let why = a.explain_role("team/batch", Timestamp(1)).join("\n");
    assert!(
        why.contains("quota limit reached for cpus in role `team`"),
        "{why}"
    );
}

#[test]
fn hierarchical_fairness_splits_between_subtrees_first() {
    // eng has 3 frameworks, ops has 1: HDRF splits agents between eng and ops first.
    let mut a = Allocator::new(1);
    for i in 0..3 {
        a.add_framework(&format!("eng{i}"), &roles(&format!("eng/t{i}")), true);
    }
    a.add_framework("ops0", &roles("ops"), true);
    for i in 0..8 {
        a.add_agent(&format!("a{i}"), r("cpus:1;mem:1024"), &[]);
    }
    let allocs = a.allocate(Timestamp(0));
    assert_eq!(offers_for(&allocs, "ops0"), 4, "ops gets half the cluster");
    let eng: usize = (0..3)
        .map(|i| offers_for(&allocs, &format!("eng{i}")))
        .sum();
    assert_eq!(eng, 4, "eng's 3 frameworks share the other half");
}

#[test]
fn multi_role_frameworks_get_offers_per_role() {
    let mut a = Allocator::new(1);
    a.add_framework("multi", &["web".to_string(), "batch".to_string()], true);
    a.add_agent("a0", r("cpus(web):1;mem(web):512"), &[]);
    a.add_agent("a1", r("cpus(batch):1;mem(batch):512"), &[]);
    let allocs = a.allocate(Timestamp(0));
    let mut got: Vec<(String, String)> = allocs
        .iter()
        .map(|x| (x.agent_id.clone(), x.role.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("a0".into(), "web".into()), ("a1".into(), "batch".into())]
    );
    // Suppressing one role leaves the other.
    let back = allocs
        .iter()
        .find(|x| x.role == "web")
        .cloned()
        .expect("web");
    a.recover("multi", "a0", &back.resources, None);
    a.suppress_roles("multi", &["web".to_string()]);
    assert!(a.allocate(Timestamp(1)).is_empty());
    a.revive_roles("multi", &["web".to_string()]);
    assert_eq!(a.allocate(Timestamp(2)).len(), 1);
}

#[test]
fn reserved_resources_reach_descendant_roles() {
    let mut a = Allocator::new(1);
    a.add_framework("child", &roles("eng/ml"), true);
    a.add_framework("stranger", &roles("ops"), true);
    a.add_agent("a0", r("cpus(eng):2;mem(eng):1024"), &[]);
    let allocs = a.allocate(Timestamp(0));
    assert_eq!(allocs.len(), 1);
    assert_eq!(allocs[0].framework_id, "child");
}

#[test]
fn bad_settings_are_refused() {
    let mut a = Allocator::new(1);
    let cases: Vec<(Result<(), AllocatorError>, &str)> = vec![
        (a.set_weight("eng", 0.0), "must be a positive finite number"),
        (
            a.set_weight("eng", -2.0),
            "must be a positive finite number",
        ),
        (a.set_weight("a//b", 1.0), "invalid role"),
        (
            a.set_quota("*", quota("cpus:1", None)),
            "cannot have a quota",
        ),
        (
            a.set_quota("eng", quota("ports:[1-2]", None)),
            "not a quota resource",
        ),
        (
            a.set_quota("eng", quota("cpus(x):1", None)),
            "must not carry a reservation",
        ),
        (
            a.set_quota("eng", quota("cpus:4", Some("cpus:2"))),
            "exceeds its limit",
        ),
        (
            a.set_quota("bad role", quota("cpus:1", None)),
            "invalid role",
        ),
    ];
    for (res, want) in cases {
        let err = res.expect_err(want).to_string();
        assert!(err.contains(want), "`{err}` should contain `{want}`");
    }
    assert!(a.quota("eng").is_none());
    assert_eq!(a.weight("eng"), 1.0);
}

#[test]
fn decline_fast_path_skips_fully_filtered_agents_but_not_others() {
    let mut a = Allocator::new(1);
    for f in 0..70 {
        a.add_framework(&format!("f{f:02}"), &roles("*"), true);
    }
    a.add_agent("a", r("cpus:1;mem:128"), &[]);
    // Every framework declines the agent with a long filter.
    for t in 0..70 {
        let allocs = a.allocate(Timestamp(t));
        assert_eq!(allocs.len(), 1);
        a.recover(
            &allocs[0].framework_id,
            "a",
            &allocs[0].resources,
            Some(Timestamp(1_000_000)),
        );
    }
    assert!(a.allocate(Timestamp(100)).is_empty(), "all 70 filtered");
    // A new framework is not filtered.
    a.add_framework("new", &roles("*"), true);
    let allocs = a.allocate(Timestamp(101));
    assert_eq!(allocs.len(), 1);
    assert_eq!(allocs[0].framework_id, "new");
    // Filters expire.
    a.recover("new", "a", &allocs[0].resources, Some(Timestamp(200)));
    assert!(a.allocate(Timestamp(199)).is_empty());
    assert_eq!(a.allocate(Timestamp(200)).len(), 1);
}

#[test]
fn reservation_conversion_keeps_the_chunk_allocated() {
    let mut a = Allocator::new(1);
    a.add_framework("f", &roles("web"), true);
    a.add_agent("a0", r("cpus:2;mem:1024"), &[]);
    let allocs = a.allocate(Timestamp(0));
    a.convert(
        "f",
        "a0",
        &r("cpus:1;mem:512"),
        &r("cpus(web):1;mem(web):512"),
    );
    assert_eq!(
        a.allocated_to("f").to_string(),
        "cpus:1;cpus(web):1;mem:512;mem(web):512"
    );
    a.recover(
        "f",
        "a0",
        &allocs[0]
            .resources
            .checked_sub(&r("cpus:1;mem:512"))
            .unwrap_or_default(),
        None,
    );
    a.recover("f", "a0", &r("cpus(web):1;mem(web):512"), None);
    let again = a.allocate(Timestamp(1));
    assert_eq!(
        again[0].resources.to_string(),
        "cpus:1;cpus(web):1;mem:512;mem(web):512"
    );
    assert_eq!(
        a.total().to_string(),
        "cpus:1;cpus(web):1;mem:512;mem(web):512"
    );
}

#[test]
fn conversion_may_span_a_frameworks_roles() {
    let mut a = Allocator::new(1);
    a.add_framework("m", &["web".to_string(), "batch".to_string()], true);
    a.add_agent("a0", r("cpus:1;mem:512;cpus(web):1;mem(web):512"), &[]);
    let allocs = a.allocate(Timestamp(0));
    // Everything went to `m` (one role or two offers); reserve all unreserved for `batch`.
    let held = a.allocated_to("m");
    assert_eq!(
        held.to_string(),
        "cpus:1;cpus(web):1;mem:512;mem(web):512",
        "{allocs:?}"
    );
    a.convert(
        "m",
        "a0",
        &r("cpus:1;mem:512"),
        &r("cpus(batch):1;mem(batch):512"),
    );
    assert_eq!(
        a.allocated_to("m").to_string(),
        "cpus(batch):1;cpus(web):1;mem(batch):512;mem(web):512"
    );
    assert_eq!(
        a.total().to_string(),
        "cpus(batch):1;cpus(web):1;mem(batch):512;mem(web):512"
    );
    assert!(
        a.allocated_on("a0")
            .contains(&r("cpus(batch):1;cpus(web):1"))
    );
}

#[test]
fn offer_limit_passes_a_full_framework_over_until_it_answers() {
    let mut a = Allocator::new(1);
    a.add_framework("capped", &roles("*"), true);
    a.add_framework("other", &roles("*"), true);
    a.set_offer_limit("capped", Some(2));
    for i in 0..6 {
        a.add_agent(&format!("a{i}"), r("cpus:4;mem:4096"), &[]);
    }
    let allocs = a.allocate(Timestamp(0));
    assert_eq!(allocs.len(), 6, "every agent is still offered");
    assert_eq!(offers_for(&allocs, "capped"), 2, "at most 2 outstanding");
    assert_eq!(
        offers_for(&allocs, "other"),
        4,
        "the rest goes to the next framework"
    );
    let explained = a.explain_framework("capped", Timestamp(0)).join("\n");
    assert!(
        explained.contains("2 of at most 2 outstanding offers")
            && explained.contains("at its limit"),
        "{explained}"
    );
    // `capped` declines one offer (no filter): it is below its limit again and gets it back.
    let first = allocs.iter().find(|x| x.framework_id == "capped").cloned();
    let first = first.expect("capped got an offer");
    a.offer_closed("capped");
    a.recover("capped", &first.agent_id, &first.resources, None);
    let again = a.allocate(Timestamp(1));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].framework_id, "capped");
    // Lifting the limit (0 = none) makes it eligible however many offers it holds.
    a.set_offer_limit("capped", Some(0));
    let explained = a.explain_framework("capped", Timestamp(1)).join("\n");
    assert!(!explained.contains("outstanding offers"), "{explained}");
}

#[test]
fn minimum_offers_skip_leftovers_too_small_and_not_others() {
    let mut a = Allocator::new(1);
    a.add_framework("big", &roles("*"), true);
    a.add_framework("small", &roles("*"), true);
    a.set_min_offers("big", &[("*".into(), vec![r("cpus:4;mem:1024")])]);
    a.add_agent("a0", r("cpus:2;mem:8192"), &[]);
    a.add_agent("a1", r("cpus:8;mem:8192"), &[]);
    let allocs = a.allocate(Timestamp(0));
    assert!(
        allocs
            .iter()
            .all(|x| x.framework_id != "big" || x.agent_id == "a1"),
        "big never gets the 2-cpu agent: {allocs:?}"
    );
    // `small` declines everything it got (no filter); `big` declines a1 with a filter.
    for x in &allocs {
        let until = (x.framework_id == "big").then_some(Timestamp(60_000));
        a.recover(&x.framework_id, &x.agent_id, &x.resources, until);
    }
    a.suppress("small");
    // Only big is left: a0 is too small for it, a1 is filtered: nothing is offered, and a0 is
    // now marked so later cycles skip it without looking.
    assert!(a.allocate(Timestamp(1)).is_empty());
    assert!(a.allocate(Timestamp(2)).is_empty());
    let explained = a.explain_framework("big", Timestamp(2)).join("\n");
    assert!(
        explained.contains("must hold at least one of: cpus:4;mem:1024"),
        "{explained}"
    );
    // Lowering the minimum makes a0 eligible again at once.
    a.set_min_offers("big", &[("*".into(), vec![r("cpus:1")])]);
    let again = a.allocate(Timestamp(3));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (again[0].framework_id.as_str(), again[0].agent_id.as_str()),
        ("big", "a0")
    );
}

#[test]
fn a_too_small_mark_lasts_only_until_the_agent_frees_more() {
    let mut a = Allocator::new(1);
    a.add_framework("big", &roles("*"), true);
    a.add_framework("other", &roles("*"), true);
    a.set_min_offers("big", &[("*".into(), vec![r("cpus:4")])]);
    a.add_agent("a", r("cpus:8;mem:8192"), &[]);
    // `other` takes 6 cpus for a task (the rest goes back unfiltered).
    a.suppress("big");
    let first = a.allocate(Timestamp(0));
    assert_eq!(first.len(), 1);
    let task = r("cpus:6;mem:1024");
    let rest = first[0]
        .resources
        .checked_sub(&task)
        .expect("offer holds the task");
    a.recover("other", "a", &rest, None);
    a.suppress("other");
    a.revive("big");
    // 2 cpus left: too small for big.
    assert!(a.allocate(Timestamp(1)).is_empty());
    // The task ends: 8 cpus free again, so big gets an offer.
    a.recover("other", "a", &task, None);
    let later = a.allocate(Timestamp(2));
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0].framework_id, "big");
}

#[test]
fn why_says_first_when_no_agent_could_ever_meet_a_minimum_or_a_quota() {
    let mut a = Allocator::new(1);
    a.add_framework("huge", &roles("*"), true);
    a.set_min_offers("huge", &[("*".into(), vec![r("cpus:8;mem:64")])]);
    a.add_agent("a1", r("cpus:4;mem:4096"), &[]);
    a.add_agent("a2", r("cpus:2;cpus(web):4;mem:4096"), &[]);
    let why = a.explain_framework("huge", Timestamp(0));
    assert!(
        why[0].starts_with("no agent can ever meet its minimum offer in role `*` (cpus:8;mem:64)")
            && why[0].contains("the largest agent has cpus:4;mem:4096 (a1)"),
        "{why:?}"
    );
    // Within reach: no such line.
    a.set_min_offers("huge", &[("*".into(), vec![r("cpus:4")])]);
    assert!(!a.explain_framework("huge", Timestamp(0))[0].starts_with("no agent"));
    // A quota larger than the whole cluster.
    let q = Quota {
        guarantees: r("cpus:20"),
        limits: None,
    };
    a.set_quota("big", q).expect("quota");
    let why = a.explain_role("big", Timestamp(0));
    assert!(
        why[0].contains("exceed the whole cluster") && why[0].contains("can never be met"),
        "{why:?}"
    );
}
