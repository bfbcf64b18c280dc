//! Allocator benchmarks, named after Mesos's allocator benchmark profiles.
//!
//! - `full_cycle/1000x100`: one allocation cycle over 1,000 free agents and 100 frameworks
//!   (every agent is offered).
//! - `decline_offers/1000x100`: Mesos's DeclineOffers shape — every framework declined every
//!   offer with a long filter, so a cycle must consider every (agent, framework) pair and
//!   offer nothing.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use proffer_master::allocator::Allocator;
use proffer_master::core::Timestamp;
use proffer_proto::Resources;

fn cluster(agents: usize, frameworks: usize) -> Allocator {
    let mut a = Allocator::new(7);
    for f in 0..frameworks {
        a.add_framework(&format!("framework-{f:05}"), &["*".to_string()], true);
    }
    let res =
        Resources::parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]").unwrap_or_default();
    for i in 0..agents {
        a.add_agent(&format!("agent-{i:06}"), res.clone(), &[]);
    }
    a
}

fn bench(c: &mut Criterion) {
    let (agents, frameworks) = (1_000, 100);
    let fresh = cluster(agents, frameworks);
    c.bench_function("full_cycle/1000x100", |b| {
        b.iter_batched(
            || fresh.clone(),
            |mut a| a.allocate(Timestamp(0)),
            BatchSize::LargeInput,
        )
    });

    let mut declined = cluster(agents, frameworks);
    // Each framework declines everything it is offered, with a long filter, until every
    // framework has filtered every agent.
    let mut now = 0;
    loop {
        let allocs = declined.allocate(Timestamp(now));
        if allocs.is_empty() {
            break;
        }
        for x in allocs {
            declined.recover(
                &x.framework_id,
                &x.agent_id,
                &x.resources,
                Some(Timestamp(1 << 40)),
            );
        }
        now += 1;
    }
    c.bench_function("decline_offers/1000x100", |b| {
        b.iter_batched(
            || declined.clone(),
            |mut a| a.allocate(Timestamp(now)),
            BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
