//! Allocator benchmarks, named after Mesos's allocator benchmark profiles
//! (see `shared/REFERENCE.md`; Mesos's published figures are per allocation cycle).
//!
//! - `full_cycle/AxF`: one cycle over A free agents and F frameworks (every agent offered).
//! - `decline_offers/AxF`: Mesos's DeclineOffers — every framework has declined every agent with
//!   a long filter; one full cycle must find that nothing can be offered. The state is built by
//!   installing the filters directly (as `recover` with `refuse_until` after a decline would),
//!   not by running A×F cycles.
//! - `suppress_offers/AxF`: every framework suppressed; one cycle.
//! - `resource_labels/AxF`: half of each agent reserved for one of 10 roles (labelled
//!   resources); one full cycle.
//! - `large_and_small_quota/{drf,random}/S,L`: agents `cpus:2;mem:2048;disk:2048`; S roles with
//!   quota `cpus:1;mem:1024;disk:1024` and L roles with quota `cpus:4;mem:4096;disk:4096`
//!   (guarantee = limit, as Mesos's quota API set them); S/5 + 5·L agents; one framework per
//!   role. `first` = the cycle that satisfies every guarantee; `second` = the next cycle, which
//!   must offer nothing.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use proffer_master::allocator::{Allocator, Policy, Quota};
use proffer_master::core::Timestamp;
use proffer_proto::Resources;

fn res(s: &str) -> Resources {
    Resources::parse(s).unwrap_or_default()
}

fn cluster(agents: usize, frameworks: usize) -> Allocator {
    let mut a = Allocator::new(7);
    for f in 0..frameworks {
        a.add_framework(&format!("framework-{f:05}"), &["*".to_string()], true);
    }
    let r = res("cpus:16;mem:65536;disk:100000;ports:[31000-32000]");
    for i in 0..agents {
        a.add_agent(&format!("agent-{i:06}"), r.clone(), &[]);
    }
    a
}

fn declined(agents: usize, frameworks: usize) -> Allocator {
    let mut a = cluster(agents, frameworks);
    let r = res("cpus:16;mem:65536;disk:100000;ports:[31000-32000]");
    for f in 0..frameworks {
        let fw = format!("framework-{f:05}");
        for i in 0..agents {
            a.recover(&fw, &format!("agent-{i:06}"), &r, Some(Timestamp(1 << 40)));
        }
    }
    assert!(
        a.allocate(Timestamp(1)).is_empty(),
        "every agent is filtered"
    );
    a
}

fn quota_cluster(small: usize, large: usize, policy: Policy) -> Allocator {
    let mut a = Allocator::with_policy(7, policy);
    let (sq, lq) = (
        res("cpus:1;mem:1024;disk:1024"),
        res("cpus:4;mem:4096;disk:4096"),
    );
    for (prefix, n, q) in [("small", small, &sq), ("large", large, &lq)] {
        for i in 0..n {
            let role = format!("{prefix}-{i:05}");
            let quota = Quota {
                guarantees: q.clone(),
                limits: Some(q.clone()),
            };
            if a.set_quota(&role, quota).is_err() {
                panic!("quota for {role}");
            }
            a.add_framework(&format!("fw-{role}"), &[role], true);
        }
    }
    let agent = res("cpus:2;mem:2048;disk:2048");
    for i in 0..(small / 5 + 5 * large) {
        a.add_agent(&format!("agent-{i:06}"), agent.clone(), &[]);
    }
    a
}

fn bench(c: &mut Criterion) {
    for (agents, frameworks) in [(1_000, 100), (10_000, 1_000)] {
        let fresh = cluster(agents, frameworks);
        c.bench_function(&format!("full_cycle/{agents}x{frameworks}"), |b| {
            b.iter_batched_ref(
                || fresh.clone(),
                |a| a.allocate(Timestamp(0)),
                BatchSize::LargeInput,
            )
        });
    }
    for (agents, frameworks) in [(1_000, 100), (10_000, 1_000), (10_000, 3_000)] {
        let mut a = declined(agents, frameworks);
        // A cycle that offers nothing leaves the state as it was: no need to clone per iteration.
        c.bench_function(&format!("decline_offers/{agents}x{frameworks}"), |b| {
            b.iter(|| a.allocate(Timestamp(2)))
        });
    }
    {
        let mut a = cluster(10_000, 1_000);
        for f in 0..1_000 {
            a.suppress(&format!("framework-{f:05}"));
        }
        c.bench_function("suppress_offers/10000x1000", |b| {
            b.iter(|| a.allocate(Timestamp(0)))
        });
    }
    {
        let mut a = Allocator::new(7);
        for f in 0..1_000 {
            a.add_framework(
                &format!("framework-{f:05}"),
                &[format!("role{}", f % 10)],
                true,
            );
        }
        for i in 0..10_000 {
            let r = res(&format!(
                "cpus:8;mem:32768;cpus(role{0}):8;mem(role{0}):32768;disks(role{0}):{{ssd}}",
                i % 10
            ));
            a.add_agent(&format!("agent-{i:06}"), r, &[]);
        }
        c.bench_function("resource_labels/10000x1000", |b| {
            b.iter_batched_ref(
                || a.clone(),
                |a| a.allocate(Timestamp(0)),
                BatchSize::LargeInput,
            )
        });
    }
    for policy in [Policy::Drf, Policy::Random] {
        for (small, large) in [(25, 5), (250, 50), (2_500, 500)] {
            let fresh = quota_cluster(small, large, policy);
            let name = format!("large_and_small_quota/{}/{small},{large}", policy.name());
            c.bench_function(&format!("{name}/first"), |b| {
                b.iter_batched_ref(
                    || fresh.clone(),
                    |a| a.allocate(Timestamp(0)),
                    BatchSize::LargeInput,
                )
            });
            let mut settled = fresh.clone();
            let first = settled.allocate(Timestamp(0));
            assert!(!first.is_empty());
            assert!(
                settled.allocate(Timestamp(1)).is_empty(),
                "second cycle must make no offers"
            );
            c.bench_function(&format!("{name}/second"), |b| {
                b.iter(|| settled.allocate(Timestamp(2)))
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
